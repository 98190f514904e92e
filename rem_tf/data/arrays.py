"""Image arrays: conversion to [N, 28, 28, 1], shape and value checks, content digests
and the binarizations (numpy for ``fixed`` / ``threshold``, TF for ``dynamic``)."""

from __future__ import annotations

import collections
import hashlib

import numpy as np
import tensorflow as tf

from .common import DataError


class Raw(collections.namedtuple("Raw", ["values", "scale", "origin"])):
    """Decoded images ``values`` [N, *image_shape] (uint8 or float32; [N, 28, 28, 1] for
    the paper's data); intensity = values / scale.

    ``origin`` names where they came from, for messages.
    """


def as_float(raw: Raw) -> np.ndarray:
    """Intensities float32 [N, *image_shape] in [0, 1] (a fresh array)."""
    values = raw.values.astype(np.float32)
    if raw.scale != 1:
        values /= np.float32(raw.scale)
    return values


def concatenate(parts: list[Raw]) -> Raw:
    """One Raw of several splits (e.g. train + validation), in order."""
    if len(parts) == 1:
        return parts[0]
    if len({p.scale for p in parts}) == 1 and len({p.values.dtype for p in parts}) == 1:
        values, scale = np.concatenate([p.values for p in parts]), parts[0].scale
    else:
        values, scale = np.concatenate([as_float(p) for p in parts]), 1
    return Raw(values, scale, " + ".join(p.origin for p in parts))


def to_images(array: np.ndarray, where: str, what: str) -> np.ndarray:
    """[N, 784] (row-major) / [N, 28, 28] / [N, 28, 28, 1] -> [N, 28, 28, 1], else DataError."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 784:
        return array.reshape(-1, 28, 28, 1)
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        return array[..., None]
    if array.ndim == 4 and array.shape[1:] == (28, 28, 1):
        return array
    raise DataError(
        f"{where}: {what} has shape {array.shape}; expected [N, 784], [N, 28, 28] "
        "or [N, 28, 28, 1] (28x28 images)"
    )


def to_any_images(array: np.ndarray, where: str, what: str) -> np.ndarray:
    """Images of any shape: [N, H, W] -> [N, H, W, 1]; [N, D] and [N, H, W, C] as they are."""
    array = np.asarray(array)
    if array.ndim < 2 or 0 in array.shape[1:]:
        raise DataError(f"{where}: {what} has shape {array.shape}; expected a stack of "
                        "images [N, H, W], [N, H, W, C] or vectors [N, D]")
    return array[..., None] if array.ndim == 3 else array


def normalize(images: np.ndarray, where: str, what: str, binary: bool) -> Raw:
    """Check the values of ``images`` [N, ...] and choose the stored dtype / scale.

    bool and 0/1 -> uint8, scale 1; integers 0..255 -> uint8, scale 255; floats in
    [0, 1] -> float32, scale 1.  ``binary``: anything but 0/1 is a DataError.
    """
    origin = f"{where}[{what}]"
    if images.size == 0:
        raise DataError(f"{where}: {what} is empty")
    if images.dtype == np.bool_:
        return Raw(images.astype(np.uint8), 1, origin)
    if np.issubdtype(images.dtype, np.integer):
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{where}: {what} has integer values in [{lo}, {hi}]; expected 0..255 "
                "(grey levels) or 0/1 (binary)"
            )
        scale = 1 if hi <= 1 else 255
        if binary and scale != 1:
            raise DataError(f"{where}: {what} is not binary (values up to {hi}); expected 0/1")
        return Raw(images.astype(np.uint8), scale, origin)
    if np.issubdtype(images.dtype, np.floating):
        if not np.all(np.isfinite(images)):
            raise DataError(f"{where}: {what} contains NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{where}: {what} has float values in [{lo}, {hi}]; expected intensities in "
                "[0, 1] (store grey levels 0..255 as an integer array)"
            )
        if np.all((images == 0) | (images == 1)):
            return Raw(images.astype(np.uint8), 1, origin)
        if binary:
            raise DataError(f"{where}: {what} is not binary (has values strictly between 0 and 1)")
        return Raw(images.astype(np.float32), 1, origin)
    raise DataError(f"{where}: {what} has dtype {images.dtype}; expected integer, bool or float")


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays' names, dtypes, shapes and bytes (in name order)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------- binarizations


def fixed_binary(raw: Raw, seed: int) -> np.ndarray:
    """One Bernoulli(intensity) sample drawn with numpy ``seed``: uint8, the shape of the images."""
    probs = as_float(raw)
    rng = np.random.default_rng(seed)
    return (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.uint8)


def threshold_binary(raw: Raw) -> np.ndarray:
    """intensity > 0.5: uint8, the shape of the images."""
    return (as_float(raw) > 0.5).astype(np.uint8)


def bernoulli(probs: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A Bernoulli(``probs``) sample (float32, any shape) from stateless ``seed`` [2]."""
    return tf.cast(tf.random.stateless_uniform(tf.shape(probs), seed=seed) < probs, tf.float32)
