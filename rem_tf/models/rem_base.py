"""What REM v1 and v2 share: the moment-matched hyperproposal step."""

import warnings

import tensorflow as tf

from rem_tf import estimators
from rem_tf.models.base import GenerativeModel


class REMBase(GenerativeModel):
    """Base of the REM methods; needs K >= 2 to match moments.

    At small K use covariance="weighted" (Eq. 22). With the default "unweighted"
    covariance (Eq. 23) the squared distance of a sample of s from the encoder's
    mean is 2–3σ² per coordinate (see `estimators.moment_match`); η is fitted to these
    samples, and with K < `min_stable_unweighted_particles` the weights β are too
    few to pull the fit back, so the encoder's scale grows every step until the
    loss is NaN (docs/methods.md, "REM at small K"). Such models warn when built.
    """

    min_particles = 2
    # Measured on real MNIST (configs/quick.py): K = 2, 3 diverge, K = 4, 5, 10 train.
    min_stable_unweighted_particles = 4

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if (self.covariance == "unweighted"
                and self.num_particles < self.min_stable_unweighted_particles):
            warnings.warn(
                f"{type(self).__name__} with covariance='unweighted' and num_particles="
                f"{self.num_particles} (< {self.min_stable_unweighted_particles}) usually "
                "diverges: the moment-matched hyperproposal is wider than the encoder and too "
                "few particles reweight it back, so the encoder's scale grows until the loss is "
                "NaN. Use covariance='weighted' (Eq. 22), which is stable at K = 2, or more "
                "particles.",
                stacklevel=2,
            )

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
