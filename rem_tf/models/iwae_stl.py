"""IWAE with the sticking-the-landing encoder gradient (Roeder et al., 2017)."""

import keras
import tensorflow as tf

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel, Losses


def stl_surrogate(path_log_weights):
    """STL encoder loss −(logsumexp_k log w̃_k − log K).

    Its η-gradient is −Σ_k α_k ∂log w_k/∂z_k · ∂z_k/∂η: the IWAE gradient
    without the score term Σ_k α_k ∇_η log r_η(z_k|x).

    Args:
      path_log_weights: [K, B] log w̃_k = log p(x, z_k) − log r_{stop(η)}(z_k|x),
        z_k reparameterized.

    Returns:
      [B]; equal in value to the IWAE loss.
    """
    return -estimators.iwae_bound(path_log_weights)


@keras.saving.register_keras_serializable(package="rem_tf")
class IWAESTL(GenerativeModel):
    """θ: IWAE loss. η: −(lse_k log w̃_k − log K), w̃ with r's parameters stopped, path through
    z kept.

    Only the encoder gradient changes; the decoder gradient is the IWAE one.
    For K = 1 this is the ELBO's path-derivative estimator and is unbiased.
    For K > 1 it is BIASED for the IWAE gradient (Tucker et al., 2019): the
    dropped score term Σ_k α_k ∇_η log r_η(z_k|x) has zero mean only when α
    is uniform (K = 1, or r equal to the posterior). In the tests, at K = 10
    on an untrained model, its mean is off the IWAE gradient's by 136% in
    norm. Use `IWAEDReG` for an unbiased low-variance IWAE encoder gradient.

    #### References
    Roeder, G., Wu, Y. and Duvenaud, D. (2017). Sticking the Landing: Simple,
    Lower-Variance Gradient Estimators for Variational Inference.
    Tucker, G., Lawson, D., Gu, S. and Maddison, C. J. (2019). Doubly
    Reparameterized Gradient Estimators for Monte Carlo Objectives. ICLR.
    """

    def encoder_surrogate(self, path_log_weights):
        """[K, B] path log weights -> [B] encoder loss."""
        return stl_surrogate(path_log_weights)

    def compute_losses(self, x) -> Losses:
        loc, scale, _, z, log_joint, log_weights = self.importance_sample(
            x, self.num_particles, reparameterize=True
        )  # z: [K, B, L] = loc + scale·ε
        stopped = self.recognition(tf.stop_gradient(loc), tf.stop_gradient(scale))
        path_log_weights = log_joint - stopped.log_prob(z)  # [K, B], η-gradient only through z
        model_loss = -estimators.iwae_bound(log_weights)  # [B], used for θ only
        proposal_loss = self.encoder_surrogate(path_log_weights)  # [B], used for η only
        return Losses(model_loss, proposal_loss, log_weights, loc, scale)
