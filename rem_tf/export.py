"""SavedModel export of a trained model with named signatures, and loading.

The SavedModel needs TensorFlow only — not `rem_tf`, not the Python source:

    import tensorflow as tf
    loaded = tf.saved_model.load("workdir/saved_model")
    log_px = loaded.log_likelihood(images, 5000)      # [B] nats, images float32 [B, 28, 28, 1]
    codes = loaded.encode(images)                     # {"loc": [B, L], "scale": [B, L]}
    pictures = tf.sigmoid(loaded.decode(codes["loc"]))  # [B, 28, 28, 1] pixel probabilities

Functions (callable as attributes of the loaded object, and as signatures in
`loaded.signatures[name]`, which take keyword arguments and return dicts):

| name | inputs | returns (signature output key) |
|---|---|---|
| `log_likelihood` | x float32 [B, *input_shape] (binary for a Bernoulli likelihood, finite otherwise), num_samples int64 [] >= 1 | [B] log p(x), importance-sampled with K = num_samples, chunked (`log_likelihood`) |
| `log_likelihood_shifted` | x, num_samples | [B] the authors' estimator: K encoder samples give the weighted mean μ̂, then K samples from N(μ̂, diag(scale²)) (`log_likelihood`) |
| `elbo` | x | [B] ELBO estimate, mean of `elbo_samples` log weights (`elbo`) |
| `encode` | x | dict loc, scale [B, L] of r(z\\|x) (`loc`, `scale`) |
| `decode` | z float32 [B, L], finite | the likelihood's parameters [B, *input_shape]: Bernoulli logits (`logits`); Gaussian mean (`loc`, and `scale` in the signature); a custom likelihood's decoder output (`params`) |
| `sample` | num int64 [] >= 0 | [num, *input_shape] drawn from the model, binary for Bernoulli (`images`) |

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
"""

import json
import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from rem_tf.models.base import _INT32_MAX, GenerativeModel, check_integer, in_graph_check

SIGNATURES = ("log_likelihood", "log_likelihood_shifted", "elbo", "encode", "decode", "sample")
METADATA_FILE = "rem_tf.json"
_FINITE = "(no NaN or Inf)"


class ModelFunctions(tf.Module):
    """The exported interface of a `GenerativeModel`, as `tf.function`s with fixed input signatures.

    The same object serves a live model (e.g. `rem_tf.evaluation.evaluate`) and
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
        check_integer("chunk_size", chunk_size, maximum=_INT32_MAX)
        check_integer("elbo_samples", elbo_samples, maximum=_INT32_MAX)
        self.chunk_size = int(chunk_size)
        self.elbo_samples = int(elbo_samples)
        # Tracked so that the SavedModel holds every variable the functions use
        # (weights and the particle seed state); the model itself is not tracked.
        self.model_variables = list(model.variables)
        image_shape = tuple(model.image_shape)
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

        image_spec = tf.TensorSpec([None, *image_shape], tf.float32, name="x")

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
            return tf.reshape(model.decode(z), [-1, *image_shape])  # [B, *input_shape]

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
        return {
            **{
                name: tf.function(
                    lambda x, num_samples, f=getattr(self, name): {"log_likelihood": f(x, num_samples)},
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


def export(model, path, *, chunk_size=200, elbo_samples=100, metadata=None):
    """Saves `model` as a SavedModel at `path` (replacing what is there).

    Args:
      model: a built `GenerativeModel`, created outside any distribution strategy
        (copy the weights of a distributed model into a plain one first).
      path: output directory.
      chunk_size: particles per chunk of `log_likelihood` / `elbo`.
      elbo_samples: particles of the `elbo` function.
      metadata: extra JSON-serializable dict stored in `assets.extra/rem_tf.json`.

    Returns:
      `path` as a string. The directory is written next to its final place and
      renamed, so a crash never leaves a half-written SavedModel at `path`.

    Raises:
      ValueError: `path` exists and is not a SavedModel directory (a file, or a
        non-empty directory of other files): it is never replaced.
    """
    path = pathlib.Path(path)
    if path.exists() and not is_saved_model(path) and not (path.is_dir()
                                                            and not any(path.iterdir())):
        raise ValueError(
            f"export path {path} exists and is not a SavedModel directory; it is not replaced. "
            "Give a new path (or an earlier export's directory, which is replaced)."
        )
    functions = ModelFunctions(model, chunk_size=chunk_size, elbo_samples=elbo_samples)
    info = {
        "format": "rem_tf.export/1",
        "class": type(model).__name__,
        "input_shape": list(model.image_shape),
        "latent_dim": int(model.latent_dim),
        "likelihood": model.likelihood.describe(),
        "decode_outputs": sorted(functions.decode_parameters.get_concrete_function().structured_outputs),
        "chunk_size": functions.chunk_size,
        "elbo_samples": functions.elbo_samples,
        "signatures": list(SIGNATURES),
        **(metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(functions, str(tmp), signatures=functions.signatures())
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / METADATA_FILE).write_text(json.dumps(info, indent=2, default=str))
        if path.exists():
            old = path.with_name(f".{path.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


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


__all__ = ["ModelFunctions", "SIGNATURES", "export", "is_saved_model", "load", "metadata"]
