r"""Trains, exports and evaluates one rem_tf model: flags → config → objects.

  python run.py --config=configs/quick.py --workdir=/tmp/quick     # minutes on a CPU
  python run.py --method=rem_v2                                    # the paper's settings
  python run.py --config=configs/default.py --config.training.num_particles=100
  python run.py --mode=evaluate --saved_model=/tmp/quick/saved_model

The config file (`--config`, default `configs/default.py`) holds every setting;
`--config.<section>.<field>=value` overrides one, and the plain flags below
override the most common ones (they win over `--config.*`). Re-running the
same command with the same `--workdir` resumes from the last checkpoint, even
after a kill in the middle of an epoch. The README (section "Experiments:
run.py") describes the run directory, strategies and the exported SavedModel.

No model math here: the library (`rem_tf`) holds it; this file only turns
flags into a config and the config into data, a strategy, a model, `fit`, an
export and an evaluation.
"""

import contextlib
import csv
import hashlib
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Before TensorFlow is imported anywhere: no C++ INFO / WARNING lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent
MODES = ("train", "evaluate", "train_and_evaluate")
STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "sgd")
# Config fields that may change when a run directory is resumed; any other
# difference from the stored config.json is an error.
RESUMABLE_CHANGES = (
    "workdir",
    "training.epochs",
    "training.checkpoint_every_steps",
    "training.steps_per_execution",
    "training.jit_compile",
    "data.data_dir",
    "distribute.",
    "evaluation.",
)

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    str(REPO / "configs" / "default.py"),
    "Config file (ml_collections, get_config()); override fields with --config.x.y=value.",
    lock_config=True,
)
_METHOD = flags.DEFINE_string("method", None, "Method: a key of rem_tf.METHODS (config.method).")
_DATASET = flags.DEFINE_string(
    "dataset", None, "binarized_mnist | mnist | omniglot (config.data.name)."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (config.workdir); default runs/<config>-<method>-<dataset>."
)
_EPOCHS = flags.DEFINE_integer("epochs", None, "Training epochs (config.training.epochs).")
_NUM_PARTICLES = flags.DEFINE_integer(
    "num_particles", None, "K particles per image in training (config.training.num_particles)."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Global batch size, split over the replicas (config.training.batch_size)."
)
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, STRATEGIES, "tf.distribute strategy (config.distribute.strategy)."
)
_MODE = flags.DEFINE_enum("mode", "train_and_evaluate", MODES, "What to do.")
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model",
    None,
    "--mode=evaluate: a SavedModel directory or a .keras file; default <workdir>/saved_model.",
)
_EXIT_AFTER_STEP = flags.DEFINE_integer(
    "testing_exit_after_step",
    None,
    "Testing only: die abruptly (os._exit, no clean-up, like a kill) after this optimizer step.",
)


class UserError(Exception):
    """A bad flag, config value, path or input: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- config


def _get(config, path):
    for key in path.split("."):
        config = config[key]
    return config


def _set(config, path, value):
    *parents, last = path.split(".")
    for key in parents:
        config = config[key]
    config[last] = value


def apply_plain_flags(config):
    """Copies the plain flags that were given into the config (they win)."""
    for path, flag in [
        ("method", _METHOD),
        ("data.name", _DATASET),
        ("workdir", _WORKDIR),
        ("training.epochs", _EPOCHS),
        ("training.num_particles", _NUM_PARTICLES),
        ("training.batch_size", _BATCH_SIZE),
        ("distribute.strategy", _STRATEGY),
    ]:
        if flag.value is not None:
            _set(config, path, flag.value)
    return config


def check_config(config, mode):
    """Checks that need no TensorFlow; raises UserError naming the field and flag."""

    def need(ok, path, rule, flag=None):
        if not ok:
            where = f"{path} (--{flag})" if flag else path
            raise UserError(f"{where} {rule}, got {_get(config, path)!r}")

    for path in ("evaluation.num_samples", "evaluation.chunk_size", "evaluation.batch_size",
                 "evaluation.elbo_samples"):
        need(int(_get(config, path)) >= 1, path, "must be >= 1")
    need(config.evaluation.num_examples is None or config.evaluation.num_examples >= 1,
         "evaluation.num_examples", "must be >= 1 or None")
    need(config.distribute.strategy in STRATEGIES, "distribute.strategy",
         f"must be one of {', '.join(STRATEGIES)}", "strategy")
    need(config.distribute.num_cpu_devices >= 0, "distribute.num_cpu_devices", "must be >= 0")
    if mode == "evaluate":
        return
    need(config.training.num_particles >= 1, "training.num_particles", "must be >= 1",
         "num_particles")
    need(config.training.batch_size >= 1, "training.batch_size", "must be >= 1", "batch_size")
    need(config.training.epochs >= 1, "training.epochs", "must be >= 1", "epochs")
    need(config.training.learning_rate > 0, "training.learning_rate", "must be > 0")
    need(config.training.optimizer in OPTIMIZERS, "training.optimizer",
         f"must be one of {', '.join(OPTIMIZERS)}")
    need(config.training.schedule in ("burda", "constant"), "training.schedule",
         "must be burda or constant")
    need(config.training.steps_per_execution >= 1, "training.steps_per_execution", "must be >= 1")
    need(config.training.checkpoint_every_steps >= 1, "training.checkpoint_every_steps",
         "must be >= 1")
    need(config.model.latent_dim >= 1, "model.latent_dim", "must be >= 1")
    need(0 < config.model.output_bias_clip < 0.5, "model.output_bias_clip", "must be in (0, 0.5)")


def check_names(config, mode):
    """Checks against what the library offers (imports rem_tf, i.e. TensorFlow)."""
    import rem_tf  # noqa: PLC0415
    from rem_tf import data  # noqa: PLC0415

    if config.data.name not in data.NAMES:
        raise UserError(
            f"unknown dataset {config.data.name!r} (--dataset / config.data.name); "
            f"valid: {', '.join(data.NAMES)}"
        )
    # Defaults that depend on the data set (config.json stores the resolved values).
    if config.data.source is None:
        config.data.source = "tfds" if config.data.name == "binarized_mnist" else "auto"
    if config.data.train_split is None:
        splits = data.info(config.data.name)
        config.data.train_split = "train+validation" if "validation" in splits else "train"
    if config.data.source not in data.SOURCES:
        raise UserError(
            f"unknown data source {config.data.source!r} (config.data.source); "
            f"valid: {', '.join(data.SOURCES)}"
        )
    for path in ("data.train_binarization", "data.eval_binarization"):
        value = _get(config, path)
        if value is not None and value not in data.BINARIZATIONS:
            raise UserError(
                f"unknown binarization {value!r} ({path}); valid: "
                f"{', '.join(data.BINARIZATIONS)} or None"
            )
    if mode == "evaluate":
        return
    if config.method not in rem_tf.METHODS:
        raise UserError(
            f"unknown method {config.method!r} (--method / config.method); "
            f"valid: {', '.join(sorted(rem_tf.METHODS))}"
        )
    needed = rem_tf.METHODS[config.method].min_particles
    if config.training.num_particles < needed:
        raise UserError(
            f"{config.method} needs num_particles >= {needed} (--num_particles / "
            f"config.training.num_particles), got {config.training.num_particles}"
        )


def default_workdir(config):
    stem = pathlib.Path(config_flags.get_config_filename(flags.FLAGS["config"])).stem
    return str(pathlib.Path("runs") / f"{stem}-{config.method}-{config.data.name}")


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def check_resumable(stored, config):
    """Raises UserError if the stored config of a run directory differs in a way that matters."""
    old, new = _flatten(stored), _flatten(json.loads(config.to_json()))
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
        and not any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES)
    ]
    if changed:
        raise UserError(
            f"the run directory {config.workdir} holds a run with another config "
            f"({'; '.join(changed)}); use a new --workdir, or the same settings to resume"
        )


# --------------------------------------------------------------------- TF objects


def _quiet_tensorflow_logs():
    """Drops TensorFlow's and Keras's own INFO lines (one per checkpoint write, …), keeps ours."""
    import logging as python_logging  # noqa: PLC0415

    def only_warnings_from_libraries(record):
        path = record.pathname.replace(os.sep, "/")
        return record.levelno >= python_logging.WARNING or not any(
            f"/{name}/" in path for name in ("tensorflow", "keras", "tensorflow_probability")
        )

    for logger in (logging.get_absl_logger(), python_logging.getLogger("tensorflow")):
        if only_warnings_from_libraries not in logger.filters:
            logger.addFilter(only_warnings_from_libraries)


def make_strategy(config):
    """The tf.distribute strategy named by config.distribute.strategy."""
    import tensorflow as tf  # noqa: PLC0415

    name = config.distribute.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        count = config.distribute.num_cpu_devices
        if gpus or count <= 1:
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError as err:  # pragma: no cover - TF initialized too early
            raise UserError(f"cannot split the CPU into {count} devices: {err}") from None
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(count)])
    # multi_worker: the cluster comes from TF_CONFIG.
    if "TF_CONFIG" in os.environ:
        try:
            spec = json.loads(os.environ["TF_CONFIG"])
            valid = isinstance(spec.get("cluster"), dict) and {"type", "index"} <= set(spec["task"])
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise UserError(
                f"TF_CONFIG is not valid: {os.environ['TF_CONFIG']!r}; expected JSON like "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
    else:
        logging.warning("--strategy=multi_worker without TF_CONFIG: one local worker.")
    return tf.distribute.MultiWorkerMirroredStrategy()  # rem_tf's fit patches a Keras bug


def output_bias(config):
    """Logit of the training pixel means (Burda et al.), or None; [D] float32."""
    if not config.model.output_bias_from_data:
        return None
    import numpy as np  # noqa: PLC0415

    from rem_tf import data  # noqa: PLC0415

    images = data.load_array(
        config.data.name, config.data.train_split, source=config.data.source,
        data_dir=config.data.data_dir,
    )  # [N, 28, 28, 1] intensities in [0, 1]: the mean of a dynamic binarization
    if config.data.train_binarization == "threshold":
        images = (images > 0.5).astype(np.float32)
    clip = config.model.output_bias_clip
    mean = np.clip(images.reshape(len(images), -1).mean(0, dtype=np.float64), clip, 1 - clip)
    return np.log(mean / (1 - mean)).astype(np.float32)


def build_model(config, decoder_output_bias, input_shape=(28, 28, 1)):
    """The model of config.method, built in the current strategy scope."""
    import rem_tf  # noqa: PLC0415

    try:
        return rem_tf.build_model(
            config.method,
            latent_dim=config.model.latent_dim,
            hidden_units=tuple(config.model.hidden_units),
            num_particles=config.training.num_particles,
            input_shape=input_shape,
            covariance=config.model.covariance,
            seed=config.seed,
            ridge=config.model.ridge,
            activation=config.model.activation,
            scale_activation=config.model.scale_activation,
            decoder_output_bias=decoder_output_bias,
        )
    except ValueError as err:
        raise UserError(f"cannot build the model: {err}") from None


def make_optimizer(config, steps_per_epoch):
    """One optimizer (Adam or SGD) with the configured learning-rate schedule."""
    import keras  # noqa: PLC0415

    from rem_tf import schedules  # noqa: PLC0415

    rate = schedules.make_schedule(
        config.training.schedule, config.training.learning_rate, steps_per_epoch
    )
    if config.training.optimizer == "sgd":
        return keras.optimizers.SGD(rate)
    return keras.optimizers.Adam(
        rate,
        beta_1=config.training.adam_beta_1,
        beta_2=config.training.adam_beta_2,
        epsilon=config.training.adam_epsilon,
    )


def compile_model(model, config, steps_per_epoch):
    """Compiles with two optimizers (decoder θ, encoder η), same kind and schedule."""
    model.compile(
        model_optimizer=make_optimizer(config, steps_per_epoch),
        proposal_optimizer=make_optimizer(config, steps_per_epoch),
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )


def epoch_seed(seed, epoch):
    """The data seed of one epoch: a function of (seed, epoch) only."""
    import numpy as np  # noqa: PLC0415

    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


def train_dataset(config, batch_size, epoch=0, offset=0):
    """The shuffled, binarized batches of one epoch, from batch `offset` on.

    Each epoch is a fresh pipeline seeded by `epoch_seed(seed, epoch)`, so its
    batches depend on (seed, epoch) alone — not on how many epochs, restarts or
    iterators came before (Keras peeks at one batch of a fresh iterator under a
    distribution strategy): a run resumed at (epoch, offset) sees exactly the
    batches an uninterrupted run sees there.

    Returns:
      (dataset, batches in a whole epoch).
    """
    import tensorflow as tf  # noqa: PLC0415

    from rem_tf import data  # noqa: PLC0415

    dataset = data.load(
        config.data.name, config.data.train_split, source=config.data.source,
        binarization=config.data.train_binarization, data_dir=config.data.data_dir,
        batch_size=batch_size, shuffle=True, seed=epoch_seed(config.seed, epoch),
        drop_remainder=True,
    )
    steps_per_epoch = int(dataset.cardinality())
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.skip(offset).with_options(options), steps_per_epoch


def eval_images(config):
    """The evaluation split as a float32 array [N, 28, 28, 1] of binary images."""
    import numpy as np  # noqa: PLC0415

    from rem_tf import data  # noqa: PLC0415

    dataset = data.load(
        config.data.name, config.evaluation.split, source=config.data.source,
        binarization=config.data.eval_binarization, data_dir=config.data.data_dir,
        batch_size=1000, shuffle=False,
    )
    images = np.concatenate(list(dataset.as_numpy_iterator()))
    if config.evaluation.num_examples is not None:
        images = images[: config.evaluation.num_examples]
    return images


# ------------------------------------------------------------------ checkpoints


def _named(variables, strip_prefix=False):
    """{name: variable}; optimizer variable paths lose their (process-dependent) prefix."""
    out = {}
    for variable in variables:
        name = variable.path.split("/", 1)[1] if strip_prefix else variable.path
        if name in out:
            raise ValueError(f"two variables named {name!r}")
        out[name] = variable
    return out


def training_checkpoint(model, metrics=True):
    """A tf.train.Checkpoint of everything that determines the rest of a run.

    Weights and the particle seed state (`model.variables`), both optimizers'
    states (`iterations`, Adam moments) and, for a restart in the middle of an
    epoch, the running metric totals.
    """
    import tensorflow as tf  # noqa: PLC0415

    parts = {
        "model": _named(model.variables),
        "model_optimizer": _named(model.optimizer.variables, strip_prefix=True),
        "proposal_optimizer": _named(model.proposal_optimizer.variables, strip_prefix=True),
    }
    if metrics:
        parts["metrics"] = _named(model.metrics_variables)
    return tf.train.Checkpoint(**parts)


def metrics_checkpoint(model):
    import tensorflow as tf  # noqa: PLC0415

    return tf.train.Checkpoint(metrics=_named(model.metrics_variables))


def epoch_plan(start_step, steps_per_epoch, epochs):
    """[(epoch, first batch)] of the epochs left after optimizer step `start_step`.

    A restart in the middle of epoch e finishes it from the batch where it
    stopped, then runs whole epochs; one `fit` call per epoch.
    """
    epoch, offset = divmod(int(start_step), int(steps_per_epoch))
    return [(e, offset if e == epoch else 0) for e in range(epoch, int(epochs))]


def _callback_base():
    import keras  # noqa: PLC0415

    return keras.callbacks.Callback


class _Callbacks:
    """Builds the callbacks lazily (keras is imported only once TF is needed)."""

    @staticmethod
    def learning_rate(rate):
        class LearningRateLogger(_callback_base()):
            """Adds the learning rate of the epoch's last step to the logs (CSV, TensorBoard)."""

            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    step = max(int(self.model.optimizer.iterations.numpy()) - 1, 0)
                    logs["learning_rate"] = float(rate(step) if callable(rate) else rate)

        return LearningRateLogger()

    @staticmethod
    def checkpoints(manager, every_steps, restore_metrics_from=None):
        class Checkpoints(_callback_base()):
            """Saves every `every_steps` optimizer steps and at the end of every epoch."""

            def __init__(self):
                super().__init__()
                self.last_saved = None
                self.restore_metrics_from = restore_metrics_from

            def step(self):
                return int(self.model.optimizer.iterations.numpy())

            def save(self):
                step = self.step()
                if step != self.last_saved:
                    manager.save(checkpoint_number=step)
                    self.last_saved = step

            def on_train_begin(self, logs=None):
                if self.last_saved is None:
                    self.last_saved = self.step()

            def on_epoch_begin(self, epoch, logs=None):
                # `fit` has just reset the metrics: put back the running totals
                # of a restart in the middle of this epoch.
                if self.restore_metrics_from:
                    metrics_checkpoint(self.model).read(self.restore_metrics_from).expect_partial()
                    self.restore_metrics_from = None

            def on_train_batch_end(self, batch, logs=None):
                if self.step() - self.last_saved >= every_steps:
                    self.save()

            def on_epoch_end(self, epoch, logs=None):
                self.save()

        return Checkpoints()

    @staticmethod
    def csv_log(path):
        class CsvLog(_callback_base()):
            """Appends one row per epoch (epoch, then the logs' keys, sorted) to `path`."""

            def on_epoch_end(self, epoch, logs=None):
                logs = dict(logs or {})
                new = not path.is_file() or path.stat().st_size == 0
                with open(path, "a", newline="") as f:
                    writer = csv.writer(f)
                    if new:
                        writer.writerow(["epoch", *sorted(logs)])
                    writer.writerow([epoch, *(f"{float(logs[k]):.9g}" for k in sorted(logs))])

        return CsvLog()

    @staticmethod
    def scalars(logdir):
        import tensorflow as tf  # noqa: PLC0415
        from tensorflow.core.framework import summary_pb2  # noqa: PLC0415

        metadata = summary_pb2.SummaryMetadata(data_class=summary_pb2.DATA_CLASS_SCALAR)
        metadata.plugin_data.plugin_name = "scalars"

        class EpochScalars(_callback_base()):
            """TensorBoard scalars of every epoch's logs, step = epoch number (1-based).

            Written with TensorFlow's own summary ops (the `tensorboard` package is
            needed only to view them, not to write them).
            """

            def __init__(self):
                super().__init__()
                self.writer = None

            def on_train_begin(self, logs=None):
                if self.writer is None:
                    self.writer = tf.summary.create_file_writer(str(logdir))

            def on_epoch_end(self, epoch, logs=None):
                with self.writer.as_default():
                    for name, value in (logs or {}).items():
                        tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32),
                                         step=epoch + 1, metadata=metadata)
                self.writer.flush()

        return EpochScalars()

    @staticmethod
    def exit_after(step):
        class ExitAfterStep(_callback_base()):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations.numpy()) >= step:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(3)  # a kill: no clean-up, no flush of anything else

        return ExitAfterStep()

    @staticmethod
    def one_epoch():
        class OneEpoch(_callback_base()):
            """Ends `fit` after one epoch (each epoch gets its own pipeline)."""

            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = True

        return OneEpoch()

    @staticmethod
    def last_logs():
        class LastLogs(_callback_base()):
            def __init__(self):
                super().__init__()
                self.logs = {}
                self.epochs = None

            def on_epoch_end(self, epoch, logs=None):
                self.logs = dict(logs or {})
                self.epochs = epoch + 1

        return LastLogs()


class _Interrupted(Exception):
    """SIGTERM: saved and stopped like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise _Interrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _truncate_csv(path, first_epoch):
    """Drops rows of epochs >= first_epoch (logged before a crash, about to be redone)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    if "epoch" not in header:
        return
    column = header.index("epoch")
    kept = [row for row in body if row and int(row[column]) < first_epoch]
    if len(kept) != len(body):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])


# ------------------------------------------------------------------ run directory


def versions():
    """Versions of Python and the packages a result depends on, and the git commit."""
    import importlib.metadata as metadata  # noqa: PLC0415

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for key, dist in [
        ("tensorflow", "tensorflow"), ("keras", "keras"),
        ("tensorflow_probability", "tensorflow-probability"),
        ("tensorflow_datasets", "tensorflow-datasets"), ("numpy", "numpy"),
        ("ml_collections", "ml-collections"), ("absl", "absl-py"), ("rem_tf", "rem_tf"),
    ]:
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    if out["tensorflow"] is None:
        import tensorflow as tf  # noqa: PLC0415

        out["tensorflow"] = tf.__version__
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        out["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def _write_json(path, value):
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def weights_fingerprint(model):
    """sha256 of all weights (and the seed state) and the sum of their absolute values."""
    import numpy as np  # noqa: PLC0415

    digest = hashlib.sha256()
    total = 0.0
    for weight in model.get_weights():
        weight = np.ascontiguousarray(weight)
        digest.update(weight.tobytes())
        total += float(np.abs(weight.astype(np.float64)).sum())
    return digest.hexdigest(), total


# ------------------------------------------------------------------------ train


def train(config, mode):
    """Trains (resuming from the workdir's checkpoint), exports; returns the SavedModel path."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    strategy = make_strategy(config)
    replicas = strategy.num_replicas_in_sync
    is_chief = strategy.extended.should_checkpoint
    batch = config.training.batch_size
    if batch % replicas:
        raise UserError(
            f"batch size {batch} (--batch_size / config.training.batch_size, the global batch) "
            f"is not divisible by the {replicas} replicas of the {config.distribute.strategy} "
            "strategy"
        )
    workdir = pathlib.Path(config.workdir)
    stored_config = workdir / "config.json"
    if stored_config.is_file():
        check_resumable(json.loads(stored_config.read_text()), config)
    # Non-chief workers write their (unused) files to a scratch directory.
    scratch = None if is_chief else pathlib.Path(tempfile.mkdtemp(prefix="rem_tf_worker_"))
    own_dir = workdir if is_chief else scratch
    own_dir.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(config.seed)
    bias = output_bias(config)
    _, steps_per_epoch = train_dataset(config, batch)
    if steps_per_epoch < 1:
        raise UserError(
            f"the {config.data.train_split} split of {config.data.name} has fewer images than "
            f"one batch ({batch})"
        )
    spe = config.training.steps_per_execution
    if steps_per_epoch % spe:
        raise UserError(
            f"training.steps_per_execution ({spe}) must divide the steps per epoch "
            f"({steps_per_epoch})"
        )
    total_steps = steps_per_epoch * config.training.epochs
    with strategy.scope():
        model = build_model(config, bias)
        compile_model(model, config, steps_per_epoch)

    checkpoint = training_checkpoint(model)
    manager = tf.train.CheckpointManager(checkpoint, str(own_dir / "checkpoints"), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    start_step = 0
    if latest:
        try:
            checkpoint.read(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            raise UserError(
                f"cannot resume from {latest}: it does not match this model ({err}); "
                "use a new --workdir"
            ) from None
        start_step = int(model.optimizer.iterations.numpy())
        if start_step % spe:
            raise UserError(
                f"training.steps_per_execution ({spe}) must divide the resumed step {start_step}"
            )
        logging.info("Resuming %s from step %d (epoch %d, step %d of %d).", latest, start_step,
                     start_step // steps_per_epoch + 1, start_step % steps_per_epoch,
                     steps_per_epoch)
    if is_chief:
        _write_json(workdir / "config.json", json.loads(config.to_json()))
        _write_json(workdir / "versions.json", versions())
        _write_json(workdir / "run.json", {
            "command": sys.argv, "mode": mode, "strategy": config.distribute.strategy,
            "num_replicas": replicas, "global_batch_size": batch,
            "per_replica_batch_size": batch // replicas, "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps, "resumed_from_step": start_step,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
    logging.info(
        "%s on %s: %d replica(s), global batch %d (%d per replica), %d steps per epoch, "
        "%d epochs, workdir %s", config.method, config.data.name, replicas, batch,
        batch // replicas, steps_per_epoch, config.training.epochs, workdir,
    )

    last_logs = _Callbacks.last_logs()
    restore_metrics = latest if start_step % steps_per_epoch else None
    from rem_tf import schedules  # noqa: PLC0415

    rate = schedules.make_schedule(
        config.training.schedule, config.training.learning_rate, steps_per_epoch
    )
    callbacks = [_Callbacks.learning_rate(rate), last_logs, _Callbacks.one_epoch()]
    if is_chief:
        _truncate_csv(workdir / "train_log.csv", start_step // steps_per_epoch)
        callbacks += [
            _Callbacks.csv_log(workdir / "train_log.csv"),
            _Callbacks.scalars(workdir / "tensorboard" / "train"),
        ]
    saver = _Callbacks.checkpoints(manager, config.training.checkpoint_every_steps, restore_metrics)
    callbacks.append(saver)
    if _EXIT_AFTER_STEP.value is not None:
        callbacks.append(_Callbacks.exit_after(_EXIT_AFTER_STEP.value))
    saver.set_model(model)  # also used outside `fit` (finished run, Ctrl-C)
    verbose = (1 if sys.stdout.isatty() else 2) if is_chief else 0

    started = time.time()
    try:
        with _sigterm_as_interrupt():
            for epoch, offset in epoch_plan(start_step, steps_per_epoch, config.training.epochs):
                dataset, _ = train_dataset(config, batch, epoch, offset)
                # epochs=E and a stop after this one: the progress bar reads "Epoch e/E".
                model.fit(
                    dataset, initial_epoch=epoch, epochs=config.training.epochs,
                    steps_per_epoch=steps_per_epoch - offset, callbacks=callbacks,
                    verbose=verbose, shuffle=False,
                )
    except (KeyboardInterrupt, _Interrupted):
        if config.distribute.strategy != "multi_worker":
            saver.save()
            print(
                f"\nInterrupted at step {saver.last_saved}; checkpoint saved in "
                f"{own_dir / 'checkpoints'}. Run the same command to resume.",
                file=sys.stderr,
            )
        sys.exit(130)
    step = int(model.optimizer.iterations.numpy())
    saver.save()
    digest, abs_sum = weights_fingerprint(model)
    task = "chief" if is_chief else f"worker {strategy.cluster_resolver.task_id}"
    print(f"[{task}] finished at step {step}: weights sha256 {digest} sum|w| {abs_sum:.9g}",
          flush=True)
    if not is_chief:
        shutil.rmtree(scratch, ignore_errors=True)
        return None

    summary = {
        "global_step": step, "epochs": config.training.epochs,
        "steps_per_epoch": steps_per_epoch, "resumed_from_step": start_step,
        "final_epoch_metrics": last_logs.logs, "weights_sha256": digest,
        "weights_abs_sum": abs_sum, "train_seconds_this_invocation": time.time() - started,
    }
    _write_json(workdir / "train_summary.json", summary)
    return export_artifacts(model, config, bias, workdir, summary)


def export_artifacts(model, config, bias, workdir, summary):
    """Writes <workdir>/model.keras and <workdir>/saved_model from a plain copy of the model."""
    from rem_tf import export  # noqa: PLC0415

    # A copy outside any strategy: plain variables, no collectives, same values
    # (weights and particle seed state).
    plain = build_model(config, bias)
    for target, source in zip(plain.variables, model.variables, strict=True):
        if target.path != source.path or tuple(target.shape) != tuple(source.shape):
            raise RuntimeError(f"variable mismatch: {target.path} vs {source.path}")
        target.assign(source.numpy())
    # Compiled so that the .keras file holds both optimizers' states; the
    # learning rate is stored as the constant reached at the end (the schedule
    # is in config.json), so the file loads with Keras and rem_tf alone.
    final_rate = float(model.optimizer.learning_rate.numpy())
    constant = config.copy_and_resolve_references()
    with constant.unlocked():
        constant.training.schedule, constant.training.learning_rate = "constant", final_rate
    compile_model(plain, constant, steps_per_epoch=1)
    for trained, fresh in [(model.optimizer, plain.optimizer),
                           (model.proposal_optimizer, plain.proposal_optimizer)]:
        sources = _named(trained.variables, strip_prefix=True)
        for name, target in _named(fresh.variables, strip_prefix=True).items():
            if name in sources:
                target.assign(sources[name].numpy())
    keras_path = workdir / "model.keras"
    tmp = workdir / ".model.tmp.keras"
    plain.save(str(tmp))
    os.replace(tmp, keras_path)
    saved = export.export(
        plain, workdir / "saved_model", chunk_size=config.evaluation.chunk_size,
        elbo_samples=config.evaluation.elbo_samples,
        metadata={
            "method": config.method, "config": json.loads(config.to_json()),
            "versions": versions(), "global_step": summary["global_step"],
        },
    )
    logging.info("Exported %s and %s.", keras_path, saved)
    return saved


# --------------------------------------------------------------------- evaluate


def _stored_config(path):
    """The training config stored with a SavedModel (metadata) or next to a .keras file."""
    from rem_tf import export  # noqa: PLC0415

    path = pathlib.Path(path)
    if path.is_dir():
        return export.metadata(path).get("config")
    candidate = path.parent / "config.json"
    return json.loads(candidate.read_text()) if candidate.is_file() else None


def _data_was_chosen():
    if _DATASET.value is not None or _CONFIG.present:
        return True
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    return any(str(key).startswith("data.") for key in overrides)


def resolve_model_path(config):
    """The --saved_model path (or <workdir>/saved_model); checked before TF is imported."""
    path = _SAVED_MODEL.value
    if path is None:
        if config.workdir is None:
            raise UserError(
                "--mode=evaluate needs --saved_model=DIR (or a .keras file) or --workdir"
            )
        path = str(pathlib.Path(config.workdir) / "saved_model")
    path = pathlib.Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{path} is a directory but not a SavedModel (no saved_model.pb)")
    elif path.suffix == ".keras":
        if not path.is_file():
            raise UserError(f"no .keras file at {path}")
    else:
        raise UserError(f"no SavedModel directory or .keras file at {path}")
    return path


def evaluate(config, path, out_dir):
    """Evaluates the SavedModel / .keras file at `path` and writes <out_dir>/eval_<split>.json."""
    import keras  # noqa: PLC0415

    from rem_tf import evaluation, export  # noqa: PLC0415

    if path.is_dir():
        model = export.load(path)
        info = export.metadata(path)
        input_shape = tuple(info.get("input_shape", (28, 28, 1)))
        chunk_size, elbo_samples = info.get("chunk_size"), info.get("elbo_samples")
    else:
        import rem_tf  # noqa: F401, PLC0415 - registers the classes

        model = keras.models.load_model(str(path), compile=False)
        input_shape = tuple(model.image_shape)
        chunk_size, elbo_samples = config.evaluation.chunk_size, config.evaluation.elbo_samples
    images = eval_images(config)
    if tuple(images.shape[1:]) != input_shape:
        raise UserError(
            f"the model at {path} takes images of shape {input_shape}, the "
            f"{config.data.name} data has {tuple(images.shape[1:])}"
        )
    started, reported = time.time(), [0.0]

    def progress(done, total):
        if done == total or done / total >= reported[0] + 0.1:
            reported[0] = done / total
            logging.info("evaluated %d / %d images (%.0f s)", done, total, time.time() - started)

    logging.info("Evaluating %s on %s/%s (%d images) with K = %d.", path, config.data.name,
                 config.evaluation.split, len(images), config.evaluation.num_samples)
    results = evaluation.evaluate(
        model, images, num_samples=config.evaluation.num_samples,
        chunk_size=config.evaluation.chunk_size, batch_size=config.evaluation.batch_size,
        elbo_samples=config.evaluation.elbo_samples,
        active_units_threshold=config.evaluation.active_units_threshold, progress=progress,
    )
    results.update({
        "model": str(path), "dataset": config.data.name, "split": config.evaluation.split,
        "source": config.data.source, "binarization": config.data.eval_binarization,
        "chunk_size": chunk_size, "elbo_samples": elbo_samples,
    })
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"eval_{config.evaluation.split}.json"
    _write_json(out, results)
    title = f"{config.data.name}/{config.evaluation.split}: {path}"
    print(evaluation.format_table(results, title=title), flush=True)
    print(f"Wrote {out}", flush=True)
    return results


# ------------------------------------------------------------------------- main


def run(config, mode):
    _quiet_tensorflow_logs()
    apply_plain_flags(config)
    check_config(config, mode)
    if mode == "evaluate":
        path = resolve_model_path(config)
        out_dir = config.workdir or path.parent  # never inside the SavedModel itself
        stored = _stored_config(path)  # imports TF
        if stored and not _data_was_chosen():
            for key, value in stored.get("data", {}).items():
                if key in config.data:
                    config.data[key] = value
        check_names(config, mode)
        evaluate(config, path, out_dir)
        return
    if config.workdir is None:
        config.workdir = default_workdir(config)
    check_names(config, mode)  # imports TF
    saved = train(config, mode)
    if saved is not None and mode == "train_and_evaluate":
        evaluate(config, pathlib.Path(saved), config.workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        run(_CONFIG.value, _MODE.value)
    except UserError as err:
        _fail(err)
    except Exception as err:  # data errors (rem_tf.data.DataError) are user errors too
        data = sys.modules.get("rem_tf.data")
        if data is not None and isinstance(err, data.DataError):
            _fail(err)
        raise


def _fail(err):
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
    app.run(main)
