"""The model every method shares: networks, likelihood, log joint, seed state, steps, metrics.

A method is a subclass that implements `compute_losses(x)`: per-example
θ (decoder and likelihood) and η (encoder) losses for a batch. `train_step`
differentiates the θ loss with respect to θ only and the η loss with respect to
the encoder only, so neither loss can move the other network's parameters.

The networks and the likelihood are the user's choice (see `GenerativeModel`):
the methods only use log p(x | z) through `log_joint`, log p(z) = N(0, I), and
the encoder's diagonal Gaussian r(z | x) through `importance_sample` and
`recognition`. Inside the model images are flattened, x [B, D].

The rest of the model lives beside it: compile with one or two optimizers, `fit` and
`evaluate` in `rem_tf.models.trainer`; `sample` and the marginal log-likelihood in
`rem_tf.models.sampling`; argument and input checks in `rem_tf.validation`.
"""

from typing import NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rem_tf import estimators, likelihoods, networks, validation
from rem_tf.models import datasets as input_datasets
from rem_tf.models import sampling
from rem_tf.models.trainer import Trainer, global_batch_size
from rem_tf.networks import Decoder, Encoder

tfd = tfp.distributions

# Key of the particle-seed state among the model's own variables in a .keras file.
_SEED_STATE_KEY = "particle_seed_state"


class Losses(NamedTuple):
    """What `compute_losses` returns for a batch of B images with K particles."""

    model_loss: tf.Tensor  # [B] θ loss per example
    proposal_loss: tf.Tensor  # [B] η loss per example (may be model_loss itself)
    log_weights: tf.Tensor  # [K, B] log p(x, z_k) − log r(z_k|x), z_k ~ r(z|x)
    loc: tf.Tensor  # [B, L] encoder mean
    scale: tf.Tensor  # [B, L] encoder standard deviation


class GenerativeModel(Trainer, keras.Model):
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
    `compile`, `fit` and `evaluate` come from `rem_tf.models.trainer.Trainer`.

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

    def __init__(self, *, latent_dim: int = 20, hidden_units: Sequence[int] = (200, 200),
                 num_particles: int = 1000, input_shape: Sequence[int] = (28, 28, 1),
                 covariance: str = "unweighted", ridge: float = 1e-6, activation: str = "tanh",
                 scale_activation: str = "exp",
                 decoder_output_bias: Optional[Sequence[float]] = None, seed: Optional[int] = None,
                 fused_likelihood: bool = True, encoder=None, decoder=None, likelihood="bernoulli",
                 **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = validation.check_integer("latent_dim", latent_dim)
        self.num_particles = validation.check_integer("num_particles", num_particles)
        if self.num_particles < self.min_particles:
            raise ValueError(
                f"{type(self).__name__} needs num_particles >= {self.min_particles}, "
                f"got {num_particles}"
            )
        validation.check_choice("covariance", covariance, estimators.COVARIANCES)
        input_shape = validation.check_sizes("input_shape", input_shape)
        hidden_units = validation.check_sizes("hidden_units", hidden_units, allow_empty=True)
        # ridge 0 gives a NaN Cholesky factor, silently, when K <= L.
        ridge = validation.check_positive_number("ridge", ridge)
        validation.check_global_float32()
        validation.check_float32("the model", self.dtype_policy)
        if seed is not None:
            validation.check_integer("seed", seed, minimum=0)
        self.hidden_units = hidden_units
        # Per example, as the argument (Keras's Functional models' `input_shape` has the batch).
        self.input_shape = input_shape
        self.data_dim = int(np.prod(self.input_shape))
        self.covariance = covariance
        self.ridge = ridge
        self.activation = activation
        self.scale_activation = scale_activation
        self.seed = seed
        self.fused_likelihood = bool(fused_likelihood)
        self._builtin_encoder = encoder is None
        self._builtin_decoder = decoder is None
        validation.check_decoder_output_bias(decoder_output_bias, own_decoder=decoder is not None)
        encoder = (networks.as_layer(encoder, "encoder") if encoder is not None else Encoder(
            self.latent_dim, self.hidden_units, activation, scale_activation, name="encoder"))
        decoder = (networks.as_layer(decoder, "decoder") if decoder is not None else Decoder(
            self.data_dim, self.hidden_units, activation, decoder_output_bias, name="decoder"))
        for name, network in (("encoder", encoder), ("decoder", decoder)):
            validation.check_float32(f"the {name}", getattr(network, "dtype_policy", None))
        self.encoder = encoder
        self.decoder = decoder
        self.seed_generator = keras.random.SeedGenerator(seed, name="particle_seed")
        self.likelihood = likelihoods.get(likelihood, fused=self.fused_likelihood)
        if not self.likelihood.built:  # a deserialized likelihood (.keras file) is built
            self.likelihood.build(self.input_shape)
        if self._builtin_encoder:
            self.encoder.build((None, self.data_dim))
        if self._builtin_decoder:
            self.decoder.build((None, self.latent_dim))
        if not (self._builtin_encoder and self._builtin_decoder
                and isinstance(self.likelihood, likelihoods.Bernoulli)):
            self._check_networks()
        self.proposal_optimizer = None  # a second optimizer, of η (`compile`)
        names = ["loss"] if self.shared_loss else ["loss", "model_loss", "proposal_loss"]
        names += ["elbo", "log_likelihood", "kl_to_prior"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    def _check_networks(self):
        """Calls the user's networks and likelihood once on zeros: builds and checks them."""
        if not self._builtin_encoder:
            outputs = self.encoder(tf.zeros([2, *self.input_shape]))
            _, scale = networks.encoder_outputs(outputs, self.latent_dim, 2)
            validation.check_probe_scale(scale)
        params = self.decode_flat(tf.zeros([3, self.latent_dim]))  # [3, D]
        self.likelihood.log_prob(tf.zeros([3, self.data_dim]), params)

    # ------------------------------------------------------------------ config

    def get_config(self):
        def custom(layer, builtin):
            return None if builtin else keras.saving.serialize_keras_object(layer)

        config = {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": list(self.hidden_units),
            "num_particles": self.num_particles,
            "input_shape": list(self.input_shape),
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
        for key in ("encoder", "decoder", "likelihood"):  # the user's, serialized (`get_config`)
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
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

    def encode_flat(self, x):
        """Encoder parameters for flattened x [B, D]: (loc [B, L], scale [B, L])."""
        if self._builtin_encoder:
            return self.encoder(x)  # the MLP takes flattened images
        images = tf.reshape(x, [-1, *self.input_shape])  # [B, *input_shape]
        loc, scale = networks.encoder_outputs(self.encoder(images), self.latent_dim, x.shape[0])
        check = validation.in_graph_check(
            tf.reduce_all(scale > 0), "the encoder's scale must be > 0 (and not NaN)"
        )
        with tf.control_dependencies([check]):
            return loc, tf.identity(scale)

    def decode_flat(self, z):
        """Likelihood parameters, flattened: z [..., L] -> [..., D]."""
        if self._builtin_decoder:
            return self.decoder(z)  # folds the leading axes itself
        leading = tf.shape(z)[:-1]
        flat_z = tf.reshape(z, [-1, self.latent_dim])  # [N, L], N = K·B
        params = networks.decoder_output(self.decoder(flat_z), self.input_shape, flat_z.shape[0])
        return tf.reshape(params, tf.concat([leading, [self.data_dim]], 0))  # [..., D]

    def encode(self, x):
        """Encoder parameters: x [B, *input_shape] (or [B, D]) -> (loc [B, L], scale [B, L]).

        Values must be finite; an eager call checks them (and the shape and
        dtype) before the encoder runs.
        """
        if tf.is_symbolic_tensor(x) or not tf.executing_eagerly():
            return self.encode_flat(self.flatten_images(x))
        x = validation.check_array(self, x, values="finite", allow_empty=True)
        return self.encode_flat(tf.constant(x.reshape(len(x), self.data_dim)))

    def decode(self, z):
        """The likelihood's parameters for z [..., L]: [..., *input_shape].

        Bernoulli logits, the Gaussian mean, or the decoder output a callable
        likelihood reads. An eager call checks that z is a finite float array.
        """
        if not tf.is_symbolic_tensor(z) and tf.executing_eagerly():
            z = validation.check_latents(self, z)
        z = tf.cast(z, tf.float32)
        params = self.decode_flat(z)  # [..., D]
        return tf.reshape(params, tf.concat([tf.shape(z)[:-1], self.input_shape], 0))

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
            x, self.decode_flat(z)
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
        loc, scale = self.encode_flat(x)
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

    def flatten_images(self, x):
        """[B, *input_shape] (or [B, D]) -> float32 [B, D]; a wrong shape raises ValueError.

        A shape that is not static (e.g. a retraced step, [None, None]) is checked in-graph.
        """
        return validation.flatten_images(self, x)

    def export(self, filepath, format="tf_saved_model",  # noqa: A002 - Keras's Model.export
               verbose=None, input_signature=None, **kwargs):
        """Keras's `model.export`: the SavedModel of `rem_tf.export.export`, every signature
        (the arguments: `rem_tf.export.keras_export`)."""
        from rem_tf import export as saved_model  # noqa: PLC0415 - rem_tf.export imports this module

        return saved_model.keras_export(self, filepath, format, verbose, input_signature, **kwargs)

    # --------------------------------------------------------------- steps

    def call(self, x, training=False):
        """Reconstruction: the likelihood's parameters [B, *input_shape] at the encoder mean."""
        loc, _ = self.encode_flat(self.flatten_images(x))
        return tf.reshape(self.decode_flat(loc), [-1, *self.input_shape])

    def _images(self, data):
        """The batch's images, flattened [B, D], their values checked in-graph
        (`rem_tf.validation.check_step_images`)."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return validation.check_step_images(self, input_datasets.element_images(x))

    def train_step(self, data):
        x = self._images(data)  # [B, D]
        decoder_vars = self.theta_variables
        encoder_vars = self.eta_variables
        global_batch = global_batch_size(x)
        with tf.GradientTape(persistent=not self.shared_loss) as tape:
            losses = self.compute_losses(x)
            # Sum over the replica's examples / global batch: gradients are
            # summed across replicas by the optimizer.
            model_loss = tf.nn.compute_average_loss(
                losses.model_loss, global_batch_size=global_batch
            )
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
        """Draws N = num_samples examples, z ~ N(0, I), x ~ p(x | decoder(z)): float32
        [N, *input_shape]; seed None advances the model's seed state (`rem_tf.models.sampling`)."""
        return sampling.sample(self, num_samples, seed)

    def chunked_log_likelihood(self, x, num_samples, chunk_size, proposal="encoder"):
        """Builds the chunked IS estimate of log p(x): x [B, D], num_samples scalar -> [B].

        Graph-building; see `rem_tf.models.sampling.chunked_log_likelihood`.
        """
        return sampling.chunked_log_likelihood(self, x, num_samples, chunk_size, proposal)

    def log_likelihood(self, x, num_samples=5000, chunk_size=200, batch_size=100, jit_compile=None,
                       proposal="encoder"):
        """Importance-sampled log p(x) in nats: x [N, *input_shape] (or [N, D], or a batched
        tf.data.Dataset) -> float32 numpy [N]; see `rem_tf.models.sampling.log_likelihood`.

        K = num_samples particles per image, `chunk_size` particles and `batch_size`
        images at a time; proposal "encoder" (z_k ~ r(z|x)) or "shifted" (the authors').
        """
        return sampling.log_likelihood(self, x, num_samples, chunk_size, batch_size,
                                       jit_compile, proposal)
