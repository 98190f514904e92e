"""Oracle tests of the pure estimator functions."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from rem_tf import estimators


def test_normalized_weights_are_a_stopped_softmax():
    log_w = tf.constant(np.random.default_rng(0).normal(size=(50, 7)) * 30, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(log_w)
        alpha = estimators.normalized_weights(log_w)
        total = tf.reduce_sum(alpha * log_w)
    np.testing.assert_allclose(tf.reduce_sum(alpha, 0), np.ones(7), rtol=1e-6)
    assert np.all(alpha.numpy() >= 0)
    # Shift invariance: the normalizer cancels, even for huge log weights.
    np.testing.assert_allclose(estimators.normalized_weights(log_w + 1e3), alpha, atol=1e-4)
    # Only the log_w factor is differentiated: d/dlog_w Σ α·log_w = α.
    np.testing.assert_allclose(tape.gradient(total, log_w), alpha, atol=1e-7)


def test_iwae_bound_matches_log_mean_exp_and_is_finite_for_large_weights():
    log_w = np.random.default_rng(1).normal(size=(5000, 3)) - 800.0  # exp underflows float32
    bound = estimators.iwae_bound(tf.constant(log_w, tf.float32)).numpy()
    expected = scipy.special.logsumexp(log_w, axis=0) - np.log(5000)
    np.testing.assert_allclose(bound, expected, rtol=1e-5)
    assert np.all(np.isfinite(bound))


def test_chunked_bound_equals_unchunked():
    log_w = tf.constant(np.random.default_rng(2).normal(size=(1000, 4)), tf.float32)
    chunks = [tf.reduce_logsumexp(c, 0) for c in tf.split(log_w, [300, 300, 300, 100])]
    np.testing.assert_allclose(
        estimators.combine_chunked_bounds(tf.stack(chunks), 1000),
        estimators.iwae_bound(log_w), rtol=1e-6)


def test_bernoulli_log_prob_matches_scipy():
    rng = np.random.default_rng(3)
    x = (rng.random((4, 9)) < 0.5).astype(np.float32)
    logits = rng.normal(size=(6, 4, 9)).astype(np.float32) * 3
    expected = scipy.stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits))).sum(-1)
    np.testing.assert_allclose(estimators.bernoulli_log_prob(x, logits), expected, rtol=1e-5)


def test_kl_to_standard_normal_matches_monte_carlo_free_formula():
    loc = np.array([[0.5, -1.0]], np.float32)
    scale = np.array([[2.0, 0.3]], np.float32)
    # KL per dimension: log(1/s) + (s² + m²)/2 − 1/2
    expected = np.sum(np.log(1 / scale) + (scale**2 + loc**2) / 2 - 0.5)
    np.testing.assert_allclose(estimators.kl_diag_normal_to_standard(loc, scale), [expected],
                               rtol=1e-6)


@pytest.mark.parametrize("covariance", ["weighted", "unweighted"])
def test_covariance_is_symmetric_positive_definite(covariance):
    rng = np.random.default_rng(4)
    # Few particles (K < L) and near-degenerate weights: still SPD thanks to the ridge.
    z = tf.constant(rng.normal(size=(3, 5, 20)), tf.float32)
    log_w = tf.constant(rng.normal(size=(3, 5)) * 50, tf.float32)
    _, cov = estimators.moment_match(z, estimators.normalized_weights(log_w), covariance)
    cov = cov.numpy()
    np.testing.assert_array_equal(cov, np.transpose(cov, (0, 2, 1)))
    assert np.all(np.linalg.eigvalsh(cov.astype(np.float64)) > 0)
    dist = estimators.hyperproposal(z, estimators.normalized_weights(log_w), covariance)
    assert np.all(np.isfinite(dist.log_prob(dist.sample(10, seed=[1, 2])).numpy()))


@pytest.mark.parametrize("covariance", ["weighted", "unweighted"])
def test_hyperproposal_is_finite_with_fewer_particles_than_latent_dimensions(covariance):
    # K = 5 encoder-like particles in L = 20 dimensions: the scatter has rank 4,
    # and only the 1e-6 ridge makes it invertible. (A float32 Cholesky fails here.)
    rng = np.random.default_rng(10)
    loc, scale = rng.normal(size=(100, 20)), np.exp(rng.normal(size=(100, 20)) * 0.3)
    z = tf.constant(loc + scale * rng.normal(size=(5, 100, 20)), tf.float32)
    log_w = tf.constant(rng.normal(size=(5, 100)) * 3, tf.float32)
    dist = estimators.hyperproposal(z, estimators.normalized_weights(log_w), covariance)
    assert dist.dtype == tf.float32
    assert np.all(np.isfinite(dist.scale_tril.numpy()))
    samples = dist.sample(5, seed=[3, 4])
    assert np.all(np.isfinite(dist.log_prob(samples).numpy()))


def test_unknown_covariance_form_is_an_error():
    with pytest.raises(ValueError, match="covariance"):
        estimators.moment_match(tf.zeros([2, 1, 1]), tf.ones([2, 1]) / 2, "diagonal")


def test_unweighted_covariance_is_the_sample_scatter_over_k_minus_one():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(7, 2, 3))
    alpha = np.full((7, 2), 1 / 7)
    mean, cov = estimators.moment_match(
        tf.constant(z, tf.float32), tf.constant(alpha, tf.float32), "unweighted", ridge=0.0)
    for b in range(2):
        np.testing.assert_allclose(cov[b], np.cov(z[:, b].T), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(mean[b], z[:, b].mean(0), rtol=1e-5, atol=1e-6)


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I): posterior and p(x) are exact."""

    def __init__(self, latent_dim=2, data_dim=3, noise=0.5, seed=6):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(data_dim, latent_dim))
        self.b = rng.normal(size=data_dim)
        self.noise = noise
        self.x = rng.normal(size=(4, data_dim)) * 2  # a batch of B = 4 observations

    def posterior(self):
        precision = np.eye(self.W.shape[1]) + self.W.T @ self.W / self.noise**2
        cov = np.linalg.inv(precision)
        means = (cov @ self.W.T @ (self.x - self.b).T / self.noise**2).T
        return means, cov  # [B, L], [L, L]

    def log_marginal(self):
        cov = self.W @ self.W.T + self.noise**2 * np.eye(len(self.b))
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(self.x)  # [B]

    def log_joint(self, z):  # z [K, B, L] -> [K, B]
        prior = scipy.stats.norm.logpdf(z).sum(-1)
        residual = self.x - (z @ self.W.T + self.b)
        return prior + scipy.stats.norm.logpdf(residual, scale=self.noise).sum(-1)

    def log_weights(self, num_particles, proposal_scale, seed):
        """z_k ~ N(0, proposal_scale² I), a deliberately mismatched proposal."""
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(num_particles, len(self.x), self.W.shape[1])) * proposal_scale
        log_q = scipy.stats.norm.logpdf(z, scale=proposal_scale).sum(-1)
        return z, self.log_joint(z) - log_q


def test_weighted_moment_matching_recovers_the_exact_posterior():
    model = LinearGaussian()
    z, log_w = model.log_weights(200_000, proposal_scale=2.0, seed=7)
    alpha = estimators.normalized_weights(tf.constant(log_w, tf.float32))
    mean, cov = estimators.moment_match(tf.constant(z, tf.float32), alpha, "weighted", ridge=0.0)
    exact_mean, exact_cov = model.posterior()
    np.testing.assert_allclose(mean, exact_mean, atol=0.02)
    for b in range(len(model.x)):
        np.testing.assert_allclose(cov[b], exact_cov, atol=0.01)


def test_unweighted_moment_matching_recovers_the_posterior_from_posterior_samples():
    # Eq. 23 is the plain sample covariance: exact when the particles come from
    # the posterior itself (then every weight is equal).
    model = LinearGaussian()
    exact_mean, exact_cov = model.posterior()
    rng = np.random.default_rng(8)
    z = exact_mean + rng.normal(size=(100_000, 4, 2)) @ np.linalg.cholesky(exact_cov).T
    log_w = model.log_joint(z) - scipy.stats.multivariate_normal(np.zeros(2), exact_cov).logpdf(
        z - exact_mean)
    np.testing.assert_allclose(log_w, log_w[:1].repeat(len(z), 0), atol=1e-6)  # constant weights
    alpha = estimators.normalized_weights(tf.constant(log_w, tf.float32))
    mean, cov = estimators.moment_match(tf.constant(z, tf.float32), alpha, "unweighted", ridge=0.0)
    np.testing.assert_allclose(mean, exact_mean, atol=0.01)
    for b in range(4):
        np.testing.assert_allclose(cov[b], exact_cov, atol=0.005)


def test_importance_sampled_log_likelihood_converges_to_the_exact_value():
    model = LinearGaussian()
    exact = model.log_marginal()
    errors = []
    for k in (10, 1000, 1_000_000):
        _, log_w = model.log_weights(k, proposal_scale=2.0, seed=9)
        bound = estimators.iwae_bound(tf.constant(log_w, tf.float32)).numpy()
        errors.append(np.abs(bound - exact).mean())
    assert errors[2] < 0.01, errors
    assert errors[0] > errors[1] > errors[2], errors
