"""The Keras callbacks of a training run: checkpoints, CSV log, TensorBoard scalars, learning rate.

`train` calls `fit` once per epoch (each epoch has its own data pipeline), so
every callback here sees exactly one epoch per `fit`.
"""

import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from rem_tf.experiment import checkpoints, run_files
from rem_tf.experiment.errors import ConfigError, TrainingDiverged
from rem_tf.models import learning_rates


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

    Not `keras.callbacks.BackupAndRestore`: it restarts a stopped epoch from its first batch
    and writes a .weights.h5, where exact resume continues mid-epoch from the
    `tf.train.Checkpoint` files (both optimizers, running metric totals) run directories hold.

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
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        last = self.manager.latest_checkpoint
        note = f" (the last good checkpoint, {last}, is kept)" if last else ""
        with run_files.writing(prefix, "save the checkpoint", note=note,
                               clean_up=lambda: checkpoints.remove_partial(prefix)):
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
    """Adds one row per epoch (epoch, then the logs' keys, sorted) to `path`, rewriting the
    file atomically (`run_files.write_text`), so a kill or a full disk never tears a row.

    Not `keras.callbacks.CSVLogger`, which appends (a kill can tear a row) and checks
    nothing of the file it resumes (`read_log`, `truncate_csv`).
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        names = ["epoch", *sorted(logs)]
        header, rows = read_log(self.path, first_epoch=epoch)
        if header is not None and header != names:
            raise ConfigError(f"{self.path} has the columns {', '.join(header)}, this run logs "
                              f"{', '.join(names)}; move the file away, then run again")
        rows = [row for row in rows if int(row[0]) < epoch]
        rows.append([str(epoch), *(f"{float(logs[k]):.9g}" for k in sorted(logs))])
        run_files.write_text(self.path, _csv_text([names, *rows]))


def _csv_text(rows):
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _row_problem(row, width, previous_epoch):
    """Why `row` is not a row of a log with `width` columns after `previous_epoch`, or None."""
    if len(row) != width:
        return f"{len(row)} fields under a header of {width}"
    try:
        epoch = int(row[0])
        for value in row[1:]:
            float(value)
    except ValueError:
        return "a value that is not a number"
    if epoch < 0 or (previous_epoch is not None and epoch <= previous_epoch):
        return f"epoch {epoch} after epoch {previous_epoch}"
    return None


def read_log(path, first_epoch=None):
    """(header, rows) of a CsvLog file, checked; (None, []) if it is missing or empty.

    Every row must have the header's fields, numbers, and increasing epochs. A last row
    cut short by a crash (no line end, even if what is left looks like a row) is dropped,
    with a warning, if its epoch is >= `first_epoch` (to be redone: the checkpoint's own
    record says so) or `first_epoch` is None; else it is refused.

    Raises:
      ConfigError: the file is not text, not a training log, or has a bad row (one line
        naming the line and what to do).
    """
    fix = f"delete that line or move {path} away (a new log starts), then run again"
    if not path.is_file():
        return None, []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a text file (byte {err.start} is not UTF-8); "
                          f"move it away (a new log starts), then run again") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return None, []
    header, body = rows[0], rows[1:]
    if header[:1] != ["epoch"] or len(set(header)) != len(header) or not all(header):
        raise ConfigError(f"{path} is not a training log (its first line is "
                          f"{','.join(header)[:80]!r}); move it away, then run again")
    previous = None
    for number, row in enumerate(body, start=2):
        torn = number == len(body) + 1 and not text.endswith(("\n", "\r"))
        problem = "cut short: no line end" if torn else _row_problem(row, len(header), previous)
        if problem is None:
            previous = int(row[0])
            continue
        epoch = int(row[0]) if row[0].isdigit() else None
        if torn and (first_epoch is None or epoch is None or epoch >= first_epoch):
            logging.warning("%s: dropped its last line, %r, cut short by a crash (epoch %s is "
                            "trained again).", path, ",".join(row)[:80], epoch or "?")
            return header, body[:-1]
        raise ConfigError(f"{path}, line {number}, is not a row of this log ({problem}); {fix}")
    return header, body


def truncate_csv(path, first_epoch):
    """Drops the rows of epochs >= first_epoch (logged before a crash, about to be redone);
    the file is checked (`read_log`) and rewritten atomically if anything changes."""
    header, rows = read_log(path, first_epoch)
    if header is None:
        return
    text = _csv_text([header, *(row for row in rows if int(row[0]) < first_epoch)])
    if text.encode() != path.read_bytes():
        run_files.write_text(path, text)


def last_csv_row(path):
    """{column: float} of the last epoch in a CsvLog file, without `epoch`; {} if none (or if
    the file is not a good log)."""
    try:
        header, rows = read_log(path)
    except ConfigError:
        return {}
    return {k: float(v) for k, v in zip(header, rows[-1]) if k != "epoch"} if rows else {}


class EpochScalars(keras.callbacks.Callback):
    """TensorBoard scalars `epoch_<name>` of every epoch's logs, step = epoch number (1-based).

    Not `keras.callbacks.TensorBoard`: it counts epochs from 0 (run directories written
    before count from 1, so a resumed run would break their series), logs the next step's
    learning rate instead of the epoch's, builds batch scalars at every step, and opens an
    event file per `fit` (here: per epoch).
    """

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.writer = None

    def on_train_begin(self, logs=None):
        if self.writer is None:
            with run_files.writing(self.logdir):
                self.writer = tf.summary.create_file_writer(str(self.logdir))

    def on_epoch_end(self, epoch, logs=None):
        with run_files.writing(self.logdir), self.writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"epoch_{name}", float(value), step=epoch + 1)
            self.writer.flush()


class OneEpoch(keras.callbacks.Callback):
    """Ends `fit` after one epoch (each epoch gets its own pipeline)."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True
