"""Helpers shared by the run.py tests (no tests here): tiny data and a run.py launcher."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

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


def tiny_args(data_dir, epochs=2):
    """Flags of a few-second run: 40 images, batch 10 (4 steps per epoch), latent 2, K = 4."""
    return [
        "--config=configs/quick.py", "--dataset=mnist", "--config.data.source=files",
        f"--config.data.data_dir={data_dir}", f"--epochs={epochs}", "--batch_size=10",
        "--num_particles=4", "--config.model.latent_dim=2", "--config.model.hidden_units=(8,)",
        "--config.training.checkpoint_every_steps=3", "--config.evaluation.num_samples=40",
        "--config.evaluation.elbo_samples=10", "--config.evaluation.chunk_size=20",
    ]


def environment(**extra):
    """The test process's environment, quiet TF, no inherited TF_CONFIG, plus `extra`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_py(args, *, check=True, timeout=300, **env):
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


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())
