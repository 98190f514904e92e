r"""The command line: flags → config → `rem_tf.experiment`, errors → one line and an exit status.

  rem-tf --config=configs/quick.py --workdir=/tmp/quick     # = python run.py ... = python -m rem_tf
  rem-tf --method=rem_v2                                    # the paper's settings
  rem-tf --mode=evaluate --saved_model=/tmp/quick/saved_model
  rem-tf --mode=evaluate --preset=rem_v2_mnist              # a trained model of the zoo

An entry point, not the library: the only module of rem_tf that parses flags (`rem-tf`,
`python -m rem_tf` and the repository's run.py all call `main`). `--config` (default
`rem_tf.experiment.default_config()`) holds every setting, `--config.<section>.<field>=v`
overrides one, and the plain flags override the common ones (they win). The same command
again resumes the run. Exit status: 2 for a bad flag, value, path or file (also a workdir
another run holds, or one that cannot be written), 1 for a NaN loss or a flag value absl
cannot parse (its own two lines), 130 for Ctrl-C / SIGTERM.
"""

import os
import pathlib
import re
import sys

from absl import app, flags
import ml_collections
from ml_collections import config_flags

from rem_tf import data, experiment
from rem_tf.experiment import builders, config as config_lib, console, defaults

_CONFIG_ARG = re.compile(r"^--?config(=|$)")
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)")  # --config.a.b=value, --noconfig.a.b
_CONFIG_HINT = "give a .py file with get_config(), e.g. --config=configs/quick.py"

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (ml_collections, get_config()); default "
    "rem_tf.experiment.default_config() (= configs/default.py); override fields with "
    "--config.x.y=value.")
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
flags.DEFINE_enum("strategy", None, config_lib.STRATEGIES,
                  "tf.distribute strategy (config.distribute.strategy).")
_MODE = flags.DEFINE_enum("mode", "train_and_evaluate", config_lib.MODES, "What to do.")
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None,
    "--mode=evaluate: a SavedModel directory or a .keras file; default <workdir>/saved_model.")
_PRESET = flags.DEFINE_string(
    "preset", None, "--mode=evaluate: a preset's name (rem_tf.presets.list()) or directory.")


def _fail(message, status=2):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def _config_path(argv):
    """The --config value in argv, or None."""
    return next((a.split("=", 1)[-1] for a in argv[1:] if _CONFIG_ARG.match(a)), None)


def parse_flags(argv):
    """absl's parser, with the default config file; a config file that cannot be loaded or an
    unknown --config.x field is one line and exit 2 (absl itself reports a bad flag value: two
    lines, exit 1)."""
    try:  # checked first: ml_collections' own error spans lines and names only the last key
        config_lib.check_known_fields([m[2] for m in map(_OVERRIDE.match, argv[1:]) if m])
    except experiment.ConfigError as err:
        _fail(err)
    path = _config_path(argv)
    if path is None:  # ml_collections reads --config.x overrides only with a --config
        path, argv = defaults.__file__, [argv[0], f"--config={defaults.__file__}", *argv[1:]]
    file = path.split(":", 1)[0]  # ml_collections' FILE:ARGUMENT form
    if not os.path.isfile(file):
        what = "it is a directory" if os.path.isdir(file) else "no such file"
        _fail(f"cannot load the config file {path!r} (--config): {what}; {_CONFIG_HINT}")
    try:
        rest = app.parse_flags_with_usage(argv)
    except Exception as err:  # noqa: BLE001 - the config file's own code failed to run
        what = (f"it has no get_config(); {_CONFIG_HINT}"
                if isinstance(err, AttributeError) and "get_config" in str(err)
                else " ".join(f"{type(err).__name__}: {err}".split()))
        _fail(f"cannot load the config file {path!r} (--config): {what}")
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
        _fail(f"cannot load the config file {path!r} (--config): its get_config() did not return "
              f"an ml_collections.ConfigDict (got {type(_CONFIG.value).__name__}); {_CONFIG_HINT}")
    return rest


def config_from_flags():
    """The --config file's config with the --config.x overrides, then the plain flags (they win)."""
    given = {path: flags.FLAGS[name].value for path, name in config_lib.PLAIN_FLAGS.items()}
    _CONFIG.value.update_from_flattened_dict({k: v for k, v in given.items() if v is not None})
    return _CONFIG.value


def _data_was_chosen():
    """--dataset, --config or --config.data.*: evaluate on those data, not the model's own."""
    return (flags.FLAGS.dataset is not None or _config_path(sys.argv) is not None
            or any(str(key).startswith("data.")
                   for key in config_flags.get_override_values(flags.FLAGS["config"])))


def _default_workdir(config):
    """runs/<config file>-<method>-<dataset> (the library's default config: "default")."""
    path = _config_path(sys.argv)
    stem = pathlib.Path(path.split(":", 1)[0]).stem if path is not None else "default"
    label = pathlib.Path(builders.data_label(config)).stem
    return f"runs/{stem}-{config.method}-{label.replace(':', '_')}"


def run(argv):
    """The main of absl's `app.run`: one mode of `rem_tf.experiment`; returns the exit status."""
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}; flags take the form --name=value "
              "(--help lists them)")
    console.quiet_library_logs()
    config, mode = config_from_flags(), _MODE.value
    if _PRESET.value is not None and mode != "evaluate":
        _fail("--preset needs --mode=evaluate (to go on training a preset, use "
              "rem_tf.from_preset(name).fit in Python)")
    try:
        if mode == "evaluate":
            experiment.evaluate(config, _SAVED_MODEL.value, preset=_PRESET.value,
                                data_from_model=not _data_was_chosen())
            return 0
        config.workdir = config.workdir if config.workdir is not None else _default_workdir(
            config)
        (experiment.train if mode == "train" else experiment.train_and_evaluate)(config)
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


def main():
    """The `rem-tf` console script, `python -m rem_tf` and run.py."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ INFO / WARNING lines
    for flag in flags.FLAGS.get_flags_for_module(__name__):  # --help lists the program's flags
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(run, flags_parser=parse_flags)
