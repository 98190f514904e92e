"""How much of the method ranking in RESULTS.md is seed noise? Reruns methods with more seeds.

    python experiments/seed_variation.py
    python experiments/seed_variation.py --methods=iwae,rem_v1 --seeds=2020 --epochs=1 \
        --eval_samples=100 --out=/tmp/seeds                    # a smoke run

Trains each method with exactly the budget of `experiments/compare_methods.py`
(same code path: its `run_method`), once per extra seed; the seed sets the
network initialisation, the particle draws, the data order and the dynamic
binarization. Seed 2019 is read from the main comparison's results
(`--baseline`, default `results/`) when it is there. Writes one JSON per method
and seed under `--out/seed_<s>/` (an interrupted run continues) and a summary
`--out/seed_variation.md`: test NLL per seed, mean and sample standard deviation,
and each method's paired difference to the IWAE (same seed) with a 95 % t-interval.
"""

import argparse
import json
import os

import numpy as np
import scipy.stats

import compare_methods  # same directory (a script's own is on sys.path); its training code
from rem_tf.experiment import run_files

ROOT = compare_methods.ROOT


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="iwae,rem_v1,rem_v2")
    parser.add_argument("--seeds", default="2020,2021", help="extra seeds to train")
    parser.add_argument("--baseline", default=os.path.join(ROOT, "results"),
                        help="directory of the main comparison (its seed is read from meta.json)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "seeds"))
    compare_methods.add_budget_arguments(parser)
    return parser.parse_args()


def baseline_runs(args, methods):
    """({method: result}, seed) of the main comparison if it used this budget, else ({}, None)."""
    meta_path = os.path.join(args.baseline, "meta.json")
    if not os.path.exists(meta_path):
        return {}, None
    meta = json.load(open(meta_path))
    same = all(meta["args"][k] == getattr(args, k)
               for k in ("epochs", "num_particles", "batch_size", "eval_samples"))
    if not same:
        print("baseline results use another budget; not included", flush=True)
        return {}, None
    runs = {}
    for method in methods:
        path = os.path.join(args.baseline, f"{method}.json")
        if os.path.exists(path):
            runs[method] = json.load(open(path))
    return runs, meta["args"]["seed"]


def paired_interval(differences):
    """Mean and 95 % t-interval half-width of paired differences [n]; nan for n < 2."""
    differences = np.asarray(differences, np.float64)
    n = len(differences)
    if n < 2:
        return float(differences.mean()), float("nan")
    half = scipy.stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / np.sqrt(n)
    return float(differences.mean()), float(half)


def summary_markdown(nll, seeds, args, commit, baseline_seed=None):
    """nll: {method: {seed: test NLL}} → the markdown summary."""
    baseline = ("" if baseline_seed is None else
                f"; seed {baseline_seed} is the run of RESULTS.md, read from "
                f"`{os.path.relpath(args.baseline, ROOT)}`")
    methods = list(nll)
    lines = [
        "# Seed variation of the method comparison",
        "",
        f"Made by `python experiments/seed_variation.py --methods={args.methods} "
        f"--seeds={args.seeds} --epochs={args.epochs} --num_particles={args.num_particles} "
        f"--batch_size={args.batch_size} --eval_samples={args.eval_samples}` at commit "
        f"`{commit}`, with the budget of RESULTS.md{baseline}. Test NLL in nats, K = "
        f"{args.eval_samples} importance samples on all 10,000 test digits.",
        "",
        "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |",
        "|---" * (len(seeds) + 3) + "|",
    ]
    for method in methods:
        values = [nll[method].get(s) for s in seeds]
        present = np.array([v for v in values if v is not None])
        std = present.std(ddof=1) if len(present) > 1 else float("nan")
        cells = ["–" if v is None else f"{v:.2f}" for v in values]
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {present.mean():.2f} | {std:.2f} |")
    if "iwae" in nll:
        lines += ["", "Paired difference to the IWAE (same seed; positive = worse than the IWAE; "
                  "an interval that excludes 0 means the difference is larger than the "
                  "seed-to-seed noise at this budget):",
                  "", "| method | per seed | mean | 95 % interval |", "|---|---|---|---|"]
        for method in methods:
            if method == "iwae":
                continue
            common = [s for s in seeds if s in nll[method] and s in nll["iwae"]]
            diffs = [nll[method][s] - nll["iwae"][s] for s in common]
            mean, half = paired_interval(diffs)
            per_seed = ", ".join(f"{d:+.2f}" for d in diffs)
            lines.append(f"| {method} | {per_seed} | {mean:+.2f} | "
                         f"[{mean - half:+.2f}, {mean + half:+.2f}] |")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    methods = args.methods.split(",")
    compare_methods.check_methods(methods)
    extra_seeds = [int(s) for s in args.seeds.split(",")]
    baseline, baseline_seed = baseline_runs(args, methods)
    nll = {m: {} for m in methods}
    seeds = []
    if baseline_seed in extra_seeds:
        baseline_seed = None
    if baseline_seed is not None:
        seeds.append(baseline_seed)
        for method, result in baseline.items():
            nll[method][baseline_seed] = result["test"]["nll"]
    for seed in extra_seeds:
        seeds.append(seed)
        run_args = argparse.Namespace(**{**vars(args), "seed": seed,
                                         "out": os.path.join(args.out, f"seed_{seed}")})
        os.makedirs(run_args.out, exist_ok=True)
        train_size, test, train_fixed, bias = compare_methods.load_data(seed)
        for method in methods:
            result = compare_methods.run_method(method, run_args, train_size, test, train_fixed,
                                                bias)
            nll[method][seed] = result["test"]["nll"]
    text = summary_markdown(nll, seeds, args, run_files.git_commit(short=True), baseline_seed)
    with open(os.path.join(args.out, "seed_variation.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
