"""The model every method shares: networks, likelihood, log joint, two optimizers, metrics.

A method is a subclass that implements `compute_losses(x)`: per-example
θ (decoder and likelihood) and η (encoder) losses for a batch. `train_step`
differentiates the θ loss with respect to θ only and the η loss with respect to
the encoder only, so neither loss can move the other network's parameters.

The networks and the likelihood are the user's choice (see `GenerativeModel`):
the methods only use log p(x | z) through `log_joint`, log p(z) = N(0, I), and
the encoder's diagonal Gaussian r(z | x) through `importance_sample` and
`recognition`. Inside the model images are flattened, x [B, D].
"""

import math
import numbers
from typing import NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rem_tf import _keras_compat, estimators, likelihoods, networks
from rem_tf.models import datasets as input_datasets, learning_rates
from rem_tf.networks import Decoder, Encoder

tfd = tfp.distributions

# Every message of an in-graph check starts with this; `fit`, `evaluate` and the
# evaluation functions turn a TensorFlow error that carries it into a ValueError.
CHECK_MARKER = "rem_tf: "
# Proposals of the importance-sampled log-likelihood (see `chunked_log_likelihood`).
PROPOSALS = ("encoder", "shifted")
# Largest K of `log_likelihood` (the particle counts are int64).
MAX_NUM_SAMPLES = int(np.iinfo(np.int64).max)
_INT32_MAX = int(np.iinfo(np.int32).max)
# Key of the particle-seed state among the model's own variables in a .keras file.
_SEED_STATE_KEY = "particle_seed_state"


def check_integer(name, value, minimum=1, maximum=None):
    """value as a Python int; ValueError naming `name` unless it is an integer in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def as_numeric_array(value, name):
    """np.asarray(value) of a bool, integer or float dtype; ValueError naming `name` otherwise."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, unconvertible objects
        raise ValueError(f"{name} must be an array of numbers: {err}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be an array of numbers (bool, int or float), got dtype {array.dtype}"
        )
    return array


def in_graph_check(ok, message):
    """An assertion that raises InvalidArgumentError(message) when `ok` is False.

    XLA ignores assertions; under `jit_compile` the value checks of a training
    step therefore turn bad input into a NaN loss instead (see `_images`).
    """
    return tf.debugging.Assert(ok, [CHECK_MARKER + message.removeprefix(CHECK_MARKER)])


class Losses(NamedTuple):
    """What `compute_losses` returns for a batch of B images with K particles."""

    model_loss: tf.Tensor  # [B] θ loss per example
    proposal_loss: tf.Tensor  # [B] η loss per example (may be model_loss itself)
    log_weights: tf.Tensor  # [K, B] log p(x, z_k) − log r(z_k|x), z_k ~ r(z|x)
    loc: tf.Tensor  # [B, L] encoder mean
    scale: tf.Tensor  # [B, L] encoder standard deviation


class GenerativeModel(keras.Model):
    """Latent-variable model p(z) p(x|z) with an encoder r(z|x), trained by importance weighting.

    By default the paper's model: two tanh MLPs and a Bernoulli likelihood.
    Any Keras encoder and decoder and any likelihood can be passed instead:

    - `encoder`: a Keras layer or model mapping a batch x [B, *input_shape] to
      `(loc, scale)`, each [B, L], scale > 0 (a dict with keys "loc" and "scale"
      also works); `rem_tf.networks.GaussianEncoder(backbone, L)` adds the two
      dense heads to any backbone.
    - `decoder`: a Keras layer or model mapping z [N, L] to the likelihood's
      parameters [N, *input_shape] (or flattened [N, D]); the model folds the
      K × B particles of a step into N = K·B and back.
    - `likelihood`: "bernoulli" (decoder gives logits; binary data), "gaussian"
      (decoder gives the mean; a learned scalar scale; any finite data), a
      `rem_tf.likelihoods.Likelihood` (e.g. `Gaussian(scale=0.1, learned=False)`),
      or a callable params -> tfd.Distribution with event shape `input_shape`.

    θ (the `model_optimizer`'s parameters) = the decoder's and the likelihood's
    trainable variables (`theta_variables`); η = the encoder's (`eta_variables`).

    Args:
      latent_dim: L, the dimension of z (paper: 20).
      hidden_units: hidden widths of the built-in MLPs (paper: (200, 200)).
      num_particles: K, particles per image in a training step (paper: 1000).
      input_shape: shape of one example, e.g. (28, 28, 1) or (16,).
      covariance: "unweighted" (Eq. 23) or "weighted" (Eq. 22) moment
        matching; used by the REM methods.
      ridge: ε added to the diagonal of the moment-matched covariance.
      activation: hidden activation of the built-in MLPs (paper: tanh).
      scale_activation: "exp" (paper) or "softplus", the built-in encoder's scale.
      decoder_output_bias: optional initial output bias [D] of the built-in decoder.
      seed: integer seed of the particle sampler; None draws one.
      fused_likelihood: for "bernoulli", use `estimators.bernoulli_log_prob_fused`
        (the fast path, default) instead of the plain autodiff `bernoulli_log_prob`;
        both give the same values and gradients.
      encoder, decoder: the user's networks (None: the built-in MLPs).
      likelihood: see above (default "bernoulli").
    """

    # Overridden by methods: the smallest K the method is defined for, and
    # whether the θ and η losses are one and the same objective.
    min_particles = 1
    shared_loss = False

    def __init__(
        self,
        *,
        latent_dim: int = 20,
        hidden_units: Sequence[int] = (200, 200),
        num_particles: int = 1000,
        input_shape: Sequence[int] = (28, 28, 1),
        covariance: str = "unweighted",
        ridge: float = 1e-6,
        activation: str = "tanh",
        scale_activation: str = "exp",
        decoder_output_bias: Optional[Sequence[float]] = None,
        seed: Optional[int] = None,
        fused_likelihood: bool = True,
        encoder=None,
        decoder=None,
        likelihood="bernoulli",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_integer("latent_dim", latent_dim)
        check_integer("num_particles", num_particles)
        if int(num_particles) < self.min_particles:
            raise ValueError(
                f"{type(self).__name__} needs num_particles >= {self.min_particles}, "
                f"got {num_particles}"
            )
        if covariance not in estimators.COVARIANCES:
            raise ValueError(
                f"covariance must be one of {estimators.COVARIANCES}, got {covariance!r}"
            )
        if isinstance(input_shape, numbers.Integral):
            input_shape = (input_shape,)
        if not isinstance(input_shape, (tuple, list)) or not input_shape:
            raise ValueError(f"input_shape must be a non-empty tuple of sizes, got {input_shape!r}")
        for size in input_shape:
            check_integer("every input_shape entry", size)
        if isinstance(hidden_units, numbers.Integral):
            hidden_units = (hidden_units,)
        for units in hidden_units:
            check_integer("every hidden_units entry", units)
        # ridge 0 gives a NaN Cholesky factor, silently, when K <= L.
        if (not isinstance(ridge, numbers.Real) or isinstance(ridge, bool)
                or not 0 < float(ridge) < math.inf):
            raise ValueError(f"ridge must be a finite number > 0, got {ridge!r}")
        if keras.config.dtype_policy().compute_dtype != "float32":
            raise ValueError(
                f"rem_tf models compute in float32; the global Keras dtype policy is "
                f"{keras.config.dtype_policy().name!r} (set it back with "
                f"keras.config.set_dtype_policy('float32'))"
            )
        _check_float32("the model", self.dtype_policy)
        if seed is not None:
            check_integer("seed", seed, minimum=0)
        self.latent_dim = int(latent_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.num_particles = int(num_particles)
        self.image_shape = tuple(int(d) for d in input_shape)
        self.data_dim = int(np.prod(self.image_shape))
        self.covariance = covariance
        self.ridge = float(ridge)
        self.activation = activation
        self.scale_activation = scale_activation
        self.seed = seed
        self.fused_likelihood = bool(fused_likelihood)
        self._builtin_encoder = encoder is None
        self._builtin_decoder = decoder is None
        if decoder is not None and decoder_output_bias is not None:
            raise ValueError(
                "decoder_output_bias sets the built-in decoder's output bias; with your own "
                "decoder, initialize its output layer instead"
            )
        if decoder_output_bias is not None and not np.all(np.isfinite(
                as_numeric_array(decoder_output_bias, "decoder_output_bias"))):
            raise ValueError("decoder_output_bias must hold finite numbers (no NaN or Inf)")
        if encoder is None:
            encoder = Encoder(
                self.latent_dim, self.hidden_units, activation, scale_activation, name="encoder"
            )
        else:
            encoder = networks.as_layer(encoder, "encoder")
        if decoder is None:
            decoder = Decoder(
                self.data_dim, self.hidden_units, activation, decoder_output_bias, name="decoder"
            )
        else:
            decoder = networks.as_layer(decoder, "decoder")
        for name, network in (("encoder", encoder), ("decoder", decoder)):
            _check_float32(f"the {name}", getattr(network, "dtype_policy", None))
        self.encoder = encoder
        self.decoder = decoder
        self.seed_generator = keras.random.SeedGenerator(seed, name="particle_seed")
        self.likelihood = likelihoods.get(likelihood, fused=self.fused_likelihood)
        if not self.likelihood.built:  # a deserialized likelihood (.keras file) is built
            self.likelihood.build(self.image_shape)
        if self._builtin_encoder:
            self.encoder.build((None, self.data_dim))
        if self._builtin_decoder:
            self.decoder.build((None, self.latent_dim))
        if not (self._builtin_encoder and self._builtin_decoder
                and isinstance(self.likelihood, likelihoods.Bernoulli)):
            self._check_networks()
        self.proposal_optimizer = None
        names = ["loss"] if self.shared_loss else ["loss", "model_loss", "proposal_loss"]
        names += ["elbo", "log_likelihood", "kl_to_prior"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    def _check_networks(self):
        """Calls the user's networks and likelihood once on zeros: builds and checks them."""
        if not self._builtin_encoder:
            outputs = self.encoder(tf.zeros([2, *self.image_shape]))
            _, scale = networks.encoder_outputs(outputs, self.latent_dim, 2)
            self._check_probe_scale(scale)
        params = self._decode_flat(tf.zeros([3, self.latent_dim]))  # [3, D]
        self.likelihood.log_prob(tf.zeros([3, self.data_dim]), params)

    @staticmethod
    def _check_probe_scale(scale):
        if not np.all(scale.numpy() > 0):
            raise ValueError(
                "the encoder's scale must be > 0; on an all-zeros batch it returned "
                f"{scale.numpy()[0].tolist()}. Apply e.g. softplus or exp to its scale head "
                "(rem_tf.networks.GaussianEncoder does)."
            )

    # ------------------------------------------------------------------ config

    def get_config(self):
        def custom(layer, builtin):
            return None if builtin else keras.saving.serialize_keras_object(layer)

        config = {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": list(self.hidden_units),
            "num_particles": self.num_particles,
            "input_shape": list(self.image_shape),
            "covariance": self.covariance,
            "ridge": self.ridge,
            "activation": self.activation,
            "scale_activation": self.scale_activation,
            "decoder_output_bias": self.decoder.output_bias if self._builtin_decoder else None,
            "seed": self.seed,
            "fused_likelihood": self.fused_likelihood,
        }
        if not (self._builtin_encoder and self._builtin_decoder):
            config["encoder"] = custom(self.encoder, self._builtin_encoder)
            config["decoder"] = custom(self.decoder, self._builtin_decoder)
        if not isinstance(self.likelihood, likelihoods.Bernoulli):
            config["likelihood"] = keras.saving.serialize_keras_object(self.likelihood)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("encoder", "decoder"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        if isinstance(config.get("likelihood"), dict):
            config["likelihood"] = keras.saving.deserialize_keras_object(
                config["likelihood"], custom_objects=custom_objects
            )
        return cls(**config)

    def save_own_variables(self, store):
        """Keras's own variables plus the particle-seed state (not a Keras layer variable)."""
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        keys = list(store.keys())
        if _SEED_STATE_KEY in keys:  # files written before rem_tf 0.3 have no seed state
            state = self.seed_generator.state
            state.assign(np.asarray(store[_SEED_STATE_KEY]).astype(state.dtype))
        super().load_own_variables({k: store[k] for k in keys if k != _SEED_STATE_KEY})

    # --------------------------------------------------------------- compile

    def compile(self, optimizer=None, *, model_optimizer=None, proposal_optimizer=None, **kwargs):
        """Configures training with one optimizer or two.

        Either `optimizer` (one optimizer updates both parameter sets, θ with
        the θ loss and η with the η loss), or both `model_optimizer` (θ: decoder
        and likelihood) and `proposal_optimizer` (η, encoder). Other keyword
        arguments (`jit_compile`, `steps_per_execution`, …) go to
        `keras.Model.compile`.
        """
        if optimizer is not None and (model_optimizer is not None or proposal_optimizer is not None):
            raise ValueError(
                "Pass either `optimizer` or both `model_optimizer` and "
                "`proposal_optimizer`, not both forms."
            )
        if (model_optimizer is None) != (proposal_optimizer is None):
            raise ValueError(
                "`model_optimizer` (decoder, θ) and `proposal_optimizer` (encoder, η) "
                "must be given together; pass `optimizer` alone to use one optimizer."
            )
        if kwargs.get("loss") is not None:
            raise ValueError(f"{type(self).__name__} defines its own losses; do not pass `loss`.")
        if model_optimizer is not None and model_optimizer is proposal_optimizer and not isinstance(
                model_optimizer, str):
            raise ValueError(
                "`model_optimizer` and `proposal_optimizer` are the same optimizer object; an "
                "optimizer updates only the variables it was built for, so give two optimizers "
                "(or pass `optimizer` alone to use one for both)."
            )
        if optimizer is None and model_optimizer is None:
            optimizer = "adam"
        if model_optimizer is not None:
            optimizer = model_optimizer
            self.proposal_optimizer = keras.optimizers.get(proposal_optimizer)
        else:
            self.proposal_optimizer = None
        super().compile(optimizer=keras.optimizers.get(optimizer), **kwargs)
        if self.proposal_optimizer is None:
            self.optimizer.build(self.theta_variables + self.eta_variables)
        else:
            self.optimizer.build(self.theta_variables)
            self.proposal_optimizer.build(self.eta_variables)

    def get_compile_config(self):
        if not self.compiled:
            return None
        config = {
            "jit_compile": self.jit_compile,
            "steps_per_execution": self.steps_per_execution,
        }
        if self.proposal_optimizer is None:
            config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        else:
            config["model_optimizer"] = keras.optimizers.serialize(self.optimizer)
            config["proposal_optimizer"] = keras.optimizers.serialize(self.proposal_optimizer)
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("optimizer", "model_optimizer", "proposal_optimizer"):
            if key in config:
                config[key] = keras.optimizers.deserialize(config[key])
        self.compile(**config)

    @property
    def model_optimizer(self):
        """The optimizer of θ (the decoder's and the likelihood's parameters)."""
        return self.optimizer

    @property
    def theta_variables(self):
        """θ: the trainable variables of the decoder, then of the likelihood."""
        return self.decoder.trainable_variables + self.likelihood.trainable_variables

    @property
    def eta_variables(self):
        """η: the trainable variables of the encoder."""
        return self.encoder.trainable_variables

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ------------------------------------------------------- the probability model

    def next_seed(self):
        """A fresh stateless seed [2]; different on every replica of a strategy."""
        seed = tf.cast(self.seed_generator.next(), tf.int32)  # TFP takes int32 seeds
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        return seed

    def _encode(self, x):
        """Encoder parameters for flattened x [B, D]: (loc [B, L], scale [B, L])."""
        if self._builtin_encoder:
            return self.encoder(x)  # the MLP takes flattened images
        images = tf.reshape(x, [-1, *self.image_shape])  # [B, *input_shape]
        loc, scale = networks.encoder_outputs(self.encoder(images), self.latent_dim, x.shape[0])
        check = in_graph_check(
            tf.reduce_all(scale > 0), "the encoder's scale must be > 0 (and not NaN)"
        )
        with tf.control_dependencies([check]):
            return loc, tf.identity(scale)

    def _decode_flat(self, z):
        """Likelihood parameters, flattened: z [..., L] -> [..., D]."""
        if self._builtin_decoder:
            return self.decoder(z)  # folds the leading axes itself
        leading = tf.shape(z)[:-1]
        flat_z = tf.reshape(z, [-1, self.latent_dim])  # [N, L], N = K·B
        params = networks.decoder_output(self.decoder(flat_z), self.image_shape, flat_z.shape[0])
        return tf.reshape(params, tf.concat([leading, [self.data_dim]], 0))  # [..., D]

    def encode(self, x):
        """Encoder parameters: x [B, *input_shape] (or [B, D]) -> (loc [B, L], scale [B, L]).

        Values must be finite; an eager call checks them (and the shape and
        dtype) before the encoder runs.
        """
        if tf.is_symbolic_tensor(x) or not tf.executing_eagerly():
            return self._encode(self.flatten_images(x))
        x = self._check_array(x, values="finite", allow_empty=True)
        return self._encode(tf.constant(x.reshape(len(x), self.data_dim)))

    def decode(self, z):
        """The likelihood's parameters for z [..., L]: [..., *input_shape].

        Bernoulli logits, the Gaussian mean, or the decoder output a callable
        likelihood reads. An eager call checks that z is a finite float array.
        """
        if not tf.is_symbolic_tensor(z) and tf.executing_eagerly():
            array = as_numeric_array(z, "z")
            if array.ndim < 1 or array.shape[-1] != self.latent_dim:
                raise ValueError(
                    f"z must have shape [..., latent_dim] = [..., {self.latent_dim}], "
                    f"got {array.shape}"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError("z must hold finite values (no NaN or Inf)")
            z = array
        z = tf.cast(z, tf.float32)
        params = self._decode_flat(z)  # [..., D]
        return tf.reshape(params, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))

    def recognition(self, loc, scale):
        """r_eta(z|x) = N(loc, diag(scale²)) as a TFP distribution, batch [B]."""
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def log_joint(self, x, z):
        """log p_theta(x, z) = log N(z; 0, I) + log p(x | decoder(z)).

        With the default Bernoulli likelihood the second term is
        Σ_pixels log Bern(x | logits), fused by XLA (`fused_likelihood`).

        Args:
          x: [B, D] flattened images.
          z: [K, B, L] latents.

        Returns:
          [K, B].
        """
        return estimators.standard_normal_log_prob(z) + self.likelihood.log_prob(
            x, self._decode_flat(z)
        )

    def importance_sample(self, x, num_particles, reparameterize=False):
        """Draws z_k ~ r_eta(z|x) and computes their log weights.

        Args:
          x: [B, D] flattened images.
          num_particles: K.
          reparameterize: if False the samples are stopped (REM, RWS).

        Returns:
          loc, scale [B, L]; the recognition distribution; z [K, B, L];
          log p(x, z) [K, B]; log weights [K, B].
        """
        loc, scale = self._encode(x)
        recognition = self.recognition(loc, scale)
        z = recognition.sample(num_particles, seed=self.next_seed())  # [K, B, L]
        if not reparameterize:
            z = tf.stop_gradient(z)
        log_joint = self.log_joint(x, z)  # [K, B]
        log_weights = log_joint - recognition.log_prob(z)  # [K, B]
        return loc, scale, recognition, z, log_joint, log_weights

    def compute_losses(self, x) -> Losses:
        """Per-example losses of the method for flattened images x [B, D]."""
        raise NotImplementedError

    # ------------------------------------------------------------ input checks

    def _check_batch_shape(self, batch_shape, what="a batch"):
        """Raises ValueError unless batch_shape is [B, *input_shape] or [B, D]."""
        batch_shape = tuple(batch_shape)
        per_example = batch_shape[1:]
        if per_example in (self.image_shape, (self.data_dim,)):
            return
        hint = f"Build the model with input_shape={per_example} or reshape the data."
        if batch_shape in (self.image_shape, (self.data_dim,)):
            hint = ("It looks unbatched: batch it, e.g. dataset.batch(20) or "
                    "rem_tf.data.load(..., batch_size=20).")
        raise ValueError(
            f"{type(self).__name__} expects images of shape {self.image_shape} "
            f"(or flattened ({self.data_dim},)) per example; got {what} of shape "
            f"{batch_shape}. {hint}"
        )

    def flatten_images(self, x):
        """[B, *input_shape] (or [B, D]) -> float32 [B, D]; a wrong shape raises ValueError.

        A shape that is not static (e.g. a retraced step, [None, None]) is checked in-graph.
        """
        x = tf.convert_to_tensor(x)
        if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype.is_bool):
            raise ValueError(f"x must hold numbers (bool, int or float), got dtype {x.dtype.name}")
        if x.shape.rank is not None and x.shape.rank >= 2 and not x.shape[1:].is_fully_defined():
            ok = tf.equal(tf.reduce_prod(tf.shape(x)[1:]), self.data_dim)
            with tf.control_dependencies([in_graph_check(ok, (
                    f"{type(self).__name__} expects images of shape {self.image_shape} (or "
                    f"flattened ({self.data_dim},)) per example; got a batch of another shape. "
                    "Build the model with the data's input_shape or reshape the data."))]):
                x = tf.identity(x)
        else:
            self._check_batch_shape(x.shape, "x")
        return tf.reshape(tf.cast(x, tf.float32), [-1, self.data_dim])

    def _values_error(self, x, bad, name):
        first = np.argwhere(bad)[0]
        hint = (" Binarize the data first: rem_tf.data.binarize(x, 'fixed') (one Bernoulli "
                "sample; or 'threshold'), or for a new sample every epoch "
                "rem_tf.data.binarize(dataset, 'dynamic') on a tf.data.Dataset."
                if isinstance(self.likelihood, likelihoods.Bernoulli) else "")
        return ValueError(
            f"{self.likelihood.values_message().replace(' x ', f' {name} ', 1)}; found "
            f"{x[tuple(first)].item()!r} at index {tuple(int(i) for i in first)}.{hint}"
        )

    def _check_array(self, x, name="x", values="likelihood", allow_empty=False):
        """x as a float32 numpy batch after dtype, shape and value checks (ValueError).

        values: "likelihood" (the likelihood's support: binary for Bernoulli,
        finite otherwise) or "finite".
        """
        x = as_numeric_array(x, name)
        if x.ndim < 2:
            raise ValueError(
                f"{name}: expected a batch of images [B, *input_shape] = [B, "
                f"{', '.join(map(str, self.image_shape))}], got an array of shape {x.shape}"
            )
        self._check_batch_shape(x.shape, f"{name}, an array")
        if len(x) == 0 and not allow_empty:
            raise ValueError(f"{name} holds no examples (an empty batch of shape {x.shape})")
        if values == "likelihood":
            bad = self.likelihood.invalid_numpy(x)
            if bad.any():
                raise self._values_error(x, bad, name)
        elif not np.all(np.isfinite(x)):
            bad = ~np.isfinite(x)
            raise ValueError(
                f"{name} must hold finite values (no NaN or Inf); found "
                f"{x[tuple(np.argwhere(bad)[0])].item()!r} at index "
                f"{tuple(int(i) for i in np.argwhere(bad)[0])}"
            )
        return x.astype(np.float32)

    def _check_dataset(self, dataset):
        """Checks the element shape; the values are checked in every step (`_images`).

        Elements may be images, (images, ...) tuples or dicts with an "image" entry (those
        become their images). Integer images for the Bernoulli likelihood: the first
        batch is read, so that grey levels 0..255 give one error with the fix.
        """
        dataset = input_datasets.images_only(dataset)
        images_spec = input_datasets.images_spec(dataset.element_spec)
        if int(dataset.cardinality()) == 0:
            raise ValueError("x is an empty dataset (no batches); nothing to train or evaluate on")
        if images_spec.shape.rank is not None and images_spec.shape[1:].is_fully_defined():
            self._check_batch_shape(images_spec.shape, "dataset elements")
        if images_spec.dtype.is_integer and isinstance(self.likelihood, likelihoods.Bernoulli):
            largest = input_datasets.first_batch_max(dataset)
            if largest is not None and largest > 1:
                raise ValueError(
                    f"the dataset holds {images_spec.dtype.name} images with values up to "
                    f"{largest:g} (grey levels); the Bernoulli likelihood needs binary images. "
                    "Binarize them first: rem_tf.data.binarize(dataset, 'dynamic') (a new "
                    "Bernoulli sample every epoch), 'fixed' or 'threshold'; for a Gaussian "
                    "likelihood scale them to [0, 1] (mode 'none')")
        return dataset

    def _checked_input(self, x):
        if x is None:
            return None
        if isinstance(x, tf.data.Dataset):
            return self._check_dataset(x)
        if isinstance(x, dict):
            raise ValueError("expected images (an array, dataset, PyDataset or generator of "
                             "batches), not a dict")
        if isinstance(x, (np.ndarray, np.generic, numbers.Number, tf.Tensor, list)):
            return self._check_array(x)
        return x  # generators, PyDatasets, distributed datasets: checked in every step

    def _run_checked(self, run, *args, **kwargs):
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _keras_compat.patch_multi_worker_metric_reduction()
        try:
            return run(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            message = checked_message(error)
            if message is not None:
                raise ValueError(message) from None
            raise

    def fit(self, x=None, y=None, *args, validation_data=None, callbacks=None, **kwargs):
        """`keras.Model.fit` with input checks and a clear error on a NaN/Inf loss.

        With two optimizers, learning-rate callbacks (`ReduceLROnPlateau`,
        `LearningRateScheduler`) move η's rate with θ's and the logs hold both
        rates (`rem_tf.models.learning_rates`).
        """
        callbacks = list(callbacks or [])
        if self.proposal_optimizer is not None:
            callbacks = learning_rates.with_rate_callbacks(callbacks)
        if x is None:
            raise ValueError("fit needs training images: x is None")
        for name, minimum in (("batch_size", 1), ("epochs", 0), ("steps_per_epoch", 1),
                              ("validation_batch_size", 1)):
            if kwargs.get(name) is not None:
                check_integer(name, kwargs[name], minimum=minimum)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself; silences Keras
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(_TerminateOnNaN())
        if isinstance(validation_data, tuple):
            validation_data = (self._checked_input(validation_data[0]),) + validation_data[1:]
        else:
            validation_data = self._checked_input(validation_data)
        return self._run_checked(
            super().fit, self._checked_input(x), y, *args,
            validation_data=validation_data, callbacks=callbacks, **kwargs,
        )

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate` with the same input checks as `fit`."""
        return self._run_checked(super().evaluate, self._checked_input(x), y, *args, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Keras's `model.export`: the SavedModel of `rem_tf.export.export`, every signature.

        Args:
          filepath: the SavedModel directory (an earlier export there is replaced).
          format: "tf_saved_model" only.
          verbose: print where it was written (default True, as Keras).
          input_signature: must be None: the signatures are fixed (`rem_tf.export`).
          **kwargs: `chunk_size`, `elbo_samples`, `metadata` of `rem_tf.export.export`.
        """
        if format != "tf_saved_model":
            raise ValueError(f"{type(self).__name__}.export writes format='tf_saved_model' "
                             f"only, got format={format!r}")
        if input_signature is not None:
            raise ValueError("input_signature must be None: a rem_tf model exports fixed "
                             "signatures (log_likelihood, encode, decode, ...; see rem_tf.export)")
        from rem_tf import export as saved_model  # noqa: PLC0415 - rem_tf.export imports this module
        path = saved_model.export(self, filepath, **kwargs)
        if verbose is None or verbose:
            print(f"Saved the SavedModel at {path}: signatures "
                  f"{', '.join(saved_model.SIGNATURES)}; serving_default = "
                  f"{saved_model.SERVING_DEFAULT}")
        return path

    # --------------------------------------------------------------- steps

    def call(self, x, training=False):
        """Reconstruction: the likelihood's parameters [B, *input_shape] at the encoder mean."""
        loc, _ = self._encode(self.flatten_images(x))
        return tf.reshape(self._decode_flat(loc), [-1, *self.image_shape])

    def _images(self, data):
        """The batch's images, flattened [B, D], with the likelihood's value check in-graph.

        One reduce over the batch (binary for Bernoulli, finite otherwise) and an
        assertion; under XLA, which drops assertions, bad values become NaN
        instead, so the loss is NaN and `fit` stops.
        """
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = self.flatten_images(input_datasets.element_images(x))
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:  # a replica's share may be empty
            with tf.control_dependencies([in_graph_check(
                    tf.shape(x)[0] > 0, "x holds no examples (an empty batch)")]):
                x = tf.identity(x)
        ok = self.likelihood.valid(x)
        if getattr(self, "jit_compile", False):
            x = tf.where(ok, x, np.nan)
        with tf.control_dependencies([in_graph_check(ok, self.likelihood.values_message())]):
            return tf.identity(x)

    def train_step(self, data):
        x = self._images(data)  # [B, D]
        decoder_vars = self.theta_variables
        encoder_vars = self.eta_variables
        global_batch = self._global_batch_size(x)
        with tf.GradientTape(persistent=not self.shared_loss) as tape:
            losses = self.compute_losses(x)
            # Sum over the replica's examples / global batch: gradients are
            # summed across replicas by the optimizer.
            model_loss = tf.nn.compute_average_loss(losses.model_loss, global_batch_size=global_batch)
            proposal_loss = tf.nn.compute_average_loss(
                losses.proposal_loss, global_batch_size=global_batch
            )
        if self.shared_loss:
            grads = tape.gradient(model_loss, decoder_vars + encoder_vars)
            decoder_grads, encoder_grads = grads[: len(decoder_vars)], grads[len(decoder_vars):]
        else:
            decoder_grads = tape.gradient(model_loss, decoder_vars)
            encoder_grads = tape.gradient(proposal_loss, encoder_vars)
            del tape
        if self.proposal_optimizer is None:
            self.optimizer.apply(decoder_grads + encoder_grads, decoder_vars + encoder_vars)
        else:
            self.optimizer.apply(decoder_grads, decoder_vars)
            self.proposal_optimizer.apply(encoder_grads, encoder_vars)
        return self._update_metrics(losses)

    @staticmethod
    def _global_batch_size(x):
        """Images in this step over all replicas (a global batch may split unevenly)."""
        replica = tf.distribute.get_replica_context()
        local = tf.shape(x)[0]
        if replica is None or replica.num_replicas_in_sync == 1:
            return local
        return replica.all_reduce(tf.distribute.ReduceOp.SUM, local)

    def test_step(self, data):
        return self._update_metrics(self.compute_losses(self._images(data)))

    def _update_metrics(self, losses: Losses):
        values = {
            "elbo": estimators.elbo(losses.log_weights),
            "log_likelihood": estimators.iwae_bound(losses.log_weights),
            "kl_to_prior": estimators.kl_diag_normal_to_standard(losses.loc, losses.scale),
        }
        if self.shared_loss:
            values["loss"] = losses.model_loss
        else:
            values["model_loss"] = losses.model_loss
            values["proposal_loss"] = losses.proposal_loss
            values["loss"] = losses.model_loss + losses.proposal_loss
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # ------------------------------------------------------------ evaluation

    def sample(self, num_samples, seed=None):
        """Draws examples from the model: z ~ N(0, I), x ~ p(x | decoder(z)).

        Args:
          num_samples: N >= 0, the number of examples (an int, or an int32 scalar
            tensor inside a tf.function).
          seed: optional int >= 0 for a reproducible draw; None uses (and advances)
            the model's particle seed state.

        Returns:
          float32 [num_samples, *input_shape]: binary images for "bernoulli".
        """
        if not tf.is_tensor(num_samples):
            num_samples = check_integer("num_samples", num_samples, minimum=0, maximum=_INT32_MAX)
        if seed is None:
            seed = self.next_seed()
        else:
            seed = tf.constant([check_integer("seed", seed, minimum=0, maximum=_INT32_MAX), 0],
                               tf.int32)
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = tf.random.stateless_normal([num_samples, self.latent_dim], z_seed)
        params = tf.reshape(self._decode_flat(z), [-1, *self.image_shape])
        return tf.reshape(self.likelihood.sample(params, x_seed), [num_samples, *self.image_shape])

    def _importance_pass(self, x, proposal, num_samples, chunk_size):
        """One chunked pass of importance sampling from `proposal`.

        `chunk_size` particles are drawn per iteration of a while loop; in the
        last chunk the particles beyond `num_samples` are masked out, so every
        chunk has the same static shape (which XLA needs). Counts are int64, so
        any `num_samples` an int32 or int64 holds is exact.

        Args:
          x: [B, D] flattened images.
          proposal: a distribution over z with batch shape [B] and event [L].
          num_samples: K, a scalar integer tensor.
          chunk_size: C, a Python int or an integer scalar tensor.

        Returns:
          (log p̂(x) = logsumexp_k log w_k − log K [B],
           the self-normalized weighted mean Σ_k α_k z_k [B, L]).
        """
        num_samples, chunk, num_chunks = self._chunk_counts(num_samples, chunk_size)

        def body(i, log_total, weighted_z):
            # log_total [B]: logsumexp of the log weights so far; weighted_z [B, L]:
            # Σ_k exp(log w_k − log_total) z_k, i.e. the weighted mean so far.
            z = proposal.sample(chunk_size, seed=self.next_seed())  # [C, B, L]
            log_weights = self.log_joint(x, z) - proposal.log_prob(z)  # [C, B]
            valid = self._chunk_mask(num_samples, chunk, i)  # [C]
            log_weights = tf.where(valid[:, None], log_weights, -np.inf)
            new_total = tf.reduce_logsumexp(
                tf.stack([log_total, tf.reduce_logsumexp(log_weights, axis=0)]), axis=0
            )  # [B]
            weights = tf.exp(log_weights - new_total)  # [C, B]
            weighted_z = (tf.exp(log_total - new_total)[:, None] * weighted_z
                          + tf.einsum("cb,cbl->bl", weights, z))
            return i + 1, new_total, weighted_z

        batch = tf.shape(x)[:1]
        start = (
            tf.constant(0, tf.int64),
            tf.fill(batch, tf.constant(-np.inf, tf.float32)),
            tf.zeros(tf.concat([batch, [self.latent_dim]], 0)),
        )
        _, log_total, weighted_mean = tf.while_loop(
            lambda i, *_: i < num_chunks, body, start
        )
        return log_total - tf.math.log(tf.cast(num_samples, tf.float32)), weighted_mean

    @staticmethod
    def _chunk_counts(num_samples, chunk_size):
        """(K, C, number of chunks ⌈K / C⌉) as int64 scalars: exact for any K < 2**63."""
        num_samples = tf.cast(num_samples, tf.int64)
        chunk = tf.cast(chunk_size, tf.int64)
        return num_samples, chunk, (num_samples + chunk - 1) // chunk

    @staticmethod
    def _chunk_mask(num_samples, chunk, i):
        """[C] bool: which particles of chunk i are among the first K (int64 counts)."""
        return tf.range(chunk, dtype=tf.int64) < num_samples - i * chunk

    def chunked_log_likelihood(self, x, num_samples, chunk_size, proposal="encoder"):
        """Builds the chunked IS estimate of log p(x): x [B, D], num_samples scalar -> [B].

        Graph-building function (call it inside a `tf.function`; the exported
        SavedModel does); `log_likelihood` is the user-facing wrapper.

        proposal="encoder": z_k ~ r(z|x), the standard estimate (Burda et al.).
        proposal="shifted": the estimator of the authors' code (their `REM.log_lik`):
        a first pass of K encoder samples gives the weighted mean μ̂ = Σ_k α_k z_k;
        a second pass draws K samples from N(μ̂, diag(scale²)), scale from the
        encoder, and returns logsumexp_k log w_k − log K over the second pass.
        Given the first pass it is an unbiased estimate of p(x), hence (Jensen) a
        stochastic lower bound of log p(x), like the default; it costs two passes.
        """
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        loc, scale = self._encode(x)
        log_px, weighted_mean = self._importance_pass(
            x, self.recognition(loc, scale), num_samples, chunk_size
        )
        if proposal == "encoder":
            return log_px
        shifted = self.recognition(tf.stop_gradient(weighted_mean), scale)
        return self._importance_pass(x, shifted, num_samples, chunk_size)[0]

    def _log_likelihood_function(self, chunk_size, jit_compile, proposal):
        key = (int(chunk_size), bool(jit_compile), proposal)
        cache = self.__dict__.setdefault("_log_likelihood_functions", {})
        if key not in cache:
            cache[key] = tf.function(
                lambda x, num_samples: self.chunked_log_likelihood(
                    x, num_samples, key[0], proposal=key[2]
                ),
                jit_compile=key[1],
                reduce_retracing=True,
            )
        return cache[key]

    def log_likelihood(self, x, num_samples=5000, chunk_size=200, batch_size=100, jit_compile=None,
                       proposal="encoder"):
        """Importance-sampled log p(x) in nats.

        log p(x) ≈ logsumexp_k log w_k − log K, K = num_samples, computed
        `chunk_size` particles and `batch_size` images at a time, so memory
        is bounded by chunk_size × batch_size particles whatever K and N are.
        With proposal="encoder" (default) z_k ~ r(z|x); with "shifted" the
        authors' estimator (see `chunked_log_likelihood`; two passes of K).

        Args:
          x: [N, *input_shape] (or flattened [N, D]) images in the likelihood's
            support (binary for "bernoulli"); an empty batch gives an empty result. Or a
            finite batched tf.data.Dataset of them (or of (images, ...) tuples or dicts
            with an "image" entry): the same result as on its images concatenated.
          num_samples: K, importance samples per image (an integer in [1, 2**63 − 1]).
          chunk_size: particles drawn at a time.
          batch_size: images evaluated at a time.
          jit_compile: compile with XLA; defaults to the model's `jit_compile`.
          proposal: "encoder" or "shifted".

        Returns:
          float32 numpy array [N].
        """
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        num_samples = check_integer("num_samples", num_samples, maximum=MAX_NUM_SAMPLES)
        chunk_size = check_integer("chunk_size", chunk_size, maximum=_INT32_MAX)
        batch_size = check_integer("batch_size", batch_size)
        if jit_compile is not None and not isinstance(jit_compile, bool):
            raise ValueError(f"jit_compile must be None, True or False, got {jit_compile!r}")
        if isinstance(x, tf.data.Dataset):
            x = input_datasets.to_array(self._check_dataset(x))
        x = self._check_array(x, allow_empty=True)
        flat = x.reshape(len(x), self.data_dim)
        if jit_compile is None:
            jit_compile = bool(self.compiled and self.jit_compile)
        function = self._log_likelihood_function(min(chunk_size, num_samples), jit_compile, proposal)
        count = tf.constant(num_samples, tf.int64)
        out = [
            function(tf.constant(flat[i : i + batch_size]), count).numpy()
            for i in range(0, len(flat), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros([0], np.float32)


def _check_float32(what, policy):
    """ValueError unless the Keras dtype policy `policy` (None: not a Keras layer) is plain
    float32, e.g. a `dtype` of "float16" or "mixed_float16" in a .keras file's config."""
    if policy is not None and (policy.name, policy.compute_dtype, policy.variable_dtype) != (
            "float32", "float32", "float32"):
        raise ValueError(f"rem_tf models compute in float32; {what} has the Keras dtype policy "
                         f"{policy.name!r} (a dtype= argument or a .keras file's config); use "
                         "'float32'")


def checked_message(error):
    """The message of a failed rem_tf in-graph check inside a TensorFlow error, or None."""
    text = str(error)
    starts = [i for i in (text.find(CHECK_MARKER), text.find("rem_tf SavedModel: ")) if i >= 0]
    if not starts:  # ("rem_tf SavedModel: " is the marker of exports before rem_tf 0.3)
        return None
    return text[min(starts):].splitlines()[0].rstrip("]").rstrip()


class _TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """Stops `fit` with an error on a NaN or Inf loss, saying what may cause it."""

    def __init__(self):
        super().__init__(raise_error=True)

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError as error:
            hint = (
                " With jit_compile=True this is also how input values outside the likelihood's "
                f"support ({self.model.likelihood.support}) show up: XLA drops the in-graph "
                "input check."
                if getattr(self.model, "jit_compile", False) else ""
            )
            raise RuntimeError(f"{error}{hint}") from None
