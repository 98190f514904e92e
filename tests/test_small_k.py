"""REM at small K (issue 14): why the unweighted hyperproposal diverges, and the guard.

REM fits the encoder r(z|x) = N(loc, diag(σ²)) to samples of the hyperproposal s
(reweighted by β). The width of s in units of σ decides whether that fit is stable:
with the unweighted covariance (Eq. 23) it is 2–3σ² at K = 2, with the weighted
one (Eq. 22) σ² (see `estimators.moment_match`).
"""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import rem_tf
from rem_tf import estimators

SMALL = dict(latent_dim=3, hidden_units=(16,), input_shape=(16,))
RIDGE = 1e-6


def width_in_encoder_units(covariance, alpha, batch=20000, dim=3, seed=0):
    """E[(z' − loc)² / σ²] over z_k ~ N(loc, σ²), z' ~ s, for fixed weights α [K]."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(batch, dim))
    scale = rng.uniform(0.1, 3.0, size=(batch, dim))
    z = loc + scale * rng.normal(size=(len(alpha), batch, dim))  # [K, B, L]
    weights = np.repeat(np.asarray(alpha, np.float64)[:, None], batch, axis=1)  # [K, B]
    s = estimators.hyperproposal(tf.constant(z), tf.constant(weights), covariance, RIDGE)
    z_s = s.sample(seed=seed).numpy()  # [B, L]
    return float(np.mean(np.square((z_s - loc) / scale)))


def unweighted_width(alpha):
    """The closed form σ² (1/ESS + (K − 2 + K/ESS) / (K − 1)), in units of σ²."""
    k, inv_ess = len(alpha), float(np.sum(np.square(alpha)))
    return inv_ess + (k - 2 + k * inv_ess) / (k - 1)


def test_two_particles_give_a_rank_one_covariance():
    # The cause of the NaN: all but one eigenvalue is the ridge, so once the particles
    # are far apart the condition number passes float64's and the Cholesky fails.
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 5, 6))
    alpha = estimators.normalized_weights(tf.constant(rng.normal(size=(2, 5)))).numpy()
    _, cov = estimators.moment_match(z, alpha, "unweighted", RIDGE)
    eigenvalues = np.linalg.eigvalsh(cov.numpy())  # [B, L], ascending
    np.testing.assert_allclose(eigenvalues[:, :-1], RIDGE, rtol=1e-6)
    assert np.all(eigenvalues[:, -1] > 1e-2)


@pytest.mark.parametrize("alpha", [[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.7, 0.2, 0.1],
                                   [1.0] + [0.0] * 9, [0.1] * 10])
def test_the_weighted_hyperproposal_is_as_wide_as_the_encoder(alpha):
    assert width_in_encoder_units("weighted", alpha) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("alpha, expected", [
    ([1.0, 0.0], 3.0),  # K = 2, one dominant weight: what training at K = 2 reaches
    ([0.5, 0.5], 1.5),
    ([0.7, 0.2, 0.1], None),
    ([1.0] + [0.0] * 9, 3.0),  # also 3σ² at K = 10: β must undo it there too
    ([0.1] * 10, 1.1),
])
def test_the_unweighted_hyperproposal_is_wider_than_the_encoder(alpha, expected):
    width = width_in_encoder_units("unweighted", alpha)
    if expected is not None:
        assert unweighted_width(alpha) == pytest.approx(expected)
    assert width == pytest.approx(unweighted_width(alpha), rel=0.05)
    assert width > 1.05


@pytest.mark.parametrize("method", ["rem_v1", "rem_v2"])
@pytest.mark.parametrize("num_particles", [2, 3])
def test_unweighted_rem_at_small_k_warns_and_names_the_fix(method, num_particles):
    with pytest.warns(UserWarning, match=r"covariance='weighted'"):
        rem_tf.build_model(method, num_particles=num_particles, **SMALL)


@pytest.mark.parametrize("method, num_particles, covariance", [
    ("rem_v2", 2, "weighted"), ("rem_v1", 2, "weighted"), ("rem_v2", 4, "unweighted"),
    ("iwae", 2, "unweighted"),
])
def test_no_warning_where_rem_is_stable(method, num_particles, covariance):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rem_tf.build_model(method, num_particles=num_particles, covariance=covariance, **SMALL)
    assert not [w for w in caught if "usually diverges" in str(w.message)]


@pytest.mark.parametrize("method", ["rem_v1", "rem_v2"])
def test_rem_refuses_one_particle(method):
    # K = 1: no covariance to match (Σ would be the ridge alone).
    with pytest.raises(ValueError, match="needs num_particles >= 2, got 1"):
        rem_tf.build_model(method, num_particles=1, covariance="weighted", **SMALL)


@pytest.mark.parametrize("method", ["rem_v1", "rem_v2"])
def test_weighted_rem_at_two_particles_gives_finite_losses_and_gradients(method, binary_data):
    model = rem_tf.build_model(method, num_particles=2, covariance="weighted", seed=3, **SMALL)
    x = tf.constant(binary_data[0][:50])
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_losses(x)
        model_loss = tf.reduce_mean(losses.model_loss)
        proposal_loss = tf.reduce_mean(losses.proposal_loss)
    for loss, variables in [(model_loss, model.theta_variables),
                            (proposal_loss, model.eta_variables)]:
        assert np.isfinite(float(loss))
        grads = tape.gradient(loss, variables)
        assert all(np.all(np.isfinite(g.numpy())) for g in grads)
        assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0
