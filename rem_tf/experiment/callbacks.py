"""The Keras callbacks of a training run: checkpoints, CSV log, TensorBoard scalars, learning rate.

`train` calls `fit` once per epoch (each epoch has its own data pipeline), so
every callback here sees exactly one epoch per `fit`.
"""

import csv
import math

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from rem_tf.experiment import checkpoints
from rem_tf.models import learning_rates
from rem_tf.experiment.errors import TrainingDiverged


def _step(model):
    """Optimizer updates applied so far."""
    return int(model.optimizer.iterations.numpy())


class LearningRateLogger(learning_rates.LogLearningRates):
    """Adds the learning rate of the epoch's last step to the logs (CSV, TensorBoard).

    One column, `learning_rate`, for both optimizers: the runner gives them the
    same schedule, and a callback that changes θ's rate changes η's with it
    (`rem_tf.models.learning_rates`; a subclass, so `fit` adds no second logger).

    Args:
      rate: a float or a `LearningRateSchedule` of the optimizer step.
    """

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            step = max(_step(self.model) - 1, 0)
            rate = self.rate(step) if callable(self.rate) else self.rate
            if learning_rates.is_settable(self.model.optimizer):  # a callback may have set it
                now = learning_rates.current_rate(self.model.optimizer)
                rate = rate if now == float(np.float32(rate)) else now
            logs["learning_rate"] = float(rate)


class Checkpoints(keras.callbacks.Callback):
    """Saves every `every_steps` optimizer steps, at every epoch end and on request (`save`).

    Also stops training with `TrainingDiverged` at the first NaN/Inf loss,
    before Keras's TerminateOnNaN does, and never saves weights that are not
    finite, so the last checkpoint stays a good one.

    Args:
      manager: the `tf.train.CheckpointManager` of a `checkpoints.training_checkpoint`.
      every_steps: save when this many steps have passed since the last save.
      start_step: the step training starts from (restored, or 0: nothing to save there).
      kept: optional `checkpoints.KeptCheckpoints`; its steps are saved and kept too.
      restore_metrics_from: a checkpoint prefix whose running metric totals are put
        back when the first epoch begins (a restart in the middle of an epoch).
    """

    def __init__(self, manager, every_steps, start_step, kept=None, restore_metrics_from=None):
        super().__init__()
        self.manager = manager
        self.every_steps = every_steps
        self.last_saved = start_step
        self.kept = kept
        self.restore_metrics_from = restore_metrics_from

    def save(self):
        """Saves the current state unless it is saved already or not finite; returns the step."""
        step = _step(self.model)
        if step == self.last_saved:
            return step
        if not all(np.isfinite(w).all() for w in self.model.get_weights()):
            return self.last_saved
        prefix = self.manager.save(checkpoint_number=step)
        self.last_saved = step
        if self.kept is not None:
            self.kept.keep(step, prefix)
        return step

    def on_epoch_begin(self, epoch, logs=None):
        # `fit` has just reset the metrics: put back the running totals of a
        # restart in the middle of this epoch.
        if self.restore_metrics_from:
            checkpoints.metrics_checkpoint(self.model).read(
                self.restore_metrics_from).expect_partial()
            self.restore_metrics_from = None

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss is {loss} at step {step}")
        keep = self.kept is not None and self.kept.wants(step)
        if keep or step - self.last_saved >= self.every_steps:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


class CsvLog(keras.callbacks.Callback):
    """Appends one row per epoch (epoch, then the logs' keys, sorted) to `path`."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", *sorted(logs)])
            writer.writerow([epoch, *(f"{float(logs[k]):.9g}" for k in sorted(logs))])


def truncate_csv(path, first_epoch):
    """Drops the rows of epochs >= first_epoch (logged before a crash, about to be redone)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    header, body = rows[0], rows[1:]
    column = header.index("epoch")
    kept = [row for row in body if row and int(row[column]) < first_epoch]
    if len(kept) != len(body):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])


def last_csv_row(path):
    """{column: float} of the last epoch in a CsvLog file, without `epoch`; {} if none."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if k != "epoch"} if rows else {}


class EpochScalars(keras.callbacks.Callback):
    """TensorBoard scalars `epoch_<name>` of every epoch's logs, step = epoch number (1-based).

    Written with TensorFlow's own summary ops (the `tensorboard` package is
    needed only to view them, not to write them).
    """

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.writer = None
        self.metadata = summary_pb2.SummaryMetadata(data_class=summary_pb2.DATA_CLASS_SCALAR)
        self.metadata.plugin_data.plugin_name = "scalars"

    def on_train_begin(self, logs=None):
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.logdir))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32),
                                 step=epoch + 1, metadata=self.metadata)
        self.writer.flush()


class OneEpoch(keras.callbacks.Callback):
    """Ends `fit` after one epoch (each epoch gets its own pipeline)."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class LastLogs(keras.callbacks.Callback):
    """Keeps the logs of the last epoch (for train_summary.json)."""

    def __init__(self):
        super().__init__()
        self.logs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs or {})
