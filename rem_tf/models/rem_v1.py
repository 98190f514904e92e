"""Reweighted expectation maximization, version 1 (paper Algorithm 1)."""

import keras

from rem_tf import estimators
from rem_tf.models.base import Losses
from rem_tf.models.rem_base import REMBase


@keras.saving.register_keras_serializable(package="rem_tf")
class REMv1(REMBase):
    """θ: −Σ_k α_k log p(x, z_k), z_k ~ r (Eq. 8). η: −Σ_k β_k log r(z'_k|x), z'_k ~ s (Eq. 14)."""

    def compute_losses(self, x) -> Losses:
        loc, scale, recognition, z, log_joint, log_weights = self.importance_sample(
            x, self.num_particles
        )
        alpha = estimators.normalized_weights(log_weights)  # [K, B]
        z_s, _, beta = self.hyperproposal_sample(x, z, alpha)
        model_loss = estimators.reweighted_negative_log_prob(alpha, log_joint)  # [B]
        proposal_loss = estimators.reweighted_negative_log_prob(beta, recognition.log_prob(z_s))
        return Losses(model_loss, proposal_loss, log_weights, loc, scale)
