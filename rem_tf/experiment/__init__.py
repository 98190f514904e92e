"""Experiments from an ml_collections config: train, export, evaluate, resume.

    from rem_tf import experiment

    config = experiment.default_config()  # the paper's settings; configs/*.py build on it
    config.training.epochs = 8
    results = experiment.train_and_evaluate(config, "/tmp/run")  # dict of eval_test.json

The library behind the command line (`rem_tf.cli`: `rem-tf`, run.py): no flags,
no `sys.exit`; bad input raises `ConfigError` (or `rem_tf.data.DataError`), a
file that cannot be written `StorageError` (a `ConfigError`), Ctrl-C / SIGTERM
`Interrupted`, a NaN loss `TrainingDiverged`. Modules:
`defaults` (`default_config()`), `config` (checks, the resume rule), `builders` (strategy, model,
optimizers, per-epoch data), `callbacks`, `checkpoints`, `run_files` (run-directory
files, provenance), `training`, `evaluating`.
"""

from rem_tf.experiment.builders import build_model_from_config
from rem_tf.experiment.checkpoints import restore_model
from rem_tf.experiment.config import check_config
from rem_tf.experiment.defaults import default_config
from rem_tf.experiment.errors import ConfigError, Interrupted, StorageError, TrainingDiverged
from rem_tf.experiment.evaluating import evaluate
from rem_tf.experiment.training import train, train_and_evaluate

__all__ = [
    "ConfigError",
    "Interrupted",
    "StorageError",
    "TrainingDiverged",
    "build_model_from_config",
    "check_config",
    "default_config",
    "evaluate",
    "restore_model",
    "train",
    "train_and_evaluate",
]
