"""Pure functions over importance weights: the math of every method.

Shapes follow one convention: particles first, then batch.
`log_weights` is [K, B]; latent samples are [K, B, L].

#### References
Dieng, A. B. and Paisley, J. (2019). Reweighted Expectation Maximization.
Burda, Y., Grosse, R. and Salakhutdinov, R. (2015). Importance Weighted
Autoencoders.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

COVARIANCES = ("weighted", "unweighted")


def bernoulli_log_prob(x, logits):
    """Σ_pixels log Bernoulli(x | logits).

    Args:
      x: [B, D] binary images.
      logits: [..., B, D] Bernoulli logits.

    Returns:
      [..., B] log-probabilities, summed over the D pixels. Uses
      x·l − softplus(l), the same formula as `tfd.Bernoulli.log_prob`, without
      building a distribution object on the hot path.
    """
    return tf.reduce_sum(x * logits - tf.nn.softplus(logits), axis=-1)


@tf.function(jit_compile=True)
def _bernoulli_log_prob_xla(x, logits):
    return tf.reduce_sum(x * logits - tf.nn.softplus(logits), axis=-1)


@tf.function(jit_compile=True)
def _bernoulli_log_prob_grad_xla(x, logits, upstream):
    return upstream[..., None] * (x - tf.sigmoid(logits))


@tf.custom_gradient
def bernoulli_log_prob_fused(x, logits):
    """`bernoulli_log_prob` with each elementwise pass fused by XLA.

    Same value and gradient as `bernoulli_log_prob` (to float32 rounding):
    the forward pass is one fused softplus-and-sum kernel, the backward pass one
    fused kernel for upstream · (x − sigmoid(logits)); the matmuls around it
    stay TensorFlow's. This halves the cost of the likelihood over K·B·D pixels,
    the largest non-matmul cost of a step. No gradient flows to x (the data).

    Args:
      x: [B, D] binary images.
      logits: [..., B, D] Bernoulli logits.

    Returns:
      [..., B] log-probabilities summed over pixels.
    """

    def grad(upstream):  # upstream: [..., B]
        return None, _bernoulli_log_prob_grad_xla(x, logits, upstream)

    return _bernoulli_log_prob_xla(x, logits), grad


def standard_normal_log_prob(z):
    """log N(z | 0, I) for z [..., L]; returns [...]."""
    dim = z.shape[-1]
    return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * dim * math.log(2 * math.pi)


def normalized_weights(log_weights):
    """Self-normalized importance weights α_k = w_k / Σ_j w_j (Eq. 8, 14).

    Computed as a softmax over the particle axis, never as exp(log w); the
    result is stopped: no gradient flows through the weights.

    Args:
      log_weights: [K, B].

    Returns:
      [K, B], non-negative, summing to one over K.
    """
    return tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))


def iwae_bound(log_weights):
    """The K-particle bound log (1/K) Σ_k w_k (Burda et al., Eq. 8; paper Eq. 10).

    Args:
      log_weights: [K, B].

    Returns:
      [B]; for K = 1 this is the single-sample ELBO.
    """
    num_particles = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_particles)


def elbo(log_weights):
    """Average of the K single-sample ELBO estimates; [K, B] -> [B]."""
    return tf.reduce_mean(log_weights, axis=0)


def reweighted_negative_log_prob(weights, log_probs):
    """−Σ_k weights_k · log_probs_k: the REM / RWS surrogate losses (Eq. 8, 14, 24).

    Args:
      weights: [K, B] stopped self-normalized weights (α or β).
      log_probs: [K, B] log p_theta(x, z_k) or log r_eta(z_k | x).

    Returns:
      [B] per-example loss whose gradient is −Σ_k weights_k ∇ log_probs_k.
    """
    return -tf.reduce_sum(weights * log_probs, axis=0)


def moment_match(z, weights, covariance="unweighted", ridge=1e-6):
    """Gaussian moments of the posterior by self-normalized importance sampling.

    μ = Σ_k α_k z_k (Eq. 22). The covariance is either
    `weighted`: Σ_k α_k (z_k − μ)(z_k − μ)ᵀ (Eq. 22, Algorithm 1) or
    `unweighted`: Σ_k (z_k − μ)(z_k − μ)ᵀ / (K − 1) (Eq. 23, normalized as in
    the authors' code). `ridge`·I is added so Σ has full rank for any K.

    How wide s is, for z_k ~ N(loc, diag(σ²)) and weights independent of z
    (ESS = 1 / Σ_k α_k²), per coordinate: E[(z' − loc)²] for z' ~ s is σ² with
    `weighted`, and σ² (1/ESS + (K − 2 + K/ESS) / (K − 1)) with `unweighted`:
    3σ² at K = 2 with one dominant weight, → σ² only as K and ESS grow. REM fits
    the encoder to samples of s, reweighted by β; at small K that reweighting is
    too weak to undo the `unweighted` excess (docs/methods.md, "REM at small K").

    The moments are computed in float64: with K < L (or weights concentrated
    on fewer than L particles) the scatter is rank-deficient, and a ridge of
    1e-6 is below float32's resolution for variances of order one, so a
    float32 Cholesky would fail. The cost is negligible: [K, B, L] → [B, L, L].

    Args:
      z: [K, B, L] particles.
      weights: [K, B] self-normalized weights α.
      covariance: "weighted" or "unweighted".
      ridge: ε added to the diagonal; keep it > 0 where a Cholesky factor is taken
        (with ε = 0 and K ≤ L the factor is NaN).

    Returns:
      mean [B, L] and covariance [B, L, L] (symmetric positive definite),
      both float64 and stopped.
    """
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
    z = tf.cast(tf.stop_gradient(z), tf.float64)
    weights = tf.cast(tf.stop_gradient(weights), tf.float64)
    mean = tf.einsum("kb,kbl->bl", weights, z)  # [B, L]
    centered = z - mean  # [K, B, L]
    if covariance == "weighted":
        scatter = tf.einsum("kb,kbi,kbj->bij", weights, centered, centered)
    else:
        num_particles = tf.cast(tf.shape(z)[0], tf.float64)
        scatter = tf.einsum("kbi,kbj->bij", centered, centered) / tf.maximum(
            num_particles - 1.0, 1.0
        )
    scatter = 0.5 * (scatter + tf.linalg.matrix_transpose(scatter))  # exact symmetry
    dim = z.shape[-1]
    cov = scatter + ridge * tf.eye(dim, dtype=tf.float64)  # [B, L, L]
    return mean, cov


def hyperproposal(z, weights, covariance="unweighted", ridge=1e-6):
    """REM's moment-matched hyperproposal s(z) = N(μ, Σ) (Eq. 15, 22, 23).

    Args:
      z: [K, B, L] particles drawn from r_eta(z|x).
      weights: [K, B] their self-normalized weights α.

    Returns:
      `tfd.MultivariateNormalTriL` with batch shape [B], event shape [L], in
      the dtype of z (the Cholesky factor is taken in float64, see
      `moment_match`).
    """
    mean, cov = moment_match(z, weights, covariance, ridge)
    return tfd.MultivariateNormalTriL(
        loc=tf.cast(mean, z.dtype), scale_tril=tf.cast(tf.linalg.cholesky(cov), z.dtype)
    )


def kl_diag_normal_to_standard(loc, scale):
    """KL(N(loc, diag(scale²)) ‖ N(0, I)) in closed form; [B, L] -> [B]."""
    return 0.5 * tf.reduce_sum(
        tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale), axis=-1
    )


def combine_chunked_bounds(chunk_log_sum_weights, num_particles):
    """log (1/K) Σ_k w_k from per-chunk logsumexps.

    Args:
      chunk_log_sum_weights: [C, B], the logsumexp of each chunk's log weights.
      num_particles: K, the total over all chunks.

    Returns:
      [B], identical to `iwae_bound` on the concatenated log weights.
    """
    return tf.reduce_logsumexp(chunk_log_sum_weights, axis=0) - tf.math.log(
        tf.cast(num_particles, chunk_log_sum_weights.dtype)
    )


def miwae_bound(log_weights, num_groups):
    """Average of M independent K-particle IWAE bounds: the MIWAE bound (Rainforth et al., 2018).

    (1/M) Σ_m [lse_k log w_{m,k} − log K], the m-th group being particles
    m·K … m·K + K − 1 of the first axis. M = 1 is `iwae_bound`; M groups of
    K = 1 particle is `elbo`.

    Args:
      log_weights: [M·K, B].
      num_groups: M, a Python int that divides the first dimension.

    Returns:
      [B].

    #### References
    Rainforth, T., Kosiorek, A. R., Le, T. A., Maddison, C. J., Igl, M., Wood, F.
    and Teh, Y. W. (2018). Tighter Variational Bounds are Not Necessarily Better. ICML.
    """
    grouped = tf.reshape(log_weights, [num_groups, -1, tf.shape(log_weights)[-1]])  # [M, K, B]
    num_particles = tf.cast(tf.shape(grouped)[1], log_weights.dtype)
    per_group = tf.reduce_logsumexp(grouped, axis=1) - tf.math.log(num_particles)  # [M, B]
    return tf.reduce_mean(per_group, axis=0)


def ciwae_bound(log_weights, beta):
    """β · ELBO + (1 − β) · IWAE bound over the same K particles (Rainforth et al., 2018).

    β = 1 is `elbo`, β = 0 is `iwae_bound`; for β in [0, 1] it lies between the two.

    Args:
      log_weights: [K, B].
      beta: β, a float in [0, 1].

    Returns:
      [B].

    #### References
    Rainforth, T. et al. (2018). Tighter Variational Bounds are Not Necessarily
    Better. ICML (the CIWAE of §5).
    """
    return beta * elbo(log_weights) + (1.0 - beta) * iwae_bound(log_weights)
