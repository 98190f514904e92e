"""Shared test set-up: quiet TensorFlow, seeded weights, small synthetic data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TEST_SEED = int(os.environ.get("REM_TF_TEST_SEED", "2019"))
# Tests marked `slow` are left out by default (pyproject.toml: addopts = -m "not slow");
# `pytest -m slow` runs only them, `pytest -m ""` everything.


@pytest.fixture(autouse=True)
def seeded_weights():
    """Seeds Keras/NumPy/TF before every test, so network initialisations (which the
    models' `seed` argument does not cover) are the same on every machine and order.
    REM_TF_TEST_SEED=<n> reruns the suite on other initialisations to look for flaky
    tolerances."""
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(TEST_SEED)


@pytest.fixture
def binary_data():
    """Synthetic binary data with structure: 4 noisy prototypes of 16 pixels.

    Returns (train [400, 16], test [100, 16]) float32 arrays in {0, 1}.
    """
    rng = np.random.default_rng(2019)
    prototypes = rng.random((4, 16)) < 0.5
    def draw(n):
        labels = rng.integers(0, 4, n)
        flips = rng.random((n, 16)) < 0.05
        return (prototypes[labels] ^ flips).astype(np.float32)
    return draw(400), draw(100)


# ---- bad-input summary: outcome counts per entry point of the test_bad_inputs_*.py cases that
# ran. Each records ("bad_input", (entry, outcome)) in its report's user_properties, which
# pytest-xdist sends to the controller, so this counts on the process that prints.
BAD_INPUT_COUNTS = {}  # {entry: {outcome: count}}


def pytest_runtest_logreport(report):
    for key, value in report.user_properties:
        if key == "bad_input" and report.when == "call":
            entry, outcome = value
            counts = BAD_INPUT_COUNTS.setdefault(entry, {})
            counts[outcome] = counts.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if not BAD_INPUT_COUNTS:
        return
    outcomes = ("CLEAR", "OK", "UNCLEAR", "SILENT", "LOST")
    terminalreporter.section("bad inputs: outcomes per entry point")
    for entry, counts in sorted(BAD_INPUT_COUNTS.items()):
        terminalreporter.write_line(f"{entry:10s} {sum(counts.values()):4d}: " + " / ".join(
            f"{outcome} {counts.get(outcome, 0)}" for outcome in outcomes))
