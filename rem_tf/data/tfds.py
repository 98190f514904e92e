"""The TensorFlow Datasets source: ``binarized_mnist``, ``mnist`` and ``omniglot`` through
``tfds.builder``, prepared with the real ``download_and_prepare`` when asked to."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import tensorflow as tf

from .arrays import Raw, normalize, to_images
from .common import BINARY_NAMES, TFDS_NAMES, DataError, cache_dir, cached, how_to_get

_log = logging.getLogger("rem_tf.data")

# Sizes of TFDS's omniglot (background / evaluation alphabets), for reference.
TFDS_OMNIGLOT_SIZES = {"train": 19_280, "test": 13_180}


def builder(name: str, data_dir):
    import tensorflow_datasets as tfds

    return tfds.builder(TFDS_NAMES[name], data_dir=None if data_dir is None else str(data_dir))


def read(name: str, split: str, tfds_builder) -> Raw:
    """All images of a prepared split.  ``omniglot`` [105, 105, 3] pages become ink
    intensities (1 - grey) area-resized to 28x28 (float32)."""
    import tensorflow_datasets as tfds

    ds = tfds_builder.as_dataset(split=split, shuffle_files=False)

    if name == "omniglot":

        def convert(images):  # [B,105,105,3] uint8, black strokes on white
            grey = tf.image.rgb_to_grayscale(tf.cast(images, tf.float32) / 255.0)
            ink = tf.image.resize(1.0 - grey, [28, 28], method="area")
            return tf.clip_by_value(ink, 0.0, 1.0)

    else:

        def convert(images):
            return images

    ds = ds.map(lambda ex: ex["image"]).batch(4096).map(convert)
    batches = list(tfds.as_numpy(ds))
    origin = f"tfds:{tfds_builder.name}/{split} ({tfds_builder.data_dir})"
    if not batches:
        raise DataError(f"{origin}: the TFDS split {split!r} is empty")
    images = to_images(np.concatenate(batches), origin, "image")
    if name == "omniglot":
        return Raw(images.astype(np.float32), 1, origin)
    raw = normalize(images, origin, "image", binary=name in BINARY_NAMES)
    return Raw(raw.values, raw.scale, origin)


def is_prepared(tfds_builder) -> bool:
    """Whether the TFDS data is already prepared (checks the folder first, quietly)."""
    return tf.io.gfile.isdir(str(tfds_builder.data_dir)) and tfds_builder.is_prepared()


def split_ok(name: str, split: str) -> bool:
    return split in ("train", "test") or (split == "validation" and name == "binarized_mnist")


def load(name: str, split: str, data_dir, *, download: bool) -> Optional[Raw]:
    """Base split ``split`` from TFDS; None when ``download`` is False and it is not
    prepared (or TFDS is not importable).  Reading errors other than DataError are
    left to the caller."""
    directory = cache_dir(data_dir)
    try:
        tfds_builder = builder(name, data_dir)
    except ImportError as err:
        if not download:
            return None
        raise DataError(
            f"tensorflow_datasets is not importable ({err}). " + how_to_get(name, directory)
        ) from err
    if not split_ok(name, split):
        raise DataError(f"TFDS {TFDS_NAMES[name]!r} has no split {split!r}")
    key = ("tfds", name, split, str(tfds_builder.data_dir))
    if not is_prepared(tfds_builder):
        if not download:
            return None
        _log.info("rem_tf.data: TFDS download_and_prepare(%s) into %s",
                  tfds_builder.name, tfds_builder.data_dir)
        try:
            tfds_builder.download_and_prepare()
        except Exception as err:
            raise DataError(
                f"TFDS could not download/prepare {tfds_builder.name!r} into "
                f"{tfds_builder.data_dir}: {type(err).__name__}: {err}. "
                + how_to_get(name, directory)
            ) from err
    return cached(key, lambda: read(name, split, tfds_builder))
