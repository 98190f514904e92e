"""Importance weighted auto-encoder (Burda et al., 2015; paper Eq. 9–10)."""

import keras

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel, Losses


@keras.saving.register_keras_serializable(package="rem_tf")
class IWAE(GenerativeModel):
    """Loss: −(logsumexp_k log w_k − log K), reparameterized z_k ~ r_eta(z|x), for θ and η."""

    shared_loss = True

    def compute_losses(self, x) -> Losses:
        loc, scale, _, _, _, log_weights = self.importance_sample(
            x, self.num_particles, reparameterize=True
        )
        loss = -estimators.iwae_bound(log_weights)  # [B]
        return Losses(loss, loss, log_weights, loc, scale)
