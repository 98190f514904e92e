"""Reweighted wake-sleep (Bornschein & Bengio, 2014; revisited by Le et al., 2018)."""

import keras

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel, Losses


@keras.saving.register_keras_serializable(package="rem_tf")
class RWS(GenerativeModel):
    """θ: −Σ_k α_k log p(x, z_k) (wake-θ). η: −Σ_k α_k log r(z_k|x) (wake-φ); z_k ~ r, stopped.

    The θ update is the IWAE decoder gradient (paper Eq. 9). The η update is
    REM v1's (Eq. 14) with the encoder itself in place of the hyperproposal s:
    the same stopped samples z_k ~ r and β = α. Like REM, compile it with two
    optimizers, one per network. Needs K >= 2: with K = 1, α ≡ 1 and the
    wake-φ gradient is the score −∇ log r(z|x), zero in expectation.

    #### References
    Bornschein, J. and Bengio, Y. (2014). Reweighted Wake-Sleep. arXiv:1406.2751.
    Le, T. A., Kosiorek, A. R., Siddharth, N., Teh, Y. W. and Wood, F. (2018).
    Revisiting Reweighted Wake-Sleep. arXiv:1805.10469.
    """

    min_particles = 2

    def compute_losses(self, x) -> Losses:
        loc, scale, recognition, z, log_joint, log_weights = self.importance_sample(
            x, self.num_particles
        )  # z: [K, B, L], stopped
        alpha = estimators.normalized_weights(log_weights)  # [K, B], stopped
        model_loss = estimators.reweighted_negative_log_prob(alpha, log_joint)  # [B]
        proposal_loss = estimators.reweighted_negative_log_prob(
            alpha, recognition.log_prob(z)  # [K, B]
        )  # [B]
        return Losses(model_loss, proposal_loss, log_weights, loc, scale)
