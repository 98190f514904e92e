"""The evaluation proposals of `log_likelihood`: "encoder" (default) and "shifted" (the authors').

Oracle: a 1-dimensional latent, where log p(x) = log ∫ N(z; 0, 1) Π_d Bern(x_d | decoder(z)) dz
is computed by quadrature on a fine grid.
"""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

import rem_tf
from rem_tf import evaluation
from rem_tf.models import sampling


def one_dimensional_model(encoder_loc=0.0, encoder_scale=1.0):
    """iwae, L = 1, D = 6; encoder output layers set so that r(z|x) = N(loc, scale²) for all x."""
    model = rem_tf.build_model("iwae", latent_dim=1, hidden_units=(8,), input_shape=(6,), seed=3)
    encoder = model.encoder
    encoder.loc_layer.set_weights([np.zeros((8, 1)), np.full(1, encoder_loc)])
    encoder.scale_layer.set_weights([np.zeros((8, 1)), np.full(1, 2 * np.log(encoder_scale))])
    return model


def exact_log_likelihood(model, x):
    grid = np.linspace(-12, 12, 24001)
    logits = model.decode(grid[:, None].astype(np.float32)).numpy().astype(np.float64)  # [G, 6]
    log_lik = (x[None] * logits[:, None] - np.logaddexp(0, logits[:, None])).sum(-1)  # [G, N]
    log_integrand = log_lik + scipy.stats.norm.logpdf(grid)[:, None]
    return scipy.special.logsumexp(log_integrand, axis=0) + np.log(grid[1] - grid[0])  # [N]


@pytest.fixture
def images():
    return (np.random.default_rng(0).random((5, 6)) < 0.5).astype(np.float32)


def test_shifted_converges_to_the_exact_log_likelihood(images):
    # A proposal centred off the posterior (loc 1) with scale 1.2: the second pass is
    # centred on the first pass's weighted mean, so it converges to log p(x) as well.
    model = one_dimensional_model(encoder_loc=1.0, encoder_scale=1.2)
    exact = exact_log_likelihood(model, images)
    for proposal in ("encoder", "shifted"):
        estimate = model.log_likelihood(images, num_samples=20000, chunk_size=3000, batch_size=5,
                                        proposal=proposal)
        np.testing.assert_allclose(estimate, exact, atol=0.03, err_msg=proposal)


def test_both_proposals_are_below_the_exact_log_likelihood_on_average_for_small_k(images):
    # Jensen: E[log p̂] < log p(x) for an unbiased p̂ (given the first pass for "shifted").
    # A narrow proposal (scale 0.3) makes the gap large against the Monte-Carlo error.
    model = one_dimensional_model(encoder_loc=0.5, encoder_scale=0.3)
    exact = exact_log_likelihood(model, images)
    repeated = np.tile(images, (400, 1))  # 400 independent estimates per image
    for proposal in ("encoder", "shifted"):
        estimates = model.log_likelihood(repeated, num_samples=3, batch_size=500,
                                         proposal=proposal).reshape(400, 5)
        gap = estimates.mean(0) - exact  # [5]
        stderr = estimates.std(0) / np.sqrt(400)
        assert np.all(gap < -3 * stderr), (proposal, gap, stderr)


def test_chunked_pass_gives_the_weighted_mean_and_log_likelihood_of_its_particles():
    # The running (max-shifted) weighted mean over chunks of 4, 4 and 3 (last one masked
    # from 4) equals the one-shot softmax-weighted mean over the same 11 particles.
    model = rem_tf.build_model("iwae", latent_dim=3, hidden_units=(8,), input_shape=(6,), seed=3)
    x = tf.constant((np.random.default_rng(1).random((4, 6)) < 0.5).astype(np.float32))

    class Recorded:
        """A proposal that hands out fixed particles chunk by chunk, for an exact reference."""

        def __init__(self, base, z):
            self.base, self.z, self.calls = base, z, 0

        def sample(self, n, seed=None):
            chunk = self.z[self.calls * n:(self.calls + 1) * n]
            self.calls += 1
            return tf.constant(np.pad(chunk, [(0, n - len(chunk)), (0, 0), (0, 0)]))

        def log_prob(self, z):
            return self.base.log_prob(z)

    base = model.recognition(*model.encoder(x))
    z = base.sample(11, seed=[1, 2]).numpy()  # [11, 4, 3]
    log_w = (model.log_joint(x, tf.constant(z)) - base.log_prob(z)).numpy().astype(np.float64)
    alpha = scipy.special.softmax(log_w, axis=0)  # [11, 4]
    log_px, mean = sampling.importance_pass(model, x, Recorded(base, z), 11, 4)  # chunks 4, 4, 3
    np.testing.assert_allclose(log_px, scipy.special.logsumexp(log_w, 0) - np.log(11), rtol=1e-5)
    np.testing.assert_allclose(mean, np.einsum("kb,kbl->bl", alpha, z), rtol=1e-4, atol=1e-5)


def test_evaluate_with_the_shifted_proposal(images):
    # The SavedModel's `log_likelihood_shifted` is compared with the live model in
    # test_export.py (in a process without rem_tf); here `evaluate` on the live model.
    model = one_dimensional_model(encoder_loc=1.0, encoder_scale=1.2)
    exact = exact_log_likelihood(model, images).mean()
    results = evaluation.evaluate_model(model, images, num_samples=4000, chunk_size=1000,
                                        batch_size=5, elbo_samples=10, proposal="shifted")
    assert results["proposal"] == "shifted"
    assert abs(results["log_likelihood"] - exact) < 0.03
    assert "proposal" in evaluation.format_table(results)


@pytest.mark.parametrize("bad", ["prior", "", None, 1])
def test_unknown_proposals_are_refused(bad, images):
    model = one_dimensional_model()
    with pytest.raises(ValueError, match="proposal must be one of"):
        model.log_likelihood(images, num_samples=5, proposal=bad)
    with pytest.raises(ValueError, match="proposal must be one of"):
        evaluation.evaluate_model(model, images, num_samples=5, proposal=bad)


def test_num_samples_that_are_not_int32_integers_are_refused(images):
    model = one_dimensional_model()
    for bad in (2**31, 2.5, True, 0):
        with pytest.raises(ValueError, match="num_samples"):
            evaluation.evaluate_model(model, images, num_samples=bad)


def test_per_example_values_average_to_the_reported_log_likelihood(images):
    model = one_dimensional_model(encoder_loc=1.0, encoder_scale=1.2)
    results = evaluation.evaluate_model(model, images, num_samples=50, batch_size=2,
                                        elbo_samples=5, per_example=True)
    values = results["per_example_log_likelihood"]
    assert len(values) == len(images)
    assert np.isclose(np.mean(values), results["log_likelihood"], rtol=1e-9)
    without = evaluation.evaluate_model(model, images, num_samples=5)
    assert "per_example_log_likelihood" not in without
