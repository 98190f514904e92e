r"""Trains, exports and evaluates one rem_tf model: flags → config → `rem_tf.experiment`.

  python run.py --config=configs/quick.py --workdir=/tmp/quick     # minutes on a CPU
  python run.py --method=rem_v2                                    # the paper's settings
  python run.py --mode=evaluate --saved_model=/tmp/quick/saved_model
  python run.py --mode=evaluate --preset=rem_v2_mnist             # a trained model of the zoo

`--config` (default configs/default.py) holds every setting, `--config.<section>.<field>=v`
overrides one, and the plain flags override the common ones (they win). The same command
again resumes the run. This file only turns flags into a config for `rem_tf.experiment`
(docs/experiments.md) and its errors into one line and an exit status: 2 for a
bad flag, value, path or file (also a workdir another run holds, or one that cannot be
written), 130 for Ctrl-C / SIGTERM, 1 for a NaN loss.
"""

import os
import pathlib
import re
import sys

# Before TensorFlow is imported anywhere: no C++ INFO / WARNING / ERROR lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402


# TensorFlow's C++ start-up lines (absl's pre-init lines ignore TF_CPP_MIN_LOG_LEVEL)
# go to /dev/null while it loads, unless the level is 0; a Python error still shows.
_stderr, _devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
    os.dup2(_devnull, 2)
try:
    import keras
    from rem_tf import data, experiment
    from rem_tf.experiment import console
finally:
    os.dup2(_stderr, 2)
    os.close(_devnull)

_CONFIG_ARG = re.compile(r"^--?config(=|$)")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (ml_collections, get_config()), default configs/default.py; "
    "override fields with --config.x.y=value.", lock_config=True)
flags.DEFINE_string("method", None, "Method: a key of rem_tf.METHODS (config.method).")
flags.DEFINE_string("dataset", None,
                    "binarized_mnist | mnist | omniglot | tfds:<TFDS image dataset> "
                    "(config.data.name); your own images: --config.data.source=npz "
                    "--config.data.path=FILE.npz.")
flags.DEFINE_string("workdir", None,
                    "Run directory (config.workdir); default runs/<config>-<method>-<dataset>.")
flags.DEFINE_integer("epochs", None, "Training epochs (config.training.epochs).")
flags.DEFINE_integer("num_particles", None,
                     "K particles per image in training (config.training.num_particles).")
flags.DEFINE_integer("batch_size", None,
                     "Global batch size, split over the replicas (config.training.batch_size).")
flags.DEFINE_enum("strategy", None, experiment.config.STRATEGIES,
                  "tf.distribute strategy (config.distribute.strategy).")
_MODE = flags.DEFINE_enum("mode", "train_and_evaluate", experiment.config.MODES, "What to do.")
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None,
    "--mode=evaluate: a SavedModel directory or a .keras file; default <workdir>/saved_model.")
_PRESET = flags.DEFINE_string(
    "preset", None, "--mode=evaluate: a preset's name (rem_tf.presets.list()) or directory.")
_EXIT_AFTER_STEP = flags.DEFINE_integer(
    "testing_exit_after_step", None,
    "Testing only: die abruptly (os._exit, no clean-up, like a kill) after this optimizer step.")


class _ExitAfterStep(keras.callbacks.Callback):
    """--testing_exit_after_step: exit 3 after that step, with no clean-up (like a kill)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.step:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)


def _fail(message, status=2):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def parse_flags(argv):
    """absl's parser; a missing config file or an unknown --config.x field is one line, exit 2.
    (The default --config goes into argv: ml_collections reads it here, not at its definition.)"""
    if not any(_CONFIG_ARG.match(arg) for arg in argv[1:]):
        argv = [argv[0], f"--config={experiment.config.DEFAULT_CONFIG_FILE}", *argv[1:]]
    path = next(a.split("=", 1)[-1] for a in argv[1:] if _CONFIG_ARG.match(a))
    try:  # absl's own two-line message and exit 1 for a bad plain flag (e.g. --epochs=abc)
        rest = app.parse_flags_with_usage(argv)
    except OSError:  # the config file is missing, and overrides were given
        rest = None
    except (KeyError, AttributeError) as err:
        if "get_config" in str(err):
            _fail(f"cannot load the config file {path!r} (--config): it has no get_config(); "
                  "give a .py file with get_config(), e.g. --config=configs/quick.py")
        field = (re.findall(r"'(\w+)", str(err)) or ["?"])[0]
        given = [a.split("=")[0] for a in argv if re.match(r"--?(no)?config\.", a)]
        flag = next((a for a in given if field in a.split(".")[1:]), "--config.?")
        hint = re.findall(r'Did you mean "(\w+)"', str(err))
        _fail(f"unknown config field {field!r} in {flag}" + (f"; did you mean {hint[0]!r}?"
              if hint else "; see the fields in configs/default.py"))
    except Exception as err:  # noqa: BLE001 - the config file's own code failed to run
        message = " ".join(f"{type(err).__name__}: {err}".split())
        _fail(f"cannot load the config file {path!r} (--config): {message}")
    if rest is None or not isinstance(_CONFIG.value, ml_collections.ConfigDict):
        what = ("no such file" if not os.path.exists(path) else "it is a directory"
                if os.path.isdir(path) else "its get_config() did not return an "
                f"ml_collections.ConfigDict (got {type(_CONFIG.value).__name__})"
                if rest is not None and not type(_CONFIG.value).__name__.startswith("_Error")
                else "it could not be read")
        _fail(f"cannot load the config file {path!r} (--config): {what}; give a .py "
              "file with get_config(), e.g. --config=configs/quick.py")
    return rest


def config_from_flags():
    """The --config file's config with the --config.x overrides, then the plain flags (they win)."""
    given = {path: flags.FLAGS[name].value for path, name in experiment.config.PLAIN_FLAGS.items()}
    _CONFIG.value.update_from_flattened_dict({k: v for k, v in given.items() if v is not None})
    return _CONFIG.value


def _data_was_chosen():
    """--dataset, --config or --config.data.*: evaluate on those data, not the model's own."""
    return (flags.FLAGS.dataset is not None or any(_CONFIG_ARG.match(a) for a in sys.argv[1:])
            or any(str(key).startswith("data.")
                   for key in config_flags.get_override_values(flags.FLAGS["config"])))


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}; flags take the form --name=value "
              "(python run.py --help lists them)")
    console.quiet_library_logs()
    config, mode = config_from_flags(), _MODE.value
    if _PRESET.value is not None and mode != "evaluate":
        _fail("--preset needs --mode=evaluate (to go on training a preset, use "
              "rem_tf.from_preset(name).fit in Python)")
    try:
        if mode == "evaluate":
            chosen = _data_was_chosen()
            experiment.evaluate(config, _SAVED_MODEL.value, preset=_PRESET.value,
                                data_from_model=not chosen)
            return 0
        if config.workdir is None:
            stem = pathlib.Path(config_flags.get_config_filename(flags.FLAGS["config"])).stem
            label = pathlib.Path(experiment.builders.data_label(config)).stem
            config.workdir = f"runs/{stem}-{config.method}-{label.replace(':', '_')}"
        steps = _EXIT_AFTER_STEP.value
        run = experiment.train if mode == "train" else experiment.train_and_evaluate
        run(config, extra_callbacks=[_ExitAfterStep(steps)] if steps is not None else [])
    except (experiment.ConfigError, data.DataError) as err:
        _fail(err)
    except experiment.TrainingDiverged as err:
        _fail(err, status=1)
    except experiment.Interrupted as err:
        print(f"\n{err}", file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:  # before training began: nothing was changed
        print("\nInterrupted; run the same command to start again.", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
