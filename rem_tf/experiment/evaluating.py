"""Evaluating a trained model: load a SavedModel, .keras file or preset, evaluate, write
eval_<split>.json.

    results = evaluate(config, "runs/quick/saved_model")   # also prints a table
    results = evaluate(config, preset="rem_v2_mnist")        # a shipped preset or its directory
"""

import pathlib
import time

import keras
from absl import logging

import rem_tf  # noqa: F401 - registers the model classes that .keras files name
from rem_tf import evaluation, export, presets
from rem_tf.experiment import builders, run_files
from rem_tf.experiment.config import check_config, with_defaults
from rem_tf.experiment.errors import ConfigError, Interrupted, interruptible


def check_model_path(path):
    """`path` as a Path if it is a SavedModel, preset directory or .keras file; else ConfigError."""
    path = pathlib.Path(path)
    if path.is_dir():
        if not (export.is_saved_model(path) or presets.is_preset(path)):
            raise ConfigError(f"{path} is a directory but neither a SavedModel (no "
                              f"saved_model.pb) nor a preset (no {presets.METADATA_FILE})")
    elif path.suffix == ".keras":
        if not path.is_file():
            raise ConfigError(f"no .keras file at {path}")
    else:
        raise ConfigError(f"no SavedModel directory or .keras file at {path}")
    return path


def stored_config(path):
    """The training config (a dict) stored with a SavedModel, or in config.json by a .keras file.

    None if there is none; ConfigError if the file holding it is not valid JSON.
    """
    path = pathlib.Path(path)
    if presets.is_preset(path):
        return presets.metadata(path).get("config")
    if path.is_dir():
        info = path / "assets.extra" / export.METADATA_FILE
        fix = "export the model again (run its training command again)"
        return run_files.read_json(info, fix).get("config") if info.is_file() else None
    candidate = path.parent / "config.json"
    fix = "fix it, or choose the data with --dataset / --config"
    return run_files.read_json(candidate, fix) if candidate.is_file() else None


def load_model(path, config):
    """(model, input shape, chunk size, ELBO samples) of a SavedModel, preset or .keras file.

    A SavedModel brings its own chunk size and ELBO samples; a preset or .keras
    model uses `evaluation.chunk_size` and `evaluation.elbo_samples`.
    """
    fix = "train or export it again, or give another --saved_model"
    try:
        if presets.is_preset(path):
            model = presets.from_preset(path, compile=False)
            return (model, tuple(model.input_shape), config.evaluation.chunk_size,
                    config.evaluation.elbo_samples)
        if path.is_dir():
            model = export.load(path)
            info = export.metadata(path)
            return (model, tuple(info.get("input_shape", builders.IMAGE_SHAPE)),
                    info.get("chunk_size"), info.get("elbo_samples"))
        model = keras.models.load_model(str(path), compile=False)
    except Exception as err:  # noqa: BLE001 - any way a file can be corrupt: one line
        message = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise ConfigError(f"cannot load the model {path} ({type(err).__name__}: {message}); "
                          f"{fix}") from None
    return (model, tuple(model.input_shape), config.evaluation.chunk_size,
            config.evaluation.elbo_samples)


def evaluate(config, model_path=None, out_dir=None, *, preset=None, data_from_model=False):
    """Evaluates a SavedModel, .keras file or preset; writes <out_dir>/eval_<split>.json.

    Reads `data.*` and `evaluation.*` (split, num_samples, chunk_size,
    batch_size, elbo_samples, active_units_threshold, num_examples, proposal);
    prints a table, then writes the file and prints its path. The process owns
    `out_dir` meanwhile (`run_files.owned`, which also checks that it is writable
    before any work), and SIGTERM acts as Ctrl-C.

    Args:
      config: an `ml_collections.ConfigDict` like configs/default.py's.
      model_path: a SavedModel directory, a preset directory or a `.keras` file;
        default `<config.workdir>/saved_model`.
      out_dir: where eval_<split>.json goes; default `config.workdir`, else the
        directory holding the model (for a preset: `runs/preset-<name>`).
      preset: instead of `model_path`, a shipped preset's name (`rem_tf.presets.list()`)
        or a preset directory.
      data_from_model: evaluate on the data the model was trained on (the `data`
        section stored with it) instead of `config.data`.

    Returns:
      The dict of `rem_tf.evaluation.evaluate_model` with `model`, `dataset`, `split`,
      `source`, `binarization`, `chunk_size` and `elbo_samples` added.

    Raises:
      ConfigError: a bad config value, a missing or unreadable model, an `out_dir` another
        process runs in.
      StorageError: `out_dir` or the file cannot be written (after the table is printed).
      Interrupted: Ctrl-C or SIGTERM; nothing was written.
      rem_tf.data.DataError: missing or bad data files.
    """
    workdir = config.get("workdir")
    if preset is not None:
        if model_path is not None:
            raise ConfigError("give a preset (--preset) or a model path (--saved_model), not both")
        try:
            model_path = presets.directory_of(preset)
        except presets.PresetError as err:
            raise ConfigError(f"{err} (--preset)") from None
        # A shipped preset lives inside the package: its results go to the current directory.
        out_dir = out_dir or workdir or pathlib.Path("runs") / f"preset-{model_path.name}"
    if model_path is None and workdir is None:
        raise ConfigError("--mode=evaluate needs --saved_model=DIR (or a .keras file) or --workdir")
    path = check_model_path(model_path or pathlib.Path(workdir) / "saved_model")
    out_dir = (workdir or path.parent) if out_dir is None else out_dir
    config = with_defaults(config)
    stored = stored_config(path)
    if data_from_model and stored:
        for key, value in stored.get("data", {}).items():
            if key in config.data:
                config.data[key] = value
    config = check_config(config, "evaluate")
    out = pathlib.Path(out_dir) / f"eval_{config.evaluation.split}.json"
    with run_files.owned(out_dir), interruptible():
        try:
            results = _evaluate(config, path)
        except KeyboardInterrupt:
            raise Interrupted(f"Interrupted while evaluating {path}; {out} was not written. "
                              "Run the same command to evaluate again.", None) from None
        title = f"{builders.data_label(config)}/{config.evaluation.split}: {path}"
        print(evaluation.format_table(results, title=title), flush=True)
        run_files.write_json(out, results, note=" (the results are printed above)")
    print(f"Wrote {out}", flush=True)
    return results


def _evaluate(config, path):
    """The results dict of `evaluate` (nothing written)."""
    model, input_shape, chunk_size, elbo_samples = load_model(path, config)
    images = builders.eval_images(config)
    if tuple(images.shape[1:]) != input_shape:
        raise ConfigError(
            f"the model at {path} takes images of shape {input_shape}, the "
            f"{builders.data_label(config)} data has {tuple(images.shape[1:])}"
        )
    started, reported = time.time(), [0.0]

    def progress(done, total):
        if done == total or done / total >= reported[0] + 0.1:
            reported[0] = done / total
            logging.info("evaluated %d / %d images (%.0f s)", done, total, time.time() - started)

    logging.info("Evaluating %s on %s/%s (%d images) with K = %d.", path,
                 builders.data_label(config),
                 config.evaluation.split, len(images), config.evaluation.num_samples)
    proposal = config.evaluation.proposal
    try:
        results = evaluation.evaluate_model(
            model, images, num_samples=config.evaluation.num_samples,
            chunk_size=config.evaluation.chunk_size, batch_size=config.evaluation.batch_size,
            elbo_samples=config.evaluation.elbo_samples,
            active_units_threshold=config.evaluation.active_units_threshold, progress=progress,
            **({"proposal": proposal} if proposal != "encoder" else {}),
        )
    except ValueError as err:  # e.g. an older SavedModel without the shifted proposal
        raise ConfigError(f"cannot evaluate {path}: {err}") from None
    results.update({
        "model": str(path), "dataset": builders.data_label(config),
        "split": config.evaluation.split,
        "source": config.data.source, "binarization": config.data.eval_binarization,
        "chunk_size": chunk_size, "elbo_samples": elbo_samples,
    })
    return results
