"""Config checks, data-set defaults and the resume rule; nothing here loads data or builds a model.

A config is an `ml_collections.ConfigDict` with the sections of `default_config()`
(data, model, training, evaluation, distribute).
`check_config` returns a checked copy with every default filled in, or raises
`ConfigError` naming the field, before any data is read.
"""

import collections.abc
import difflib
import json
import math
import numbers
import pathlib

import keras
import ml_collections

import rem_tf
from rem_tf import data, estimators, schedules
from rem_tf.experiment import builders
from rem_tf.experiment.defaults import default_config
from rem_tf.experiment.errors import ConfigError
from rem_tf.validation import PROPOSALS, SCALE_ACTIVATIONS, is_integer

MODES = ("train", "evaluate", "train_and_evaluate")
STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "sgd")
# The run.py flag of a config field (named in error messages; run.py defines them).
PLAIN_FLAGS = {
    "method": "method",
    "data.name": "dataset",
    "workdir": "workdir",
    "training.epochs": "epochs",
    "training.num_particles": "num_particles",
    "training.batch_size": "batch_size",
    "distribute.strategy": "strategy",
}
# Fields that may change when a run directory is resumed (a prefix ending in "."
# covers a section); any other difference from the stored config.json is refused.
RESUMABLE_CHANGES = (
    "workdir",
    "training.epochs",
    "training.checkpoint_every_steps",
    "training.keep_checkpoint_every_steps",
    "training.steps_per_execution",
    "training.jit_compile",
    "data.data_dir",
    "distribute.",
    "evaluation.",
)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# (field, int or float, test, rule): every number a run reads, by section.
_NUMBERS = (
    ("seed", int, lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
    ("model.latent_dim", int, lambda v: v >= 1, "must be >= 1"),
    ("model.num_groups", int, lambda v: v >= 1, "must be >= 1"),
    ("model.ridge", float, lambda v: v > 0, "must be > 0"),
    ("model.output_bias_clip", float, lambda v: 0 < v < 0.5, "must be in (0, 0.5)"),
    ("model.beta", float, lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("training.epochs", int, lambda v: v >= 1, "must be >= 1"),
    ("training.batch_size", int, lambda v: v >= 1, "must be >= 1"),
    ("training.num_particles", int, lambda v: v >= 1, "must be >= 1"),
    ("training.learning_rate", float, lambda v: v > 0, "must be > 0"),
    ("training.adam_beta_1", float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("training.adam_beta_2", float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("training.adam_epsilon", float, lambda v: v > 0, "must be > 0"),
    ("training.steps_per_execution", int, lambda v: v >= 1, "must be >= 1"),
    ("training.checkpoint_every_steps", int, lambda v: v >= 1, "must be >= 1"),
    ("training.keep_checkpoint_every_steps", int, lambda v: v >= 0, "must be >= 0 (0: off)"),
    ("evaluation.num_samples", int, lambda v: 1 <= v < 2**31, "must be in [1, 2**31)"),
    ("evaluation.chunk_size", int, lambda v: v >= 1, "must be >= 1"),
    ("evaluation.batch_size", int, lambda v: v >= 1, "must be >= 1"),
    ("evaluation.elbo_samples", int, lambda v: v >= 1, "must be >= 1"),
    ("evaluation.active_units_threshold", float, lambda v: v >= 0, "must be >= 0"),
    ("evaluation.num_examples", int, lambda v: v is None or v >= 1, "must be >= 1 or None"),
    ("distribute.num_cpu_devices", int, lambda v: v >= 0, "must be >= 0"),
)
_BOOLEANS = ("model.output_bias_from_data", "training.jit_compile")
_TRAINING_ONLY = ("seed", "model.", "training.")  # not read by --mode=evaluate


def with_defaults(config, defaults=None):
    """A copy of `config` with the fields of `defaults` (`default_config()`) that it lacks.

    A config written before a field existed (an old config.json, a hand-made
    ConfigDict) gets the field's default value.

    Raises:
      ConfigError: `config` is not a ConfigDict or dict, or has a field `defaults` lacks.
    """
    if not isinstance(config, (ml_collections.ConfigDict, collections.abc.Mapping)):
        raise ConfigError(f"a config must be an ml_collections.ConfigDict or a dict, got "
                          f"{type(config).__name__}")
    config = ml_collections.ConfigDict(config).copy_and_resolve_references()
    defaults = default_config() if defaults is None else defaults
    check_known_fields(flatten(config.to_dict()), defaults)
    # Not type-safe: a value of another type is check_config's one-line error, not a TypeError.
    merged = ml_collections.ConfigDict(defaults.to_dict(), type_safe=False)
    merged.update(config)
    return merged


def check_known_fields(keys, defaults=None):
    """Refuses a field ("a.b") that `defaults` (`default_config()`) lacks: a typo such as
    training.epoch. (ml_collections' locked update names only the last key, over lines.)

    Raises:
      ConfigError: one line naming the first unknown field and the closest known one.
    """
    known = set(flatten((default_config() if defaults is None else defaults).to_dict()))
    sections = {key.split(".")[0] for key in known if "." in key}
    for key in keys:
        if key not in known | sections:
            section = key.split(".")[0]
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(
                f"unknown config field {key!r} (--config.{key})"
                + (f": there is no section {section!r}" if "." in key and section not in
                   sections else "") + (f"; did you mean {close[0]!r}?" if close else ""))


def _field(path):
    flag = PLAIN_FLAGS.get(path)
    return f"{path} (--{flag})" if flag else path


def _source(path):
    flag = PLAIN_FLAGS.get(path)
    return f"--{flag} / config.{path}" if flag else f"config.{path}"


def _check_choice(config, path, valid, what, allow_none=False):
    value = config[path]
    if not (allow_none and value is None) and value not in valid:
        raise ConfigError(
            f"unknown {what} {value!r} ({_source(path)}); valid: {', '.join(valid)}"
            + (" or None" if allow_none else "")
        )


def _check_types_and_ranges(config, mode):
    for path, kind, ok, rule in _NUMBERS:
        if mode == "evaluate" and path.startswith(_TRAINING_ONLY):
            continue
        value = config[path]
        if value is None and path == "evaluation.num_examples":
            continue
        if not (is_integer(value) if kind is int else _real(value)):
            kind_name = "an integer" if kind is int else "a finite number"
            raise ConfigError(
                f"{_field(path)} must be {kind_name}, got {value!r} ({type(value).__name__})"
            )
        if not ok(value):
            raise ConfigError(f"{_field(path)} {rule}, got {value!r}")
    if mode == "evaluate":
        return
    for path in _BOOLEANS:
        if not isinstance(config[path], bool):
            raise ConfigError(f"{path} must be True or False, got {config[path]!r}")
    units = config.model.hidden_units
    if not isinstance(units, (tuple, list)) or not all(is_integer(u) and u >= 1 for u in units):
        raise ConfigError(f"model.hidden_units must be a tuple of integers >= 1, got {units!r}")
    if config.workdir is not None and not isinstance(config.workdir, (str, pathlib.PurePath)):
        raise ConfigError(f"workdir (--workdir) must be a path, got {config.workdir!r}")
    try:
        keras.activations.get(config.model.activation)
    except (ValueError, TypeError):
        raise ConfigError(
            f"model.activation {config.model.activation!r} is not a Keras activation "
            "(e.g. tanh, relu)"
        ) from None


def _resolve_data_defaults(config, mode):
    """Fills the data fields whose default depends on the data set or the likelihood
    (config.json stores them): a Gaussian likelihood gets the grey levels ("none")."""
    if mode != "evaluate" and config.model.likelihood == "gaussian":
        for field in ("train_binarization", "eval_binarization"):
            if config.data[field] is None:
                config.data[field] = "none"
    if config.data.source is None:
        config.data.source = ("npz" if config.data.path is not None else "tfds"
                              if config.data.name == "binarized_mnist"
                              or data.is_tfds_name(config.data.name) else "auto")
    if config.data.train_split is None:
        splits = data_splits(config)
        config.data.train_split = "train+validation" if "validation" in (splits or ()) else "train"


def data_splits(config):
    """The splits of `data.*` (an .npz file is read), or None for a TFDS name (known
    only once TFDS has prepared it: checked when the data is read)."""
    if data.is_tfds_name(config.data.name) and config.data.source != "npz":
        return None
    return tuple(data.info(config.data.name, source=config.data.source, path=config.data.path,
                           data_dir=config.data.data_dir))


def _check_data(config):
    """data.name, data.source and data.path before anything is read."""
    source, path, name = config.data.source, config.data.path, config.data.name
    _check_choice(config, "data.source", data.SOURCES, "data source", allow_none=True)
    if path is not None and not isinstance(path, (str, pathlib.PurePath)):
        raise ConfigError(f"data.path must be a path to an .npz file, got {path!r}")
    if source == "npz" and path is None:
        raise ConfigError("data.source 'npz' needs data.path=<an .npz file with arrays 'train' "
                          "and 'test'> (--config.data.path=...)")
    if path is not None and source not in (None, "npz"):
        raise ConfigError(f"data.path is read only with data.source 'npz' (or None), not "
                          f"{source!r}")
    if path is None and not data.is_tfds_name(name):
        if name not in data.NAMES:
            raise ConfigError(
                f"unknown dataset {name!r} ({_source('data.name')}); valid: "
                f"{', '.join(data.NAMES)}, {data.TFDS_PREFIX}<a TFDS image dataset> (e.g. "
                "tfds:fashion_mnist), or your own images: data.source='npz' with "
                "data.path=<file>.npz")


def check_config(config, mode="train_and_evaluate"):
    """Checks every value a run reads; returns a copy with all defaults filled in.

    Reads every field of `default_config()` (for mode "evaluate" only `data`,
    `evaluation` and `distribute`). Fields the config lacks get their
    `default_config()` value; `data.source` and `data.train_split` get the
    data set's default when None.

    Raises:
      ConfigError: a value of the wrong type or out of range, a field
        `default_config()` lacks, or a name the library does not know (method,
        data set, split, binarization, …).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    config = with_defaults(config)
    _check_types_and_ranges(config, mode)
    _check_data(config)
    for path in ("data.train_binarization", "data.eval_binarization"):
        _check_choice(config, path, data.BINARIZATIONS, "binarization", allow_none=True)
    _check_choice(config, "distribute.strategy", STRATEGIES, "strategy")
    _resolve_data_defaults(config, mode)
    splits = data_splits(config)
    if splits is not None:
        _check_choice(config, "evaluation.split", splits, f"{config.data.name} split")
    _check_choice(config, "evaluation.proposal", PROPOSALS, "proposal")
    if mode == "evaluate":
        return config
    if splits is not None:
        _check_choice(config, "data.train_split", splits, f"{config.data.name} split")
    _check_choice(config, "method", sorted(rem_tf.METHODS), "method")
    _check_choice(config, "model.covariance", estimators.COVARIANCES, "covariance")
    _check_choice(config, "model.scale_activation", SCALE_ACTIVATIONS, "scale activation")
    _check_choice(config, "training.optimizer", OPTIMIZERS, "optimizer")
    _check_choice(config, "training.schedule", schedules.SCHEDULES, "schedule")
    needed = rem_tf.METHODS[config.method].min_particles
    if config.training.num_particles < needed:
        raise ConfigError(
            f"{config.method} needs num_particles >= {needed} (--num_particles / "
            f"config.training.num_particles), got {config.training.num_particles}"
        )
    builders.model_options(config)  # model.architecture / likelihood the method supports
    if config.model.likelihood == "bernoulli" and config.data.name not in data.BINARY_NAMES:
        for field in ("train_binarization", "eval_binarization"):
            if config.data[field] == "none":
                raise ConfigError(
                    f"data.{field} 'none' keeps {config.data.name}'s grey levels, which the "
                    "Bernoulli likelihood cannot score: use dynamic, fixed or threshold, or "
                    "model.likelihood='gaussian'"
                )
    return config


def flatten(tree, prefix=""):
    """{"a.b": value} of a nested dict (tuples as lists, as in JSON)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def as_dict(config):
    """The config as plain JSON values (what config.json holds)."""
    return json.loads(config.to_json())


def check_resumable(stored, config, defaults=None):
    """Raises ConfigError if the stored config of a run directory differs in a way that matters.

    Args:
      stored: the dict of the run directory's config.json.
      config: the ConfigDict of the run about to resume it.
      defaults: the config of the defaults (default: `default_config()`); a field absent
        from `stored` (written before the field existed) whose new value is its
        default is not a change.
    """
    defaults = default_config() if defaults is None else defaults
    old, new = flatten(stored), flatten(as_dict(config))
    default = flatten(as_dict(defaults))
    missing = object()

    def changed(key):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES):
            return False
        if key not in old and key in default and new.get(key, missing) == default[key]:
            return False
        return old.get(key, missing) != new.get(key, missing)

    changes = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
               for key in sorted(set(old) | set(new)) if changed(key)]
    if changes:
        raise ConfigError(
            f"the run directory {config.workdir} holds a run with another config "
            f"({'; '.join(changes)}); use a new --workdir, or the same settings to resume"
        )
