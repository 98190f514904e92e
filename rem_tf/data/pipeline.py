"""The one tf.data pipeline over every source's decoded images: binarization, shuffling,
batching, prefetch; and ``binarize`` for your own arrays and datasets.

Its op sequence fixes the order and the samples a seed gives, which resumed training runs
rely on bit for bit: change it only on purpose.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from .arrays import Raw, as_float, bernoulli, fixed_binary, normalize, threshold_binary
from .common import (BINARIZATIONS, BINARY_NAMES, FIXED_SEED, TRAIN_SPLITS, DataError, cached,
                     check_seed)


def binarization_mode(name: str, split: str, binarization: Optional[str]) -> str:
    """``dynamic`` / ``fixed`` / ``threshold``, or ``none`` for already binary data."""
    if name in BINARY_NAMES:
        return "none"  # already binary: every Bernoulli / threshold is the identity
    if binarization is None:
        return "dynamic" if split in TRAIN_SPLITS else "fixed"
    return binarization


def stored_values(raw: Raw, mode: str, fixed_seed: int) -> tuple[np.ndarray, float]:
    """(values [N, *image_shape], scale) to slice: binary for ``fixed`` / ``threshold``,
    the intensities ``raw.values / scale`` for ``dynamic`` / ``none``."""
    if mode == "fixed":
        # Keyed by the identity of the (cached) decoded array, which the entry keeps
        # alive, so the key cannot be reused by another array.
        key = ("fixed", fixed_seed, id(raw.values))
        return cached(key, lambda: (raw.values, fixed_binary(raw, fixed_seed)))[1], 1.0
    if mode == "threshold":
        return threshold_binary(raw), 1.0
    return raw.values, float(raw.scale)


def make_dataset(
    values: np.ndarray,
    scale: float,
    *,
    dynamic: bool,
    shuffle: bool,
    seed: int,
    batch_size: Optional[int],
    drop_remainder: bool,
) -> tf.data.Dataset:
    """Dataset of float32 ``values / scale`` [*image_shape] (or batches [B, *image_shape]).

    ``shuffle``: full-buffer shuffle seeded by ``seed``, new order every pass.
    ``dynamic``: each element (or batch) is replaced by a Bernoulli sample of it, with a
    stateless seed drawn from ``Dataset.random(seed + 1)``: new samples every pass (every
    new iterator), the same sequence for a fresh pipeline with the same ``seed``.
    """

    def intensities(x):
        x = tf.cast(x, tf.float32)
        return x / scale if scale != 1.0 else x

    ds = tf.data.Dataset.from_tensor_slices(values)
    if shuffle:
        ds = ds.shuffle(len(values), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if dynamic:
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda x, s: bernoulli(intensities(x), s), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(intensities, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Autotuning off: its background thread made freeing a used iterator (every Keras epoch)
    # wait ~20-40 s on one core (benchmarks/iterator_teardown.py); these ops are cheap.
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


# ----------------------------------------------------------- your own images: binarize

IMAGE_KEY = "image"  # the image entry of a dict element (what tfds.load gives)


def binarize(images, mode: str = "fixed", seed: int = FIXED_SEED, *, key: str = IMAGE_KEY):
    """Binary images from grey levels (for the Bernoulli likelihood), as ``load`` makes them.

    Args:
      images: a NumPy array [N, ...] of integers 0..255 (0/1 integers count as binary),
        bools or floats in [0, 1]; or a ``tf.data.Dataset`` whose elements are images,
        ``(images, ...)`` tuples or dicts (the ``key`` entry, e.g. from ``tfds.load``) of
        any shape, with integer images read as grey levels 0..255.
      mode: ``"fixed"``: one Bernoulli(intensity) sample drawn with ``seed``, the same
        every call (for a dataset: every pass over the same element order);
        ``"dynamic"`` (datasets only): a new sample every pass, the same sequence for a
        fresh dataset with the same ``seed`` (for training); ``"threshold"``: intensity >
        0.5; ``"none"``: the intensities in [0, 1] (no binarization).
      seed: non-negative int.
      key: the image entry of dict elements.
    Returns:
      float32 array of the images' shape (values 0/1), or a dataset of the same structure
      with the images replaced by float32 ones.
    """
    if mode not in BINARIZATIONS:
        raise DataError(f"unknown binarization mode {mode!r}; valid: {', '.join(BINARIZATIONS)}")
    check_seed("seed", seed)
    if isinstance(images, tf.data.Dataset):
        return _binarize_dataset(images, mode, int(seed), key)
    if mode == "dynamic":
        raise DataError("binarize(array, 'dynamic'): an array is sampled once; use 'fixed' "
                        "(one Bernoulli sample), or pass a tf.data.Dataset for a new sample "
                        "every pass")
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as err:
        raise DataError(f"images must be an array of numbers: {err}") from None
    raw = normalize(array, "binarize", "images", binary=False)
    if mode == "fixed":
        return fixed_binary(raw, int(seed)).astype(np.float32)
    if mode == "threshold":
        return threshold_binary(raw).astype(np.float32)
    return as_float(raw)


def _binarize_dataset(dataset: tf.data.Dataset, mode: str, seed: int, key: str):
    spec = dataset.element_spec
    if isinstance(spec, dict) and key not in spec:
        raise DataError(f"the dataset's elements are dicts without the image key {key!r} "
                        f"(keys: {', '.join(map(str, spec))}); pass key=<the image key>")

    def get(element):
        if isinstance(spec, dict):
            return element[key]
        return element[0] if isinstance(spec, tuple) else element

    def put(element, x):
        if isinstance(spec, dict):
            return {**element, key: x}
        return (x, *element[1:]) if isinstance(spec, tuple) else x

    def intensities(element):
        x = get(element)
        return tf.cast(x, tf.float32) / 255.0 if x.dtype.is_integer else tf.cast(x, tf.float32)

    if mode == "dynamic":
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip((dataset, seeds)).map(
            lambda e, s: put(e, bernoulli(intensities(e), s)))
    if mode == "fixed":
        return dataset.enumerate().map(
            lambda i, e: put(e, bernoulli(intensities(e), tf.stack([tf.constant(seed, tf.int64),
                                                                    i]))))
    def element(args):  # map passes a tuple element as separate arguments
        return args if isinstance(spec, tuple) else args[0]

    if mode == "threshold":
        return dataset.map(lambda *a: put(element(a), tf.cast(intensities(element(a)) > 0.5,
                                                              tf.float32)))
    return dataset.map(lambda *a: put(element(a), intensities(element(a))))
