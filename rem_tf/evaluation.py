"""Test-set evaluation: importance-sampled log-likelihood, ELBO, KL to the prior, active units.

Works on a live `GenerativeModel` and on a SavedModel loaded with
`rem_tf.export.load` (or plain `tf.saved_model.load`): both are used through
the same functions (`log_likelihood`, `elbo`, `encode`), see `rem_tf.export`.

#### References

Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders":
the K = 5000 importance-sampled log-likelihood (§5) and active units,
A_u = Cov_x(E_{u~q(u|x)}[u]) > 10⁻² (§5.2). Dieng & Paisley (2019), Figure 2:
KL(r(z|x) ‖ p(z)) averaged over the test set.
"""

import functools
import time
import warnings

import numpy as np
import tensorflow as tf

from rem_tf import estimators
from rem_tf.models import datasets as input_datasets
from rem_tf.models.base import GenerativeModel
from rem_tf.validation import PROPOSALS, as_numeric_array, check_array, checked_message

_LOG_LIKELIHOOD_FUNCTIONS = {"encoder": "log_likelihood", "shifted": "log_likelihood_shifted"}


def as_functions(model_or_loaded, *, chunk_size=200, elbo_samples=100):
    """The exported functions of a live model, or the loaded SavedModel itself.

    Args:
      model_or_loaded: a `GenerativeModel` (wrapped in `rem_tf.export.ModelFunctions`
        with `chunk_size` and `elbo_samples`), or an object with `log_likelihood`,
        `elbo` and `encode` functions (a loaded SavedModel, whose chunk size and
        ELBO samples were fixed when it was exported).
    """
    from rem_tf.export import ModelFunctions  # noqa: PLC0415 (keeps imports light)

    if isinstance(model_or_loaded, GenerativeModel):
        return ModelFunctions(model_or_loaded, chunk_size=chunk_size, elbo_samples=elbo_samples)
    missing = [n for n in ("log_likelihood", "elbo", "encode") if not hasattr(model_or_loaded, n)]
    if missing:
        raise TypeError(
            f"expected a GenerativeModel or a SavedModel exported by rem_tf.export; "
            f"{type(model_or_loaded).__name__} has no {', '.join(missing)}"
        )
    return model_or_loaded


def _as_input_shape(images, functions):
    """[N, *input_shape] or flattened [N, D] images -> [N, *input_shape]; else ValueError."""
    signature = getattr(functions.log_likelihood, "input_signature", None)
    if not signature:
        return images
    image_shape = tuple(signature[0].shape[1:])
    if images.shape[1:] == image_shape:
        return images
    if images[0].size != int(np.prod(image_shape)):
        raise ValueError(
            f"the model expects images of shape {image_shape} (or flattened "
            f"({int(np.prod(image_shape))},)); got a batch of shape {images.shape}"
        )
    return images.reshape((len(images),) + image_shape)


def active_units(encoder_means_variance, threshold=0.01):
    """Number of latent dimensions whose encoder mean varies over the data by more than `threshold`.

    Args:
      encoder_means_variance: [L] variance over the dataset of E_r[z_l | x].
      threshold: Burda et al.'s 0.01.
    """
    return int(np.sum(np.asarray(encoder_means_variance) > threshold))


def evaluate_model(
    model_or_loaded,
    images,
    *,
    num_samples=5000,
    chunk_size=200,
    batch_size=100,
    elbo_samples=100,
    active_units_threshold=0.01,
    progress=None,
    proposal="encoder",
    per_example=False,
):
    """Evaluates a model on images (binary for a Bernoulli likelihood, finite otherwise).

    Memory is bounded by batch_size × chunk_size particles (times the image
    size) whatever `num_samples` and the number of images are.

    Args:
      model_or_loaded: a `GenerativeModel` or a loaded SavedModel (see `as_functions`).
      images: float32 array [N, *input_shape] (or flattened [N, D]) in the
        likelihood's support (binary for "bernoulli"); a SavedModel checks it in-graph.
        Or a finite batched tf.data.Dataset of them (or of (images, ...) tuples or dicts
        with an "image" entry): the same result as on its images concatenated.
      num_samples: K of the importance-sampled log-likelihood (the field's convention: 5000).
      chunk_size: particles per chunk (live models only; a SavedModel uses its own).
      batch_size: images per call.
      elbo_samples: particles of the ELBO estimate (live models only).
      active_units_threshold: variance threshold of an active unit.
      progress: optional callable(done, total) called after every batch.
      proposal: "encoder" (default: z_k ~ r(z|x)) or "shifted" (the authors'
        estimator: a second pass of K samples around the weighted mean of the
        first; see `GenerativeModel.chunked_log_likelihood`).
      per_example: also return `per_example_log_likelihood`, the [N] list of the
        images' estimates (for paired comparisons of two models on the same images).

    Returns:
      dict with `nll` (nats, = −log_likelihood), `log_likelihood`, `proposal`, `elbo`,
      `kl_to_prior` (analytic KL(r(z|x) ‖ N(0, I)), averaged), `active_units`,
      `latent_dim`, `encoder_mean_variance` ([L] list), `num_examples`,
      `num_samples`, `seconds`; averages are over the N images.
    """
    for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size),
                        ("batch_size", batch_size), ("elbo_samples", elbo_samples)):
        # int32: the exports of rem_tf < 0.3 take K as an int32.
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not 1 <= value <= np.iinfo(np.int32).max):
            raise ValueError(f"{name} must be an integer in [1, 2**31 - 1], got {value!r}")
    if (isinstance(active_units_threshold, bool)
            or not isinstance(active_units_threshold, (int, float, np.integer, np.floating))
            or not 0 <= active_units_threshold < np.inf):
        raise ValueError(f"active_units_threshold must be a finite number >= 0, got "
                         f"{active_units_threshold!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {progress!r}")
    if isinstance(images, tf.data.Dataset):
        images = input_datasets.to_array(images, "images")
    images = as_numeric_array(images, "images").astype(np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"expected a non-empty batch of images, got shape {images.shape}")
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if isinstance(model_or_loaded, GenerativeModel):  # a live model: its likelihood's support
        images = check_array(model_or_loaded, images, name="images")
    functions = as_functions(model_or_loaded, chunk_size=chunk_size, elbo_samples=elbo_samples)
    images = _as_input_shape(images, functions)
    log_likelihood = getattr(functions, _LOG_LIKELIHOOD_FUNCTIONS[proposal], None)
    if log_likelihood is None:
        raise ValueError(
            f"this SavedModel has no {_LOG_LIKELIHOOD_FUNCTIONS[proposal]} function (exported "
            "by an older rem_tf); export it again, or use proposal='encoder'"
        )
    start = time.time()
    n = len(images)
    sums = {"log_likelihood": 0.0, "elbo": 0.0, "kl_to_prior": 0.0}
    loc_sum = loc_sq_sum = None  # [L] float64, for the variance of the encoder means
    per_image = []  # [N] log p̂(x), when per_example
    for first in range(0, n, int(batch_size)):
        x = images[first : first + int(batch_size)]
        try:  # a SavedModel checks the values of x in-graph
            log_px = np.asarray(log_likelihood(x, np.int32(num_samples)), np.float64)  # [B]
        except tf.errors.InvalidArgumentError as error:
            message = checked_message(error)
            if message is None:
                raise
            raise ValueError(f"images: {message}") from None
        elbo = np.asarray(functions.elbo(x), np.float64)  # [B]
        codes = functions.encode(x)
        loc = np.asarray(codes["loc"], np.float64)  # [B, L]
        kl = estimators.kl_diag_normal_to_standard(codes["loc"], codes["scale"])  # [B]
        kl = np.asarray(kl, np.float64)
        sums["log_likelihood"] += log_px.sum()
        if per_example:
            per_image.extend(float(v) for v in log_px)
        sums["elbo"] += elbo.sum()
        sums["kl_to_prior"] += kl.sum()
        loc_sum = loc.sum(0) if loc_sum is None else loc_sum + loc.sum(0)
        loc_sq_sum = (loc**2).sum(0) if loc_sq_sum is None else loc_sq_sum + (loc**2).sum(0)
        if progress is not None:
            progress(min(first + int(batch_size), n), n)
    means = {k: v / n for k, v in sums.items()}
    variance = np.maximum(loc_sq_sum / n - (loc_sum / n) ** 2, 0.0)  # [L]
    out = {
        "nll": -means["log_likelihood"],
        "log_likelihood": means["log_likelihood"],
        "proposal": proposal,
        "elbo": means["elbo"],
        "kl_to_prior": means["kl_to_prior"],
        "active_units": active_units(variance, active_units_threshold),
        "active_units_threshold": float(active_units_threshold),
        "latent_dim": int(len(variance)),
        "encoder_mean_variance": [float(v) for v in variance],
        "num_examples": int(n),
        "num_samples": int(num_samples),
        "seconds": time.time() - start,
    }
    if per_example:
        out["per_example_log_likelihood"] = per_image
    return out


@functools.wraps(evaluate_model, assigned=())  # its signature (`inspect.signature`), not its doc
def evaluate(*args, **kwargs):
    """Deprecated: the old name of `evaluate_model`, removed in the release after 0.1."""
    warnings.warn("rem_tf.evaluation.evaluate is renamed rem_tf.evaluation.evaluate_model; the "
                  "old name will be removed in the next release", DeprecationWarning, stacklevel=2)
    return evaluate_model(*args, **kwargs)


def format_table(results, title=None):
    """A small text table of the main numbers of `evaluate_model`."""
    rows = [
        ("NLL (nats)", f"{results['nll']:.3f}"),
        ("log-likelihood", f"{results['log_likelihood']:.3f}"),
        ("ELBO", f"{results['elbo']:.3f}"),
        ("KL(r(z|x) || p(z))", f"{results['kl_to_prior']:.3f}"),
        ("active units", f"{results['active_units']} / {results['latent_dim']}"),
        ("K (importance samples)", f"{results['num_samples']}"),
        *([("proposal", results["proposal"])] if results.get("proposal", "encoder") != "encoder"
          else []),
        ("images", f"{results['num_examples']}"),
    ]
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * (value_width + 2) + "+"
    out = [line]
    if title:
        out += [f"| {title:<{width + value_width + 3}} |", line]
    out += [f"| {name:<{width}} | {value:>{value_width}} |" for name, value in rows]
    out.append(line)
    return "\n".join(out)
