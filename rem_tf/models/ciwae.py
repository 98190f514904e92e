"""Combination importance weighted auto-encoder (Rainforth et al., 2018)."""

import numbers

import keras

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel, Losses


def check_beta(beta):
    """β as a Python float; ValueError unless it is a real number in [0, 1]."""
    real = isinstance(beta, numbers.Real) and not isinstance(beta, bool)
    if not real or not 0.0 <= float(beta) <= 1.0:  # NaN fails too
        raise ValueError(f"beta (β) must be a float in [0, 1], got {beta!r}")
    return float(beta)


@keras.saving.register_keras_serializable(package="rem_tf")
class CIWAE(GenerativeModel):
    """Loss: −(β · (1/K) Σ_k log w_k + (1 − β) · (lse_k log w_k − log K)), for θ and η.

    A convex combination of the VAE and IWAE bounds over the same K
    particles, one objective for both networks: the ELBO term keeps the
    encoder gradient's signal as K grows (Rainforth et al., 2018). β = 1 is the
    VAE, β = 0 the IWAE.

    Args:
      beta: β in [0, 1] (default 0.5).
      **kwargs: `GenerativeModel` arguments.

    #### References
    Rainforth, T., Kosiorek, A. R., Le, T. A., Maddison, C. J., Igl, M., Wood, F.
    and Teh, Y. W. (2018). Tighter Variational Bounds are Not Necessarily Better. ICML.
    """

    shared_loss = True

    def __init__(self, *, beta: float = 0.5, **kwargs):
        beta = check_beta(beta)
        super().__init__(**kwargs)
        self.beta = beta

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}

    def compute_losses(self, x) -> Losses:
        loc, scale, _, _, _, log_weights = self.importance_sample(
            x, self.num_particles, reparameterize=True
        )  # log_weights: [K, B]
        loss = -estimators.ciwae_bound(log_weights, self.beta)  # [B]
        return Losses(loss, loss, log_weights, loc, scale)
