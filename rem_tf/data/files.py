"""Source "files": local files in the data directory for the paper's names: Larochelle's
``.amat``, Burda's ``chardata.mat`` and ``<name>.npz`` (one array per split).  A file that
is there but bad is a DataError.  (The source interface: ``sources.py``.)"""

from __future__ import annotations

import pathlib
import warnings
from typing import Optional

import numpy as np

from .arrays import Raw, normalize, to_images
from .common import (BINARY_NAMES, NAMES, DataError, Request, cache_dir, cached, file_key,
                     how_to_get)

_AMAT_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
_CHARDATA_KEY = {"train": "data", "test": "testdata"}


def candidates(name: str, split: str, directory: pathlib.Path) -> list[pathlib.Path]:
    """Files that could hold ``split`` of ``name``, in the order they are tried."""
    paths = []
    if name == "binarized_mnist":
        paths.append(directory / f"binarized_mnist_{_AMAT_SPLIT[split]}.amat")
    elif name == "omniglot":
        paths.append(directory / "chardata.mat")
    paths.append(directory / f"{name}.npz")
    return paths


def find(name: str, split: str, directory: pathlib.Path) -> Optional[pathlib.Path]:
    """The first of ``candidates`` that exists, or None; DataError if it is not a file."""
    for path in candidates(name, split, directory):
        if path.is_file():
            return path
        if path.exists():
            raise DataError(f"{path}: is not a regular file (a directory?); rename or remove it")
    return None


def read_amat(path: pathlib.Path) -> Raw:
    """A ``.amat`` file: one image per line, 784 values 0/1 (row-major) -> uint8 Raw."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about an empty file
            values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable .amat file of 0/1 values ({err}); replace "
                        "it with a good copy") from err
    if values.size == 0:
        raise DataError(f"{path}: is empty; an .amat file of binarized MNIST has one image "
                        "(784 values 0/1) per line. Replace it with a good copy")
    if values.shape[1] != 784:
        raise DataError(
            f"{path}: has rows of {values.shape[1]} values; an .amat file of binarized MNIST "
            "has 784 (28x28) values per line"
        )
    if not np.all((values == 0) | (values == 1)):
        raise DataError(f"{path}: is not binary (values other than 0 and 1); expected 0/1")
    return Raw(values.astype(np.uint8).reshape(-1, 28, 28, 1), 1, str(path))


def read_chardata(path: pathlib.Path, split: str) -> Raw:
    """Burda's ``chardata.mat``: ``data`` / ``testdata`` 784 x N, column-major images."""
    import scipy.io  # noqa: PLC0415 - lazy: only .mat files need it, `import rem_tf` does not

    key = _CHARDATA_KEY[split]
    try:
        mat = scipy.io.loadmat(str(path), variable_names=[key])
    except Exception as err:  # scipy raises several types for a bad file
        raise DataError(f"{path}: not a readable chardata.mat ({err}); replace it with a "
                        "good copy") from err
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
    return normalize(np.ascontiguousarray(images)[..., None], str(path), key, binary=False)


def read_npz_arrays(path: pathlib.Path, wanted, fix: str = "replace it with a good copy"
                    ) -> tuple[list[str], dict[str, np.ndarray]]:
    """The names of all arrays of an ``.npz`` file and those of ``wanted`` it has;
    DataError (ending with ``fix``) if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.keys())
            return names, {k: npz[k] for k in wanted if k in names}
    except Exception as err:  # numpy / zipfile raise several types for a bad file
        raise DataError(f"{path}: not a readable .npz file ({err}); {fix}") from err


def read_npz(path: pathlib.Path, split: str, binary: bool) -> Raw:
    """Array ``split`` (or Keras' ``x_<split>``) of an ``.npz`` file."""
    names, arrays = read_npz_arrays(path, (split, f"x_{split}"))
    if not arrays:
        raise DataError(
            f"{path}: has no array {split!r} (arrays: {', '.join(names) or 'none'}); "
            "an .npz file holds one array per split named 'train', 'validation', 'test'"
        )
    key = split if split in arrays else f"x_{split}"
    images = to_images(arrays[key], str(path), repr(key))
    return normalize(images, str(path), repr(key), binary=binary)


def read_path(name: str, split: str, path: pathlib.Path) -> Raw:
    """Base split ``split`` of ``name`` from ``path`` (one of ``candidates``)."""
    if path.suffix == ".amat":
        return read_amat(path)
    if path.suffix == ".mat":
        return read_chardata(path, split)
    return read_npz(path, split, binary=name in BINARY_NAMES)


# ------------------------------------------------------------ the source interface


def check(request: Request) -> None:
    if request.name not in NAMES:
        raise DataError(f"source='files' serves {', '.join(NAMES)}, not {request.name!r}; for "
                        "your own images use source='npz', path=<file>.npz")


def has(request: Request, split: str) -> bool:
    return find(request.name, split, cache_dir(request.data_dir)) is not None


def looked(request: Request, split: str) -> str:
    """The files looked for, for messages."""
    directory = cache_dir(request.data_dir)
    return ", ".join(str(p) for p in candidates(request.name, split, directory))


def read(request: Request, split: str) -> Raw:
    directory = cache_dir(request.data_dir)
    path = find(request.name, split, directory)
    if path is None:
        raise DataError(f"no local file for {request.name!r} split {split!r}: looked for "
                        f"{looked(request, split)}. " + how_to_get(request.name, directory))
    key = ("files", request.name, split) + file_key(path)
    return cached(key, lambda: read_path(request.name, split, path))
