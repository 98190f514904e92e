"""Training checkpoints: what they hold, resuming from the newest readable one, kept copies.

A checkpoint (`training_checkpoint`) holds, under these keys:
  model               the weights and the particle-seed state (`model.variables`)
  model_optimizer     the θ optimizer's state (iterations, Adam moments)
  proposal_optimizer  the η optimizer's state
  metrics             the running metric totals of the current epoch
The last two are written by a `tf.train.CheckpointManager` into
`<workdir>/checkpoints/ckpt-<step>.*`, its state in `checkpoints/checkpoint` (rebuilt
from the files by `repair_state` when unreadable), and the config of the run they
belong to in `checkpoints/run_config.json` (`CONFIG_COPY`); with
`training.keep_checkpoint_every_steps` copies are kept in `<workdir>/kept_checkpoints/`
(see `KeptCheckpoints`).
"""

import csv
import io
import pathlib
import re
import shutil
import time

import tensorflow as tf
from absl import logging

from rem_tf.experiment import builders, run_files
from rem_tf.experiment.config import check_config
from rem_tf.experiment.errors import ConfigError

CONFIG_COPY = "run_config.json"  # beside the checkpoints: deleting config.json is no way round
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's
_STEP = re.compile(r"ckpt-(\d+)$")
TIMES_HEADER = ["step", "wall_seconds", "cpu_seconds", "unix_time"]
# What reading a truncated or corrupt checkpoint raises (IndexError: a short .data file).
_UNREADABLE = (tf.errors.OpError, IndexError)


def named_variables(variables, strip_prefix=False):
    """{name: variable}; optimizer variable paths lose their (process-dependent) prefix."""
    out = {}
    for variable in variables:
        name = variable.path.split("/", 1)[1] if strip_prefix else variable.path
        if name in out:
            raise ValueError(f"two variables named {name!r}")
        out[name] = variable
    return out


def training_checkpoint(model, metrics=True):
    """A tf.train.Checkpoint of everything that determines the rest of a run (keys above)."""
    parts = {
        "model": named_variables(model.variables),
        "model_optimizer": named_variables(model.optimizer.variables, strip_prefix=True),
        "proposal_optimizer": named_variables(
            model.proposal_optimizer.variables, strip_prefix=True
        ),
    }
    if metrics:
        parts["metrics"] = named_variables(model.metrics_variables)
    return tf.train.Checkpoint(**parts)


def metrics_checkpoint(model):
    """The running metric totals alone (put back after `fit` resets them)."""
    return tf.train.Checkpoint(metrics=named_variables(model.metrics_variables))


def _reason(err):
    """The first line of an error, without TensorFlow's "{{function_node …}}" prefix."""
    text = re.sub(r"^\{\{.*?\}\}\s*", "", str(getattr(err, "message", err)).strip())
    return (text.splitlines() or [type(err).__name__])[0][:200]


def _step(prefix):
    match = _STEP.search(str(prefix))
    return int(match.group(1)) if match else -1


def _state(directory):
    """(the `checkpoint` state of `directory` or None, why it is unreadable or None)."""
    try:
        return tf.train.get_checkpoint_state(str(directory)), None
    except Exception as err:  # noqa: BLE001 - a garbled text proto: fall back to the files
        return None, (str(err).splitlines() or [type(err).__name__])[0][:200]


def _found(directory):
    """The prefixes of the ckpt-<step>.index files in `directory`, newest first."""
    return sorted((str(p)[: -len(".index")] for p in directory.glob("ckpt-*.index")),
                  key=_step, reverse=True)


def _candidates(directory):
    """Checkpoint prefixes in `directory`, newest first.

    The ones the `checkpoint` file lists (its latest first), then any other
    ckpt-<step>.index in the directory, by step.
    """
    state, problem = _state(directory)
    if problem:
        logging.warning("%s/%s is unreadable (%s); looking for ckpt-* files.", directory,
                        STATE_FILE, problem)
    listed = []
    if state is not None:
        listed = [state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)]
    found = _found(directory)
    out = []
    for prefix in [*listed, *found]:
        prefix = str(directory / pathlib.Path(prefix).name)
        if prefix not in out:
            out.append(prefix)
    return out


def unreadable(prefix):
    """Why checkpoint `prefix` cannot be read (missing, truncated, corrupt), or None if it can.

    Reads every tensor, so the checksums of the whole file are checked.
    """
    if not pathlib.Path(f"{prefix}.index").is_file():
        return f"{prefix} is missing"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except _UNREADABLE as err:
        return f"{prefix} is unreadable ({_reason(err)})"
    return None


def read(checkpoint, prefix):
    """Restores all objects of `checkpoint` from a readable file that may hold more
    (the optimizers in a model-only read), but not more model variables.

    Raises:
      ConfigError: the file does not hold them, or holds model variables that
        `checkpoint.model` lacks (another model).
    """
    fix = "use the config it was trained with, or a new --workdir"
    try:
        status = checkpoint.read(str(prefix))
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as err:
        raise ConfigError(f"checkpoint {prefix} does not match this model ({_reason(err)}); "
                          f"{fix}") from None
    status.expect_partial()  # e.g. the optimizers in a model-only read, the save counter
    model = getattr(checkpoint, "model", None)
    if isinstance(model, dict):
        stored = {key.split("/")[1].replace(".S", "/").replace("..", ".")
                  for key in tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()
                  if key.startswith("model/")}
        extra = sorted(stored - set(model))
        if extra:
            raise ConfigError(f"checkpoint {prefix} holds model variables this model lacks "
                              f"({', '.join(extra[:3])}); {fix}")


def restore_latest(checkpoint, directory):
    """Restores the newest readable checkpoint of `directory` into `checkpoint`.

    A checkpoint whose files are missing or unreadable (truncated, corrupt) is
    skipped, with one warning line naming it and the one used instead. A
    directory that has checkpoints is never silently started over.

    Args:
      checkpoint: a `tf.train.Checkpoint`; all its objects must be in the file.
      directory: the checkpoint directory.

    Returns:
      The prefix restored (e.g. ".../ckpt-7"), or None if `directory` holds no
      checkpoint at all (a fresh run).

    Raises:
      ConfigError: the checkpoints belong to another model, or none is readable.
    """
    directory = pathlib.Path(directory)
    candidates = _candidates(directory) if directory.is_dir() else []
    if not candidates:
        return None
    skipped = []
    for prefix in candidates:
        problem = unreadable(prefix)
        if problem:
            skipped.append(problem)
            continue
        read(checkpoint, prefix)
        if skipped:
            logging.warning("Checkpoint %s; resuming from %s instead.", "; ".join(skipped), prefix)
        return prefix
    raise ConfigError(
        f"cannot resume: no readable checkpoint in {directory} ({'; '.join(skipped)}); "
        "move the directory away to start over, or use a new --workdir"
    )


def repair_state(directory):
    """Rebuilds `<directory>/checkpoint` from the readable ckpt-* files when it is unreadable
    (a 0-byte or binary file after a power cut) or missing beside checkpoints; a warning says so.

    The state file is derived: it lists the checkpoints (relative names, oldest first, with
    their files' times, as `tf.train.CheckpointManager` writes it), so the manager goes on
    rotating them. StorageError if it cannot be written.
    """
    directory = pathlib.Path(directory)
    state, problem = _state(directory)
    if state is not None:
        return
    readable = [p for p in reversed(_found(directory)) if unreadable(p) is None]
    if not readable:
        return
    times = [pathlib.Path(f"{p}.index").stat().st_mtime for p in readable]
    names = [pathlib.Path(p).name for p in readable]
    # The CheckpointState text proto, written directly: TensorFlow's writer for it
    # (tf.compat.v1.train.update_checkpoint_state) is deprecated.
    lines = [f'model_checkpoint_path: "{names[-1]}"',
             *(f'all_model_checkpoint_paths: "{name}"' for name in names),
             *(f"all_model_checkpoint_timestamps: {t!r}" for t in times),
             f"last_preserved_timestamp: {min(times) - 1.0!r}"]
    run_files.write_text(directory / STATE_FILE, "\n".join(lines) + "\n")
    logging.warning("%s/%s was %s; rebuilt it from the checkpoint files (%s).", directory,
                    STATE_FILE, f"unreadable ({problem})" if problem else "missing",
                    ", ".join(names))


def remove_partial(prefix):
    """Removes what a failed save of checkpoint `prefix` left: `<prefix>_temp*` and `<prefix>.*`."""
    prefix = pathlib.Path(prefix)
    for path in [*prefix.parent.glob(prefix.name + "_temp*"),
                 *prefix.parent.glob(prefix.name + ".*")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def restore_model(config, checkpoint_path):
    """A fresh model of `config` with the weights and particle-seed state of a checkpoint.

    Built outside any distribution strategy and uncompiled: ready for
    `rem_tf.evaluation.evaluate_model`, `model.log_likelihood`, `rem_tf.export.export`.
    Reads what `builders.build_model_from_config` reads.

    Args:
      config: the run's config (e.g. its config.json as a ConfigDict); fields it
        lacks get their configs/default.py value.
      checkpoint_path: a checkpoint prefix such as `<workdir>/kept_checkpoints/ckpt-1000`
        (its ".index" file name works too), or a checkpoint directory (its newest).

    Raises:
      ConfigError: no such checkpoint, an unreadable one, or one of another model.
    """
    config = check_config(config, "train")
    path = pathlib.Path(checkpoint_path)
    prefix = str(path)[: -len(".index")] if path.suffix == ".index" else str(path)
    model = builders.build_model_from_config(config)
    checkpoint = tf.train.Checkpoint(model=named_variables(model.variables))
    if path.is_dir():
        if restore_latest(checkpoint, path) is None:
            raise ConfigError(f"no checkpoint in {path}")
        return model
    problem = unreadable(prefix)
    if problem:
        raise ConfigError(f"checkpoint {problem}")
    read(checkpoint, prefix)
    return model


class KeptCheckpoints:
    """Copies of the checkpoints whose step is a multiple of `every`, with their training time.

    Files: `<directory>/ckpt-<step>.index`, `.data-*`, and `<directory>/times.csv`
    with a row `step,wall_seconds,cpu_seconds,unix_time` per kept checkpoint and per
    interruption. wall_seconds / cpu_seconds are
    `time.time()` / `time.process_time()` seconds spent in the training loop,
    cumulative over invocations: a resumed run goes on from the last row.

    Args:
      directory: `<workdir>/kept_checkpoints`.
      every: keep every checkpoint whose step is a multiple of this; 0: none.
    """

    def __init__(self, directory, every):
        self.directory = pathlib.Path(directory)
        self.every = int(every)
        self.times = self.directory / "times.csv"
        rows = []
        if self.times.is_file():
            with open(self.times, newline="") as f:
                rows = list(csv.DictReader(f))
        self.kept = {int(row["step"]) for row in rows}
        self.base = (float(rows[-1]["wall_seconds"]), float(rows[-1]["cpu_seconds"])) if rows \
            else (0.0, 0.0)
        self.start_clock()

    def start_clock(self):
        """Starts counting training time (call when the training loop starts)."""
        self.started = (time.time(), time.process_time())

    def wants(self, step):
        """Whether a checkpoint must be written at `step` (the same on every worker)."""
        return self.every > 0 and step % self.every == 0

    def keep(self, step, prefix):
        """Copies the files of checkpoint `prefix` (written at `step`) if `wants(step)`."""
        if not self.wants(step) or step in self.kept:
            return
        sources = list(pathlib.Path(prefix).parent.glob(pathlib.Path(prefix).name + ".*"))
        copies = [self.directory / path.name for path in sources]

        def remove_copies():
            for copy in copies:
                copy.unlink(missing_ok=True)

        with run_files.writing(self.directory / pathlib.Path(prefix).name, "keep a copy as",
                               clean_up=remove_copies):
            self.directory.mkdir(parents=True, exist_ok=True)
            for source, copy in zip(sources, copies):
                shutil.copy2(source, copy)
        self.record_time(step)

    def record_time(self, step):
        """Appends the training time at `step` to times.csv (also for a stop between kept steps,
        so that a resumed run's clocks go on from there); rewritten atomically."""
        if step in self.kept:
            return
        now = (time.time(), time.process_time())
        text = self.times.read_bytes().decode() if self.times.is_file() else ""  # keeps \r\n
        row = io.StringIO()
        writer = csv.writer(row)
        if not text:
            writer.writerow(TIMES_HEADER)
        writer.writerow([step, f"{self.base[0] + now[0] - self.started[0]:.1f}",
                         f"{self.base[1] + now[1] - self.started[1]:.1f}", f"{now[0]:.1f}"])
        with run_files.writing(self.directory, "create"):
            self.directory.mkdir(parents=True, exist_ok=True)
        run_files.write_text(self.times, text + row.getvalue())
        self.kept.add(step)


def kept_times(directory):
    """{step: (wall seconds, cpu seconds)} of the kept checkpoints present in `directory`.

    Args:
      directory: a `<workdir>/kept_checkpoints` directory (see `KeptCheckpoints`); a
        missing one gives {}. Rows of times.csv without their checkpoint (a stop between
        kept steps) are left out.
    """
    directory = pathlib.Path(directory)
    if not (directory / "times.csv").is_file():
        return {}
    with open(directory / "times.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(r["step"]): (float(r["wall_seconds"]), float(r["cpu_seconds"])) for r in rows
            if (directory / f"ckpt-{r['step']}.index").is_file()}
