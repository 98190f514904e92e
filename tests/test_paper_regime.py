"""experiments/paper_regime.py on a tiny budget: train, evaluate, report, and a report alone;
experiments/claims.py's verdicts on hand-made results.

Eight runs of 10 steps (K = 2 and 3, 200 training digits; the sweep also with seed
7), evaluated on 100 test digits; the report's JSON files must have the fields
RESULTS.md is made from, and a second report from the cached files alone must write
the same RESULTS.md.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import claims  # pure functions, no TensorFlow (pyproject: pythonpath ".")

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
        "--sweep_seeds=7", "--sweep_steps=10", "--keep_every=5", "--curve_examples=50",
        "--curve_samples=10",
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
    driver(tiny_study, "report", "--sweep_seeds=")  # finds the seed-7 runs by itself
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


def test_the_report_judges_the_first_claim_from_the_runs_paired_differences(tiny_study):
    """Wiring: the verdict on REM v1 − IWAE follows the per-digit log-likelihoods cached in
    the two runs' final_eval.json, recomputed here."""
    per_digit = {method: np.asarray(json.loads(
        (tiny_study / "runs" / "paper_regime" / method / "final_eval.json").read_text())
        ["10/encoder"]["per_example_log_likelihood"]) for method in ("iwae", "rem_v1")}
    d = per_digit["iwae"] - per_digit["rem_v1"]  # NLL(rem_v1) − NLL(iwae)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    expected = claims.direction(d.mean(), half)
    text = (tiny_study / "RESULTS.md").read_text()
    assert "## The paper's three claims, in these runs" in text
    assert f"REM v1 − IWAE = {d.mean():+.2f} nats" in text and f"({expected})" in text
    assert "not measured yet: REM v2 − IWAE, IWAE − VAE" in text


def test_the_sweeps_other_seeds_are_other_runs_reported_against_the_same_seeds_iwae(tiny_study):
    sweep = json.loads((tiny_study / "results" / "particle_sweep.json").read_text())
    runs = tiny_study / "runs" / "particle_sweep"
    for method in ("iwae", "rem_v1"):
        for k in ("2", "3"):
            row = sweep[method][k]
            assert row["seed"] == 2019 and set(row["other_seeds"]) == {"7"}
            assert row["other_seeds"]["7"]["test_nll"] != row["test_nll"]  # not a copy
            config = json.loads((runs / f"{method}-k{k}-seed7" / "config.json").read_text())
            assert config["seed"] == 7
    per_digit = {method: np.asarray(json.loads((runs / f"{method}-k2-seed7" / "sweep_eval.json")
                                               .read_text())["10"]["per_example_log_likelihood"])
                 for method in ("iwae", "rem_v1")}
    d = per_digit["iwae"] - per_digit["rem_v1"]  # NLL(rem_v1) − NLL(iwae), seed 7
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    seed_7 = sweep["rem_v1"]["2"]["other_seeds"]["7"]
    text = (tiny_study / "RESULTS.md").read_text()
    assert (f"| rem_v1 | 2 | 7 | {seed_7['test_nll']:.2f} | {seed_7['kl_to_prior']:.2f} | "
            f"{d.mean():+.2f} ± {half:.2f} |") in text
    assert "The particle sweep's runs at K = 2, 3 also ran with other seeds" in text
    assert "the same commands with `--sweep_seeds=7 --sweep_particles=2,3`" in text


# ------------------------------------------------------- claims.py, on hand-made results


def curve(*nlls):
    return [[1000 * (i + 1), 60.0 * (i + 1), nll] for i, nll in enumerate(nlls)]


def row(test_nll=None, kl=None, curve_points=()):
    return {"num_particles": 1000, "steps": 6000, "test_nll": test_nll, "kl_to_prior": kl,
            "curve": list(curve_points), "cpu_seconds": 3600.0}


@pytest.mark.parametrize("mean, half, expected", [
    (-1.0, 0.5, "ahead"), (1.0, 0.5, "behind"), (0.2, 0.5, "level"), (-0.2, 0.5, "level"),
])
def test_direction_of_a_paired_difference(mean, half, expected):
    assert claims.direction(mean, half) == expected


@pytest.mark.parametrize("differences, verdict", [
    ({("rem_v1", "iwae"): (-2.0, 0.3), ("rem_v2", "iwae"): (-3.0, 0.3),
      ("iwae", "vae"): (-1.0, 0.2)}, "supported"),
    ({("rem_v1", "iwae"): (-2.0, 0.3), ("rem_v2", "iwae"): (0.9, 0.3),
      ("iwae", "vae"): (-1.0, 0.2)}, "not supported"),
    ({("rem_v1", "iwae"): (-2.0, 0.3), ("rem_v2", "iwae"): (-0.1, 0.3),
      ("iwae", "vae"): (-1.0, 0.2)}, "not resolved"),
    ({("rem_v1", "iwae"): (-2.0, 0.3), ("rem_v2", "iwae"): (-3.0, 0.3)}, "supported so far"),
    ({}, "not yet measured"),
])
def test_log_likelihood_claim_verdicts(differences, verdict):
    paper = {m: row(100.0) for m in ("iwae", "rem_v1", "rem_v2", "vae")}
    got, sentences = claims.log_likelihood_claim(paper, differences)
    assert got == verdict, sentences
    if verdict == "supported so far":
        assert sentences[-1] == "not measured yet: IWAE − VAE"


def test_an_unevaluated_pair_is_judged_on_its_learning_curves_only_in_words():
    paper = {"iwae": row(curve_points=curve(134.0, 121.0, 115.0)),
             "rem_v2": row(curve_points=curve(130.0, 116.0))}
    verdict, sentences = claims.log_likelihood_claim(paper, {})
    assert verdict == "not yet measured"
    assert ("REM v2 is ahead of the IWAE at all 2 common kept steps (1,000–2,000), "
            "by 4.0–5.0 nats") in sentences[0]
    assert sentences[1] == "not measured yet: REM v1 − IWAE, IWAE − VAE"
    paper["rem_v2"]["curve"] = curve(136.0, 116.0)
    assert "on both sides of the IWAE" in claims.log_likelihood_claim(paper, {})[1][0]


def test_kl_claims_over_k():
    paper = {"iwae": row(kl=13.5), "rem_v2": row(kl=15.0)}
    sweep = {"iwae": {"10": {"kl_to_prior": 20.0}, "100": {"kl_to_prior": 17.0}},
             "rem_v2": {"10": {"kl_to_prior": 19.0}, "100": {"kl_to_prior": 18.0}}}
    verdict, sentences = claims.kl_claim(paper, sweep)
    assert verdict == "partly supported (2 of 3 comparisons)"
    assert sentences == ["K = 10: REM v2 19.00 vs IWAE 20.00",
                         "K = 100: REM v2 18.00 vs IWAE 17.00",
                         "K = 1000: REM v2 15.00 vs IWAE 13.50"]
    sweep["rem_v2"]["10"]["kl_to_prior"] = 21.0
    assert claims.kl_claim(paper, sweep)[0] == "supported"
    sweep["rem_v1"] = {"10": {"kl_to_prior": 20.5}}  # both REMs at one K: one sentence
    assert claims.kl_claim(paper, sweep)[1][0] == "K = 10: REM v1 20.50, REM v2 21.00 vs IWAE 20.00"
    assert claims.kl_claim({}, {})[0] == "not yet measured"

    def iwae(*kls):
        return {"iwae": {str(k): {"kl_to_prior": kl} for k, kl in zip((10, 30, 100), kls)}}

    assert claims.iwae_kl_falls_claim(iwae(20.0, 18.0, 15.0))[0].startswith("supported")
    assert claims.iwae_kl_falls_claim(iwae(20.0, 21.0, 15.0))[0].startswith("partly supported")
    assert claims.iwae_kl_falls_claim(iwae(15.0, 18.0, 20.0))[0] == "not supported"
    assert claims.iwae_kl_falls_claim(iwae(15.0))[0] == "not yet measured"
    # The paper-regime IWAE (K = 1000) joins the swept K.
    assert claims.iwae_kl_falls_claim(iwae(15.0), {"iwae": row(kl=13.5)})[1] == [
        "K = 10: 15.00, K = 1000: 13.50"]


def test_equal_time_comparison_interpolates_between_kept_checkpoints():
    paper = {"rem_v2": {"curve": curve(130.0, 110.0), "curve_cpu_seconds": [3600.0, 7200.0]},
             "rem_v1": {"curve": curve(150.0), "curve_cpu_seconds": [9000.0]},  # starts too late
             "iwae": {"curve": curve(140.0, 125.0), "curve_cpu_seconds": [2700.0, 5400.0]}}
    text = claims.equal_time_text(("rem_v1", "rem_v2"), "iwae", paper)
    assert text.startswith("at equal training CPU time (1.50 h, the IWAE's last kept checkpoint")
    # 130 + (5400−3600)/3600·(110−130); REM v1 left out.
    assert text.endswith("NLLs are REM v2 120.00 against the IWAE's 125.00")
    paper["iwae"]["curve_cpu_seconds"] = [2700.0, 9000.0]  # beyond REM v2's curve
    assert claims.equal_time_text(("rem_v1", "rem_v2"), "iwae", paper) is None


def test_the_claims_name_the_seed_of_the_runs_they_rest_on():
    def intro(paper, sweep):
        return claims.claims_section(paper, sweep, {})[2]

    paper = {"iwae": {**row(100.0), "seed": 11}}
    assert "the runs behind the verdicts are seed 11," in intro(paper, {})
    sweep = {"iwae": {"10": {"kl_to_prior": 20.0, "seed": 12}}}
    assert "the runs behind the verdicts are seed 11 and 12," in intro(paper, sweep)
    assert "the runs behind the verdicts are one seed each," in intro({"iwae": row(100.0)}, {})
