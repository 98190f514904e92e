"""Variational auto-encoder (Kingma & Welling, 2013): −ELBO for both networks."""

import keras

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel, Losses


@keras.saving.register_keras_serializable(package="rem_tf")
class VAE(GenerativeModel):
    """Loss: −(1/K) Σ_k log w_k with reparameterized z_k ~ r_eta(z|x), for θ and η."""

    shared_loss = True

    def compute_losses(self, x) -> Losses:
        loc, scale, _, _, _, log_weights = self.importance_sample(
            x, self.num_particles, reparameterize=True
        )
        loss = -estimators.elbo(log_weights)  # [B]
        return Losses(loss, loss, log_weights, loc, scale)
