"""Source "npz": your own images in one ``.npz`` file given by ``path``.

One array per split, named ``train``, ``validation``, ``test`` (or Keras' ``x_train`` /
``x_test``), of any image shape: [N, H, W] (one channel is added), [N, H, W, C] or vectors
[N, D]; integers 0..255 (grey levels) or 0/1, bool, or floats in [0, 1].  The dataset name
is only a label.  (The source interface: ``sources.py``.)
"""

from __future__ import annotations

import pathlib

from .arrays import Raw, normalize, to_any_images
from .common import DataError, Request, cached, file_key
from .files import read_npz_arrays

BASE_SPLITS = ("train", "validation", "test")


def _path(request: Request) -> pathlib.Path:
    return pathlib.Path(request.path).expanduser()


def _file(request: Request) -> pathlib.Path:
    """The existing file, else DataError naming it."""
    path = _path(request)
    if not path.is_file():
        what = "is not a regular file (a directory?)" if path.exists() else "does not exist"
        raise DataError(f"{path} {what}: source='npz' needs path=<an .npz file with arrays "
                        "'train' and 'test'> (numpy.savez(path, train=..., test=...))")
    return path


def splits(request: Request) -> dict[str, int]:
    """Number of images per split of the file (and ``train+validation`` if both)."""
    path = _file(request)
    names, arrays = read_npz_arrays(path, BASE_SPLITS + ("x_train", "x_test"))
    sizes = {s: len(arrays[k]) for s in BASE_SPLITS for k in (s, f"x_{s}") if k in arrays}
    if not sizes:
        raise DataError(f"{path}: has no array 'train', 'validation' or 'test' (arrays: "
                        f"{', '.join(names) or 'none'}); save one array of images per split")
    if "train" in sizes and "validation" in sizes:
        sizes["train+validation"] = sizes["train"] + sizes["validation"]
    return sizes


def _read(path: pathlib.Path, split: str) -> Raw:
    names, arrays = read_npz_arrays(path, (split, f"x_{split}"))
    if not arrays:
        raise DataError(f"{path}: has no array {split!r} (arrays: {', '.join(names) or 'none'}); "
                        "the file holds one array of images per split: 'train', 'validation', "
                        "'test'")
    key = split if split in arrays else f"x_{split}"
    images = to_any_images(arrays[key], str(path), repr(key))
    return normalize(images, str(path), repr(key), binary=False)


# ------------------------------------------------------------ the source interface


def check(request: Request) -> None:
    if request.path is None:
        raise DataError("source='npz' needs path=<your .npz file>")


def has(request: Request, split: str) -> bool:
    return _path(request).is_file()


def read(request: Request, split: str) -> Raw:
    path = _file(request)
    return cached(("npz", split) + file_key(path), lambda: _read(path, split))
