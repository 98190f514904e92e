"""Compares every method of rem_tf on real MNIST with one cheap budget (K = 20, batch 100).

    python experiments/compare_methods.py
    python experiments/compare_methods.py --epochs=1 --fig2_epochs=0 --eval_samples=100 \
        --out=/tmp/smoke                                       # a smoke run

Every method in `rem_tf.METHODS` is trained on the offline copy of real MNIST
(60,000 training digits, dynamically binarized: a fresh Bernoulli sample each
time a digit is drawn) with the same budget: the paper's networks
(20-200-200-784, tanh), K particles, batch B, E epochs, Adam 1e-3 with the
Burda schedule for both optimizers, seed 2019, and the fast training step.
Each is then evaluated on the full 10,000-digit test set (fixed binarization)
with K = 5000 importance samples, and on the first 2,000 training digits
(fixed binarization) for the train NLL.

Also: test NLL (K = 100) after every epoch (the learning curves), the analogue
of the paper's Figure 2 (KL(r(z|x) ‖ p(z)) on the test set against the K used
for training, for vae, iwae, rem_v1 and rem_v2, each trained for
`--fig2_epochs` epochs), and a grid of samples and reconstructions per method.

Each finished piece is saved under `--out` as JSON, so an interrupted run
continues where it stopped. `--out`/cheap_budget.md is regenerated from those
files; `--report_only` rewrites it from them without training (e.g. after
`experiments/seed_variation.py` has added `--out`/seeds/seed_variation.md,
which it then includes). RESULTS.md is cheap_budget.md under the paper-regime
report (`experiments/paper_regime.py --phase=report`), or alone while that
report does not exist.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import rem_tf  # noqa: E402
from rem_tf import data, evaluation, experiment  # noqa: E402
from rem_tf.experiment import builders, run_files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_TEST_NLL = {  # Dieng & Paisley (2019), Table 2, stochastic MNIST, K = 1000, 200 epochs
    "rem_v1": 88.95, "rem_v2": 88.92,
}
FIG2_METHODS = ("vae", "iwae", "rem_v1", "rem_v2")


def add_budget_arguments(parser):
    """The training and evaluation budget every method gets (shared with seed_variation.py)."""
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num_particles", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--eval_samples", type=int, default=5000)
    parser.add_argument("--curve_samples", type=int, default=100)
    parser.add_argument("--train_eval_images", type=int, default=2000)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "results"))
    parser.add_argument("--methods", default=",".join(rem_tf.METHODS))
    add_budget_arguments(parser)
    parser.add_argument("--fig2_epochs", type=int, default=1)
    parser.add_argument("--fig2_particles", default="1,5,10,50")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--report_only", action="store_true",
                        help="rewrite cheap_budget.md (and RESULTS.md) from the saved results "
                        "under --out, no training")
    return parser.parse_args()


def check_methods(methods):
    """Exits with one line if a name in `methods` is not in rem_tf.METHODS."""
    unknown = sorted(set(methods) - set(rem_tf.METHODS))
    if unknown:
        sys.exit(f"error: unknown methods {unknown}; valid: {sorted(rem_tf.METHODS)}")


def budget_config(method="vae", num_particles=1, seed=2019):
    """configs/default.py's model and optimizers on the offline real MNIST, for one method.

    The Adam ε is Keras's default (1e-7), as in the runs of RESULTS.md (run.py's
    configs use Burda et al.'s 1e-4).
    """
    config = experiment.default_config()
    config.method, config.seed = method, seed
    config.data.name, config.data.source, config.data.train_split = "mnist", "offline", "train"
    config.training.num_particles = num_particles
    config.training.adam_epsilon = 1e-7
    return experiment.check_config(config, "train")


def load_data(seed):
    """Train size, fixed-binarized test and train-subset arrays, the decoder's output bias."""
    test = np.concatenate(list(data.load("mnist", "test", source="offline", batch_size=1000)
                               .as_numpy_iterator()))
    train_fixed = np.concatenate(list(
        data.load("mnist", "train", source="offline", binarization="fixed", shuffle=False,
                  batch_size=1000).take(2).as_numpy_iterator()))
    bias = builders.output_bias(budget_config(seed=seed))  # logit of the pixel means [784]
    return data.info("mnist")["train"], test, train_fixed, bias


def train_dataset(batch_size, seed):
    return data.load("mnist", "train", source="offline", binarization="dynamic",
                     batch_size=batch_size, seed=seed, drop_remainder=True)


def make_model(method, num_particles, bias, steps_per_epoch, seed):
    """The compiled model of `budget_config` (two Adam optimizers, the Burda schedule)."""
    config = budget_config(method, num_particles, seed)
    keras.utils.set_random_seed(seed)
    model = builders.build_model_from_config(config, decoder_output_bias=bias)
    builders.compile_model(model, config, steps_per_epoch)
    return model


class EpochLog(keras.callbacks.Callback):
    """Wall time per epoch and test NLL (K = curve_samples) after each epoch."""

    def __init__(self, test, curve_samples):
        super().__init__()
        self.test, self.curve_samples, self.rows = test, curve_samples, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        nll = -float(np.mean(self.model.log_likelihood(self.test, num_samples=self.curve_samples)))
        self.rows.append({"epoch": epoch + 1, "train_seconds": seconds,
                          "test_nll_k%d" % self.curve_samples: nll,
                          **{k: float(v) for k, v in (logs or {}).items()}})
        print(f"  epoch {epoch + 1}: {seconds:.0f} s, test NLL (K={self.curve_samples}) {nll:.2f}",
              flush=True)


def run_method(method, args, train_size, test, train_fixed, bias):
    path = os.path.join(args.out, f"{method}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    print(f"== {method}", flush=True)
    steps_per_epoch = train_size // args.batch_size
    model = make_model(method, args.num_particles, bias, steps_per_epoch, args.seed)
    log = EpochLog(test, args.curve_samples)
    start = time.perf_counter()
    model.fit(train_dataset(args.batch_size, args.seed), epochs=args.epochs, callbacks=[log],
              verbose=0)
    train_seconds = sum(row["train_seconds"] for row in log.rows)
    test_result = evaluation.evaluate_model(model, test, num_samples=args.eval_samples)
    train_result = evaluation.evaluate_model(model, train_fixed[: args.train_eval_images],
                                             num_samples=args.eval_samples)
    samples = model.sample(16, seed=args.seed).numpy()
    loc, _ = model.encode(test[:8])
    reconstructions = tf.sigmoid(model.decode(loc)).numpy()
    result = {
        "method": method, "epochs": args.epochs, "num_particles": args.num_particles,
        "batch_size": args.batch_size, "train_seconds": train_seconds,
        "steps_per_second": steps_per_epoch * args.epochs / train_seconds,
        "total_seconds": time.perf_counter() - start,
        "test": {k: v for k, v in test_result.items() if k != "encoder_mean_variance"},
        "train": {k: v for k, v in train_result.items() if k != "encoder_mean_variance"},
        "curve": log.rows,
        "samples": samples.reshape(16, 28, 28).round().astype(int).tolist(),
        "reconstructions": reconstructions.reshape(8, 28, 28).round(3).tolist(),
    }
    run_files.write_json(path, result)
    print(f"  test NLL (K={args.eval_samples}) {test_result['nll']:.2f}", flush=True)
    return result


def run_fig2(args, train_size, test, bias):
    path = os.path.join(args.out, "fig2_kl_vs_k.json")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)
    done = {(r["method"], r["num_particles"]) for r in rows}
    steps_per_epoch = train_size // args.batch_size
    for method in FIG2_METHODS:
        for k in (int(k) for k in args.fig2_particles.split(",")):
            min_k = rem_tf.METHODS[method].min_particles
            if (method, k) in done or k < min_k:
                continue
            print(f"== figure 2: {method}, K={k}", flush=True)
            model = make_model(method, k, bias, steps_per_epoch, args.seed)
            start = time.perf_counter()
            model.fit(train_dataset(args.batch_size, args.seed), epochs=args.fig2_epochs, verbose=0)
            loc, scale = model.encode(test)
            kl = float(np.mean(rem_tf.estimators.kl_diag_normal_to_standard(loc, scale)))
            rows.append({"method": method, "num_particles": k, "epochs": args.fig2_epochs,
                         "test_kl_to_prior": kl, "seconds": time.perf_counter() - start})
            run_files.write_json(path, rows)
    return rows


def plot_curves(results, path, curve_key):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot([row["epoch"] for row in r["curve"]], [row[curve_key] for row in r["curve"]],
                marker="o", label=r["method"])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test NLL, nats ({curve_key.split('_')[-1].upper()})")
    ax.set_title("Learning curves on MNIST (dynamic binarization)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fig2(rows, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in FIG2_METHODS:
        points = sorted((r["num_particles"], r["test_kl_to_prior"]) for r in rows
                        if r["method"] == method)
        if points:
            ax.plot(*zip(*points), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("K (particles used in training)")
    ax.set_ylabel("KL(r(z|x) || p(z)), test set, nats")
    ax.set_title("Figure 2 analogue: less collapse is higher")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(results, path):
    fig, axes = plt.subplots(len(results), 2, figsize=(9, 1.25 * len(results) + 0.5),
                             squeeze=False)
    for row, r in zip(axes, results):
        samples = np.array(r["samples"]).reshape(2, 8, 28, 28).transpose(0, 2, 1, 3)
        recon = np.array(r["reconstructions"]).transpose(1, 0, 2).reshape(28, -1)
        row[0].imshow(samples.reshape(56, 224), cmap="gray_r")
        row[1].imshow(recon, cmap="gray_r")
        row[0].set_ylabel(r["method"], rotation=0, ha="right", va="center")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("samples x ~ p(x|z), z ~ N(0, I)")
    axes[0][1].set_title("reconstructions of test digits (Bernoulli means)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def findings(results, fig2):
    """A few sentences computed from the numbers, so they stay true when rerun."""
    nll = {r["method"]: r["test"]["nll"] for r in results}
    kl = {r["method"]: r["test"]["kl_to_prior"] for r in results}
    best = min(nll, key=nll.get)
    out = [f"What these numbers show: the lowest test NLL is {best}'s ({nll[best]:.2f} nats)."]
    if "rem_v1" in nll and "iwae" in nll:
        verdict = "better" if nll["rem_v1"] < nll["iwae"] else "worse"
        out.append(
            f"REM v1 is {abs(nll['rem_v1'] - nll['iwae']):.2f} nats {verdict} than the IWAE "
            f"at this budget" + ("" if verdict == "better" else
                                  f" (K = {results[0]['num_particles']}, where REM's "
                                  "moment-matched covariance rests on few particles; the "
                                  "paper makes its claim at K = 1000, see the paper-regime "
                                  "sections)") + ".")
    if {"rem_v1", "rem_v2", "iwae"} <= set(kl):
        higher = kl["rem_v1"] > kl["iwae"] and kl["rem_v2"] > kl["iwae"]
        out.append(
            f"KL(r(z|x) ‖ p(z)) is {'higher' if higher else 'not higher'} for REM v1 "
            f"({kl['rem_v1']:.2f}) and v2 ({kl['rem_v2']:.2f}) than for the IWAE "
            f"({kl['iwae']:.2f})" + (", the direction of the paper's Figure 2" if higher else "")
            + ".")
    iwae_fig2 = sorted((r["num_particles"], r["test_kl_to_prior"]) for r in fig2
                       if r["method"] == "iwae")
    if len(iwae_fig2) > 1:
        falls = iwae_fig2[-1][1] < iwae_fig2[0][1]
        out.append(
            f"In the Figure 2 runs the IWAE's KL {'falls' if falls else 'does not fall'} from "
            f"{iwae_fig2[0][1]:.2f} (K = {iwae_fig2[0][0]}) to {iwae_fig2[-1][1]:.2f} "
            f"(K = {iwae_fig2[-1][0]}) as K grows" + (", as the paper reports" if falls else "")
            + ".")
    return [" ".join(out)]


def seed_variation_section(out):
    """The summary of experiments/seed_variation.py under `out`/seeds, if it was run."""
    path = os.path.join(out, "seeds", "seed_variation.md")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    methods = text.split("--methods=", 1)[1].split()[0].replace(",", ", ")
    body = text.split("\n", 1)[1].strip()  # without its "# ..." title
    return {"methods": methods, "lines": ["### Seed variation", "", body, ""]}


def write_results_md(results, fig2, args, meta):
    k = args.eval_samples
    seeds = seed_variation_section(args.out)
    curve_key = f"test_nll_k{args.curve_samples}"
    plot_curves(results, os.path.join(args.out, "learning_curves.png"), curve_key)
    plot_samples(results, os.path.join(args.out, "samples.png"))
    if fig2:
        plot_fig2(fig2, os.path.join(args.out, "fig2_kl_vs_k.png"))
    rel = os.path.relpath(args.out, ROOT)
    lines = [
        f"## A cheap budget: K = {args.num_particles}, batch {args.batch_size}, "
        f"{args.epochs} epochs",
        "",
        f"Made by `python experiments/compare_methods.py --epochs={args.epochs} "
        f"--num_particles={args.num_particles} --batch_size={args.batch_size} "
        f"--eval_samples={k} --fig2_epochs={args.fig2_epochs} --out={rel}` at commit "
        f"`{meta['commit']}` on {meta['cpu']} ({meta['cores']} cores, no GPU), "
        f"TensorFlow {meta['tensorflow']}, {meta['date']}; total {meta['hours']:.2f} h.",
        "",
        "### Budget, and how it differs from the paper",
        "",
        f"Real MNIST (offline copy, 60,000 / 10,000), dynamically binarized for training, "
        f"fixed binarization for evaluation. The paper's networks (20-200-200-784, tanh), "
        f"Adam with the Burda schedule from 1e-3 for both optimizers, seed 2019, the same for "
        f"every method: **K = {args.num_particles} particles, batch {args.batch_size}, "
        f"{args.epochs} epochs**. The paper trains 200 epochs with K = 1000 and batch 20 "
        f"(about 13,000× the particle-gradient work of this budget); its REM numbers on "
        f"stochastic MNIST are test NLL 88.95 (v1) and 88.92 (v2). These short runs are far "
        f"from converged, so they compare methods at equal, small compute: they do not "
        f"reproduce the paper's absolute numbers. Each method ran once (seed {args.seed}); "
        + (f"the seed-to-seed variation of {seeds['methods']} is measured below (Seed "
           f"variation). " if seeds else
           "seed-to-seed variation was not measured, so differences of a few tenths of a nat "
           "should not be read as significant. ")
        + "Train times were measured on a machine whose two "
        "cores were at times shared with other jobs; the benchmark table "
        "(docs/benchmarks.md) has clean "
        "speed numbers.",
        "",
        f"NLL is −log p(x) estimated with K = {k} importance samples from the encoder "
        f"(test: all 10,000 digits; train: the first {args.train_eval_images} training digits, "
        f"fixed binarization). ELBO and KL(r(z|x) ‖ p(z)) are test-set averages; active units "
        f"count latent dimensions whose encoder mean varies over the test set by more than 0.01.",
        "",
        "| method | train NLL | test NLL | test ELBO | KL to prior | active units | "
        "train time | steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r["test"]["nll"]):
        lines.append(
            f"| {r['method']} | {r['train']['nll']:.2f} | {r['test']['nll']:.2f} | "
            f"{r['test']['elbo']:.2f} | {r['test']['kl_to_prior']:.2f} | "
            f"{r['test']['active_units']} / {r['test']['latent_dim']} | "
            f"{r['train_seconds'] / 60:.1f} min | {r['steps_per_second']:.1f} |")
    lines += ["", *findings(results, fig2)]
    lines += [
        "",
        f"![learning curves]({os.path.join(rel, 'learning_curves.png')})",
        "",
        f"Test NLL (K = {args.curve_samples}) after every epoch, all methods.",
        "",
    ]
    if fig2:
        lines += [
            "### Figure 2 analogue: KL from the encoder to the prior against K",
            "",
            f"vae, iwae, rem_v1 and rem_v2 trained for {args.fig2_epochs} epoch(s) each with "
            f"K in {{{args.fig2_particles}}} (REM needs K ≥ 2), then KL(r(z|x) ‖ p(z)) "
            f"averaged over the test set. The paper reports this after 200 epochs.",
            "",
            "| method | " + " | ".join(f"K={k}" for k in args.fig2_particles.split(",")) + " |",
            "|---|" + "---|" * len(args.fig2_particles.split(",")),
        ]
        for method in FIG2_METHODS:
            values = {r["num_particles"]: r["test_kl_to_prior"] for r in fig2
                      if r["method"] == method}
            lines.append(f"| {method} | " + " | ".join(
                f"{values[int(k)]:.2f}" if int(k) in values else "–"
                for k in args.fig2_particles.split(",")) + " |")
        lines += ["", f"![KL against K]({os.path.join(rel, 'fig2_kl_vs_k.png')})", ""]
    if seeds:
        lines += seeds["lines"]
    lines += [
        "### Samples and reconstructions",
        "",
        f"![samples and reconstructions]({os.path.join(rel, 'samples.png')})",
        "",
    ]
    write_cheap_budget(args.out, lines)


def write_cheap_budget(out, lines):
    """Writes `<out>/cheap_budget.md`; RESULTS.md is that under "# Results" until the
    paper-regime report exists, which then includes it (experiments/paper_regime.py)."""
    with open(os.path.join(out, "cheap_budget.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if os.path.exists(os.path.join(out, "paper_regime.json")):
        print("Wrote cheap_budget.md; `python experiments/paper_regime.py --phase=report "
              f"--results_dir={out}` rebuilds RESULTS.md with it.")
        return
    with open(os.path.join(ROOT, "RESULTS.md"), "w") as f:
        f.write("# Results\n\nThe comparison in the paper's own regime (K = 1000, batch 20) is "
                "`experiments/paper_regime.py`; its runs are in progress, and its report will "
                "come first here, before this cheap budget.\n\n" + "\n".join(lines) + "\n")


def main():
    args = parse_args()
    if args.report_only:
        return report_only(args.out)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    train_size, test, train_fixed, bias = load_data(args.seed)
    methods = args.methods.split(",")
    check_methods(methods)
    results = [run_method(m, args, train_size, test, train_fixed, bias) for m in methods]
    fig2 = run_fig2(args, train_size, test, bias) if args.fig2_epochs > 0 else []
    meta_path = os.path.join(args.out, "meta.json")
    previous = json.load(open(meta_path)) if os.path.exists(meta_path) else {"hours": 0.0}
    meta = {
        "commit": run_files.git_commit(short=True),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"), "args": vars(args),
        "hours": previous["hours"] + (time.time() - start) / 3600,
    }
    try:
        with open("/proc/cpuinfo") as f:
            meta["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    run_files.write_json(meta_path, meta)
    write_results_md(results, fig2, args, meta)
    print(open(os.path.join(args.out, "cheap_budget.md")).read())


def report_only(out):
    """Rewrites cheap_budget.md (and RESULTS.md) from the JSON files of a run under `out`."""
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    args = argparse.Namespace(**{**meta["args"], "out": out})
    results = []
    for method in args.methods.split(","):
        with open(os.path.join(out, f"{method}.json")) as f:
            results.append(json.load(f))
    fig2_path = os.path.join(out, "fig2_kl_vs_k.json")
    fig2 = json.load(open(fig2_path)) if args.fig2_epochs > 0 and os.path.exists(fig2_path) else []
    write_results_md(results, fig2, args, meta)


if __name__ == "__main__":
    main()
