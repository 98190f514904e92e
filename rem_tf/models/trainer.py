"""Training plumbing of `GenerativeModel`: compile with one optimizer or two, and `fit` /
`evaluate` with input checks and clear errors.

A mixin (a base class of `GenerativeModel` before `keras.Model`), as Keras's own `Trainer` is
a base of `keras.Model`: these must stay methods of the model, since Keras's saving calls
`get_compile_config` / `compile_from_config` on it and users call `compile` / `fit`.

θ (decoder and likelihood, `theta_variables`) and η (encoder, `eta_variables`) are
defined by the model; with two optimizers `optimizer` (also `model_optimizer`) updates θ
and `proposal_optimizer` updates η.
"""

import keras
import tensorflow as tf

from rem_tf import keras_compat, validation
from rem_tf.models import learning_rates


def global_batch_size(x):
    """Images in this step over all replicas (a global batch may split unevenly): x [B, ...]."""
    replica = tf.distribute.get_replica_context()
    local = tf.shape(x)[0]
    if replica is None or replica.num_replicas_in_sync == 1:
        return local
    return replica.all_reduce(tf.distribute.ReduceOp.SUM, local)


class Trainer:
    """`compile`, its config, `fit` and `evaluate` of a model with θ and η optimizers.

    The model sets `proposal_optimizer = None` in its constructor (one optimizer until
    `compile` is given two).
    """

    def compile(self, optimizer=None, *, model_optimizer=None, proposal_optimizer=None, **kwargs):
        """Configures training with one optimizer or two.

        Either `optimizer` (one optimizer updates both parameter sets, θ with
        the θ loss and η with the η loss), or both `model_optimizer` (θ: decoder
        and likelihood) and `proposal_optimizer` (η, encoder). Other keyword
        arguments (`jit_compile`, `steps_per_execution`, …) go to
        `keras.Model.compile`.
        """
        if optimizer is not None and (model_optimizer is not None
                                      or proposal_optimizer is not None):
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

    def _run_checked(self, run, *args, **kwargs):
        """run(*args, **kwargs), a failed rem_tf in-graph check raised as a ValueError."""
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            keras_compat.patch_multi_worker_metric_reduction()
        try:
            return run(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            message = validation.checked_message(error)
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
                validation.check_integer(name, kwargs[name], minimum=minimum)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself; silences Keras
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(learning_rates.TerminateOnNaN())
        if isinstance(validation_data, tuple):
            validation_data = ((validation.check_input(self, validation_data[0]),)
                               + validation_data[1:])
        else:
            validation_data = validation.check_input(self, validation_data)
        return self._run_checked(
            super().fit, validation.check_input(self, x), y, *args,
            validation_data=validation_data, callbacks=callbacks, **kwargs,
        )

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate` with the same input checks as `fit`."""
        return self._run_checked(super().evaluate, validation.check_input(self, x), y, *args,
                                 **kwargs)
