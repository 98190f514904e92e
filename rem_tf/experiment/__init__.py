"""Experiments from an ml_collections config: train, export, evaluate, resume.

    from configs import quick
    from rem_tf import experiment

    config = quick.get_config()
    results = experiment.train_and_evaluate(config, "/tmp/quick")  # dict of eval_test.json

The library behind `run.py` (which only turns flags into a config): no flags,
no `sys.exit`; bad input raises `ConfigError` (or `rem_tf.data.DataError`), a
file that cannot be written `StorageError` (a `ConfigError`), Ctrl-C / SIGTERM
`Interrupted`, a NaN loss `TrainingDiverged`. Modules:
`config` (checks, defaults, the resume rule), `builders` (strategy, model,
optimizers, per-epoch data), `callbacks`, `checkpoints`, `run_files` (run-directory
files, provenance), `training`, `evaluating`.
"""

from rem_tf.experiment.builders import build_model_from_config
from rem_tf.experiment.checkpoints import restore_model
from rem_tf.experiment.config import check_config, default_config
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
