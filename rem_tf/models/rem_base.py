"""What REM v1 and v2 share: the moment-matched hyperproposal step."""

import tensorflow as tf

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel


class REMBase(GenerativeModel):
    """Base of the REM methods; needs K >= 2 to match moments."""

    min_particles = 2

    def hyperproposal_sample(self, x, z, alpha):
        """Moment-matches s = N(μ, Σ) to (z, α) and draws K particles from it.

        Args:
          x: [B, D] flattened images.
          z: [K, B, L] stopped particles from r_eta(z|x).
          alpha: [K, B] their self-normalized weights.

        Returns:
          z_s [K, B, L] stopped samples of s; log p(x, z_s) [K, B];
          β [K, B], the stopped self-normalized weights p(x, z_s) / s(z_s).
        """
        hyperproposal = estimators.hyperproposal(z, alpha, self.covariance, self.ridge)
        z_s = tf.stop_gradient(hyperproposal.sample(self.num_particles, seed=self.next_seed()))
        log_joint_s = self.log_joint(x, z_s)  # [K, B]
        beta = estimators.normalized_weights(log_joint_s - hyperproposal.log_prob(z_s))
        return z_s, log_joint_s, beta
