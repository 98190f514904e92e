"""rem_tf: VAE, IWAE and Reweighted Expectation Maximization in Keras 3 / TFP."""

from rem_tf import data, estimators, schedules  # schedules: .keras files with the Burda schedule load
from rem_tf.models import METHODS, GenerativeModel


def build_model(
    method,
    *,
    latent_dim=20,
    hidden_units=(200, 200),
    num_particles=1000,
    input_shape=(28, 28, 1),
    covariance="unweighted",
    seed=None,
    **kwargs,
):
    """Builds the model of one method.

    Args:
      method: one of `rem_tf.METHODS` ("vae", "iwae", "rem_v1", "rem_v2", …).
      latent_dim: L (paper: 20).
      hidden_units: hidden widths of encoder and decoder (paper: (200, 200)).
      num_particles: K particles per image in a training step (paper: 1000).
      input_shape: shape of one image, e.g. (28, 28, 1) or (16,).
      covariance: REM moment matching, "unweighted" (Eq. 23) or "weighted" (Eq. 22).
      seed: integer seed of the particle sampler.
      **kwargs: further `GenerativeModel` arguments (ridge, activation,
        scale_activation, decoder_output_bias, name).

    Returns:
      An uncompiled `keras.Model` (a `GenerativeModel` subclass).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(METHODS)}")
    return METHODS[method](
        latent_dim=latent_dim,
        hidden_units=hidden_units,
        num_particles=num_particles,
        input_shape=input_shape,
        covariance=covariance,
        seed=seed,
        **kwargs,
    )


__all__ = ["build_model", "METHODS", "GenerativeModel", "data", "estimators", "schedules"]
