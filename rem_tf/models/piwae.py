"""Partially importance weighted auto-encoder (Rainforth et al., 2018)."""

import keras

from rem_tf import estimators
from rem_tf.models.base import Losses
from rem_tf.models.miwae import MIWAE


@keras.saving.register_keras_serializable(package="rem_tf")
class PIWAE(MIWAE):
    """θ: −(lse log w − log(M·K)) over all M·K particles. η: −MIWAE(M, K) bound, same z.

    The decoder is trained on the tighter IWAE bound of all M·K particles,
    whose θ-gradient improves with the number of particles; the encoder on the
    MIWAE(M, K) bound, whose η-gradient keeps a usable signal-to-noise ratio.
    Two losses over one set of reparameterized particles; compile it with two
    optimizers, one per network, like REM. `num_particles` is K, `num_groups`
    M (default 8); each image gets M·K particles, and the reported
    `log_weights` are all of them, [M·K, B] (see `MIWAE`). M = 1 is the IWAE.

    #### References
    Rainforth, T., Kosiorek, A. R., Le, T. A., Maddison, C. J., Igl, M., Wood, F.
    and Teh, Y. W. (2018). Tighter Variational Bounds are Not Necessarily Better. ICML.
    """

    shared_loss = False

    def compute_losses(self, x) -> Losses:
        loc, scale, _, log_weights = self.sample_groups(x)  # log_weights: [M·K, B]
        model_loss = -estimators.iwae_bound(log_weights)  # [B], used for θ only
        proposal_loss = -estimators.miwae_bound(log_weights, self.num_groups)  # [B], η only
        return Losses(model_loss, proposal_loss, log_weights, loc, scale)
