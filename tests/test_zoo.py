"""experiments/zoo.py on a tiny budget: train → evaluate → presets → collect → report.

Two runs of 2 epochs × 10 steps (K = 2, 200 training digits, a checkpoint kept every
5 steps), evaluated on 100 test digits; the presets they become must load through
`rem_tf.from_preset` and reproduce their recorded check, and the report must
regenerate RESULTS.md's zoo section from results/zoo.json alone.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import rem_tf
from rem_tf import presets

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ("iwae", "rem_v2")


def driver(tmp_path, phase):
    command = [
        sys.executable, str(ROOT / "experiments" / "zoo.py"), f"--phase={phase}",
        f"--config={ROOT / 'configs' / 'zoo.py'}",
        "--config.data.source=files", f"--config.data.data_dir={tmp_path / 'data'}",
        "--config.training.num_particles=2", "--config.training.epochs=2",
        "--config.training.keep_checkpoint_every_steps=5",
        "--config.model.latent_dim=2", "--config.model.hidden_units=(16,)",
        "--config.evaluation.chunk_size=10", "--config.evaluation.elbo_samples=5",
        f"--methods={','.join(METHODS)}", "--curve_examples=50", "--curve_samples=10",
        "--eval_samples=20", "--shifted_samples=10", "--train_examples=60",
        "--check_examples=30", "--check_samples=10",
        f"--runs_root={tmp_path / 'runs'}", f"--presets_dir={tmp_path / 'presets'}",
        f"--results_dir={tmp_path / 'results'}", f"--results_md={tmp_path / 'RESULTS.md'}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mnist.npz",  # grey levels 0..255, as the offline copy
             train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
             test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8))
    (tmp_path / "results").mkdir()
    (tmp_path / "RESULTS.md").write_text("# Results\n\n## Older sections\n\nkept as they are\n")
    for phase in ("train", "evaluate", "presets", "collect", "report"):
        driver(tmp_path, phase)
    return tmp_path


def test_every_kept_checkpoint_is_on_the_curve_and_finished_runs_are_evaluated(tiny_zoo):
    for method in METHODS:
        workdir = tiny_zoo / "runs" / method
        assert sorted(json.loads((workdir / "curve.json").read_text()), key=int) == [
            "5", "10", "15", "20"]
        final = json.loads((workdir / "final_eval.json").read_text())
        assert set(final) == {"check", "test", "shifted", "train"}
        assert final["test"]["num_examples"] == 100 and final["train"]["num_examples"] == 60
        assert final["shifted"]["proposal"] == "shifted"


def test_presets_load_in_one_line_and_reproduce_their_check(tiny_zoo):
    test = rem_tf.data.load("mnist", "test", source="files", data_dir=tiny_zoo / "data",
                            batch_size=100, shuffle=False)
    digits = next(iter(test.as_numpy_iterator()))
    for method in METHODS:
        directory = tiny_zoo / "presets" / f"{method}_mnist"
        info = presets.metadata(directory)
        final = json.loads((tiny_zoo / "runs" / method / "final_eval.json").read_text())
        assert info["method"] == method and info["num_particles"] == 2
        assert info["training"]["epochs"] == 2 and info["training"]["steps"] == 20
        assert info["training"]["batch_size"] == 20 and info["training"]["seed"] == 2019
        assert info["training"]["cpu_hours"] is not None
        assert info["command"][0].startswith("python ") and "--phase=train" in info["command"][0]
        assert info["metrics"]["test_nll"] == final["test"]["nll"]
        assert info["metrics"]["train_nll"] == final["train"]["nll"]
        assert info["metrics"]["test_nll_shifted"] == final["shifted"]["nll"]
        assert {"commit", "versions", "command", "data", "check"} <= set(info)
        assert not info["optimizer_state"]
        model = rem_tf.from_preset(directory)
        check = info["check"]
        nll = -float(np.mean(model.log_likelihood(
            digits[: check["examples"]], num_samples=check["num_samples"],
            chunk_size=check["chunk_size"], batch_size=check["batch_size"])))
        assert nll == pytest.approx(check["nll"], abs=1e-5)
        # The spread is that of a second draw from the advanced seed state: an honest > 0.
        assert 0 < check["seed_spread"] < 50
        assert f"| test_nll | {final['test']['nll']:.2f} |" in (directory / "README.md").read_text()


def test_paired_differences_are_those_of_the_per_digit_evaluations(tiny_zoo):
    zoo = json.loads((tiny_zoo / "results" / "zoo.json").read_text())
    per_digit = {m: -np.asarray(json.loads((tiny_zoo / "runs" / m / "final_eval.json")
                                           .read_text())["test"]["per_example_log_likelihood"])
                 for m in METHODS}
    d = per_digit["rem_v2"] - per_digit["iwae"]
    mean, half = zoo["paired_differences"]["rem_v2 - iwae"]
    assert mean == pytest.approx(d.mean()) and half == pytest.approx(1.96 * d.std(ddof=1) / 10)
    assert set(zoo["runs"]) == set(METHODS)
    for row in zoo["runs"].values():
        assert row["evaluated"] and row["epochs"] == 2 and row["steps"] == 20
        assert [point[0] for point in row["curve"]] == [5, 10, 15, 20]


def test_the_report_regenerates_results_md_from_the_json_alone(tiny_zoo):
    text = (tiny_zoo / "RESULTS.md").read_text()
    assert text.index("<!-- zoo:begin -->") < text.index("## Older sections")
    assert "kept as they are" in text and "| `iwae_mnist` | iwae | 2 | 2 |" in text
    shutil.move(tiny_zoo / "runs", tiny_zoo / "runs-away")  # no run directory to read
    try:
        (tiny_zoo / "results" / "zoo.md").unlink()
        driver(tiny_zoo, "report")
    finally:
        shutil.move(tiny_zoo / "runs-away", tiny_zoo / "runs")
    assert (tiny_zoo / "RESULTS.md").read_text() == text


def test_the_report_gives_each_runs_cpu_per_step_and_its_ratio_to_the_iwae(tiny_zoo):
    zoo = json.loads((tiny_zoo / "results" / "zoo.json").read_text())
    text = (tiny_zoo / "RESULTS.md").read_text()
    cost = {m: row["cpu_seconds"] / row["steps"] for m, row in zoo["runs"].items()}
    assert f"IWAE {1000 * cost['iwae']:.1f} ms" in text
    assert (f"REM v2 {1000 * cost['rem_v2']:.1f} ms "
            f"({cost['rem_v2'] / cost['iwae']:.2f}× the IWAE's)") in text


def test_the_presets_table_gives_k_the_paired_difference_to_the_iwae_and_the_command(tiny_zoo):
    zoo = json.loads((tiny_zoo / "results" / "zoo.json").read_text())
    lines = (tiny_zoo / "RESULTS.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| preset")).strip("| ").split(" | ")
    rows = {line.split(" | ")[1]: line.strip("| ").split(" | ")
            for line in lines if line.startswith("| `")}
    assert set(rows) == set(METHODS)
    rem, iwae = dict(zip(header, rows["rem_v2"])), dict(zip(header, rows["iwae"]))
    mean, half = zoo["paired_differences"]["rem_v2 - iwae"]
    assert rem["− IWAE [95 %]"] == f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"
    assert iwae["− IWAE [95 %]"] == "–" and rem["K"] == iwae["K"] == "2"
    assert rem["test NLL"] == f"{zoo['runs']['rem_v2']['test_nll']:.2f}"
    assert rem["command"] == ("`python run.py --config=configs/zoo.py --method=rem_v2 "
                              "--mode=train --workdir=../runs/zoo/rem_v2`")
    assert rem["train time"] == (f"{zoo['runs']['rem_v2']['cpu_seconds'] / 3600:.2f} CPU-h "
                                 f"({zoo['runs']['rem_v2']['seconds'] / 3600:.2f} h wall)")
