r"""The model zoo: 200-epoch runs at K = 50 → evaluations → presets → RESULTS.md's first section.

  python experiments/zoo.py --phase=train --methods=iwae      # or run.py, see configs/zoo.py
  python experiments/zoo.py --phase=evaluate   # learning curves; final metrics of finished runs
  python experiments/zoo.py --phase=presets    # rem_tf/presets/<method>_mnist of evaluated runs
  python experiments/zoo.py --phase=collect    # run directories → results/zoo.json
  python experiments/zoo.py --phase=report     # results/zoo.json → results/zoo.md, the
                                               # figure, and RESULTS.md's zoo section

Every run is a run of `rem_tf.experiment` with `configs/zoo.py` in its own
resumable run directory `<runs_root>/<method>` (the same as
`python run.py --config=configs/zoo.py --method=M --mode=train --workdir=<runs_root>/M`).
Evaluations are cached in each run directory (`curve.json`, `final_eval.json`):
interrupt and re-run any phase and it goes on where it stopped.

- curve: the test NLL (K = `--curve_samples`, first `--curve_examples` test digits) of
  every kept checkpoint (every 10 epochs), with the run's wall and CPU seconds there.
- final (a finished run's `model.keras`): test NLL with K = `--eval_samples` on all
  test digits (per digit, for paired intervals), the authors' shifted estimator with K
  = `--shifted_samples`, train NLL with K = `--eval_samples` on the first
  `--train_examples` training digits with a fixed binarization (overfitting), ELBO, KL
  to the prior, active units, and the presets' check: the NLL of the first
  `--check_examples` test digits with K = `--check_samples` from the freshly loaded
  model's seed state (what tests/test_presets.py recomputes), and the same again with
  the advanced seed state (the estimator's seed-to-seed spread).

`--phase=report` reads only results/zoo.json: no run directory, no TensorFlow work.
"""

import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
import keras  # noqa: E402
import matplotlib  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

import rem_tf  # noqa: E402
from rem_tf import data, evaluation, experiment, presets  # noqa: E402
from rem_tf.experiment import checkpoints, run_files  # noqa: E402

import claims  # noqa: E402  (this directory: a script's own directory is on sys.path)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Published numbers the runs are put beside (test NLL, nats).
PAPER_TABLE_2 = "test NLL REM v1 88.95 and REM v2 88.92, train NLL 88.68 and 88.58 (Dieng & " \
    "Paisley, Table 2: stochastically binarized MNIST, K = 1000, 200 epochs)"
BURDA = "VAE 86.76 and IWAE 84.78 at k = 50 (Burda et al., Table 1: one stochastic layer of " \
    "50 latents, 3,280 epochs)"
BURDA_EPOCHS = 3280

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "zoo.py"), "The runs' config.", lock_config=False)
_PHASE = flags.DEFINE_enum("phase", "report",
                           ["train", "evaluate", "presets", "collect", "report"], "What to do.")
_METHODS = flags.DEFINE_list("methods", ["iwae", "rem_v2", "rem_v1", "vae"],
                             "Methods, in training order.")
_RUNS_ROOT = flags.DEFINE_string("runs_root", str(ROOT.parent / "runs" / "zoo"),
                                 "Where the run directories are (outside the repository).")
_CURVE_EXAMPLES = flags.DEFINE_integer("curve_examples", 2000, "Test digits of the curve.")
_CURVE_SAMPLES = flags.DEFINE_integer("curve_samples", 1000, "K of the curve's NLL.")
_EVAL_SAMPLES = flags.DEFINE_integer("eval_samples", 5000, "K of the final test and train NLL.")
_SHIFTED_SAMPLES = flags.DEFINE_integer("shifted_samples", 1000, "K of the shifted estimator.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 10000, "Training digits of train NLL.")
_CHECK_EXAMPLES = flags.DEFINE_integer("check_examples", 500, "Test digits of the presets' check.")
_CHECK_SAMPLES = flags.DEFINE_integer("check_samples", 1000, "K of the presets' check.")
_PRESETS_DIR = flags.DEFINE_string("presets_dir", str(presets.SHIPPED),
                                   "Where --phase=presets writes <method>_<dataset>.")
_RESULTS_DIR = flags.DEFINE_string("results_dir", str(ROOT / "results"), "JSON and figures.")
_RESULTS_MD = flags.DEFINE_string("results_md", str(ROOT / "RESULTS.md"), "The report.")


def run_config(base, method):
    config = base.copy_and_resolve_references()
    config.method = method
    config.workdir = str(pathlib.Path(_RUNS_ROOT.value) / method)
    return config


def read_json(path):
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def cached(path, key, compute):
    """The value stored under `key` in the JSON file `path`, computed (and stored) if absent."""
    store = read_json(path)
    if key not in store:
        store[key] = compute()
        run_files.write_json(path, store)
    return store[key]


def finished(workdir, config):
    """The final step if the run in `workdir` is finished and exported, else None."""
    summary = read_json(pathlib.Path(workdir) / "train_summary.json")
    step = summary.get("global_step")
    total = summary.get("steps_per_epoch", 0) * config.training.epochs
    done = step is not None and step == total and (pathlib.Path(workdir) / "model.keras").is_file()
    return step if done else None


def train(base):
    for method in _METHODS.value:
        config = run_config(base, method)
        logging.info("Training %s in %s.", method, config.workdir)
        try:
            experiment.train(config)
        except experiment.Interrupted as stop:  # SIGTERM / Ctrl-C: saved, resumable
            sys.exit(f"{stop} (python {' '.join(sys.argv)} goes on)")


# ------------------------------------------------------------------ evaluation


def measure(model, images, num_samples, config, proposal="encoder", per_example=False,
            elbo_samples=None):
    """NLL, ELBO, KL to the prior and active units of `model` on `images`."""
    started = time.time()
    results = evaluation.evaluate_model(
        model, images, num_samples=num_samples, chunk_size=config.evaluation.chunk_size,
        batch_size=config.evaluation.batch_size,
        elbo_samples=elbo_samples or config.evaluation.elbo_samples,
        active_units_threshold=config.evaluation.active_units_threshold, proposal=proposal,
        per_example=per_example)
    keep = ["nll", "elbo", "kl_to_prior", "active_units", "num_examples", "num_samples",
            "proposal"] + (["per_example_log_likelihood"] if per_example else [])
    return {**{k: results[k] for k in keep}, "seconds": time.time() - started}


def check_nll(model, images):
    """The presets' check: −mean log p̂(x) of `images` with the model's current seed state."""
    return -float(np.mean(model.log_likelihood(
        images, num_samples=_CHECK_SAMPLES.value, chunk_size=200, batch_size=100)))


def load_final(workdir):
    """The finished run's model, fresh from its model.keras (weights, optimizers, seed state)."""
    return keras.models.load_model(str(pathlib.Path(workdir) / "model.keras"))


def train_images(config):
    """The first --train_examples training digits with a fixed binarization [N, 28, 28, 1]."""
    dataset = data.load(config.data.name, config.data.train_split, source=config.data.source,
                        binarization="fixed", data_dir=config.data.data_dir, batch_size=1000,
                        shuffle=False)
    return np.concatenate(list(dataset.as_numpy_iterator()))[: _TRAIN_EXAMPLES.value]


def evaluate(base):
    test = experiment.builders.eval_images(base)  # [10000, 28, 28, 1], fixed binarization
    train_digits = None
    for method in _METHODS.value:
        config = run_config(base, method)
        workdir = pathlib.Path(config.workdir)
        kept = workdir / "kept_checkpoints"
        for step in sorted(checkpoints.kept_times(kept)):
            cached(workdir / "curve.json", str(step), lambda: measure(
                experiment.restore_model(config, kept / f"ckpt-{step}"),
                test[:_CURVE_EXAMPLES.value], _CURVE_SAMPLES.value, config,
                elbo_samples=1)["nll"])
        step = finished(workdir, config)
        if step is None:
            logging.info("%s: not finished; curve only.", workdir)
            continue
        final = workdir / "final_eval.json"
        model = load_final(workdir)  # the check first: from the seed state the preset ships
        cached(final, "check", lambda: {
            "examples": _CHECK_EXAMPLES.value, "num_samples": _CHECK_SAMPLES.value,
            "chunk_size": 200, "batch_size": 100,
            "nll": check_nll(model, test[:_CHECK_EXAMPLES.value]),
            "nll_next_seed": check_nll(model, test[:_CHECK_EXAMPLES.value])})
        cached(final, "test", lambda: measure(model, test, _EVAL_SAMPLES.value, config,
                                              per_example=True))
        cached(final, "shifted", lambda: measure(model, test, _SHIFTED_SAMPLES.value, config,
                                                 proposal="shifted"))
        if "train" not in read_json(final):
            train_digits = train_images(config) if train_digits is None else train_digits
            cached(final, "train", lambda: measure(model, train_digits, _EVAL_SAMPLES.value,
                                                   config))
        logging.info("Evaluated %s at step %d.", workdir, step)


# --------------------------------------------------------------------- presets


def training_facts(workdir, config):
    """The run's training record: epochs, steps, batch, seed, optimizers, wall and CPU hours."""
    summary = read_json(workdir / "train_summary.json")
    times = checkpoints.kept_times(workdir / "kept_checkpoints")
    wall, cpu = times.get(summary["global_step"], (None, None))
    return {
        "epochs": config.training.epochs, "steps": summary["global_step"],
        "batch_size": config.training.batch_size, "seed": config.seed,
        "optimizers": (f"Adam {config.training.learning_rate:g} (ε = "
                       f"{config.training.adam_epsilon:g}), {config.training.schedule} schedule, "
                       "one for θ and one for η"),
        "wall_hours": None if wall is None else round(wall / 3600, 2),
        "cpu_hours": None if cpu is None else round(cpu / 3600, 2),
    }


def make_presets(base):
    machine = read_json(pathlib.Path(_RESULTS_DIR.value) / "machine.json").get("description")
    for method in _METHODS.value:
        config = run_config(base, method)
        workdir = pathlib.Path(config.workdir)
        final = read_json(workdir / "final_eval.json")
        if finished(workdir, config) is None or not {"check", "test", "shifted", "train"} <= set(
                final):
            logging.info("%s: not finished and evaluated; no preset.", workdir)
            continue
        name = f"{method}_{config.data.name}"
        target = pathlib.Path(_PRESETS_DIR.value) / name
        test, train_nll = final["test"], final["train"]["nll"]
        metrics = {"test_nll": test["nll"], "test_nll_shifted": final["shifted"]["nll"],
                   "train_nll": train_nll, "elbo": test["elbo"],
                   "kl_to_prior": test["kl_to_prior"], "active_units": test["active_units"]}
        versions = read_json(workdir / "versions.json")
        check = dict(final["check"])
        check["seed_spread"] = abs(check.pop("nll_next_seed") - check["nll"])
        presets.save(  # from a fresh load: the seed state of the check
            load_final(workdir), target, include_optimizer=False, metrics=metrics,
            description=(f"{claims.NAMES.get(method, method)} trained by rem_tf on MNIST for "
                         f"{config.training.epochs} epochs with K = "
                         f"{config.training.num_particles} particles (configs/zoo.py)."),
            metadata={
                "data": {"name": config.data.name, "source": config.data.source,
                         "train": f"{config.data.train_split} split, dynamically binarized",
                         "test": f"{test['num_examples']:,} test digits, fixed binarization"},
                "training": training_facts(workdir, config),
                "metrics_notes": (
                    f"Test NLL: all {test['num_examples']:,} test digits, K = "
                    f"{test['num_samples']} importance samples from the encoder; shifted: the "
                    f"authors' estimator with K = {final['shifted']['num_samples']}; train NLL: "
                    f"the first {final['train']['num_examples']:,} training digits with a fixed "
                    f"binarization, K = {final['train']['num_samples']}; ELBO with K = "
                    f"{config.evaluation.elbo_samples}. Nats; lower NLL is better."),
                "check": check, "config": experiment.config.as_dict(config),
                "command": ["python " + " ".join(read_json(workdir / "run.json")["command"]),
                            "python experiments/zoo.py --phase=evaluate",
                            "python experiments/zoo.py --phase=presets"],
                "commit": versions.get("git_commit"), "versions": versions, "machine": machine,
            })
        got = check_nll(rem_tf.from_preset(target), experiment.builders.eval_images(base)[
            :check["examples"]])
        if abs(got - check["nll"]) > 1e-4:  # the preset must be the model that was evaluated
            raise RuntimeError(f"{target}: check NLL {got} != {check['nll']} of the run")
        logging.info("Wrote the preset %s (test NLL %.2f).", target, test["nll"])


# ---------------------------------------------------------------------- report


def collect(base):
    """results/zoo.json from the run directories' cached evaluations."""
    rows, per_digit = {}, {}
    for method in _METHODS.value:
        config = run_config(base, method)
        workdir = pathlib.Path(config.workdir)
        times = checkpoints.kept_times(workdir / "kept_checkpoints")
        curve = {int(s): v for s, v in read_json(workdir / "curve.json").items() if int(s) in times}
        if not curve:
            continue
        final = read_json(workdir / "final_eval.json")
        test, steps = final.get("test"), max(curve)
        per_epoch = read_json(workdir / "run.json").get("steps_per_epoch", 3000)
        rows[method] = {
            "num_particles": config.training.num_particles,
            "batch_size": config.training.batch_size, "seed": config.seed,
            "epochs_planned": config.training.epochs, "steps": steps,
            "epochs": steps // per_epoch, "evaluated": test is not None,
            "seconds": times[steps][0], "cpu_seconds": times[steps][1],
            "test_nll": test and test["nll"], "eval_samples": test and test["num_samples"],
            "eval_examples": test and test["num_examples"],
            "elbo": test and test["elbo"],
            "kl_to_prior": test and test["kl_to_prior"],
            "active_units": test and test["active_units"],
            "test_nll_shifted": final.get("shifted", {}).get("nll"),
            "train_nll": final.get("train", {}).get("nll"),
            "curve_examples": _CURVE_EXAMPLES.value, "curve_samples": _CURVE_SAMPLES.value,
            "curve": [[s, times[s][0], curve[s]] for s in sorted(curve)],
            "curve_cpu_seconds": [times[s][1] for s in sorted(curve)],
        }
        if test:
            per_digit[method] = -np.asarray(test["per_example_log_likelihood"])
    differences = {f"{a} - {b}": claims.paired_difference(per_digit[a], per_digit[b])
                   for a in per_digit for b in per_digit if a != b}
    results = pathlib.Path(_RESULTS_DIR.value)
    results.mkdir(parents=True, exist_ok=True)
    out = {"runs": rows, "paired_differences": differences,
           "machine": read_json(results / "machine.json").get("description")
           or platform.processor() or "this machine"}
    (results / "zoo.json").write_text(json.dumps(out, indent=1) + "\n")
    logging.info("Wrote %s.", results / "zoo.json")


def plot_curves(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, row in sorted(rows.items()):
        nll = [point[2] for point in row["curve"]]
        epochs = [point[0] * row["epochs"] / row["steps"] for point in row["curve"]]
        axes[0].plot(epochs, nll, "o-", label=method)
        axes[1].plot([s / 3600 for s in row["curve_cpu_seconds"]], nll, "o-", label=method)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("CPU hours of the training process")
    row = next(iter(rows.values()))
    axes[0].set_ylabel(f"test NLL (nats), K = {row['curve_samples']}, "
                       f"first {row['curve_examples']} digits")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"K = {row['num_particles']} particles, batch {row['batch_size']}: "
                 "test NLL during training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def step_cost_text(rows):
    """One sentence: each run's training CPU per step and, for the others, its ratio to the
    IWAE's (what decides whether a per-epoch lead survives at equal compute)."""
    costs = {method: row["cpu_seconds"] / row["steps"]
             for method, row in rows.items() if row["steps"]}
    parts = []
    for method in sorted(costs, key=costs.get):
        ratio = (f" ({costs[method] / costs['iwae']:.2f}× the IWAE's)"
                 if "iwae" in costs and method != "iwae" else "")
        parts.append(f"{claims.NAMES.get(method, method)} {1000 * costs[method]:.1f} ms{ratio}")
    return ("Training CPU per step (the process's CPU seconds over its steps to its last kept "
            "checkpoint; one TensorFlow thread on a core of its own): " + ", ".join(parts) + ".")


def train_command(method):
    """The command that trains `method`'s zoo run (from the repository root)."""
    return (f"python run.py --config=configs/zoo.py --method={method} --mode=train "
            f"--workdir=../runs/zoo/{method}")


def versus_iwae_cell(method, differences):
    """"mean [low, high]" of the paired NLL(method) − NLL(IWAE), or – if not evaluated."""
    if (method, "iwae") not in differences:
        return "–"
    mean, half = differences[method, "iwae"]
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def section(zoo):
    """RESULTS.md's zoo section (Markdown lines) from results/zoo.json's dict."""
    rows, machine = zoo["runs"], zoo["machine"]
    differences = {tuple(key.split(" - ")): tuple(value)
                   for key, value in zoo["paired_differences"].items()}
    any_row = next(iter(rows.values()))
    k, epochs = any_row["num_particles"], any_row["epochs_planned"]
    verdict_1, said_1 = claims.log_likelihood_claim(rows, differences)
    if not any("equal training CPU time" in sentence for sentence in said_1):
        # The IWAE's curve reaches further in CPU time than REM's: compare at REM's end.
        said_1 += [text for text in [claims.equal_time_text(("iwae",), "rem_v2", rows)] if text]
    verdict_2, said_2 = claims.kl_claim(rows, {})
    lines = [
        f"## The model zoo: {epochs} epochs at K = {k}"
        + (" (the paper's training length)" if epochs == 200 else ""),
        "",
        f"Made by `{train_command('M')}` for each method (two at a time, one core each), then "
        "`python experiments/zoo.py --phase=evaluate`, `--phase=presets`, `--phase=collect` and "
        f"`--phase=report`, on {machine}. The settings are the paper regime's (20-200-200-784 "
        "tanh, batch 20, Adam 1e-3 with ε = 1e-4 and the Burda schedule for both optimizers, "
        "seed 2019, real MNIST from the offline copy: 60,000 training digits dynamically "
        f"binarized, the 10,000 test digits with a fixed binarization) with K = {k} (Burda et "
        "al.'s largest k). One seed per method: the intervals below are the evaluation's "
        "Monte-Carlo and digit-sampling noise, not seed-to-seed variation.",
        "",
        f"1. **Log-likelihood: REM > IWAE > VAE** (K = {k}, at equal epochs): **{verdict_1}**. "
        + "; ".join(said_1) + ".",
        f"2. **REM's encoder has a higher KL to the prior than the IWAE's**: **{verdict_2}**"
        + (". " + "; ".join(said_2) + "." if said_2 else "."),
        "3. **The IWAE's KL to the prior falls as K grows**: not tested by these runs (one K).",
        "",
        "At 6,000 steps (2 epochs; the paper-regime and particle-sweep sections below) REM "
        "led the IWAE per step from K = 30 on (by 0.8 nats at K = 30 and 2.3 at K = 100), "
        "but not at equal CPU time.",
        "",
        step_cost_text(rows),
        "",
        "| preset | method | K | epochs | test NLL | − IWAE [95 %] | shifted | train NLL "
        "| train − test | ELBO | KL to prior | active units | train time | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in sorted(rows.items(), key=lambda kv: (kv[1]["test_nll"] or 1e9, kv[0])):
        gap = (row["train_nll"] - row["test_nll"]) if row["evaluated"] and row["train_nll"] \
            else None
        epochs_cell = (f"{row['epochs']}" if row["evaluated"] else
                       f"{row['epochs']} (finished; curve only, not yet evaluated)"
                       if row["epochs"] == row["epochs_planned"] else
                       f"{row['epochs']} of {row['epochs_planned']} (training; curve only)")
        lines.append(
            f"| {'`' + method + '_mnist`' if row['evaluated'] else '–'} | {method} | "
            f"{row['num_particles']} | {epochs_cell} | {fmt(row['test_nll'])} | "
            f"{versus_iwae_cell(method, differences)} | {fmt(row['test_nll_shifted'])} | "
            f"{fmt(row['train_nll'])} | {fmt(gap)} | {fmt(row['elbo'])} | "
            f"{fmt(row['kl_to_prior'])} | "
            f"{'–' if row['active_units'] is None else row['active_units']} | "
            f"{fmt(row['cpu_seconds'] / 3600)} CPU-h ({fmt(row['seconds'] / 3600)} h wall) | "
            f"`{train_command(method)}` |")
    lines += [
        "",
        f"Test NLL: all {any_row.get('eval_examples') or 10000:,} test digits, K = "
        f"{any_row.get('eval_samples') or 5000} importance samples from the encoder; shifted: "
        "the authors' estimator; train NLL: training digits with a fixed binarization (the "
        "presets' cards say how many; train − test below 0: the model fits its "
        "training digits better); − IWAE: the paired per-digit difference NLL − NLL(IWAE) "
        "over the same test digits with its 95 % interval (below 0: better than the IWAE). "
        "Train time: the training process's CPU and wall time up to the last kept checkpoint; "
        "the runs' wall time exceeds their CPU time because of other work on the machine and an "
        "idle wait of ~20-40 s between epochs in tf.data, since removed (see "
        "benchmarks/iterator_teardown.py): compare CPU times.",
        "",
        f"Beside published numbers: {PAPER_TABLE_2}; {BURDA}. These runs differ from both: "
        f"K = {k} particles, a 20-dimensional latent, dynamically binarized real MNIST from a "
        "CSV copy, one seed; the paper's Table 2 runs used K = 1000, Burda's runs "
        f"{BURDA_EPOCHS / epochs:.0f}× more epochs and 50 latents.",
        "",
        "![zoo learning curves](results/zoo_curves.png)",
        "",
    ]
    return lines


def report(base):
    del base  # the report reads only results/zoo.json
    results = pathlib.Path(_RESULTS_DIR.value)
    zoo = read_json(results / "zoo.json")
    if not zoo.get("runs"):
        raise app.UsageError(f"no runs in {results / 'zoo.json'}: run --phase=collect first")
    plot_curves(zoo["runs"], results / "zoo_curves.png")
    text = "\n".join(section(zoo))
    (results / "zoo.md").write_text(text)
    splice(pathlib.Path(_RESULTS_MD.value), text)
    logging.info("Wrote %s and %s.", results / "zoo.md", _RESULTS_MD.value)


def splice(results_md, text):
    """Puts `text` between RESULTS.md's zoo markers (first section after the title)."""
    begin, end = claims.ZOO_MARKERS
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = results_md.read_text() if results_md.is_file() else "# Results\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        title, _, rest = old.partition("\n")
        new = f"{title}\n\n{block}\n{rest.lstrip()}"
    results_md.write_text(new)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    {"train": train, "evaluate": evaluate, "presets": make_presets, "collect": collect,
     "report": report}[_PHASE.value](_CONFIG.value)


if __name__ == "__main__":
    app.run(main)
