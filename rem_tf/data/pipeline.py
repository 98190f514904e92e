"""The tf.data pipeline over decoded images: binarization, shuffling, batching, prefetch.

Its op sequence fixes the order and the samples a seed gives, which resumed training runs
rely on bit for bit: change it only on purpose.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from .arrays import Raw, bernoulli, fixed_binary, threshold_binary
from .common import BINARY_NAMES, TRAIN_SPLITS, cached


def binarization_mode(name: str, split: str, binarization: Optional[str]) -> str:
    """``dynamic`` / ``fixed`` / ``threshold``, or ``none`` for already binary data."""
    if name in BINARY_NAMES:
        return "none"  # already binary: every Bernoulli / threshold is the identity
    if binarization is None:
        return "dynamic" if split in TRAIN_SPLITS else "fixed"
    return binarization


def stored_values(raw: Raw, mode: str, fixed_seed: int) -> tuple[np.ndarray, float]:
    """(values [N, 28, 28, 1], scale) to slice: binary for ``fixed`` / ``threshold``,
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
    """Dataset of float32 ``values / scale`` [28, 28, 1] (or batches [B, 28, 28, 1]).

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
    return ds.prefetch(tf.data.AUTOTUNE)
