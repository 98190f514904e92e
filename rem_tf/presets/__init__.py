"""Trained models in one line: the zoo's presets, and your own in the same format.

    model = rem_tf.from_preset("rem_v2_mnist")      # compiled: `fit` goes on training
    model.log_likelihood(x, num_samples=5000)        # x [N, 28, 28, 1] binary digits
    rem_tf.presets.list()                             # {name: headline metrics}
    rem_tf.presets.save(model, "my_preset", metrics={"test_nll": 90.1})
    rem_tf.from_preset("my_preset")                   # a directory works like a name

A preset is a directory in the KerasHub style:

    config.json        the model's Keras config (`keras.saving.serialize_keras_object`,
                       what `build_model` was given) and its compile config
    model.weights.h5   `model.save_weights`: weights, the particle-seed state and,
                       if saved with `include_optimizer=True`, both optimizers' state
    metadata.json      method, shapes, the sha256 of the weights file, metrics,
                       versions, and whatever the saver added (data, training, command)
    README.md          a short model card generated from metadata.json

The shipped presets live beside this file (package data: a plain install has
them and nothing downloads); `experiments/zoo.py` makes them from the zoo's runs.
The weights file's sha256 is checked on every load, so a changed or truncated
file is an error, never a silently different model.
"""

import builtins
import hashlib
import json
import os
import pathlib
import tempfile
import time

import h5py
import keras

from rem_tf.models import METHODS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
FORMAT = "rem_tf.preset/1"
SHIPPED = pathlib.Path(__file__).resolve().parent
# Groups of a Keras weights file that hold optimizer state (the rest is the model's).
_OPTIMIZER_GROUPS = ("optimizer", "model_optimizer", "proposal_optimizer")
# metadata["metrics"] keys shown by `list()` and in the card's table, in this order.
HEADLINE_METRICS = ("test_nll", "test_nll_shifted", "train_nll", "elbo", "kl_to_prior",
                    "active_units")


class PresetError(ValueError):
    """A preset that cannot be found, read or trusted (one line saying which and why)."""


def is_preset(path):
    """Whether `path` is a directory holding a preset (its metadata.json of this format)."""
    path = pathlib.Path(path) / METADATA_FILE
    try:
        return path.is_file() and json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def _shipped_names():
    return sorted(p.name for p in SHIPPED.iterdir() if is_preset(p))


def directory_of(name_or_directory):
    """The directory of a shipped preset's name, or `name_or_directory` if it is a directory.

    Raises:
      PresetError: neither a shipped preset nor a directory holding a preset.
    """
    path = pathlib.Path(os.fspath(name_or_directory))
    if path.is_dir():
        if not is_preset(path):
            raise PresetError(f"{path} is a directory but not a preset (no {METADATA_FILE} of "
                              f"format {FORMAT}); write one with rem_tf.presets.save")
        return path
    names = _shipped_names()
    if isinstance(name_or_directory, str) and name_or_directory in names:
        return SHIPPED / name_or_directory
    raise PresetError(f"unknown preset {str(name_or_directory)!r}: not a shipped preset "
                      f"({', '.join(names) or 'none shipped'}) nor a preset directory")


def _read_json(path):
    try:
        value = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise PresetError(f"cannot read {path}: {err}") from None
    if not isinstance(value, dict):
        raise PresetError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def metadata(name_or_directory):
    """The metadata.json of a preset, as a dict."""
    return _read_json(directory_of(name_or_directory) / METADATA_FILE)


def list():  # noqa: A001 - rem_tf.presets.list(), the name users look for
    """{name: {method, num_particles, epochs, and the headline metrics}} of the shipped presets."""
    out = {}
    for name in _shipped_names():
        info = metadata(name)
        training = info.get("training", {})
        out[name] = {"method": info.get("method"), "num_particles": info.get("num_particles"),
                     "epochs": training.get("epochs"),
                     **{k: info.get("metrics", {}).get(k) for k in HEADLINE_METRICS}}
    return out


def file_sha256(path):
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def from_preset(name_or_directory, compile=True):  # noqa: A002 - Keras's argument name
    """A trained model from a shipped preset's name or a directory written by `save`.

    Args:
      name_or_directory: a key of `list()` (e.g. "rem_v2_mnist") or a preset directory.
      compile: compile with the stored optimizers (both, for two-optimizer models), so
        that `fit` continues training; with the saved optimizer state where the preset
        has it (`metadata["optimizer_state"]`), else fresh optimizer state. Without a
        stored compile config, two Adam optimizers with Keras's defaults.

    Returns:
      The model (a `rem_tf.GenerativeModel`), with the saved weights and particle-seed state.

    Raises:
      PresetError: an unknown name, a missing or unreadable file, or a weights file whose
        sha256 is not the one in metadata.json (changed or truncated).
    """
    directory = directory_of(name_or_directory)
    info = _read_json(directory / METADATA_FILE)
    config = _read_json(directory / CONFIG_FILE)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise PresetError(f"the preset {directory} has no {WEIGHTS_FILE}")
    expected = info.get("weights_sha256")
    actual = file_sha256(weights)
    if actual != expected:
        raise PresetError(
            f"{weights} does not match the sha256 in {directory / METADATA_FILE} ({actual} != "
            f"{expected}): the file was changed or truncated; reinstall rem_tf or save the "
            "preset again")
    compile_config = config.pop("compile_config", None)
    try:
        model = keras.saving.deserialize_keras_object(config)
    except Exception as err:  # noqa: BLE001 - any way a config can be bad: one line
        raise PresetError(f"cannot build the model of {directory / CONFIG_FILE}: "
                          f"{type(err).__name__}: {err}") from None
    with_optimizers = bool(info.get("optimizer_state"))
    if compile and with_optimizers:  # the optimizers' variables must exist to be loaded
        _compile(model, compile_config)
    model.load_weights(str(weights))
    if compile and not with_optimizers:
        _compile(model, compile_config)
    return model


def _compile(model, compile_config):
    if compile_config:
        model.compile_from_config(compile_config)
    else:
        model.compile(model_optimizer=keras.optimizers.Adam(),
                      proposal_optimizer=keras.optimizers.Adam())


def save(model, directory, *, metrics=None, metadata=None, include_optimizer=True,
         description=None):
    """Writes `model` as a preset that `from_preset(directory)` loads.

    Args:
      model: a `rem_tf.GenerativeModel` (built-in or your own networks, any
        serializable likelihood), compiled or not.
      directory: a new or empty directory (an existing file is never replaced).
      metrics: {name: number} shown in the card, e.g. {"test_nll": 90.1}.
      metadata: more JSON-serializable facts to store (data, training, command, …).
      include_optimizer: keep both optimizers' state (then `from_preset(...).fit`
        continues exactly as `model.fit` would); False halves the file.
      description: one sentence for the card.

    Returns:
      The directory, as a `pathlib.Path`.

    Raises:
      PresetError: `directory` is a file or a non-empty directory.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise PresetError(f"{directory} exists and is not an empty directory; give a new one "
                          "(presets.save never replaces files)")
    directory.mkdir(parents=True, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    config["compile_config"] = model.get_compile_config()
    with_optimizers = include_optimizer and model.compiled
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        full = pathlib.Path(scratch) / WEIGHTS_FILE
        model.save_weights(str(full))
        if with_optimizers:
            os.replace(full, directory / WEIGHTS_FILE)
        else:
            _copy_without_optimizers(full, directory / WEIGHTS_FILE)
    info = {
        "format": FORMAT,
        "description": description or "",
        "method": _method_name(model),
        "input_shape": builtins.list(model.input_shape),
        "latent_dim": model.latent_dim,
        "num_particles": model.num_particles,
        **(metadata or {}),
        "metrics": dict(metrics or {}),
        "optimizer_state": bool(with_optimizers),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": file_sha256(directory / WEIGHTS_FILE),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    _write_text(directory / METADATA_FILE, json.dumps(info, indent=2, default=str) + "\n")
    _write_text(directory / CARD_FILE, card(info, directory.name))
    return directory


def _method_name(model):
    return next((name for name, cls in METHODS.items() if type(model) is cls),
                type(model).__name__)


def _copy_without_optimizers(source, target):
    """Copies a Keras weights file without its optimizer groups (Keras has no such option)."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for key in src.keys():
            if key not in _OPTIMIZER_GROUPS:
                src.copy(src[key], dst, key)


def _write_text(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _number(value):
    if isinstance(value, float):
        return f"{value:.2f}"
    return "—" if value is None else str(value)


def card(info, name):
    """A short model card (Markdown) from a preset's metadata."""
    lines = [f"# {name}", ""]
    if info.get("description"):
        lines += [info["description"], ""]
    lines += [
        "```python",
        "import rem_tf",
        f'model = rem_tf.from_preset("{name}")',
        "```",
        "",
        "| | |", "|---|---|",
        f"| method | `{info.get('method')}` |",
        f"| input shape | {tuple(info.get('input_shape', ()))} |",
        f"| latent dimension | {info.get('latent_dim')} |",
        f"| training particles K | {info.get('num_particles')} |",
    ]
    for key, value in info.get("data", {}).items():
        lines.append(f"| data: {key} | {_number(value)} |")
    for key, value in info.get("training", {}).items():
        lines.append(f"| training: {key} | {_number(value)} |")
    metrics = info.get("metrics", {})
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_number(value)} |" for key, value in metrics.items()]
    if info.get("metrics_notes"):
        lines += ["", info["metrics_notes"]]
    if info.get("command"):
        lines += ["", "## How it was made", "", "```bash", *info["command"], "```"]
    if info.get("machine"):
        lines += ["", f"Machine: {info['machine']}."]
    lines += ["", f"Weights: `{info.get('weights_file')}`, sha256 `{info.get('weights_sha256')}` "
              "(checked on every load)."]
    return "\n".join(lines) + "\n"
