"""experiments/paper_regime.py on a tiny budget: train, evaluate, report, and a report alone.

Four runs of 10 steps (K = 2 and 3, 200 training digits), evaluated on 100 test
digits; the report's JSON files must have the fields RESULTS.md is made from, and a
second report from the cached files alone must write the same RESULTS.md.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAPER_FIELDS = {"num_particles", "batch_size", "steps", "seconds", "test_nll", "test_nll_shifted",
                "kl_to_prior", "active_units", "curve"}
SWEEP_FIELDS = {"steps", "test_nll", "kl_to_prior", "active_units"}


def driver(tmp_path, phase, *flags):
    data_dir = tmp_path / "data"
    command = [
        sys.executable, str(ROOT / "experiments" / "paper_regime.py"), f"--phase={phase}",
        f"--config={ROOT / 'configs' / 'paper_regime.py'}",
        "--config.data.source=files", f"--config.data.data_dir={data_dir}",
        "--config.training.num_particles=2", "--config.training.epochs=1",
        "--config.model.latent_dim=2", "--config.model.hidden_units=(16,)",
        "--config.evaluation.chunk_size=10", "--config.evaluation.elbo_samples=5",
        "--methods=iwae,rem_v1", "--sweep_methods=iwae,rem_v1", "--sweep_particles=3,2",
        "--sweep_steps=10", "--keep_every=5", "--curve_examples=50", "--curve_samples=10",
        "--eval_samples=20", "--shifted_samples=10", "--sweep_eval_samples=10",
        f"--runs_root={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}",
        f"--results_md={tmp_path / 'RESULTS.md'}", *flags,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("paper_regime")
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mnist.npz",  # grey levels 0..255, as the offline copy
             train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
             test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8))
    for phase in ("train", "evaluate", "report"):
        driver(tmp_path, phase)
    return tmp_path


def test_the_json_files_have_the_fields_of_the_issue(tiny_study):
    paper = json.loads((tiny_study / "results" / "paper_regime.json").read_text())
    assert set(paper) == {"iwae", "rem_v1"}
    for method, row in paper.items():
        assert PAPER_FIELDS <= set(row), (method, set(row))
        assert row["num_particles"] == 2 and row["batch_size"] == 20 and row["steps"] == 10
        assert [point[0] for point in row["curve"]] == [5, 10]  # a kept checkpoint every 5 steps
        assert all(len(point) == 3 and point[1] > 0 and point[2] > 0 for point in row["curve"])
        assert 0 < row["test_nll"] < 28 * 28 * np.log(2) * 2 and row["test_nll_shifted"] > 0
        assert 0 <= row["active_units"] <= 2
    sweep = json.loads((tiny_study / "results" / "particle_sweep.json").read_text())
    assert {m: sorted(v) for m, v in sweep.items()} == {"iwae": ["2", "3"], "rem_v1": ["2", "3"]}
    for rows in sweep.values():
        for row in rows.values():
            assert SWEEP_FIELDS <= set(row) and row["steps"] == 10
    assert (tiny_study / "results" / "paper_regime_curves.png").stat().st_size > 0
    assert (tiny_study / "results" / "particle_sweep.png").stat().st_size > 0


def test_the_report_regenerates_from_the_json_files_without_training(tiny_study):
    before = (tiny_study / "RESULTS.md").read_text()
    assert "## The paper's regime: K = 1000, batch 20" in before
    assert "| rem_v1 | 10 / 10 |" in before  # the paired difference to the IWAE
    runs = sorted(p.name for p in (tiny_study / "runs").rglob("*") if p.is_dir())
    (tiny_study / "RESULTS.md").unlink()
    driver(tiny_study, "report")
    assert (tiny_study / "RESULTS.md").read_text() == before
    assert sorted(p.name for p in (tiny_study / "runs").rglob("*") if p.is_dir()) == runs


def test_evaluations_are_cached_in_the_run_directories(tiny_study):
    final = json.loads((tiny_study / "runs" / "paper_regime" / "iwae" / "final_eval.json")
                       .read_text())
    assert set(final) == {"10/encoder", "10/shifted"}
    assert final["10/shifted"]["proposal"] == "shifted"
    assert len(final["10/encoder"]["per_example_log_likelihood"]) == 100
    curve = json.loads((tiny_study / "runs" / "paper_regime" / "iwae" / "curve.json").read_text())
    assert sorted(curve, key=int) == ["5", "10"]
