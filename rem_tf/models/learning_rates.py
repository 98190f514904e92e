"""The callbacks `GenerativeModel.fit` adds: both optimizers under Keras's learning-rate
callbacks (ReduceLROnPlateau, LearningRateScheduler), and a clear stop on a NaN loss.

Keras's learning-rate callbacks change `model.optimizer.learning_rate`, which is θ's (the
`model_optimizer`). `GenerativeModel.fit` with two optimizers adds, unless given:

- `LogLearningRates` first: every epoch's logs get `learning_rate` (θ) and
  `proposal_learning_rate` (η), the rates the epoch trained with, so `History`,
  `CSVLogger` and `TensorBoard` show both.
- `ProposalFollowsModelRate` last: when a callback has changed θ's rate from r to
  r', η's rate becomes η·r'/r (equal rates stay equal).

η keeps its own rate (it does not follow) when it is a `LearningRateSchedule`, or
when η's rate was changed too since the last check (your own callback sets it).
A rate that is a schedule is never changed by a callback (Keras refuses).

`TerminateOnNaN` is added to every `fit` (unless a `keras.callbacks.TerminateOnNaN` is
given): Keras's, raising an error that says what may cause the NaN.
"""

import keras
import tensorflow as tf


def current_rate(optimizer):
    """The optimizer's learning rate now, as a Python float (also of a distributed variable)."""
    return float(tf.convert_to_tensor(optimizer.learning_rate))


def is_settable(optimizer):
    """True if the rate is a plain number (a variable) that a callback may set."""
    return isinstance(optimizer.learning_rate, keras.Variable)


class LogLearningRates(keras.callbacks.Callback):
    """Adds `learning_rate` (θ) and `proposal_learning_rate` (η) to the epoch logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_rate(self.model.optimizer)
            logs["proposal_learning_rate"] = current_rate(self.model.proposal_optimizer)


class ProposalFollowsModelRate(keras.callbacks.Callback):
    """Applies a callback's change of θ's learning rate to η's, keeping their ratio.

    Checked before every batch and at the start and end of every epoch, after
    the callbacks listed before it; a no-op unless both rates are settable.
    """

    def __init__(self):
        super().__init__()
        self.seen = None  # (θ rate, η rate) at the last check, or None: nothing to follow

    def on_train_begin(self, logs=None):
        optimizers = (self.model.optimizer, self.model.proposal_optimizer)
        settable = all(map(is_settable, optimizers))
        self.seen = tuple(map(current_rate, optimizers)) if settable else None

    def follow(self):
        if self.seen is None:
            return
        model_rate = current_rate(self.model.optimizer)
        proposal_rate = current_rate(self.model.proposal_optimizer)
        seen_model, seen_proposal = self.seen
        if model_rate != seen_model and proposal_rate == seen_proposal:
            ratio = 1.0 if seen_model in (0.0, seen_proposal) else seen_proposal / seen_model
            self.model.proposal_optimizer.learning_rate = model_rate * ratio
            proposal_rate = current_rate(self.model.proposal_optimizer)
        self.seen = (model_rate, proposal_rate)

    def on_epoch_begin(self, epoch, logs=None):
        self.follow()

    def on_train_batch_begin(self, batch, logs=None):
        self.follow()

    def on_epoch_end(self, epoch, logs=None):
        self.follow()


def with_rate_callbacks(callbacks):
    """`callbacks` with a `LogLearningRates` first and a `ProposalFollowsModelRate` last."""
    callbacks = list(callbacks)
    if not any(isinstance(c, LogLearningRates) for c in callbacks):
        callbacks.insert(0, LogLearningRates())
    if not any(isinstance(c, ProposalFollowsModelRate) for c in callbacks):
        callbacks.append(ProposalFollowsModelRate())
    return callbacks


class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
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
