"""Likelihoods p(x | z): the distribution of one example given the decoder's output.

A likelihood turns the decoder's output for N particles, its parameters `params`
[N, *input_shape], into log p(x | z). Every method only needs this log-density
(plus log p(z) and the encoder's diagonal Gaussian), so any of these works with
every method (each `likelihood=`: decoder output; data; learned parameters (θ)):

- `"bernoulli"` (default): logits; binary, {0, 1}; none.
- `"gaussian"`: mean; real, finite; one scale, log-parameterized (`Gaussian()`).
- `Gaussian(scale=…, learned=…, per_pixel=…)`: mean; real, finite; a scalar or per-pixel
  scale, or none.
- a callable `params -> tfd.Distribution`: anything the callable reads; finite; those of
  the callable, if it is a Keras layer.

The callable receives params shaped [..., *input_shape] (leading batch axes, e.g.
[K, B]) and must return a distribution whose event shape is `input_shape`, so
that `log_prob` sums over one example (wrap elementwise distributions in
`tfd.Independent(d, reinterpreted_batch_ndims=len(input_shape))`). To save a
model with a callable likelihood in a `.keras` file, register the callable with
`keras.saving.register_keras_serializable()`, as Keras requires.

Internally the model keeps images flattened: `log_prob(x, params)` takes x
[B, D] and params [..., B, D] (D = prod(input_shape)) and returns [..., B].
"""

import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rem_tf import estimators

tfd = tfp.distributions

LIKELIHOODS = ("bernoulli", "gaussian")
# Start of every value-check message (numpy, in-graph, SavedModel): `GenerativeModel`
# turns a TensorFlow error carrying it into a ValueError.
VALUES_MARKER = "rem_tf: x must hold"


class Likelihood(keras.layers.Layer):
    """Base class: p(x | params) for one example of shape `input_shape`.

    Subclasses implement `distribution(params)`; `log_prob` on flattened data
    follows from it (the built-ins override it with a direct formula).
    `build(input_shape)` is called by the model with the shape of one example.
    """

    # Names the decoder output in messages and in the SavedModel's `decode` signature.
    params_name = "params"
    # The values x may hold, for messages.
    support = "finite values (no NaN or Inf)"

    def build(self, input_shape):
        self.event_shape = tuple(int(d) for d in input_shape)
        self.event_size = int(np.prod(self.event_shape))
        self.built = True

    def distribution(self, params):
        """params [..., *input_shape] -> a distribution with event shape `input_shape`."""
        raise NotImplementedError

    def log_prob(self, x, params):
        """log p(x | params): x [B, D], params [..., B, D] -> [..., B]."""
        leading = tf.shape(params)[:-1]
        shaped = tf.reshape(params, tf.concat([leading, self.event_shape], 0))
        return self.distribution(shaped).log_prob(tf.reshape(x, [-1, *self.event_shape]))

    def sample(self, params, seed):
        """One draw x ~ p(x | params) for params [N, *input_shape]; float32, same shape."""
        return tf.cast(self.distribution(params).sample(seed=seed), tf.float32)

    def named_parameters(self, params):
        """{name: tensor} of the distribution's parameters for params [N, *input_shape]."""
        return {self.params_name: params}

    # ---------------------------------------------------------------- value checks

    def valid(self, x):
        """Scalar bool tensor: every value of x is in the support (one reduce over x)."""
        return tf.reduce_all(tf.math.is_finite(x))

    def invalid_numpy(self, x):
        """Boolean array: which values of the numpy array x are not in the support."""
        return ~np.isfinite(x)

    def values_message(self):
        """The message of every failed value check (numpy, in-graph and SavedModel)."""
        return f"{VALUES_MARKER} {self.support} for likelihood {self.describe()!r}"

    def describe(self):
        return type(self).__name__.lower()


@keras.saving.register_keras_serializable(package="rem_tf")
class Bernoulli(Likelihood):
    """Σ_pixels log Bernoulli(x | logits): binary data, the decoder gives logits.

    Args:
      fused: use `estimators.bernoulli_log_prob_fused` (XLA-fused forward and
        backward kernels, the default) instead of the plain autodiff formula.
    """

    params_name = "logits"
    support = "binary values (0 or 1, no NaN)"

    def __init__(self, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.fused = bool(fused)

    def distribution(self, params):
        return tfd.Independent(
            tfd.Bernoulli(logits=params, dtype=tf.float32),
            reinterpreted_batch_ndims=len(self.event_shape),
        )

    def log_prob(self, x, params):
        if self.fused:
            return estimators.bernoulli_log_prob_fused(x, params)
        return estimators.bernoulli_log_prob(x, params)

    def sample(self, params, seed):
        probs = tf.sigmoid(params)
        return tf.cast(tf.random.stateless_uniform(tf.shape(probs), seed) < probs, tf.float32)

    def valid(self, x):
        return tf.reduce_all((x == 0.0) | (x == 1.0))

    def invalid_numpy(self, x):
        return ~((x == 0) | (x == 1))

    def describe(self):
        return "bernoulli"

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}


@keras.saving.register_keras_serializable(package="rem_tf")
class Gaussian(Likelihood):
    """Σ_pixels log N(x | mean, scale²): real-valued data, the decoder gives the mean.

    Args:
      scale: the initial scale if learned, else the fixed scale: a positive float,
        or an array of shape `input_shape` (or [D]) of per-pixel scales.
      learned: learn the scale with the decoder (θ); it is parameterized by its
        log, so it stays positive.
      per_pixel: one scale per pixel instead of one shared scalar (implied by an
        array `scale`).

    A learned per-pixel scale on pixels that never vary (e.g. MNIST's borders)
    shrinks without bound and the likelihood diverges: use a scalar scale or a
    fixed one for such data.
    """

    params_name = "loc"

    def __init__(self, scale=1.0, learned: bool = True, per_pixel: bool = False, **kwargs):
        super().__init__(**kwargs)
        values = np.asarray(scale, np.float64)
        if values.dtype.kind not in "fiu" or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"Gaussian scale must be positive and finite, got {scale!r}")
        self.per_pixel = bool(per_pixel) or values.ndim > 0
        self.learned = bool(learned)
        self.initial_scale = values.tolist()

    def build(self, input_shape):
        super().build(input_shape)
        values = np.asarray(self.initial_scale, np.float64)
        shape = (self.event_size,) if self.per_pixel else ()
        if values.ndim > 0 and values.size != self.event_size:
            raise ValueError(
                f"Gaussian scale has {values.size} values; expected one per value of an "
                f"example of shape {self.event_shape} ({self.event_size})"
            )
        self.log_scale = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(np.broadcast_to(np.log(values), shape)),
            trainable=self.learned,
            name="log_scale",
        )

    def scale(self):
        """The standard deviation: [] or [D]."""
        return tf.exp(self.log_scale)

    def distribution(self, params):
        scale = tf.reshape(self.scale(), self.event_shape if self.per_pixel else [])
        return tfd.Independent(
            tfd.Normal(loc=params, scale=scale), reinterpreted_batch_ndims=len(self.event_shape)
        )

    def log_prob(self, x, params):
        """-½ Σ_d ((x_d − μ_d)/s_d)² − Σ_d log s_d − ½ D log 2π; [..., B]."""
        log_scale = self.log_scale
        squares = tf.square((x - params) * tf.exp(-log_scale))  # [..., B, D]
        log_norm = ((tf.reduce_sum(log_scale) if self.per_pixel
                     else self.event_size * log_scale)
                    + 0.5 * self.event_size * math.log(2 * math.pi))
        return -0.5 * tf.reduce_sum(squares, axis=-1) - log_norm

    def sample(self, params, seed):
        scale = tf.reshape(self.scale(), self.event_shape if self.per_pixel else [])
        return params + scale * tf.random.stateless_normal(tf.shape(params), seed)

    def named_parameters(self, params):
        scale = tf.reshape(self.scale(), self.event_shape if self.per_pixel else [])
        return {"loc": params, "scale": tf.broadcast_to(scale, tf.shape(params))}

    def describe(self):
        return "gaussian"

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.initial_scale,
            "learned": self.learned,
            "per_pixel": self.per_pixel,
        }


@keras.saving.register_keras_serializable(package="rem_tf")
class FromCallable(Likelihood):
    """A user's `params -> tfd.Distribution` (event shape = one example) as a likelihood.

    If the callable is a Keras layer its weights are learned with the decoder (θ).
    """

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        if not callable(fn):
            raise TypeError(f"likelihood must be callable, got {type(fn).__name__}")
        self.fn = fn

    def distribution(self, params):
        distribution = self.fn(params)
        if not isinstance(distribution, tfd.Distribution):
            raise TypeError(
                f"the likelihood callable {self.describe()!r} must return a "
                f"tfp.distributions.Distribution, got {type(distribution).__name__}"
            )
        event = tuple(distribution.event_shape)
        if event != self.event_shape:
            raise ValueError(
                f"the likelihood callable {self.describe()!r} returned a distribution with "
                f"event shape {event}; expected the shape of one example, {self.event_shape}. "
                "Wrap an elementwise distribution in tfd.Independent(d, "
                f"reinterpreted_batch_ndims={len(self.event_shape)}) so that log_prob sums "
                "over the example."
            )
        return distribution

    def describe(self):
        return getattr(self.fn, "__name__", None) or getattr(self.fn, "name", None) or type(
            self.fn).__name__

    def get_config(self):
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def get(likelihood, fused: Optional[bool] = True) -> Likelihood:
    """A `Likelihood` from a name ("bernoulli", "gaussian"), a `Likelihood`, or a callable.

    Raises:
      ValueError: an unknown name.
      TypeError: anything else that is not callable.
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, str):
        if likelihood == "bernoulli":
            return Bernoulli(fused=fused, name="likelihood")
        if likelihood == "gaussian":
            return Gaussian(name="likelihood")
        raise ValueError(
            f"unknown likelihood {likelihood!r}; valid names: {', '.join(LIKELIHOODS)}, or pass "
            "a rem_tf.likelihoods.Likelihood or a callable params -> tfd.Distribution"
        )
    if isinstance(likelihood, dict):  # a serialized Likelihood (from a .keras config)
        return keras.saving.deserialize_keras_object(likelihood)
    if callable(likelihood):
        return FromCallable(likelihood, name="likelihood")
    raise TypeError(
        f"likelihood must be one of {LIKELIHOODS}, a rem_tf.likelihoods.Likelihood or a "
        f"callable params -> tfd.Distribution; got {type(likelihood).__name__}"
    )


__all__ = ["LIKELIHOODS", "Likelihood", "Bernoulli", "Gaussian", "FromCallable", "get"]
