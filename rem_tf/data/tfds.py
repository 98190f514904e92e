"""Source "tfds": TensorFlow Datasets, for the paper's names and any TFDS image dataset
``tfds:<name>`` (its image feature), prepared with the real ``download_and_prepare`` when
asked to.  A download that cannot start fails in seconds, leaving no partial files.
(The source interface: ``sources.py``.)"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import shutil

import numpy as np
import tensorflow as tf

from .arrays import Raw, normalize, to_any_images, to_images
from .common import (BINARY_NAMES, TFDS_NAMES, TFDS_PREFIX, DataError, Request, cache_dir,
                     cached, how_to_get, is_tfds_name)

_log = logging.getLogger("rem_tf.data")

# Sizes of TFDS's omniglot (background / evaluation alphabets), for reference.
TFDS_OMNIGLOT_SIZES = {"train": 19_280, "test": 13_180}
# Retries per URL while preparing (TFDS's own 10, with exponential backoff, wait minutes
# for a host that cannot be reached); one retry still rides out a dropped connection.
DOWNLOAD_RETRIES = 1


def tfds_name(name: str) -> str:
    """The TFDS name of a paper name or of ``tfds:<name>``."""
    return name[len(TFDS_PREFIX):] if is_tfds_name(name) else TFDS_NAMES[name]


def builder(name: str, data_dir):
    """The TFDS builder; DataError for a name TFDS does not know."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(tfds_name(name),
                            data_dir=None if data_dir is None else str(data_dir))
    except tfds.core.registered.DatasetNotFoundError as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"TFDS has no dataset {tfds_name(name)!r} ({name!r}): {first}") from None


def image_key(tfds_builder) -> str:
    """The image feature of a TFDS dataset: the input of its ``supervised_keys`` (what
    ``as_supervised=True`` gives as x) if an image, else its only image feature."""
    import tensorflow_datasets as tfds

    features = tfds_builder.info.features
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    supervised = tfds_builder.info.supervised_keys
    if supervised and supervised[0] in images:
        return supervised[0]
    if len(images) == 1:
        return images[0]
    raise DataError(f"TFDS {tfds_builder.name!r} has {len(images) or 'no'} image features "
                    f"({', '.join(images) or 'features: ' + ', '.join(features)}); rem_tf.data "
                    "reads a dataset with one image feature. Save the images you want as an "
                    ".npz and use source='npz', path=<file>")


def read_split(name: str, split: str, tfds_builder) -> Raw:
    """All images of a prepared split.  ``omniglot`` [105, 105, 3] pages become ink
    intensities (1 - grey) area-resized to 28x28 (float32)."""
    import tensorflow_datasets as tfds

    known = dict(tfds_builder.info.splits)
    if known and split not in known:
        raise DataError(f"TFDS {tfds_builder.name!r} has no split {split!r}; its splits: "
                        f"{', '.join(known)}")
    key = image_key(tfds_builder) if is_tfds_name(name) else "image"
    ds = tfds_builder.as_dataset(split=split, shuffle_files=False)

    if name == "omniglot":

        def convert(images):  # [B,105,105,3] uint8, black strokes on white
            grey = tf.image.rgb_to_grayscale(tf.cast(images, tf.float32) / 255.0)
            ink = tf.image.resize(1.0 - grey, [28, 28], method="area")
            return tf.clip_by_value(ink, 0.0, 1.0)

    else:

        def convert(images):
            return images

    ds = ds.map(lambda ex: ex[key]).batch(4096).map(convert)
    origin = f"tfds:{tfds_builder.name}/{split} ({tfds_builder.data_dir})"
    try:
        batches = list(tfds.as_numpy(ds))
    except tf.errors.InvalidArgumentError as err:  # e.g. images of several sizes
        raise DataError(f"{origin}: cannot stack the {key!r} images ({err.message.splitlines()[0]})"
                        "; rem_tf.data needs images of one shape") from None
    if not batches:
        raise DataError(f"{origin}: the TFDS split {split!r} is empty")
    if is_tfds_name(name):
        return normalize(to_any_images(np.concatenate(batches), origin, key), origin, key,
                         binary=False)
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


@contextlib.contextmanager
def _fail_fast_downloads():
    """TFDS's downloader with ``DOWNLOAD_RETRIES`` retries per URL (then restored)."""
    try:
        from tensorflow_datasets.core.download import downloader
    except ImportError:  # another TFDS layout: its own retries
        yield
        return
    saved = getattr(downloader, "MAX_RETRIES", None)
    if saved is not None:
        downloader.MAX_RETRIES = DOWNLOAD_RETRIES
    try:
        yield
    finally:
        if saved is not None:
            downloader.MAX_RETRIES = saved


def _paths_under(folders) -> set[pathlib.Path]:
    out = set()
    for folder in folders:
        if folder.exists():
            out.add(folder)
            out.update(folder.rglob("*"))
    return out


def prepare(tfds_builder, name: str, data_dir) -> None:
    """``download_and_prepare``; on failure one DataError listing the ways to get the data,
    and whatever it wrote (partial downloads, the incomplete dataset folder) removed."""
    version_dir = pathlib.Path(str(tfds_builder.data_dir))
    dataset_dir = next((p for p in version_dir.parents if p.name == tfds_builder.name),
                       version_dir.parent)
    root = dataset_dir.parent
    watched = [root / "downloads", dataset_dir]
    before = _paths_under([root, *watched]) if root.exists() else set()
    root_existed = root.exists()
    _log.info("rem_tf.data: TFDS download_and_prepare(%s) into %s", tfds_builder.name,
              tfds_builder.data_dir)
    try:
        with _fail_fast_downloads():
            tfds_builder.download_and_prepare()
    except Exception as err:  # noqa: BLE001 - any failure: clean up, one DataError
        for path in sorted(_paths_under(watched) - before, key=lambda p: len(p.parts)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        if not root_existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        message = " ".join(f"{type(err).__name__}: {err}".split())[:600]
        raise DataError(
            f"TFDS could not download/prepare {tfds_builder.name!r} into {root} ({message}); "
            "nothing was left behind. " + how_to_get(name, cache_dir(data_dir))
        ) from None


# ------------------------------------------------------------ the source interface


def check(request: Request) -> None:
    if not (request.name in TFDS_NAMES or is_tfds_name(request.name)):
        raise DataError(f"source='tfds' serves {', '.join(TFDS_NAMES)} and "
                        f"'{TFDS_PREFIX}<name>', not {request.name!r}")


def has(request: Request, split: str) -> bool:
    """Prepared already (``auto`` never downloads); never TFDS's omniglot, which is not
    Burda's split."""
    if request.name == "omniglot" or (request.name in TFDS_NAMES
                                      and not split_ok(request.name, split)):
        return False
    try:
        return is_prepared(builder(request.name, request.data_dir))
    except ImportError:
        return False


def read(request: Request, split: str) -> Raw:
    name, data_dir = request.name, request.data_dir
    try:
        tfds_builder = builder(name, data_dir)
    except ImportError as err:
        raise DataError(f"tensorflow_datasets is not importable ({err}). "
                        + how_to_get(name, cache_dir(data_dir))) from err
    if name in TFDS_NAMES and not split_ok(name, split):
        raise DataError(f"TFDS {TFDS_NAMES[name]!r} has no split {split!r}")
    if not is_prepared(tfds_builder):
        prepare(tfds_builder, name, data_dir)
    key = ("tfds", name, split, str(tfds_builder.data_dir))
    try:
        return cached(key, lambda: read_split(name, split, tfds_builder))
    except DataError:
        raise
    except Exception as err:  # a broken TFDS install / data dir
        raise DataError(
            f"TFDS {tfds_builder.name!r} split {split!r} could not be read "
            f"({type(err).__name__}: {err}); if its prepared data is damaged, delete it "
            f"({tfds_builder.data_dir}) to have it prepared again. "
            + how_to_get(name, cache_dir(data_dir))) from err
