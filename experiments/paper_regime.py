r"""The paper's regime (K = 1000, batch 20) and the particle sweep: train, evaluate, report.

  python experiments/paper_regime.py --phase=train --study=paper_regime    # K = 1000
  python experiments/paper_regime.py --phase=train --study=particle_sweep  # K = 10 … 300
  python experiments/paper_regime.py --phase=evaluate                      # both studies
  python experiments/paper_regime.py --phase=report   # results/*.json, figures, RESULTS.md

Every run is a run of `rem_tf.experiment` with `configs/paper_regime.py` (the
paper's networks, optimizers and schedule, K = 1000, batch 20, real MNIST from
the offline copy, decoder output bias at zero), in its own resumable run
directory `<runs_root>/<study>/<method>-k<K>`; a checkpoint is kept every
`--keep_every` steps with its training time. Interrupt and re-run any phase: it
goes on where it stopped (finished evaluations are cached in each run directory
as `curve.json` and `final_eval.json`).

- paper_regime: `--methods` at K = 1000. Evaluated at its last kept checkpoint on
  all test digits with K = `--eval_samples` importance samples from the encoder,
  and with the authors' "shifted" estimator at K = `--shifted_samples`; the
  learning curve is the test NLL (K = `--curve_samples`, first `--curve_examples`
  digits) of every kept checkpoint.
- particle_sweep: `--sweep_methods` × `--sweep_particles`, each stopped at the
  same step (`--sweep_steps`); the K = 1000 points are the paper_regime runs at
  that step. Test NLL with K = `--sweep_eval_samples` on all test digits, KL of
  the encoder to the prior, active units. `--sweep_seeds` runs the sweep again with
  other seeds (run directories `<method>-k<K>-seed<N>`), for the seed-to-seed
  variation of the gap to the IWAE.

`--phase=report` reads only the cached JSON files (no training, no evaluation)
and writes `<results_dir>/paper_regime.json`, `<results_dir>/particle_sweep.json`,
the figures, and `--results_md` (RESULTS.md), whose cheap-budget part is
`<results_dir>/cheap_budget.md` (written by experiments/compare_methods.py).
"""

import json
import os
import pathlib
import platform
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
import matplotlib  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rem_tf import evaluation, experiment  # noqa: E402
from rem_tf.experiment import checkpoints, run_files  # noqa: E402

import claims  # noqa: E402  (this directory: a script's own directory is on sys.path)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
STUDIES = ("paper_regime", "particle_sweep")

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "paper_regime.py"), "The runs' config.", lock_config=False)
_PHASE = flags.DEFINE_enum("phase", "report", ["train", "evaluate", "report"], "What to do.")
_STUDY = flags.DEFINE_enum("study", "all", ["all", *STUDIES], "Which runs (train / evaluate).")
_METHODS = flags.DEFINE_list("methods", ["iwae", "rem_v2", "rem_v1", "vae"],
                             "paper_regime methods, in training order.")
_SWEEP_METHODS = flags.DEFINE_list("sweep_methods", ["iwae", "rem_v1", "rem_v2"],
                                   "particle_sweep methods.")
_SWEEP_PARTICLES = flags.DEFINE_list("sweep_particles", ["10", "30", "100", "300", "1000"],
                                     "particle_sweep K values (the largest is paper_regime's).")
_SWEEP_SEEDS = flags.DEFINE_list(
    "sweep_seeds", [], "Seeds of the particle sweep beside the config's: the same runs again, "
    "in run directories <method>-k<K>-seed<N>, for the seed-to-seed variation (the report "
    "also finds such run directories by itself).")
_SWEEP_STEPS = flags.DEFINE_integer(
    "sweep_steps", 6000, "The kept step at which every particle_sweep run is evaluated "
    "(the config's epochs must reach it).")
_KEEP_EVERY = flags.DEFINE_integer("keep_every", 1000, "Keep a checkpoint every N steps.")
_CURVE_EXAMPLES = flags.DEFINE_integer("curve_examples", 2000, "Test digits of the curve.")
_CURVE_SAMPLES = flags.DEFINE_integer("curve_samples", 1000, "K of the curve's NLL.")
_EVAL_SAMPLES = flags.DEFINE_integer("eval_samples", 5000, "K of the final test NLL.")
_SHIFTED_SAMPLES = flags.DEFINE_integer("shifted_samples", 1000, "K of the shifted estimator.")
_SWEEP_EVAL_SAMPLES = flags.DEFINE_integer("sweep_eval_samples", 1000, "K of the sweep's NLL.")
_FINAL_AT = flags.DEFINE_string(
    "final_at", "finished", "paper_regime: evaluate on all test digits at the end of a finished "
    "run ('finished'), or at this kept step (an interim comparison at equal steps).")
_RUNS_ROOT = flags.DEFINE_string("runs_root", str(ROOT / "runs"), "Where the run directories are.")
_RESULTS_DIR = flags.DEFINE_string("results_dir", str(ROOT / "results"), "JSON and figures.")
_RESULTS_MD = flags.DEFINE_string("results_md", str(ROOT / "RESULTS.md"), "The report.")


# ------------------------------------------------------------------- the runs


def run_config(base, method, num_particles, workdir):
    """The config of one run: `base` with the method, K, workdir and kept checkpoints."""
    config = base.copy_and_resolve_references()
    config.method = method
    config.training.num_particles = int(num_particles)
    config.training.keep_checkpoint_every_steps = _KEEP_EVERY.value
    config.workdir = str(workdir)
    return config


def runs(base, study, other_seeds=None):
    """[(study, method, K, workdir, config)] of a study, in training order.

    `other_seeds`: the particle sweep's seeds beside the config's (default: --sweep_seeds).
    """
    root = pathlib.Path(_RUNS_ROOT.value)
    if other_seeds is None:
        other_seeds = [int(s) for s in _SWEEP_SEEDS.value]
    out = []
    if study == "paper_regime":
        k = base.training.num_particles
        for method in _METHODS.value:
            workdir = root / "paper_regime" / method
            out.append((study, method, k, workdir, run_config(base, method, k, workdir)))
    else:
        paper_k = base.training.num_particles
        for seed in (base.seed, *other_seeds):
            for k in (int(v) for v in _SWEEP_PARTICLES.value):
                for method in _SWEEP_METHODS.value:
                    if seed != base.seed:
                        workdir = root / "particle_sweep" / f"{method}-k{k}-seed{seed}"
                    elif k == paper_k:
                        workdir = root / "paper_regime" / method
                    else:
                        workdir = root / "particle_sweep" / f"{method}-k{k}"
                    config = run_config(base, method, k, workdir)
                    config.seed = seed
                    out.append((study, method, k, workdir, config))
    return out


def seeds_on_disk():
    """The seeds of the particle sweep's run directories <method>-k<K>-seed<N>, sorted."""
    names = (p.name for p in (pathlib.Path(_RUNS_ROOT.value) / "particle_sweep").glob("*-seed*"))
    return sorted({int(m.group(1)) for m in map(re.compile(r".+-k\d+-seed(\d+)").fullmatch, names)
                   if m})


def selected_studies():
    return STUDIES if _STUDY.value == "all" else (_STUDY.value,)


def kept_times(workdir):
    """{step: (wall seconds, cpu seconds)} of the kept checkpoints that exist."""
    return checkpoints.kept_times(pathlib.Path(workdir) / "kept_checkpoints")


def train(base):
    for study in selected_studies():
        for _, method, k, workdir, config in runs(base, study):
            if (study == "particle_sweep" and k == base.training.num_particles
                    and config.seed == base.seed):
                continue  # trained by the paper_regime study
            logging.info("Training %s at K = %d in %s.", method, k, workdir)
            try:
                experiment.train(config, workdir)
            except experiment.Interrupted as stop:  # SIGTERM / Ctrl-C: saved, resumable
                sys.exit(f"{stop} (python {' '.join(sys.argv)} goes on)")


# ------------------------------------------------------------------ evaluation


def cached(path, key, compute):
    """The value stored under `key` in the JSON file `path`, computed (and stored) if absent."""
    path = pathlib.Path(path)
    store = json.loads(path.read_text()) if path.is_file() else {}
    if key not in store:
        store[key] = compute()
        run_files.write_json(path, store)
    return store[key]


def measure(model, images, num_samples, config, proposal="encoder", elbo_samples=None):
    """Test-set numbers of a restored model: NLL (and its per-digit values), KL, active units."""
    started = time.time()
    results = evaluation.evaluate_model(
        model, images, num_samples=num_samples, chunk_size=config.evaluation.chunk_size,
        batch_size=config.evaluation.batch_size,
        elbo_samples=elbo_samples or config.evaluation.elbo_samples,
        active_units_threshold=config.evaluation.active_units_threshold, proposal=proposal,
        per_example=True,
    )
    keep = ("nll", "elbo", "kl_to_prior", "active_units", "num_examples", "num_samples",
            "proposal", "per_example_log_likelihood")
    return {**{k: results[k] for k in keep}, "seconds": time.time() - started}


def final_step(workdir, times):
    """The kept step of the paper_regime run's final evaluation (see --final_at), or None."""
    if _FINAL_AT.value != "finished":
        return int(_FINAL_AT.value) if int(_FINAL_AT.value) in times else None
    summary = read_json(pathlib.Path(workdir) / "train_summary.json")
    step = summary.get("global_step")
    return step if step in times else None


def evaluate(base):
    test = experiment.builders.eval_images(base)  # [10000, 28, 28, 1], fixed binarization
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if pathlib.Path("/proc/cpuinfo").is_file() else platform.processor()
    results = pathlib.Path(_RESULTS_DIR.value)
    results.mkdir(parents=True, exist_ok=True)
    (results / "machine.json").write_text(json.dumps({
        "description": f"{cpu} ({os.cpu_count()} cores, no GPU), TensorFlow {tf.__version__}",
    }) + "\n")
    for study in selected_studies():
        for _, method, k, workdir, config in runs(base, study):
            times = kept_times(workdir)
            if not times:
                logging.info("%s: no kept checkpoint yet.", workdir)
                continue

            def restored(step):
                return experiment.restore_model(config,
                                                workdir / "kept_checkpoints" / f"ckpt-{step}")

            if study == "paper_regime":
                for step in sorted(times):
                    cached(workdir / "curve.json", str(step), lambda: measure(
                        restored(step), test[:_CURVE_EXAMPLES.value], _CURVE_SAMPLES.value,
                        config, elbo_samples=1)["nll"])
                last = final_step(workdir, times)
                if last is None:
                    continue
                model = restored(last)
                cached(workdir / "final_eval.json", f"{last}/encoder",
                       lambda: measure(model, test, _EVAL_SAMPLES.value, config))
                cached(workdir / "final_eval.json", f"{last}/shifted",
                       lambda: measure(model, test, _SHIFTED_SAMPLES.value, config, "shifted"))
            elif _SWEEP_STEPS.value in times:
                cached(workdir / "sweep_eval.json", str(_SWEEP_STEPS.value), lambda: measure(
                    restored(_SWEEP_STEPS.value), test, _SWEEP_EVAL_SAMPLES.value, config))
            logging.info("Evaluated %s.", workdir)


# ---------------------------------------------------------------------- report


def read_json(path):
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def paired_differences(paper, per_digit):
    """{(a, b): (mean, half)} of NLL(a) − NLL(b) over the same digits, paper_regime runs."""
    out = {}
    for a in paper:
        for b in paper:
            keys = ("paper_regime", a), ("paper_regime", b)
            if a != b and all(key in per_digit for key in keys):
                out[(a, b)] = claims.paired_difference(
                    *(np.negative(per_digit[key]) for key in keys))
    return out


def collect(base):
    """(paper_regime dict, particle_sweep dict, per-digit arrays) from the cached evaluations."""
    paper, sweep, per_digit = {}, {}, {}
    for _, method, k, workdir, config in runs(base, "paper_regime"):
        times, finals = kept_times(workdir), read_json(workdir / "final_eval.json")
        curve = read_json(workdir / "curve.json")
        steps = sorted({int(key.split("/")[0]) for key in finals})
        if not steps and not curve:
            continue
        # Not evaluated on all test digits yet: its last kept step and its curve.
        step = steps[-1] if steps else max(times)
        encoder, shifted = finals.get(f"{step}/encoder"), finals.get(f"{step}/shifted")
        paper[method] = {
            "num_particles": k, "batch_size": config.training.batch_size, "steps": step,
            "seed": config.seed,
            "evaluated": encoder is not None,
            "seconds": times.get(step, (None, None))[0],
            "cpu_seconds": times.get(step, (None, None))[1],
            "test_nll": encoder and encoder["nll"],
            "eval_samples": encoder and encoder["num_samples"],
            "test_nll_shifted": shifted and shifted["nll"],
            "shifted_samples": shifted and shifted["num_samples"],
            "kl_to_prior": encoder and encoder["kl_to_prior"],
            "active_units": encoder and encoder["active_units"],
            "curve_examples": _CURVE_EXAMPLES.value, "curve_samples": _CURVE_SAMPLES.value,
            "curve": [[int(s), times[int(s)][0], v] for s, v in sorted(curve.items(),
                      key=lambda kv: int(kv[0])) if int(s) in times],
            "curve_cpu_seconds": [times[int(s)][1] for s in sorted(curve, key=int)
                                  if int(s) in times],
        }
        if encoder:
            per_digit[("paper_regime", method)] = encoder["per_example_log_likelihood"]
    other_seeds = sorted({*seeds_on_disk(), *(int(s) for s in _SWEEP_SEEDS.value)})
    # the config's seed first
    for _, method, k, workdir, config in runs(base, "particle_sweep", other_seeds):
        found = read_json(workdir / "sweep_eval.json").get(str(_SWEEP_STEPS.value))
        if not found:
            continue
        numbers = {"test_nll": found["nll"], "kl_to_prior": found["kl_to_prior"],
                   "active_units": found["active_units"]}
        if config.seed == base.seed:
            sweep.setdefault(method, {})[str(k)] = {
                "steps": _SWEEP_STEPS.value, **numbers, "eval_samples": found["num_samples"],
                "seed": config.seed}
            per_digit[("particle_sweep", method, k)] = found["per_example_log_likelihood"]
        elif str(k) in sweep.get(method, {}):  # another seed beside the config's
            sweep[method][str(k)].setdefault("other_seeds", {})[str(config.seed)] = numbers
            per_digit[("particle_sweep", method, k, config.seed)] = \
                found["per_example_log_likelihood"]
    return paper, sweep, per_digit


def plot_curves(paper, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, row in sorted(paper.items()):
        steps = [c[0] for c in row["curve"]]
        nll = [c[2] for c in row["curve"]]
        axes[0].plot(steps, nll, "o-", label=method)
        axes[1].plot([s / 60 for s in row["curve_cpu_seconds"]], nll, "o-", label=method)
    axes[0].set_xlabel("training step (batch 20)")
    axes[1].set_xlabel("CPU minutes of the training process")
    axes[0].set_ylabel(f"test NLL (nats), K = {_CURVE_SAMPLES.value}, "
                       f"first {_CURVE_EXAMPLES.value} digits")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("K = 1000 particles, batch 20: test NLL during training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(sweep, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    iwae = sweep.get("iwae", {})
    for method, row in sorted(sweep.items()):
        ks = sorted(int(k) for k in row)
        axes[1].plot(ks, [row[str(k)]["kl_to_prior"] for k in ks], "o-", label=method)
        if method != "iwae":
            common = [k for k in ks if str(k) in iwae]
            line, = axes[0].plot(common, [row[str(k)]["test_nll"] - iwae[str(k)]["test_nll"]
                                          for k in common], "o-", label=method)
            other = [(k, row[str(k)]["other_seeds"][seed]["test_nll"]
                      - iwae[str(k)]["other_seeds"][seed]["test_nll"])
                     for k in common for seed in row[str(k)].get("other_seeds", {})
                     if seed in iwae[str(k)].get("other_seeds", {})]
            if other:  # other seeds: unconnected crosses of the same colour
                axes[0].plot(*zip(*other), "x", color=line.get_color())
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_ylabel("NLL − NLL(iwae), nats")
    axes[0].set_title("test NLL against the IWAE's (below 0: better)", fontsize=10)
    axes[1].set_ylabel("KL(r(z|x) ‖ p(z)), test average")
    axes[1].set_title("KL of the encoder to the prior", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("K (training particles)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Particle sweep: batch 20, {_SWEEP_STEPS.value} steps per run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def paper_regime_section(paper, differences, machine):
    lines = [
        "## The paper's regime: K = 1000, batch 20",
        "",
        "Made by `python experiments/paper_regime.py --phase=train --study=paper_regime`, then "
        "`--phase=evaluate` and `--phase=report`, on " + machine + ". The runs: "
        "`configs/paper_regime.py` — the paper's networks (20-200-200-784, tanh), K = 1000 "
        "particles, batch 20, Adam 1e-3 with ε = 1e-4 and the Burda schedule for both "
        "optimizers, seed 2019, real MNIST (offline copy, 60,000 training digits dynamically "
        "binarized), the decoder's output bias starting at zero as in the authors' code "
        "(Burda et al.'s data-mean start is `model.output_bias_from_data=True`).",
        "",
        f"Test NLL: all 10,000 test digits (fixed binarization), K = {_EVAL_SAMPLES.value} "
        "importance samples from the encoder; *shifted*: the authors' estimator (a second pass "
        f"of K = {_SHIFTED_SAMPLES.value} around the first pass's weighted mean; a stochastic "
        "lower bound of log p(x) like ours). Time: the run's training time, wall clock and CPU "
        "seconds of the training process (two runs shared the 2 cores, one TensorFlow thread "
        "each, with other work on the machine: CPU time is the fairer measure).",
        "",
        "| method | steps | test NLL | shifted NLL | KL to prior | active units | wall time "
        "| CPU time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, row in sorted(paper.items(), key=lambda kv: kv[1]["test_nll"] or 1e9):
        steps = f"{row['steps']}" if row["evaluated"] else f"{row['steps']} (curve only)"
        lines.append(
            f"| {method} | {steps} | {fmt(row['test_nll'])} | "
            f"{fmt(row['test_nll_shifted'])} | {fmt(row['kl_to_prior'])} | "
            f"{'–' if row['active_units'] is None else row['active_units']} / 20 | "
            f"{fmt((row['seconds'] or 0) / 3600)} h | "
            f"{fmt((row['cpu_seconds'] or 0) / 3600)} h |")
    to_iwae = {a: d for (a, b), d in differences.items() if b == "iwae"}
    if to_iwae:
        lines += ["", "Paired difference to the IWAE over the same 10,000 test digits (positive: "
                  "worse than the IWAE; the interval is the evaluation's Monte-Carlo and "
                  "digit-sampling noise, not seed-to-seed variation, which these single-seed "
                  "runs do not measure):", "",
                  "| method | steps (method / iwae) | NLL − NLL(iwae) | 95 % interval |",
                  "|---|---|---|---|"]
        for method, (mean, half) in sorted(to_iwae.items()):
            lines.append(f"| {method} | {paper[method]['steps']} / {paper['iwae']['steps']} | "
                         f"{mean:+.2f} | [{mean - half:+.2f}, {mean + half:+.2f}] |")
    lines += ["", "![learning curves at K = 1000](results/paper_regime_curves.png)", ""]
    return lines


def gap_cell(per_digit, method, k, seed=None):
    """NLL(method) − NLL(iwae) at K (and another seed), paired over the test digits, as text."""
    a, b = ("particle_sweep", method, k), ("particle_sweep", "iwae", k)
    if seed is not None:
        a, b = a + (seed,), b + (seed,)
    if a not in per_digit or b not in per_digit:
        return "–"
    mean, half = claims.paired_difference(np.negative(per_digit[a]), np.negative(per_digit[b]))
    return f"{mean:+.2f} ± {half:.2f}"


def seeds_section(sweep, per_digit):
    """The sweep's runs with other seeds beside the config's, if any (Markdown lines)."""
    rows, seeds, ks = [], set(), set()
    for method, by_k in sorted(sweep.items()):
        for k, row in sorted(by_k.items(), key=lambda kv: int(kv[0])):
            others = sorted(row.get("other_seeds", {}).items(), key=lambda kv: int(kv[0]))
            if not others:
                continue
            seeds.update(seed for seed, _ in others)
            ks.add(k)
            for seed, numbers in [(row["seed"], row), *others]:
                seed_key = None if seed == row["seed"] else int(seed)
                gap = "" if method == "iwae" else gap_cell(per_digit, method, int(k), seed_key)
                rows.append(f"| {method} | {k} | {seed} | {fmt(numbers['test_nll'])} | "
                            f"{fmt(numbers['kl_to_prior'])} | {gap} |")
    if not rows:
        return []
    flags_text = (f"--sweep_seeds={','.join(sorted(seeds, key=int))} "
                  f"--sweep_particles={','.join(sorted(ks, key=int))}")
    return ["", f"The same runs with other seeds (the same commands with `{flags_text}`): "
            "weights, particles and data order all change with the seed; NLL(REM) − NLL(IWAE) "
            "is against the IWAE of the same seed.", "",
            "| method | K | seed | test NLL | KL to prior | NLL − NLL(iwae) |",
            "|---|---|---|---|---|---|", *rows]


def sweep_section(sweep, per_digit, machine):
    ks = sorted({int(k) for row in sweep.values() for k in row})
    lines = [
        "## Where REM overtakes the IWAE: the particle sweep",
        "",
        "Made by `python experiments/paper_regime.py --phase=train --study=particle_sweep`, "
        f"then `--phase=evaluate` and `--phase=report`, on {machine}: the paper regime's "
        f"settings with K particles, batch 20, every run stopped at step {_SWEEP_STEPS.value}; "
        f"test NLL with K = {_SWEEP_EVAL_SAMPLES.value} importance samples on all 10,000 test "
        "digits. The K = 1000 column is the paper-regime runs at that step.",
        "",
        "| method | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for what, key in (("test NLL", "test_nll"), ("KL to prior", "kl_to_prior"),
                      ("active units", "active_units")):
        for method, row in sorted(sweep.items()):
            cells = [fmt(row[str(k)][key]) if key != "active_units" and str(k) in row
                     else (str(row[str(k)][key]) if str(k) in row else "–") for k in ks]
            lines.append(f"| {method}: {what} | " + " | ".join(cells) + " |")
    lines += ["", "NLL(REM) − NLL(IWAE) at each K (same test digits; 95 % interval of the "
              "evaluation and digit noise):", "",
              "| method | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for method in sorted(sweep):
        if method != "iwae":
            cells = [gap_cell(per_digit, method, k) for k in ks]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += seeds_section(sweep, per_digit)
    lines += ["", "![NLL gap and KL against K](results/particle_sweep.png)", ""]
    return lines


def report(base):
    results = pathlib.Path(_RESULTS_DIR.value)
    results.mkdir(parents=True, exist_ok=True)
    paper, sweep, per_digit = collect(base)
    (results / "paper_regime.json").write_text(json.dumps(paper, indent=1) + "\n")
    (results / "particle_sweep.json").write_text(json.dumps(sweep, indent=1) + "\n")
    if paper:
        plot_curves(paper, results / "paper_regime_curves.png")
    if sweep:
        plot_sweep(sweep, results / "particle_sweep.png")
    machine = read_json(results / "machine.json").get("description", platform.processor() or
                                                      "this machine")
    lines = ["# Results", ""]
    zoo = results / "zoo.md"  # experiments/zoo.py's section comes first
    if zoo.is_file():
        lines += [claims.ZOO_MARKERS[0], zoo.read_text().rstrip(), claims.ZOO_MARKERS[1], ""]
    differences = paired_differences(paper, per_digit)
    if paper or sweep:
        lines += claims.claims_section(paper, sweep, differences)
    if paper:
        lines += paper_regime_section(paper, differences, machine)
    if sweep:
        lines += sweep_section(sweep, per_digit, machine)
    cheap = results / "cheap_budget.md"
    if cheap.is_file():
        lines += [cheap.read_text().rstrip(), ""]
    pathlib.Path(_RESULTS_MD.value).write_text("\n".join(lines))
    logging.info("Wrote %s and %s.", _RESULTS_MD.value, results)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    base = _CONFIG.value
    {"train": train, "evaluate": evaluate, "report": report}[_PHASE.value](base)


if __name__ == "__main__":
    app.run(main)
