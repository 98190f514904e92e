"""Encoder r_eta(z|x) and decoder p_theta(x|z) networks (paper §5.2).

Both are small Keras models that can be used on their own, e.g.
`model.decoder.predict(z)`. The decoder flattens every leading axis into one
batch so that all B×K particles go through each matmul at once.
"""

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

SCALE_ACTIVATIONS = ("exp", "softplus")


def _dense_stack(hidden_units, activation, name):
    return [
        keras.layers.Dense(units, activation=activation, name=f"{name}_hidden_{i}")
        for i, units in enumerate(hidden_units)
    ]


@keras.saving.register_keras_serializable(package="rem_tf")
class Encoder(keras.Model):
    """Recognition network r_eta(z|x): a diagonal Gaussian over z.

    Args:
      latent_dim: L, the dimension of z.
      hidden_units: widths of the hidden layers (paper: (200, 200)).
      activation: hidden activation (paper: tanh).
      scale_activation: "exp" (paper: the net outputs a log-variance,
        scale = exp(0.5 · log_variance)) or "softplus" (scale = softplus(raw)).
        A floor of 1e-6 keeps the scale strictly positive either way.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_units: Sequence[int] = (200, 200),
        activation: str = "tanh",
        scale_activation: str = "exp",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if scale_activation not in SCALE_ACTIVATIONS:
            raise ValueError(
                f"scale_activation must be one of {SCALE_ACTIVATIONS}, "
                f"got {scale_activation!r}"
            )
        self.latent_dim = int(latent_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.scale_activation = scale_activation
        self.hidden = _dense_stack(self.hidden_units, activation, "encoder")
        self.loc_layer = keras.layers.Dense(self.latent_dim, name="encoder_loc")
        self.scale_layer = keras.layers.Dense(self.latent_dim, name="encoder_scale")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.loc_layer.build(shape)
        self.scale_layer.build(shape)
        self.built = True

    def call(self, x):
        """Maps flattened images x [B, D] to (loc [B, L], scale [B, L])."""
        h = x
        for layer in self.hidden:
            h = layer(h)
        loc = self.loc_layer(h)
        raw = self.scale_layer(h)
        if self.scale_activation == "exp":
            scale = tf.exp(0.5 * raw)
        else:
            scale = tf.nn.softplus(raw)
        return loc, scale + 1e-6

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": list(self.hidden_units),
            "activation": self.activation,
            "scale_activation": self.scale_activation,
        }


@keras.saving.register_keras_serializable(package="rem_tf")
class Decoder(keras.Model):
    """Generative network: z [..., L] -> Bernoulli logits [..., D].

    Args:
      output_dim: D, the number of pixels.
      hidden_units: widths of the hidden layers (paper: (200, 200)).
      activation: hidden activation (paper: tanh).
      output_bias: optional [D] initial bias of the logits, e.g. the logit of
        the training pixel means (Burda et al., 2015).
    """

    def __init__(
        self,
        output_dim: int,
        hidden_units: Sequence[int] = (200, 200),
        activation: str = "tanh",
        output_bias: Optional[Sequence[float]] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.output_bias = None if output_bias is None else [float(b) for b in np.ravel(output_bias)]
        if self.output_bias is not None and len(self.output_bias) != self.output_dim:
            raise ValueError(
                f"output_bias has {len(self.output_bias)} entries, expected {self.output_dim}"
            )
        bias_init = (
            "zeros"
            if self.output_bias is None
            else keras.initializers.Constant(np.asarray(self.output_bias, np.float32))
        )
        self.hidden = _dense_stack(self.hidden_units, activation, "decoder")
        self.logits_layer = keras.layers.Dense(
            self.output_dim, bias_initializer=bias_init, name="decoder_logits"
        )

    def build(self, input_shape):
        shape = (None, input_shape[-1])
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, layer.units)
        self.logits_layer.build(shape)
        self.built = True

    def call(self, z):
        """Maps z [..., L] to logits [..., D] with one matmul per layer."""
        leading = tf.shape(z)[:-1]
        h = tf.reshape(z, [-1, z.shape[-1]])  # [N, L], N = product of leading dims
        for layer in self.hidden:
            h = layer(h)
        logits = self.logits_layer(h)  # [N, D]
        return tf.reshape(logits, tf.concat([leading, [self.output_dim]], 0))

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_units": list(self.hidden_units),
            "activation": self.activation,
            "output_bias": self.output_bias,
        }
