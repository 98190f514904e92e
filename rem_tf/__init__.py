"""rem_tf: VAE, IWAE and Reweighted Expectation Maximization in Keras 3 / TFP.

`rem_tf.evaluation`, `rem_tf.experiment` and `rem_tf.export` are imported on
first use (PEP 562), so `import rem_tf` does not load them.
"""

import importlib

# schedules: .keras files that name BurdaSchedule load
from rem_tf import data, estimators, likelihoods, models, networks, schedules
from rem_tf.models import METHODS, GenerativeModel
from rem_tf import presets
from rem_tf.presets import from_preset

_LAZY_SUBMODULES = ("evaluation", "experiment", "export")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"rem_tf.{name}")
    raise AttributeError(f"module 'rem_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def build_model(
    method,
    *,
    encoder=None,
    decoder=None,
    likelihood="bernoulli",
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
      encoder: None (the paper's MLP) or any Keras layer / model mapping
        x [B, *input_shape] to (loc [B, L], scale [B, L]), scale > 0, e.g.
        `rem_tf.networks.conv_encoder(latent_dim, input_shape)` or
        `rem_tf.networks.GaussianEncoder(backbone, latent_dim)`.
      decoder: None (the paper's MLP) or any Keras layer / model mapping
        z [N, L] to the likelihood's parameters [N, *input_shape], e.g.
        `rem_tf.networks.conv_decoder(latent_dim, input_shape)`.
      likelihood: "bernoulli" (decoder gives logits; binary data), "gaussian"
        (decoder gives the mean; learned scalar scale), a
        `rem_tf.likelihoods.Likelihood`, or a callable params -> tfd.Distribution
        whose event shape is `input_shape` (see `rem_tf.likelihoods`).
      latent_dim: L (paper: 20).
      hidden_units: hidden widths of the built-in MLPs (paper: (200, 200)).
      num_particles: K particles per image in a training step (paper: 1000).
      input_shape: shape of one example, e.g. (28, 28, 1) or (16,).
      covariance: REM moment matching, "unweighted" (Eq. 23) or "weighted" (Eq. 22).
      seed: integer seed of the particle sampler.
      **kwargs: further arguments of the method's class (`GenerativeModel`: ridge,
        activation, scale_activation, decoder_output_bias, fused_likelihood, name;
        `num_groups` for miwae / piwae, `beta` for ciwae).

    Returns:
      An uncompiled `keras.Model` (a `GenerativeModel` subclass).
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(METHODS)}")
    return METHODS[method](
        encoder=encoder,
        decoder=decoder,
        likelihood=likelihood,
        latent_dim=latent_dim,
        hidden_units=hidden_units,
        num_particles=num_particles,
        input_shape=input_shape,
        covariance=covariance,
        seed=seed,
        **kwargs,
    )


__all__ = [
    "build_model", "from_preset", "METHODS", "GenerativeModel", "data", "estimators",
    "evaluation", "experiment", "export", "likelihoods", "models", "networks", "presets",
    "schedules",
]
