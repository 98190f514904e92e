"""Argument and input checks shared by the models, the data, the experiment config, evaluation
and export.

- Arguments: `is_integer` / `check_integer` (the one integer check), `as_numeric_array`,
  `check_choice`, `check_sizes`, `check_positive_number`, `check_decoder_output_bias`,
  `check_probe_scale`, the float32 checks, the integer limits and the valid choices
  (`PROPOSALS`, `SCALE_ACTIVATIONS`).
- In-graph checks: `in_graph_check` asserts with a message starting with `CHECK_MARKER`;
  `checked_message` finds it in a TensorFlow error, so callers can raise a plain ValueError.
- A model's input (functions over a `GenerativeModel`, as Keras's data adapters are over
  data): `check_batch_shape`, `flatten_images`, `check_array`, `check_dataset`,
  `check_input` (the dispatch of `fit` and `evaluate`), `check_latents` and, in-graph,
  `check_step_images`.

Every check raises a ValueError naming the argument and what to do; callers with an error type
of their own (`rem_tf.data.DataError`, `rem_tf.experiment.ConfigError`) use `is_integer`.
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from rem_tf import likelihoods

# Every message of an in-graph check starts with this; `fit`, `evaluate` and the
# evaluation functions turn a TensorFlow error that carries it into a ValueError.
CHECK_MARKER = "rem_tf: "
INT32_MAX = int(np.iinfo(np.int32).max)
INT64_MAX = int(np.iinfo(np.int64).max)
# Proposals of the importance-sampled log-likelihood (`GenerativeModel.chunked_log_likelihood`).
PROPOSALS = ("encoder", "shifted")
# Scale heads of the built-in encoder (`rem_tf.networks.positive_scale`).
SCALE_ACTIVATIONS = ("exp", "softplus")


# ------------------------------------------------------------------------- arguments


def is_integer(value):
    """True for a Python or NumPy integer, False for bools (also NumPy's) and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_integer(name, value, minimum=1, maximum=None):
    """value as a Python int; ValueError naming `name` unless it is an integer in range."""
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_choice(name, value, valid):
    """ValueError naming `name` unless `value` is one of the tuple `valid`."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")


def check_sizes(name, sizes, allow_empty=False):
    """An int or a sequence of integers >= 1 as a tuple of ints; ValueError naming `name`."""
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    if not allow_empty and (not isinstance(sizes, (tuple, list)) or not sizes):
        raise ValueError(f"{name} must be a non-empty tuple of sizes, got {sizes!r}")
    return tuple(check_integer(f"every {name} entry", size) for size in sizes)


def check_positive_number(name, value):
    """value as a float; ValueError naming `name` unless it is a finite real number > 0."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0 < float(value) < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def as_numeric_array(value, name):
    """np.asarray(value) of a bool, integer or float dtype; ValueError naming `name` otherwise."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, unconvertible objects
        raise ValueError(f"{name} must be an array of numbers: {err}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be an array of numbers (bool, int or float), got dtype {array.dtype}"
        )
    return array


def check_decoder_output_bias(bias, own_decoder):
    """ValueError unless `bias` (the built-in decoder's initial output bias [D]) is None, or
    finite numbers and the decoder the built-in one (`own_decoder` False)."""
    if own_decoder and bias is not None:
        raise ValueError(
            "decoder_output_bias sets the built-in decoder's output bias; with your own "
            "decoder, initialize its output layer instead"
        )
    if bias is not None and not np.all(np.isfinite(as_numeric_array(bias, "decoder_output_bias"))):
        raise ValueError("decoder_output_bias must hold finite numbers (no NaN or Inf)")


def check_probe_scale(scale):
    """ValueError unless the scale [B, L] of a user's encoder on an all-zeros batch is > 0."""
    if not np.all(scale.numpy() > 0):
        raise ValueError(
            "the encoder's scale must be > 0; on an all-zeros batch it returned "
            f"{scale.numpy()[0].tolist()}. Apply e.g. softplus or exp to its scale head "
            "(rem_tf.networks.GaussianEncoder does)."
        )


def check_float32(what, policy):
    """ValueError unless the Keras dtype policy `policy` (None: not a Keras layer) is plain
    float32, e.g. a `dtype` of "float16" or "mixed_float16" in a .keras file's config."""
    if policy is not None and (policy.name, policy.compute_dtype, policy.variable_dtype) != (
            "float32", "float32", "float32"):
        raise ValueError(f"rem_tf models compute in float32; {what} has the Keras dtype policy "
                         f"{policy.name!r} (a dtype= argument or a .keras file's config); use "
                         "'float32'")


def check_global_float32():
    """ValueError unless the global Keras dtype policy computes in float32."""
    policy = keras.config.dtype_policy()
    if policy.compute_dtype != "float32":
        raise ValueError(
            f"rem_tf models compute in float32; the global Keras dtype policy is "
            f"{policy.name!r} (set it back with keras.config.set_dtype_policy('float32'))"
        )


# ------------------------------------------------------------------- in-graph checks


def in_graph_check(ok, message):
    """An assertion that raises InvalidArgumentError(message) when `ok` is False.

    XLA ignores assertions; under `jit_compile` the value checks of a training
    step therefore turn bad input into a NaN loss instead (`check_step_images`).
    """
    return tf.debugging.Assert(ok, [CHECK_MARKER + message.removeprefix(CHECK_MARKER)])


def checked_message(error):
    """The message of a failed rem_tf in-graph check inside a TensorFlow error, or None."""
    text = str(error)
    starts = [i for i in (text.find(CHECK_MARKER), text.find("rem_tf SavedModel: ")) if i >= 0]
    if not starts:  # ("rem_tf SavedModel: " is the marker of exports before rem_tf 0.3)
        return None
    return text[min(starts):].splitlines()[0].rstrip("]").rstrip()


# ---------------------------------------------------------------- a model's input


def check_batch_shape(model, batch_shape, what="a batch"):
    """Raises ValueError unless batch_shape is [B, *input_shape] or [B, D] of `model`."""
    batch_shape = tuple(batch_shape)
    per_example = batch_shape[1:]
    if per_example in (model.input_shape, (model.data_dim,)):
        return
    hint = f"Build the model with input_shape={per_example} or reshape the data."
    if batch_shape in (model.input_shape, (model.data_dim,)):
        hint = ("It looks unbatched: batch it, e.g. dataset.batch(20) or "
                "rem_tf.data.load(..., batch_size=20).")
    raise ValueError(
        f"{type(model).__name__} expects images of shape {model.input_shape} "
        f"(or flattened ({model.data_dim},)) per example; got {what} of shape "
        f"{batch_shape}. {hint}"
    )


def flatten_images(model, x):
    """[B, *input_shape] (or [B, D]) -> float32 [B, D]; a wrong shape raises ValueError.

    A shape that is not static (e.g. a retraced step, [None, None]) is checked in-graph.
    """
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype.is_bool):
        raise ValueError(f"x must hold numbers (bool, int or float), got dtype {x.dtype.name}")
    if x.shape.rank is not None and x.shape.rank >= 2 and not x.shape[1:].is_fully_defined():
        ok = tf.equal(tf.reduce_prod(tf.shape(x)[1:]), model.data_dim)
        with tf.control_dependencies([in_graph_check(ok, (
                f"{type(model).__name__} expects images of shape {model.input_shape} (or "
                f"flattened ({model.data_dim},)) per example; got a batch of another shape. "
                "Build the model with the data's input_shape or reshape the data."))]):
            x = tf.identity(x)
    else:
        check_batch_shape(model, x.shape, "x")
    return tf.reshape(tf.cast(x, tf.float32), [-1, model.data_dim])


def _first_bad(x, bad):
    """(value, index) of the first True of `bad` in x, for an error message."""
    first = np.argwhere(bad)[0]
    return x[tuple(first)].item(), tuple(int(i) for i in first)


def values_error(model, x, bad, name):
    """The ValueError for values of x outside `model`'s likelihood support (`bad`: [*x.shape])."""
    value, index = _first_bad(x, bad)
    hint = (" Binarize the data first: rem_tf.data.binarize(x, 'fixed') (one Bernoulli "
            "sample; or 'threshold'), or for a new sample every epoch "
            "rem_tf.data.binarize(dataset, 'dynamic') on a tf.data.Dataset."
            if isinstance(model.likelihood, likelihoods.Bernoulli) else "")
    return ValueError(
        f"{model.likelihood.values_message().replace(' x ', f' {name} ', 1)}; found "
        f"{value!r} at index {index}.{hint}"
    )


def check_array(model, x, name="x", values="likelihood", allow_empty=False):
    """x as a float32 numpy batch for `model` after dtype, shape and value checks (ValueError).

    values: "likelihood" (the likelihood's support: binary for Bernoulli,
    finite otherwise) or "finite".
    """
    x = as_numeric_array(x, name)
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch of images [B, *input_shape] = [B, "
            f"{', '.join(map(str, model.input_shape))}], got an array of shape {x.shape}"
        )
    check_batch_shape(model, x.shape, f"{name}, an array")
    if len(x) == 0 and not allow_empty:
        raise ValueError(f"{name} holds no examples (an empty batch of shape {x.shape})")
    if values == "likelihood":
        bad = model.likelihood.invalid_numpy(x)
        if bad.any():
            raise values_error(model, x, bad, name)
    elif not np.all(np.isfinite(x)):
        value, index = _first_bad(x, ~np.isfinite(x))
        raise ValueError(
            f"{name} must hold finite values (no NaN or Inf); found {value!r} at index {index}"
        )
    return x.astype(np.float32)


def check_dataset(model, dataset):
    """The dataset's images for `model`, element shape checked; the values are checked in
    every step (`check_step_images`).

    Elements may be images, (images, ...) tuples or dicts with an "image" entry (those
    become their images). Integer images for the Bernoulli likelihood: the first
    batch is read, so that grey levels 0..255 give one error with the fix.
    """
    # Imported here: rem_tf.models imports this module.
    from rem_tf.models import datasets as input_datasets  # noqa: PLC0415

    dataset = input_datasets.images_only(dataset)
    images_spec = input_datasets.images_spec(dataset.element_spec)
    if int(dataset.cardinality()) == 0:
        raise ValueError("x is an empty dataset (no batches); nothing to train or evaluate on")
    if images_spec.shape.rank is not None and images_spec.shape[1:].is_fully_defined():
        check_batch_shape(model, images_spec.shape, "dataset elements")
    if images_spec.dtype.is_integer and isinstance(model.likelihood, likelihoods.Bernoulli):
        largest = input_datasets.first_batch_max(dataset)
        if largest is not None and largest > 1:
            raise ValueError(
                f"the dataset holds {images_spec.dtype.name} images with values up to "
                f"{largest:g} (grey levels); the Bernoulli likelihood needs binary images. "
                "Binarize them first: rem_tf.data.binarize(dataset, 'dynamic') (a new "
                "Bernoulli sample every epoch), 'fixed' or 'threshold'; for a Gaussian "
                "likelihood scale them to [0, 1] (mode 'none')")
    return dataset


def check_latents(model, z):
    """z [..., L] of `model` as a finite numeric numpy array; ValueError otherwise."""
    array = as_numeric_array(z, "z")
    if array.ndim < 1 or array.shape[-1] != model.latent_dim:
        raise ValueError(
            f"z must have shape [..., latent_dim] = [..., {model.latent_dim}], got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("z must hold finite values (no NaN or Inf)")
    return array


def check_step_images(model, x):
    """A training or test step's images x [B, *input_shape] (or [B, D]) -> float32 [B, D],
    with the likelihood's value check in-graph.

    One reduce over the batch (binary for Bernoulli, finite otherwise) and an
    assertion; under XLA, which drops assertions, bad values become NaN
    instead, so the loss is NaN and `fit` stops.
    """
    x = flatten_images(model, x)
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:  # a replica's share may be empty
        with tf.control_dependencies([in_graph_check(
                tf.shape(x)[0] > 0, "x holds no examples (an empty batch)")]):
            x = tf.identity(x)
    ok = model.likelihood.valid(x)
    if getattr(model, "jit_compile", False):
        x = tf.where(ok, x, np.nan)
    with tf.control_dependencies([in_graph_check(ok, model.likelihood.values_message())]):
        return tf.identity(x)


def check_input(model, x):
    """`fit`'s and `evaluate`'s x (or validation data) for `model`: arrays and datasets
    checked here, None as it is; generators, PyDatasets and distributed datasets are
    checked in every step."""
    if x is None:
        return None
    if isinstance(x, tf.data.Dataset):
        return check_dataset(model, x)
    if isinstance(x, dict):
        raise ValueError("expected images (an array, dataset, PyDataset or generator of "
                         "batches), not a dict")
    if isinstance(x, (np.ndarray, np.generic, numbers.Number, tf.Tensor, list)):
        return check_array(model, x)
    return x
