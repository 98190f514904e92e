"""The model every method shares: networks, log joint, two optimizers, metrics.

A method is a subclass that implements `compute_losses(x)`: per-example
θ (decoder) and η (encoder) losses for a batch. `train_step` differentiates the
θ loss with respect to the decoder only and the η loss with respect to the
encoder only, so neither loss can move the other network's parameters.
"""

from typing import NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from rem_tf import _keras_compat, estimators
from rem_tf.networks import Decoder, Encoder

tfd = tfp.distributions

_BAD_VALUES_MARKER = "rem_tf: input images must be binary"


class Losses(NamedTuple):
    """What `compute_losses` returns for a batch of B images with K particles."""

    model_loss: tf.Tensor  # [B] θ loss per example
    proposal_loss: tf.Tensor  # [B] η loss per example (may be model_loss itself)
    log_weights: tf.Tensor  # [K, B] log p(x, z_k) − log r(z_k|x), z_k ~ r(z|x)
    loc: tf.Tensor  # [B, L] encoder mean
    scale: tf.Tensor  # [B, L] encoder standard deviation


class GenerativeModel(keras.Model):
    """Bernoulli-decoder latent-variable model trained by importance weighting.

    Args:
      latent_dim: L, the dimension of z (paper: 20).
      hidden_units: hidden widths of both networks (paper: (200, 200)).
      num_particles: K, particles per image in a training step (paper: 1000).
      input_shape: shape of one image, e.g. (28, 28, 1) or (16,).
      covariance: "unweighted" (Eq. 23) or "weighted" (Eq. 22) moment
        matching; used by the REM methods.
      ridge: ε added to the diagonal of the moment-matched covariance.
      activation: hidden activation of both networks (paper: tanh).
      scale_activation: "exp" (paper) or "softplus" for the encoder scale.
      decoder_output_bias: optional initial logits bias, shape [D].
      seed: integer seed of the particle sampler; None draws one.
      fused_likelihood: use `estimators.bernoulli_log_prob_fused` (the fast
        path, default) instead of the plain autodiff `bernoulli_log_prob`;
        both give the same values and gradients.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_particles) < self.min_particles:
            raise ValueError(
                f"{type(self).__name__} needs num_particles >= {self.min_particles}, "
                f"got {num_particles}"
            )
        if covariance not in estimators.COVARIANCES:
            raise ValueError(
                f"covariance must be one of {estimators.COVARIANCES}, got {covariance!r}"
            )
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not float(ridge) > 0:  # ridge 0 gives a NaN Cholesky factor, silently, when K <= L
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if keras.config.dtype_policy().compute_dtype != "float32":
            raise ValueError(
                f"rem_tf models compute in float32; the global Keras dtype policy is "
                f"{keras.config.dtype_policy().name!r} (set it back with "
                f"keras.config.set_dtype_policy('float32'))"
            )
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
        self.encoder = Encoder(
            self.latent_dim, self.hidden_units, activation, scale_activation, name="encoder"
        )
        self.decoder = Decoder(
            self.data_dim, self.hidden_units, activation, decoder_output_bias, name="decoder"
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="particle_seed")
        self.encoder.build((None, self.data_dim))
        self.decoder.build((None, self.latent_dim))
        self.proposal_optimizer = None
        names = ["loss"] if self.shared_loss else ["loss", "model_loss", "proposal_loss"]
        names += ["elbo", "log_likelihood", "kl_to_prior"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    # ------------------------------------------------------------------ config

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": list(self.hidden_units),
            "num_particles": self.num_particles,
            "input_shape": list(self.image_shape),
            "covariance": self.covariance,
            "ridge": self.ridge,
            "activation": self.activation,
            "scale_activation": self.scale_activation,
            "decoder_output_bias": self.decoder.output_bias,
            "seed": self.seed,
            "fused_likelihood": self.fused_likelihood,
        }

    # --------------------------------------------------------------- compile

    def compile(self, optimizer=None, *, model_optimizer=None, proposal_optimizer=None, **kwargs):
        """Configures training with one optimizer or two.

        Either `optimizer` (one optimizer updates both networks, the decoder
        with the θ loss and the encoder with the η loss), or both
        `model_optimizer` (θ, decoder) and `proposal_optimizer` (η, encoder).
        Other keyword arguments (`jit_compile`, `steps_per_execution`, …) go
        to `keras.Model.compile`.
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
        if optimizer is None and model_optimizer is None:
            optimizer = "adam"
        if model_optimizer is not None:
            optimizer = model_optimizer
            self.proposal_optimizer = keras.optimizers.get(proposal_optimizer)
        else:
            self.proposal_optimizer = None
        super().compile(optimizer=keras.optimizers.get(optimizer), **kwargs)
        if self.proposal_optimizer is None:
            self.optimizer.build(self.decoder.trainable_variables + self.encoder.trainable_variables)
        else:
            self.optimizer.build(self.decoder.trainable_variables)
            self.proposal_optimizer.build(self.encoder.trainable_variables)

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
        """The optimizer of the decoder parameters θ."""
        return self.optimizer

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

    def encode(self, x):
        """Encoder parameters: x [B, *input_shape] -> (loc [B, L], scale [B, L])."""
        return self.encoder(self.flatten_images(x))

    def decode(self, z):
        """Bernoulli logits [..., D] for z [..., L], D = prod(input_shape)."""
        return self.decoder(tf.cast(z, tf.float32))

    def recognition(self, loc, scale):
        """r_eta(z|x) = N(loc, diag(scale²)) as a TFP distribution, batch [B]."""
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def log_joint(self, x, z):
        """log p_theta(x, z) = log N(z; 0, I) + Σ_pixels log Bern(x | decoder(z)).

        Args:
          x: [B, D] flattened binary images.
          z: [K, B, L] latents.

        Returns:
          [K, B].
        """
        likelihood = (
            estimators.bernoulli_log_prob_fused
            if self.fused_likelihood
            else estimators.bernoulli_log_prob
        )
        return estimators.standard_normal_log_prob(z) + likelihood(x, self.decoder(z))

    def importance_sample(self, x, num_particles, reparameterize=False):
        """Draws z_k ~ r_eta(z|x) and computes their log weights.

        Args:
          x: [B, D] flattened binary images.
          num_particles: K.
          reparameterize: if False the samples are stopped (REM, RWS).

        Returns:
          loc, scale [B, L]; the recognition distribution; z [K, B, L];
          log p(x, z) [K, B]; log weights [K, B].
        """
        loc, scale = self.encoder(x)
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
        """[B, *input_shape] (or [B, D]) -> float32 [B, D]; a wrong shape raises ValueError."""
        x = tf.convert_to_tensor(x)
        self._check_batch_shape(x.shape)
        return tf.reshape(tf.cast(x, tf.float32), [-1, self.data_dim])

    def _check_array(self, x):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"expected a batch of images, got an array of shape {x.shape}")
        self._check_batch_shape(x.shape, "an array")
        bad = ~((x == 0) | (x == 1))
        if bad.any():
            first = np.argwhere(bad)[0]
            raise ValueError(
                f"{_BAD_VALUES_MARKER} (0 or 1, no NaN); found {x[tuple(first)]!r} at index "
                f"{tuple(int(i) for i in first)}. Binarize the data first, e.g. "
                "with rem_tf.data.load(..., binarization='dynamic')."
            )
        return x.astype(np.float32)

    def _check_dataset(self, dataset):
        images_spec = dataset.element_spec
        if isinstance(images_spec, (tuple, list)):
            images_spec = images_spec[0]
        elif isinstance(images_spec, dict):
            raise ValueError("expected a dataset of images (or (images, ...) tuples), not dicts")
        if images_spec.shape.rank is not None and images_spec.shape[1:].is_fully_defined():
            self._check_batch_shape(images_spec.shape, "dataset elements")

        def check(*element):
            images = element[0]
            ok = tf.reduce_all((images == 0) | (images == 1))
            with tf.control_dependencies(
                [tf.debugging.Assert(ok, [_BAD_VALUES_MARKER + " (0 or 1, no NaN)"])]
            ):
                return tf.nest.map_structure(tf.identity, element if len(element) > 1 else images)

        return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _checked_input(self, x):
        if x is None:
            return None
        if isinstance(x, tf.data.Dataset):
            return self._check_dataset(x)
        if isinstance(x, (np.ndarray, tf.Tensor, list)):
            return self._check_array(x)
        return x  # generators, PyDatasets, distributed datasets: checked in-graph by shape only

    def _run_checked(self, run, *args, **kwargs):
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _keras_compat.patch_multi_worker_metric_reduction()
        try:
            return run(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            if _BAD_VALUES_MARKER in str(error):
                raise ValueError(
                    f"{_BAD_VALUES_MARKER} (0 or 1, no NaN): the dataset holds other values. "
                    "Binarize it first, e.g. with rem_tf.data.load(..., binarization='dynamic')."
                ) from None
            raise

    def fit(self, x=None, y=None, *args, validation_data=None, callbacks=None, **kwargs):
        """`keras.Model.fit` with input checks and a clear error on a NaN/Inf loss."""
        callbacks = list(callbacks or [])
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself; silences Keras
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(keras.callbacks.TerminateOnNaN(raise_error=True))
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

    # --------------------------------------------------------------- steps

    def call(self, x, training=False):
        """Reconstruction logits [B, *input_shape] from the encoder mean."""
        loc, _ = self.encoder(self.flatten_images(x))
        return tf.reshape(self.decoder(loc), [-1, *self.image_shape])

    def _images(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.flatten_images(x)

    def train_step(self, data):
        x = self._images(data)  # [B, D]
        decoder_vars = self.decoder.trainable_variables
        encoder_vars = self.encoder.trainable_variables
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
        """Draws images from the model: z ~ N(0, I), x ~ Bern(decoder(z)).

        Args:
          num_samples: N, the number of images.
          seed: optional int for a reproducible draw; None uses (and advances) the
            model's particle seed state.

        Returns:
          float32 [num_samples, *input_shape] binary images.
        """
        seed = self.next_seed() if seed is None else tf.constant([seed, 0], tf.int32)
        z_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = tf.random.stateless_normal([num_samples, self.latent_dim], z_seed)
        probs = tf.sigmoid(self.decoder(z))
        pixels = tf.cast(tf.random.stateless_uniform(tf.shape(probs), x_seed) < probs, tf.float32)
        return tf.reshape(pixels, [num_samples, *self.image_shape])

    def chunked_log_likelihood(self, x, num_samples, chunk_size):
        """Builds the chunked IS estimate: x [B, D], num_samples scalar -> [B].

        Graph-building function (call it inside a `tf.function`; the exported
        SavedModel does); `log_likelihood` is the user-facing wrapper.

        `chunk_size` particles are drawn per iteration of a while loop; in the
        last chunk the particles beyond `num_samples` are masked out, so every
        chunk has the same static shape (which XLA needs).
        """
        loc, scale = self.encoder(x)
        recognition = self.recognition(loc, scale)
        num_samples = tf.cast(num_samples, tf.int32)
        num_chunks = (num_samples + chunk_size - 1) // chunk_size

        def body(i, running):  # running: [B], logsumexp of the log weights so far
            z = recognition.sample(chunk_size, seed=self.next_seed())  # [C, B, L]
            log_weights = self.log_joint(x, z) - recognition.log_prob(z)  # [C, B]
            valid = tf.range(chunk_size) < num_samples - i * chunk_size  # [C]
            log_weights = tf.where(valid[:, None], log_weights, -np.inf)
            chunk = tf.reduce_logsumexp(log_weights, axis=0)  # [B]
            return i + 1, tf.reduce_logsumexp(tf.stack([running, chunk]), axis=0)

        start = tf.fill(tf.shape(x)[:1], tf.constant(-np.inf, tf.float32))
        _, total = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), start))
        return total - tf.math.log(tf.cast(num_samples, tf.float32))

    def _log_likelihood_function(self, chunk_size, jit_compile):
        key = (int(chunk_size), bool(jit_compile))
        cache = self.__dict__.setdefault("_log_likelihood_functions", {})
        if key not in cache:
            cache[key] = tf.function(
                lambda x, num_samples: self.chunked_log_likelihood(x, num_samples, key[0]),
                jit_compile=key[1],
                reduce_retracing=True,
            )
        return cache[key]

    def log_likelihood(self, x, num_samples=5000, chunk_size=200, batch_size=100, jit_compile=None):
        """Importance-sampled log p(x) in nats, with the encoder as proposal.

        log p(x) ≈ logsumexp_k log w_k − log K, K = num_samples, computed
        `chunk_size` particles and `batch_size` images at a time, so memory
        is bounded by chunk_size × batch_size particles whatever K and N are.

        Args:
          x: [N, *input_shape] (or flattened [N, D]) binary images.
          num_samples: K, importance samples per image (an integer >= 1).
          chunk_size: particles drawn at a time.
          batch_size: images evaluated at a time.
          jit_compile: compile with XLA; defaults to the model's `jit_compile`.

        Returns:
          float32 numpy array [N].
        """
        for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size),
                            ("batch_size", batch_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        x = self._check_array(x)
        flat = x.reshape(len(x), self.data_dim)
        if jit_compile is None:
            jit_compile = bool(self.compiled and self.jit_compile)
        function = self._log_likelihood_function(min(int(chunk_size), int(num_samples)), jit_compile)
        num_samples = tf.constant(int(num_samples))
        out = [
            function(tf.constant(flat[i : i + batch_size]), num_samples).numpy()
            for i in range(0, len(flat), int(batch_size))
        ]
        return np.concatenate(out) if out else np.zeros([0], np.float32)
