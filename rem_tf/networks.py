"""Encoder r_eta(z|x) and decoder p_theta(x|z) networks.

`Encoder` and `Decoder` are the paper's MLPs (§5.2), the default of
`rem_tf.build_model`. Both are small Keras models that can be used on their
own, e.g. `model.decoder.predict(z)`; the decoder flattens every leading axis
into one batch so that all B×K particles go through each matmul at once.

Any other Keras networks can be used (see `GenerativeModel`); the contract:

- encoder: x [B, *input_shape] -> (loc [B, L], scale [B, L]), scale > 0.
  `GaussianEncoder(backbone, L)` turns any backbone into one.
- decoder: z [N, L] -> the likelihood's parameters [N, *input_shape] (or [N, D]).

`conv_encoder` / `conv_decoder` are a small convolutional pair for images.
"""

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from rem_tf.validation import SCALE_ACTIVATIONS, check_choice

SCALE_FLOOR = 1e-6  # added to every built-in encoder scale: strictly positive


def positive_scale(raw, scale_activation):
    """scale = exp(raw / 2) (raw is a log-variance) or softplus(raw), plus `SCALE_FLOOR`."""
    scale = tf.exp(0.5 * raw) if scale_activation == "exp" else tf.nn.softplus(raw)
    return scale + SCALE_FLOOR


def _check_scale_activation(scale_activation):
    check_choice("scale_activation", scale_activation, SCALE_ACTIVATIONS)


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
        _check_scale_activation(scale_activation)
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
        return self.loc_layer(h), positive_scale(self.scale_layer(h), self.scale_activation)

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
        self.output_bias = (None if output_bias is None
                            else [float(b) for b in np.ravel(output_bias)])
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


# ------------------------------------------------------------------ the user's networks


def as_layer(network, role):
    """`network` if it is a Keras layer (or model); TypeError naming `role` otherwise."""
    if not isinstance(network, keras.layers.Layer):
        raise TypeError(
            f"{role} must be a Keras layer or model (keras.layers.Layer), got "
            f"{type(network).__name__}; wrap a function in a keras.layers.Layer subclass"
        )
    return network


def encoder_outputs(outputs, latent_dim, batch=None):
    """(loc, scale) from an encoder's output; ValueError saying what is wrong with it.

    Args:
      outputs: what the encoder returned: a pair (loc, scale) or a dict with keys
        "loc" and "scale", each [B, L].
      latent_dim: L.
      batch: B if known statically.
    """
    if isinstance(outputs, dict) and {"loc", "scale"} <= set(outputs):
        outputs = (outputs["loc"], outputs["scale"])
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        kind = (f"a {type(outputs).__name__} of {len(outputs)}"
                if isinstance(outputs, (tuple, list, dict)) else f"one {type(outputs).__name__}")
        raise ValueError(
            f"the encoder must return (loc, scale), each [batch, latent_dim]; it returned {kind}. "
            "rem_tf.networks.GaussianEncoder(backbone, latent_dim) adds the two heads to a "
            "backbone."
        )
    checked = []
    for name, tensor in zip(("loc", "scale"), outputs):
        tensor = tf.convert_to_tensor(tensor)
        shape = tuple(tensor.shape)
        if (len(shape) != 2 or shape[1] != latent_dim
                or (batch is not None and shape[0] is not None and shape[0] != batch)):
            raise ValueError(
                f"the encoder's {name} has shape {shape}; expected [batch, latent_dim] = "
                f"[{batch if batch is not None else 'B'}, {latent_dim}]"
            )
        checked.append(tf.cast(tensor, tf.float32))
    return tuple(checked)


def decoder_output(params, input_shape, batch=None):
    """The decoder's output [N, *input_shape] or [N, D], as float32; else ValueError."""
    if not tf.is_tensor(params) and not isinstance(params, np.ndarray):
        raise ValueError(
            f"the decoder must return one tensor of likelihood parameters [N, *input_shape]; "
            f"it returned a {type(params).__name__}"
        )
    params = tf.convert_to_tensor(params)
    shape = tuple(params.shape)
    data_dim = int(np.prod(input_shape))
    good = (len(shape) >= 2 and shape[1:] in (tuple(input_shape), (data_dim,))
            and (batch is None or shape[0] is None or shape[0] == batch))
    if not good:
        raise ValueError(
            f"the decoder output has shape {shape}, but the likelihood needs one parameter per "
            f"input value: [N, *input_shape] = [{batch if batch is not None else 'N'}, "
            f"{', '.join(map(str, input_shape))}] (or [N, {data_dim}]) for z of shape "
            f"[N, latent_dim]"
        )
    return tf.cast(params, tf.float32)


@keras.saving.register_keras_serializable(package="rem_tf")
class GaussianEncoder(keras.Model):
    """Any backbone plus two dense heads: x -> (loc [B, L], scale [B, L]).

    Args:
      backbone: a Keras layer or model mapping x [B, *input_shape] to features
        [B, ...] (flattened here); e.g. a stack of convolutions, or
        `keras.layers.Identity()` for a linear encoder.
      latent_dim: L.
      scale_activation: "exp" (the head gives a log-variance) or "softplus";
        the scale gets a floor of 1e-6.
    """

    def __init__(self, backbone, latent_dim: int, scale_activation: str = "exp", **kwargs):
        super().__init__(**kwargs)
        _check_scale_activation(scale_activation)
        self.backbone = as_layer(backbone, "backbone")
        self.latent_dim = int(latent_dim)
        self.scale_activation = scale_activation
        self.flatten = keras.layers.Flatten()
        self.loc_layer = keras.layers.Dense(self.latent_dim, name="loc")
        self.scale_layer = keras.layers.Dense(self.latent_dim, name="scale")

    def call(self, x):
        """x [B, *input_shape] -> (loc [B, L], scale [B, L])."""
        h = self.flatten(self.backbone(x))
        return self.loc_layer(h), positive_scale(self.scale_layer(h), self.scale_activation)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "latent_dim": self.latent_dim,
            "scale_activation": self.scale_activation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="rem_tf")
class PixelBias(keras.layers.Layer):
    """Adds a learned bias of the input's per-example shape (one per pixel and channel).

    Args:
      initial: optional initial bias, any array with one value per pixel (e.g.
        the logit of the training pixel means, as `decoder_output_bias`).
    """

    def __init__(self, initial=None, **kwargs):
        super().__init__(**kwargs)
        self.initial = None if initial is None else [float(b) for b in np.ravel(initial)]

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        if self.initial is not None and len(self.initial) != int(np.prod(shape)):
            raise ValueError(
                f"PixelBias initial has {len(self.initial)} values; the input has "
                f"{int(np.prod(shape))} per example (shape {shape})"
            )
        init = ("zeros" if self.initial is None else
                keras.initializers.Constant(np.reshape(self.initial, shape).astype(np.float32)))
        self.bias = self.add_weight(shape=shape, initializer=init, name="bias")
        self.built = True

    def call(self, x):
        return x + self.bias

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def _image_shape(input_shape):
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"the convolutional networks take images of shape (height, width, channels); "
            f"got input_shape={shape}"
        )
    return shape


def conv_encoder(latent_dim, input_shape=(28, 28, 1), *, filters=(32, 64), dense_units=256,
                 activation="relu", scale_activation="exp", name="encoder"):
    """A small convolutional encoder: x [B, H, W, C] -> (loc [B, L], scale [B, L]).

    3×3 convolutions with stride 2 (`filters`, one per halving of H and W), a
    dense layer of `dense_units`, then `GaussianEncoder`'s two heads. Every layer
    is named after `name`, so variable paths (and training checkpoints) do not
    depend on what else the process built.
    """
    shape = _image_shape(input_shape)
    backbone = keras.Sequential(
        [keras.Input(shape)]
        + [keras.layers.Conv2D(f, 3, strides=2, padding="same", activation=activation,
                               name=f"{name}_conv_{i}") for i, f in enumerate(filters)]
        + [keras.layers.Flatten(name=f"{name}_flatten"),
           keras.layers.Dense(dense_units, activation=activation, name=f"{name}_dense")],
        name=f"{name}_backbone",
    )
    return GaussianEncoder(backbone, latent_dim, scale_activation, name=name)


def conv_decoder(latent_dim, input_shape=(28, 28, 1), *, filters=(64, 32), activation="relu",
                 output_bias=None, name="decoder"):
    """A small transposed-convolution decoder: z [N, L] -> parameters [N, H, W, C].

    A dense layer to a (H/2^n, W/2^n, filters[0]) grid (rounded up), n = len(filters)
    transposed 3×3 convolutions with stride 2, a crop to (H, W) if needed, and a 3×3
    convolution to C channels (logits or means, no activation). With `output_bias`
    ([H·W·C], e.g. the logit of the training pixel means) a per-pixel bias starts there.
    """
    height, width, channels = _image_shape(input_shape)
    factor = 2 ** len(filters)
    grid_h, grid_w = -(-height // factor), -(-width // factor)
    layers = [
        keras.Input((int(latent_dim),)),
        keras.layers.Dense(grid_h * grid_w * filters[0], activation=activation,
                           name=f"{name}_dense"),
        keras.layers.Reshape((grid_h, grid_w, filters[0]), name=f"{name}_grid"),
    ]
    layers += [keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation=activation,
                                            name=f"{name}_deconv_{i}")
               for i, f in enumerate(filters)]
    if (grid_h * factor, grid_w * factor) != (height, width):
        layers.append(keras.layers.Cropping2D(((0, grid_h * factor - height),
                                               (0, grid_w * factor - width)), name=f"{name}_crop"))
    layers.append(keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_params"))
    if output_bias is not None:
        layers.append(PixelBias(output_bias, name=f"{name}_pixel_bias"))
    return keras.Sequential(layers, name=name)
