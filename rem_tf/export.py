"""SavedModel export of a trained model with named signatures, and loading.

The SavedModel needs TensorFlow only — not `rem_tf`, not the Python source:

    import tensorflow as tf
    loaded = tf.saved_model.load("workdir/saved_model")
    log_px = loaded.log_likelihood(images, 5000)      # [B] nats, images float32 [B, 28, 28, 1]
    codes = loaded.encode(images)                     # {"loc": [B, L], "scale": [B, L]}
    pictures = tf.sigmoid(loaded.decode(codes["loc"]))  # [B, 28, 28, 1] pixel probabilities

Functions (callable as attributes of the loaded object, and as signatures in
`loaded.signatures[name]`, which take keyword arguments and return dicts;
`serving_default` is `log_likelihood`), each as name: inputs → returns (signature
output key):

- `log_likelihood`: x float32 [B, *input_shape] (binary for a Bernoulli likelihood, finite
  otherwise), num_samples int64 [] >= 1 → [B] log p(x), importance-sampled with
  K = num_samples, chunked (`log_likelihood`).
- `log_likelihood_shifted`: x, num_samples → [B] the authors' estimator: K encoder samples
  give the weighted mean μ̂, then K samples from N(μ̂, diag(scale²)) (`log_likelihood`).
- `elbo`: x → [B] ELBO estimate, mean of `elbo_samples` log weights (`elbo`).
- `encode`: x → dict loc, scale [B, L] of r(z|x) (`loc`, `scale`).
- `decode`: z float32 [B, L], finite → the likelihood's parameters [B, *input_shape]:
  Bernoulli logits (`logits`); Gaussian mean (`loc`, and `scale` in the signature); a
  custom likelihood's decoder output (`params`).
- `sample`: num int64 [] >= 0 → [num, *input_shape] drawn from the model, binary for
  Bernoulli (`images`).

Bad input raises `tf.errors.InvalidArgumentError` whose message starts with
"rem_tf: " and names the argument: x outside the likelihood's support, a
non-finite x (`encode`) or z (`decode`), num_samples < 1, num < 0. A shape or
dtype that does not match the input signature is refused by TensorFlow itself, and
so is a count that does not fit an int64. (Exports before rem_tf 0.3 take int32
counts, which TensorFlow silently wraps around above 2**31 − 1.)

The random functions draw from a seed-state variable saved with the model: a
freshly loaded model always starts from the exported state, and every call
advances it. `assets.extra/rem_tf.json` holds the metadata (method, shapes,
chunk size, ELBO samples, the run's config and versions): `metadata(path)`.

The SavedModel tracks TensorFlow's own variables, so it runs in the
graph-and-session loader of TF Serving and `saved_model_cli run` as well as in
`tf.saved_model.load`. `model.export(path)` of a rem_tf model calls `export`.

`export` owns only what it writes: the SavedModel's own files, a marker file
`.rem_tf_export` in it, and temporary directories `.<name>.rem_tf-export-*`
beside it (each with the marker; a killed export's are removed by the next
export to the same path). It never deletes anything else: a path that holds
another file is refused with a ValueError naming that file.
"""

import glob
import json
import os
import pathlib
import re
import shutil
import socket
import tempfile

import keras
import tensorflow as tf

from rem_tf.models.base import GenerativeModel
from rem_tf.validation import INT32_MAX, check_integer, in_graph_check

SIGNATURES = ("log_likelihood", "log_likelihood_shifted", "elbo", "encode", "decode", "sample")
SERVING_DEFAULT = "log_likelihood"  # the signature TF Serving and saved_model_cli use unnamed
METADATA_FILE = "rem_tf.json"
MARKER_FILE = ".rem_tf_export"
_TEMP_INFIX = ".rem_tf-export-"
# Every file an export writes, relative to the SavedModel directory; replacing a
# directory that holds anything else would delete a file export does not own.
_OWN_FILES = re.compile(
    r"saved_model\.pb|fingerprint\.pb|" + re.escape(MARKER_FILE) + r"|variables|"
    r"variables/variables\.index|variables/variables\.data-\d+-of-\d+|assets|assets\.extra|"
    r"assets\.extra/" + re.escape(METADATA_FILE)
)
_FINITE = "(no NaN or Inf)"


class ModelFunctions(tf.Module):
    """The exported interface of a `GenerativeModel`, as `tf.function`s with fixed input signatures.

    The same object serves a live model (e.g. `rem_tf.evaluation.evaluate_model`) and
    is what `export` saves, so both compute exactly the same graphs.

    Args:
      model: a built `GenerativeModel` (outside any distribution strategy).
      chunk_size: particles per chunk in `log_likelihood` and `elbo`; memory is
        bounded by chunk_size × batch × D floats whatever K is.
      elbo_samples: particles averaged by `elbo`.
    """

    def __init__(self, model, *, chunk_size=200, elbo_samples=100, name="rem_tf_model"):
        super().__init__(name=name)
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model must be a rem_tf GenerativeModel, got {type(model).__name__}")
        check_integer("chunk_size", chunk_size, maximum=INT32_MAX)
        check_integer("elbo_samples", elbo_samples, maximum=INT32_MAX)
        self.chunk_size = int(chunk_size)
        self.elbo_samples = int(elbo_samples)
        # Tracked so that the SavedModel holds every variable the functions use
        # (weights and the particle seed state); the model itself is not tracked.
        # TensorFlow's variables, not the Keras wrappers: with the wrappers the
        # graph-and-session loader (TF Serving, saved_model_cli) finds no variables.
        self.model_variables = [
            v.value if isinstance(v, keras.Variable) else v for v in model.variables
        ]
        input_shape = tuple(model.input_shape)
        data_dim = int(model.data_dim)
        latent_dim = int(model.latent_dim)
        chunk_size, elbo_samples = self.chunk_size, self.elbo_samples
        likelihood = model.likelihood

        def checked(value, ok, message):
            with tf.control_dependencies([in_graph_check(ok, message)]):
                return tf.identity(value)

        def if_not_empty(flat, compute):  # TFP cannot sample for an empty batch
            return tf.cond(tf.shape(flat)[0] > 0, compute, lambda: tf.zeros([0]))

        def flatten_checked(x):  # x in the likelihood's support
            flat = tf.reshape(x, [-1, data_dim])  # [B, D]
            return checked(flat, likelihood.valid(flat), likelihood.values_message())

        image_spec = tf.TensorSpec([None, *input_shape], tf.float32, name="x")

        # int64: TensorFlow wraps a Python int that does not fit an int32 input around
        # (2**32 + 5 -> 5) before any check could see it; an int64 input holds any K
        # the int64 chunk counting takes, and a larger one is refused by TensorFlow.
        count_spec = tf.TensorSpec([], tf.int64, name="num_samples")

        def chunked_log_likelihood(x, num_samples, proposal):
            num_samples = checked(num_samples, num_samples >= 1, "num_samples must be >= 1")
            flat = flatten_checked(x)
            chunk = tf.cast(tf.minimum(tf.constant(chunk_size, tf.int64), num_samples), tf.int32)
            return if_not_empty(flat, lambda: model.chunked_log_likelihood(
                flat, num_samples, chunk, proposal))  # [B]

        @tf.function(input_signature=[image_spec, count_spec])
        def log_likelihood(x, num_samples):
            return chunked_log_likelihood(x, num_samples, "encoder")

        @tf.function(input_signature=[image_spec, count_spec])
        def log_likelihood_shifted(x, num_samples):
            return chunked_log_likelihood(x, num_samples, "shifted")

        @tf.function(input_signature=[image_spec])
        def elbo(x):
            flat = flatten_checked(x)

            def mean_log_weight():
                total = tf.zeros(tf.shape(flat)[:1])  # [B], Σ_k log w_k
                for start in range(0, elbo_samples, chunk_size):
                    size = min(chunk_size, elbo_samples - start)
                    *_, log_weights = model.importance_sample(flat, size)  # [size, B]
                    total += tf.reduce_sum(log_weights, axis=0)
                return total / elbo_samples

            return if_not_empty(flat, mean_log_weight)

        @tf.function(input_signature=[image_spec])
        def encode(x):
            x = checked(x, tf.reduce_all(tf.math.is_finite(x)), f"x must be finite {_FINITE}")
            loc, scale = model.encode(x)  # [B, L] each
            return {"loc": loc, "scale": scale}

        z_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="z")

        def decoded(z):
            z = checked(z, tf.reduce_all(tf.math.is_finite(z)), f"z must be finite {_FINITE}")
            return tf.reshape(model.decode(z), [-1, *input_shape])  # [B, *input_shape]

        @tf.function(input_signature=[z_spec])
        def decode(z):
            return decoded(z)  # the likelihood's parameters, e.g. Bernoulli logits

        @tf.function(input_signature=[z_spec])
        def decode_parameters(z):
            return likelihood.named_parameters(decoded(z))  # e.g. {"logits": ...}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="num")])
        def sample(num):
            num = checked(num, num >= 0, "num must be >= 0")
            return model.sample(num)  # [num, *input_shape]

        self.log_likelihood = log_likelihood
        self.log_likelihood_shifted = log_likelihood_shifted
        self.elbo = elbo
        self.encode = encode
        self.decode = decode
        self.decode_parameters = decode_parameters
        self.sample = sample

    def signatures(self):
        """Concrete functions with dict outputs, for `tf.saved_model.save(signatures=...)`."""

        sig = {name: getattr(self, name).input_signature for name in SIGNATURES}
        signatures = {
            **{
                name: tf.function(
                    lambda x, num_samples, f=getattr(self, name): {
                        "log_likelihood": f(x, num_samples)},
                    input_signature=sig[name],
                ).get_concrete_function()
                for name in ("log_likelihood", "log_likelihood_shifted")
            },
            "elbo": tf.function(
                lambda x: {"elbo": self.elbo(x)}, input_signature=sig["elbo"]
            ).get_concrete_function(),
            "encode": self.encode.get_concrete_function(),
            "decode": self.decode_parameters.get_concrete_function(),
            "sample": tf.function(
                lambda num: {"images": self.sample(num)}, input_signature=sig["sample"]
            ).get_concrete_function(),
        }
        return {**signatures, "serving_default": signatures[SERVING_DEFAULT]}


def export(model, path, *, chunk_size=200, elbo_samples=100, metadata=None):
    """Saves `model` as a SavedModel at `path` (replacing an earlier export there).

    Args:
      model: a built `GenerativeModel`, created outside any distribution strategy
        (copy the weights of a distributed model into a plain one first).
      path: output directory.
      chunk_size: particles per chunk of `log_likelihood` / `elbo`.
      elbo_samples: particles of the `elbo` function.
      metadata: extra JSON-serializable dict stored in `assets.extra/rem_tf.json`.

    Returns:
      `path` as a string. The directory is written beside its final place and
      swapped in, so a crash never leaves a half-written SavedModel at `path`.

    Raises:
      ValueError: `path` is a file, or a directory holding anything an export
        does not write (the message names it): nothing is replaced or deleted.
    """
    path = pathlib.Path(path)
    _check_replaceable(path)
    functions = ModelFunctions(model, chunk_size=chunk_size, elbo_samples=elbo_samples)
    info = {
        "format": "rem_tf.export/1",
        "class": type(model).__name__,
        "input_shape": list(model.input_shape),
        "latent_dim": int(model.latent_dim),
        "likelihood": model.likelihood.describe(),
        "decode_outputs": sorted(
            functions.decode_parameters.get_concrete_function().structured_outputs),
        "chunk_size": functions.chunk_size,
        "elbo_samples": functions.elbo_samples,
        "signatures": list(SIGNATURES),
        "serving_default": SERVING_DEFAULT,
        **(metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = _own_temporary(path)
    try:
        tf.saved_model.save(functions, str(tmp), signatures=functions.signatures())
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / METADATA_FILE).write_text(json.dumps(info, indent=2, default=str))
        if path.exists():
            _check_replaceable(path)  # again: a file may have been added while saving
            (path / MARKER_FILE).write_text(tmp.joinpath(MARKER_FILE).read_text())
            old = tmp.with_name(tmp.name + "-old")  # an own name, marked: a kill leaves it stale
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # the earlier export back in place
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
    return str(path)


def keras_export(model, filepath, format="tf_saved_model",  # noqa: A002 - Keras's Model.export
                 verbose=None, input_signature=None, **kwargs):
    """Keras's `model.export` for a rem_tf model (what `GenerativeModel.export` calls): `export`.

    Args:
      model: a built `GenerativeModel`.
      filepath: the SavedModel directory (an earlier export there is replaced).
      format: "tf_saved_model" only.
      verbose: print where it was written (default True, as Keras).
      input_signature: must be None: the signatures are fixed (`SIGNATURES`).
      **kwargs: `chunk_size`, `elbo_samples`, `metadata` of `export`.

    Returns:
      `filepath` as a string.
    """
    if format != "tf_saved_model":
        raise ValueError(f"{type(model).__name__}.export writes format='tf_saved_model' "
                         f"only, got format={format!r}")
    if input_signature is not None:
        raise ValueError("input_signature must be None: a rem_tf model exports fixed "
                         "signatures (log_likelihood, encode, decode, ...; see rem_tf.export)")
    path = export(model, filepath, **kwargs)
    if verbose is None or verbose:
        print(f"Saved the SavedModel at {path}: signatures {', '.join(SIGNATURES)}; "
              f"serving_default = {SERVING_DEFAULT}")
    return path


def _foreign_entry(directory):
    """The first file or directory inside `directory` that no export writes, or None."""
    for entry in sorted(directory.rglob("*")):
        if entry.is_symlink() or not _OWN_FILES.fullmatch(entry.relative_to(directory).as_posix()):
            return entry
    return None


def _check_replaceable(path):
    """ValueError unless `path` is absent, an empty directory, or an export's files only."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise ValueError(f"export path {path} is a file, not a SavedModel directory; it is not "
                         "replaced. Give another path.")
    foreign = _foreign_entry(path)
    if foreign is not None:
        raise ValueError(
            f"export path {path} holds {foreign}, which rem_tf.export did not write; nothing is "
            "replaced or deleted. Move it out of the way or give another path."
        )


def _own_temporary(path):
    """A new directory `.<name>.rem_tf-export-<random>` beside `path`, with the marker file."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}{_TEMP_INFIX}", dir=path.parent))
    (tmp / MARKER_FILE).write_text(f"rem_tf.export {os.getpid()} {socket.gethostname()}\n")
    return tmp


def _remove_stale_temporaries(path):
    """Removes the temporary directories of earlier exports to `path` whose process is gone.

    Only directories named `.<name>.rem_tf-export-*` that hold the marker file
    (written by an export on this host whose process no longer runs, or by an
    earlier export of this process, which has ended) and nothing an export does
    not write.
    """
    for entry in path.parent.glob(f".{glob.escape(path.name)}{_TEMP_INFIX}*"):
        marker = entry / MARKER_FILE
        if entry.is_symlink() or not marker.is_file() or _foreign_entry(entry) is not None:
            continue
        fields = marker.read_text(errors="replace").split()
        if (len(fields) == 3 and fields[0] == "rem_tf.export" and fields[1].isdigit()
                and fields[2] == socket.gethostname()
                and (int(fields[1]) == os.getpid() or not _process_alive(int(fields[1])))):
            shutil.rmtree(entry)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_saved_model(path):
    """True if `path` is a SavedModel directory."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load(path):
    """Loads an exported model with TensorFlow only (`tf.saved_model.load`).

    Returns:
      An object with the functions `log_likelihood`, `log_likelihood_shifted`
      (exports since rem_tf 0.2), `elbo`, `encode`, `decode`, `sample` and the dict
      `signatures`.
    """
    if not is_saved_model(path):
        raise ValueError(f"{path} is not a SavedModel directory (no saved_model.pb in it)")
    return tf.saved_model.load(str(path))


def metadata(path):
    """The metadata `export` stored with the SavedModel at `path` ({} if none)."""
    file = pathlib.Path(path) / "assets.extra" / METADATA_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


__all__ = [
    "ModelFunctions", "SERVING_DEFAULT", "SIGNATURES", "export", "is_saved_model", "load",
    "metadata",
]
