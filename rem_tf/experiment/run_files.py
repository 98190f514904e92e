"""The run directory's small files: atomic writes, the owner's lock, provenance, fingerprints.

    <workdir>/run.lock            `owned`: the process that runs in it (pid, host) while it runs
    <workdir>/config.json         the resolved config
    <workdir>/versions.json       `versions()`
    <workdir>/run.json            command line, strategy, replicas, batch sizes, steps
    <workdir>/train_summary.json  final step, last epoch's metrics, `weights_fingerprint`

A failed write (no space, read-only, no permission) raises `StorageError`, one line
naming the path (`storage_error`, `writing`).
"""

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import socket
import subprocess
import time

import numpy as np
import tensorflow as tf
from absl import logging

from rem_tf.experiment.errors import ConfigError, StorageError

REPO = pathlib.Path(__file__).resolve().parents[2]
LOCK_FILE = "run.lock"
# errno -> (what failed, what to do), for one-line messages.
_STORAGE_FAILURES = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EACCES: ("permission denied", "make it writable for this user"),
    errno.EPERM: ("permission denied", "make it writable for this user"),
}
# What TensorFlow's C++ file errors say instead of an errno.
_TF_TEXTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
             "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}
_held = {}  # realpath of a directory this process owns -> how many `owned` blocks hold it


def _tf_errno(err):
    """The errno a TensorFlow file error stands for, or None if it is not a storage failure."""
    text = str(getattr(err, "message", err))
    found = [code for phrase, code in _TF_TEXTS.items() if phrase in text]
    if found:
        return found[0]
    return errno.EACCES if isinstance(err, tf.errors.PermissionDeniedError) else None


def storage_error(err, path, action="write", note=""):
    """The `StorageError` of an OSError or TensorFlow file error `err` at `path`: one line,
    "cannot <action> <path>: <what failed><note>; <what to do>"."""
    code = err.errno if isinstance(err, OSError) else _tf_errno(err)
    what, fix = _STORAGE_FAILURES.get(code, (None, "check the disk and the path"))
    what = what or (err.strerror if isinstance(err, OSError) and err.strerror else
                    " ".join(str(err).split())[:200])
    return StorageError(f"cannot {action} {path}: {what}{note}; {fix} (or use another "
                        "--workdir), then run the same command again")


@contextlib.contextmanager
def writing(path, action="write", clean_up=None, note=""):
    """Turns a failed write inside the block into `storage_error`, after calling `clean_up()`
    (which removes what the failed write left). Other TensorFlow errors pass through."""
    try:
        yield
    except (OSError, tf.errors.OpError) as err:
        if isinstance(err, tf.errors.OpError) and _tf_errno(err) is None:
            raise
        if clean_up is not None:
            clean_up()
        raise storage_error(err, path, action, note) from None


def write_text(path, text, note=""):
    """Writes `text` to `path` atomically: a temporary file beside it, flushed, then a rename,
    so a kill or a full disk leaves the old file whole. StorageError (with `note`) on a
    failed write."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, clean_up=lambda: tmp.unlink(missing_ok=True), note=note):
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def write_json(path, value, note=""):
    """Writes `value` as indented JSON to `path` atomically (`write_text`)."""
    write_text(path, json.dumps(value, indent=2, default=str) + "\n", note)


def _holder(fd):
    """Who holds the lock of `fd`, "process <pid> on host <host>, since <time>", read from the
    lock file (the holder writes it just after taking the lock, so wait a moment for it)."""
    for _ in range(10):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if text:
            try:
                info = json.loads(text)
                return f"process {info['pid']} on host {info['host']}, since {info['since']}"
            except (ValueError, KeyError, TypeError):
                break
        time.sleep(0.05)
    return "another process"


@contextlib.contextmanager
def owned(directory):
    """Holds an exclusive lock on the run directory `directory` (created if needed) for the
    block: a second process gets a ConfigError at once, naming the holder.

    `fcntl.flock` on `<directory>/run.lock`: the operating system releases it when the
    process ends in any way, so a killed run never leaves a stale lock. Re-entrant in one
    process (train_and_evaluate holds it for the training and the evaluation). Writing the
    holder's pid and host into the lock file is also the check that the directory is
    writable, before any work. On a file system without locks (some network file
    systems) a warning says that nothing stops a second run.

    Raises:
      ConfigError: another process holds the lock.
      StorageError: the directory cannot be created or written.
    """
    directory = pathlib.Path(directory)
    key = os.path.realpath(directory)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = directory / LOCK_FILE
    with writing(directory, "create"):
        directory.mkdir(parents=True, exist_ok=True)
    with writing(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"the run directory {directory} is in use by {_holder(fd)} (lock file {path}); "
                "wait for that run to end or stop it, or use another --workdir") from None
        except OSError as err:  # ENOLCK, EOPNOTSUPP: no locks on this file system
            logging.warning("Cannot lock %s (%s): nothing stops a second run in %s; run one "
                            "at a time there.", path, err.strerror, directory)
        with writing(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
            os.fsync(fd)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # an unheld lock file is empty: a copied run dir names no one
    finally:
        os.close(fd)  # releases the lock


def read_json(path, fix="move it away or use a new --workdir"):
    """The JSON value in `path`; ConfigError naming the file and `fix` if it is not valid JSON."""
    try:
        value = json.loads(pathlib.Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} holds a JSON {type(value).__name__}, not an object; {fix}")
    return value


def git_commit(short=False):
    """This checkout's HEAD commit, with "-dirty" when tracked files changed; None when the
    package is not a git checkout's (e.g. installed, even inside another repository)."""
    if not (REPO / ".git").exists():
        return None

    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", *(["--short"] if short else []), "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def versions():
    """Versions of Python and the packages a result depends on, and the git commit."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for key, dist in [
        ("tensorflow", "tensorflow"), ("keras", "keras"),
        ("tensorflow_probability", "tensorflow-probability"),
        ("tensorflow_datasets", "tensorflow-datasets"), ("numpy", "numpy"),
        ("ml_collections", "ml-collections"), ("absl", "absl-py"), ("rem_tf", "rem_tf"),
    ]:
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    out["tensorflow"] = out["tensorflow"] or tf.__version__  # e.g. tf-nightly
    out["git_commit"] = git_commit()
    return out


def weights_fingerprint(model):
    """(sha256 of all weights and the seed state, sum of their absolute values)."""
    digest = hashlib.sha256()
    total = 0.0
    for weight in model.get_weights():
        weight = np.ascontiguousarray(weight)
        digest.update(weight.tobytes())
        total += float(np.abs(weight.astype(np.float64)).sum())
    return digest.hexdigest(), total
