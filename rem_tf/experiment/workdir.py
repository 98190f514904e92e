"""The run directory's small files: atomic JSON, provenance (versions, git commit), fingerprints.

    <workdir>/config.json         the resolved config
    <workdir>/versions.json       `versions()`
    <workdir>/run.json            command line, strategy, replicas, batch sizes, steps
    <workdir>/train_summary.json  final step, last epoch's metrics, `weights_fingerprint`
"""

import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess

import numpy as np
import tensorflow as tf

from rem_tf.experiment.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]


def write_json(path, value):
    """Writes `value` as indented JSON to `path` atomically (a temporary file, then a rename)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
    """The repository's HEAD commit, with "-dirty" when tracked files changed; None outside git."""
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
