"""Helpers shared by the run.py and rem_tf.experiment tests (no tests here).

Tiny data, the tiny run's config (as a ConfigDict and as run.py flags), and
launchers for run.py and for `rem_tf.experiment.train` in a fresh process.
"""

import csv
import json
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_tiny_mnist(directory, num_train=40, num_test=16, seed=0):
    """<directory>/mnist.npz: grey-level 28×28 images from 4 noisy prototypes, uint8."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, 28, 28)) < 0.3
    intensity = rng.uniform(0.6, 1.0, (4, 28, 28))

    def draw(n):
        labels = rng.integers(0, 4, n)
        ink = prototypes[labels] ^ (rng.random((n, 28, 28)) < 0.05)
        return np.round(255 * ink * intensity[labels]).astype(np.uint8)

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "mnist.npz", train=draw(num_train), test=draw(num_test))
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A module's tiny MNIST (`write_tiny_mnist`); import it into a test module to use it."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data"))


def tiny_fields(data_dir, epochs=2):
    """Fields of a few-second run: 40 images, batch 10 (4 steps per epoch), latent 2, K = 4."""
    return {
        "data.name": "mnist", "data.source": "files", "data.data_dir": str(data_dir),
        "training.epochs": epochs, "training.batch_size": 10, "training.num_particles": 4,
        "model.latent_dim": 2, "model.hidden_units": (8,), "training.checkpoint_every_steps": 3,
        "evaluation.num_samples": 40, "evaluation.elbo_samples": 10, "evaluation.chunk_size": 20,
    }


def tiny_config(data_dir, epochs=2, overrides=None):
    """configs/quick.py's ConfigDict with `tiny_fields` and `overrides` ({"a.b": value})."""
    config = config_file("quick")
    config.update_from_flattened_dict({**tiny_fields(data_dir, epochs), **(overrides or {})})
    return config


def config_file(name):
    """configs/<name>.py's config, loaded from its file as run.py's --config loads it."""
    return runpy.run_path(str(REPO / "configs" / f"{name}.py"))["get_config"]()


def tiny_args(data_dir, epochs=2):
    """`tiny_fields` as run.py flags: the plain flags where there is one, else --config.a.b."""
    from rem_tf.experiment.config import PLAIN_FLAGS  # noqa: PLC0415

    return ["--config=configs/quick.py", *(
        f"--{PLAIN_FLAGS[key]}={value}" if key in PLAIN_FLAGS else f"--config.{key}={value}"
        for key, value in tiny_fields(data_dir, epochs).items())]


# `rem_tf.experiment.train` of the tiny run in a fresh process (logical devices and the
# cluster are fixed when TensorFlow starts; `environment` puts tests/ on its PYTHONPATH):
# argv = JSON of train_command's spec.
_TRAIN = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
import keras
from rem_tf import experiment
from test_run_common import tiny_config

class ExitAfterStep(keras.callbacks.Callback):  # dies like a kill: no clean-up at all
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= spec["exit_after_step"]:
            sys.stdout.flush(); sys.stderr.flush(); os._exit(3)

class PauseAtStep(keras.callbacks.Callback):  # creates <pause>.paused, waits for <pause>.go
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == spec["pause"][1]:
            open(spec["pause"][0] + ".paused", "w").close()
            for _ in range(3000):
                if os.path.exists(spec["pause"][0] + ".go"):
                    return
                time.sleep(0.1)

extra = [ExitAfterStep()] if spec["exit_after_step"] is not None else []
extra += [PauseAtStep()] if spec["pause"] else []
config = tiny_config(spec["data_dir"], overrides=spec["overrides"])
experiment.train(config, spec["workdir"], extra_callbacks=extra)
"""


def train_command(data_dir, workdir, overrides=None, exit_after_step=None, pause=None):
    """argv of a process that runs `experiment.train` on the tiny config (exit 3 after a kill).

    pause: (path, step): after that step, create `<path>.paused` and wait (up to 5 minutes)
    until `<path>.go` exists.
    """
    spec = {"data_dir": str(data_dir), "workdir": str(workdir), "overrides": overrides or {},
            "exit_after_step": exit_after_step, "pause": [str(pause[0]), pause[1]] if pause
            else None}
    return [sys.executable, "-c", _TRAIN, json.dumps(spec)]


def environment(**extra):
    """The test process's environment, quiet TF, no inherited TF_CONFIG, the checkout and
    tests/ first on PYTHONPATH (this rem_tf, `import test_run_common`), plus `extra`."""
    path = [str(REPO), str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(path))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_py(args, *, check=True, timeout=900, **env):
    """Runs `python run.py ARGS` from the repository root; returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], cwd=REPO, capture_output=True,
        text=True, timeout=timeout, env=environment(**env), stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"run.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    return proc


def train_in_subprocess(*args, check=True, timeout=900, **kwargs):
    """Runs `train_command(*args, **kwargs)`; returns the CompletedProcess."""
    proc = subprocess.run(train_command(*args, **kwargs), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=environment(), stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"experiment.train exited {proc.returncode}:\n{proc.stderr[-5000:]}")
    return proc


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())
