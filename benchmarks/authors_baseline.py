"""Training speed of the authors' own PyTorch REM (adjidieng/REM) on this machine.

The baseline for "rem_tf is faster than the authors' code": steps/s of one REM v1 or
v2 training step of the authors' implementation at the paper's settings (K = 1000
importance samples, batch B = 20, 784-200-200-20 encoder, 20-200-200-784 decoder),
measured on the CPU, next to rem_tf's numbers from `run_benchmarks.py --quick`.

Their code is NOT part of this repository and is never copied into it: pass a
checkout of https://github.com/adjidieng/REM (MIT licence) with `--authors_repo`.
Only their `models.py` is imported (it needs just torch and numpy at import time,
so nothing is stubbed); their `main.py` imports torchvision and their `data.py`
needs torchvision, h5py, PIL and a download, so neither is imported. The training
step below mirrors `main.py`'s `train()` line by line:

    optimizer = optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)   # one optimizer
    model.train(); optimizer.zero_grad()
    loss = model(data, n_samples)          # models.REM.forward, K = n_samples
    loss.backward(); train_loss += loss.item(); optimizer.step()

with `data` a [B, 1, 28, 28] float32 batch of random binary images (their loader's
shape; `REM.forward` flattens it with `x.view(-1, x_dim)`), cycled over 10 batches
(pixel density 0.13, like `run_benchmarks.synthetic_batches`).

Run it with torch in its own virtual environment (not the project's .venv):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benchmarks/authors_baseline.py --authors_repo=/path/to/REM
    # then, in the same quiet window, rem_tf's numbers (writes benchmarks/results/quick.*):
    .venv/bin/python benchmarks/run_benchmarks.py --quick --methods=rem_v1,rem_v2
    # and the comparison table (no torch needed for this step):
    /tmp/torchenv/bin/python benchmarks/authors_baseline.py --report_only \\
        --rem_tf_results=benchmarks/results/quick.json

What it measures: after `--warmup` steps, `--windows` windows of at least `--seconds`
each; a window's rate is steps / elapsed wall time, and the reported rate is the
median over windows. GFLOP/s counts FLOPs as `run_benchmarks.py` does: the decoder
matmuls only, F = 2·K·B·(L·H + H·H + H·D) per forward pass over the particles, and
4F per REM step. Results go to `benchmarks/results/authors_pytorch.json` and `.md`.
`--smoke=N` just runs N steps of each version and prints the losses.

`--validate_args=on,off` (the default) times their step twice: "on" is today's torch
default, where every `torch.distributions` object checks its parameters and every
`log_prob` checks its value (e.g. that all K·B·784 pixels are 0 or 1) — the primary
number, their code as it runs now; "off" is the default of torch <= 1.7, the torch their
2019 code was written for, set by `Distribution.set_default_validate_args(False)`.
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import time

from machine import HIDDEN, LATENT, PIXELS, cpu_model, decoder_forward_flops  # this directory

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
X_DIM, Z_DIM, H_DIM = PIXELS, LATENT, HIDDEN[0]  # the authors' x_dim, z_dim, h_dim
PASSES_PER_STEP = 4  # as run_benchmarks.PASSES_PER_STEP["rem_v1"/"rem_v2"]
BUSY = re.compile(r"pytest|run\.py|compare_methods")


def step_flops(num_samples, batch):
    """FLOPs counted for one REM step: 4 decoder passes (as run_benchmarks.py)."""
    return PASSES_PER_STEP * decoder_forward_flops(num_samples, batch)


def _ancestors():
    """Pids of this process and its parents (their command lines are not 'busy')."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def busy_processes():
    """Other heavy python jobs of the project (pytest, run.py, compare_methods) now running."""
    mine, found = _ancestors(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "python" in cmdline and BUSY.search(cmdline):
            found.append(f"{name} {cmdline[:120]}")
    return found


def wait_until_quiet(max_minutes, poll_seconds=30):
    """Polls every `poll_seconds` until no busy process runs; gives up after `max_minutes`."""
    deadline = time.time() + 60 * max_minutes
    while True:
        busy = busy_processes()
        if not busy:
            return True
        if time.time() > deadline:
            print("still busy after waiting; measuring anyway:", busy, flush=True)
            return False
        print("waiting for:", busy, flush=True)
        time.sleep(poll_seconds)


def import_authors_models(authors_repo):
    """Imports the authors' `models` module from a checkout of adjidieng/REM."""
    path = os.path.abspath(authors_repo)
    if not os.path.isfile(os.path.join(path, "models.py")):
        raise SystemExit(f"--authors_repo={authors_repo}: no models.py there")
    # Their models.py alone (torch + numpy only), from its file: nothing else of theirs.
    spec = importlib.util.spec_from_file_location("models", os.path.join(path, "models.py"))
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    return models


def synthetic_batches(torch, batch, seed=0, num_batches=10):
    """Random binary images as their loader yields them: [batch, 1, 28, 28] float32."""
    import numpy as np  # noqa: PLC0415 - torch's environment, on first use

    images = np.random.default_rng(seed).random((num_batches * batch, 1, 28, 28)) < 0.13
    images = torch.from_numpy(images.astype(np.float32))
    return [images[i * batch:(i + 1) * batch] for i in range(num_batches)]


def make_trainer(torch, models, version, num_samples, batch, seed, validate_args=True):
    """Builds their REM model and Adam exactly as their main.py; returns a one-step function.

    `validate_args` sets torch.distributions' global default: True is today's torch
    default (checks of every sample and parameter in Bernoulli/Normal/MultivariateNormal);
    False is the default of torch <= 1.7, the torch of the authors' 2019 code.
    """
    torch.distributions.Distribution.set_default_validate_args(validate_args)
    torch.manual_seed(seed)
    model = models.REM(X_DIM, Z_DIM, H_DIM, version)
    model = model.to(models.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    batches = [b.to(models.device) for b in synthetic_batches(torch, batch)]
    state = {"i": 0, "train_loss": 0.0}

    def step():
        """One iteration of their train() loop body; returns the loss (float)."""
        model.train()
        data = batches[state["i"] % len(batches)]
        state["i"] += 1
        optimizer.zero_grad()
        loss = model(data, num_samples)
        loss.backward()
        value = loss.item()
        state["train_loss"] += value
        optimizer.step()
        return value

    return step


def steps_per_second(step, seconds, min_steps=3):
    """Runs `step` for at least `seconds` (and `min_steps` steps); returns steps / elapsed."""
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps / (time.perf_counter() - start)


def measure(args, torch, models):
    """Warm-up then `args.windows` timed windows per version; returns result rows."""
    rows = []
    flops = step_flops(args.num_samples, args.batch)
    for version, validate in [(v, c) for v in args.versions.split(",")
                              for c in args.validate_args.split(",")]:
        if args.wait_quiet_minutes:
            wait_until_quiet(args.wait_quiet_minutes)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        step = make_trainer(torch, models, version, args.num_samples, args.batch, args.seed,
                            validate_args=validate == "on")
        for _ in range(args.warmup):
            step()
        rates = [steps_per_second(step, args.seconds) for _ in range(args.windows)]
        rate = statistics.median(rates)
        row = {
            "method": f"rem_{version}", "implementation": "authors' PyTorch",
            "validate_args": validate == "on",
            "num_samples": args.num_samples, "batch": args.batch,
            "steps_per_second": rate, "window_rates": rates,
            "gflop_per_step": flops / 1e9, "gflops": rate * flops / 1e9,
            "busy_after": busy_processes(), "started": started,
            "ended": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def rem_tf_rows(path):
    """rem_tf's REM rows (plain, fast, fast + XLA) from a run_benchmarks.py JSON."""
    with open(path) as f:
        results = json.load(f)
    results.setdefault("finished", time.strftime(  # when run_benchmarks.py wrote the file
        "%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path))))
    rows = [r for r in results["paper_settings"] if r["method"] in ("rem_v1", "rem_v2")]
    return results, rows


NOTES = """\
What each implementation's step computes (same networks, K, B and FLOP count 4F):

- **Optimizers.** The authors use one Adam (lr 1e-3, eps 1e-4) over encoder and decoder
  and one `loss.backward()` of `sum(q_loss + p_loss)`; rem_tf's benchmark compiles one Adam
  (1e-4, Keras default eps 1e-7) but takes two gradients from a persistent tape, the θ loss
  for the decoder and the η loss for the encoder. Learning rate and eps do not change the
  cost of a step.
- **Loss scale.** The authors sum the loss over the batch; rem_tf averages it over the batch
  (`tf.nn.compute_average_loss`). Same cost, gradients 20× smaller in rem_tf.
- **v1: the θ loss reaches the encoder in the authors' code.** Their particles
  `z_q = q_phi.rsample((S,))` are reparameterized and not detached, so the gradient of
  `p_loss = -alpha * (log_lik + log_prior)` flows back through the decoder into z_q and on
  into the encoder's μ and log σ². Their encoder update in v1 is therefore β-weighted
  ∇ log q(z') **plus** an α-weighted reparameterization gradient of log p(x, z); rem_tf
  stops z (its README: "no θ-loss gradient leaks into the encoder"), so its v1 encoder
  gradient is the paper's Eq. 14 alone. Checked once at initialization (K = 100, 20 random
  images): detaching their z_q changes the v1 encoder gradient by a vector of norm 104
  against 72 for what remains, and leaves v2's unchanged. The extra work in theirs is
  small (the decoder's first-layer input gradient, [K·B, 200]×[200, 20], and the
  reparameterization chain).
- **v2.** Their first decoder pass (on z_q) feeds only the detached α and μ; the θ loss uses
  the second pass on detached z_r, so the backward goes through the second pass only, as in
  rem_tf. Their Σ is not detached (it depends on z_q) but nothing in the loss depends on it
  after β is detached, so no backward runs through it.
- **Moment matching.** Theirs is float32: K·B outer products by `torch.bmm` on
  [K·B, 20, 1]×[K·B, 1, 20] (a [1000, 20, 20, 20] tensor), the unweighted scatter
  ×K/(K−1), ridge 1e-6·I, `torch.cholesky` in float32 (deprecated alias of
  `torch.linalg.cholesky`, warns once), with Σ still attached to the autograd graph.
  rem_tf casts the stopped z and α to float64, forms μ and the same unweighted covariance by
  `einsum` on [K, B, L] in float64, takes the Cholesky factor in float64 and casts it back
  to float32 (cheap either way: [K, B, 20] → [B, 20, 20]).
- **Extras.** rem_tf's step also updates metrics (ELBO, IWAE bound, KL to the prior) from
  quantities it has already computed. Otherwise both compute the same quantities: log q on
  z and on z', the hyperproposal's log density on [K, B, 20] by triangular solve, and the
  Bernoulli log-likelihood of all K·B·784 logits twice (once per particle set).
- **Argument validation.** On today's torch (validate_args on by default since 1.8) their
  step also checks, in every `Bernoulli`/`Normal`/`MultivariateNormal` they build, the
  parameters and each `log_prob` value (e.g. that every one of the K·B·784 pixels is 0 or 1,
  that scales are positive, that the Cholesky factor is lower-triangular with a positive
  diagonal). That is real work in their step as it runs now; the "validate_args off" row
  shows the step as it ran on the torch of 2019. rem_tf's step does no value checks (TFP's
  validate_args is off by default; the step checks only the image shape, at trace time).
- **Timing.** Authors: median of the per-window rates of `--windows` windows of ≥ `--seconds`
  s after `--warmup` steps, each step ending with `loss.item()` (their loop does it).
  rem_tf (`run_benchmarks.py`): one window of ≥ 8 s after 2 compiled warm-up steps, steps/s =
  steps / elapsed, with TF running steps asynchronously and syncing on the last loss.
"""


def baseline_rate(rows, method):
    """The authors' steps/s for `method` with validate_args on (else the first row)."""
    mine = [r for r in rows if r["method"] == method]
    on = [r for r in mine if r.get("validate_args", True)]
    return (on or mine)[0]["steps_per_second"]


def markdown(authors, rem_tf_results, rem_rows, commands):
    """The comparison table and notes as Markdown."""
    lines = [
        "# The authors' PyTorch REM against rem_tf, same machine, same quiet window",
        "",
        f"Machine: {authors['cpu']} ({authors['cores']} cores, no GPU); measured "
        f"{authors['date']}. "
        f"PyTorch {authors['torch']} (CPU build, {authors['torch_threads']} threads), "
        f"TensorFlow {rem_tf_results['tensorflow'] if rem_tf_results else '?'}, "
        f"Keras {rem_tf_results['keras'] if rem_tf_results else '?'}. "
        f"Authors' code: adjidieng/REM commit {authors['authors_commit']} (`models.py`), "
        "not part of this repository.",
        "",
        f"Settings: K = {authors['num_samples']}, B = {authors['batch']}, 784-200-200-20 "
        "encoder and 20-200-200-784 decoder (tanh), random binary images. GFLOP/step = 4F, "
        "F = 2·K·B·(L·H + H·H + H·D), the count of `run_benchmarks.py`.",
        "",
        "| method | implementation | steps/s | GFLOP/step | GFLOP/s | speed-up over authors |",
        "|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in authors["rows"]):
        mine = [r for r in authors["rows"] if r["method"] == method]
        base = baseline_rate(authors["rows"], method)
        for a in mine:
            label = ("authors' PyTorch" if a.get("validate_args", True) else
                     "authors' PyTorch, validate_args off")
            lines.append(f"| {method} | {label} | {a['steps_per_second']:.2f} | "
                         f"{a['gflop_per_step']:.1f} | {a['gflops']:.0f} | "
                         f"{a['steps_per_second'] / base:.2f}× |")
        for r in rem_rows:
            if r["method"] == method:
                lines.append(
                    f"| {method} | rem_tf {r['step']} | {r['steps_per_second']:.2f} | "
                    f"{r['gflop_per_step']:.1f} | {r['gflops']:.0f} | "
                    f"{r['steps_per_second'] / base:.2f}× |")
    windows = "; ".join(
        f"{r['method']}{'' if r.get('validate_args', True) else ' (validate_args off)'}: "
        + ", ".join(f"{x:.2f}" for x in r["window_rates"]) for r in authors["rows"])
    lines += ["", "Speed-ups are against the authors' code as it runs on today's torch "
                  "(validate_args on, the first row of each method).",
              "", f"Authors' per-window rates (steps/s): {windows}."]
    busy = sorted({b for r in authors["rows"] for b in r.get("busy_after", [])})
    lines += ["", "Other heavy processes seen right after the authors' timings: "
              + ("; ".join(f"`{b}`" for b in busy) if busy else "none") + "."]
    if rem_tf_results:
        lines += ["", f"rem_tf's float32 matmul peak in its run: "
                      f"{rem_tf_results['matmul_peak_gflops']:.0f} GFLOP/s."]
    if rem_tf_results and rem_tf_results.get("finished"):
        lines += ["", f"rem_tf's run finished at {rem_tf_results['finished']}."]
    lines += ["", "Commands:", "", "```bash"] + commands + ["```", "", NOTES]
    if authors.get("notes"):
        lines += ["Observations from this run:", ""] + [f"- {n}" for n in authors["notes"]]
    return "\n".join(lines) + "\n"


def authors_commit(authors_repo):
    """The checkout's git commit if it is a git repository, else the stored commit hash."""
    head = os.path.join(authors_repo, ".git", "HEAD")
    try:
        with open(head) as f:
            ref = f.read().strip()
        if ref.startswith("ref:"):
            with open(os.path.join(authors_repo, ".git", ref.split()[1])) as f:
                return f.read().strip()
        return ref
    except OSError:
        return "a710a2ceedf89a8ada9e9bf8ed215f20bc523f12 (files as stored; not a git checkout)"


def main():
    """Command line: measure (or smoke-run) the authors' step, then write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors_repo", help="checkout of github.com/adjidieng/REM")
    parser.add_argument("--versions", default="v1,v2")
    parser.add_argument("--num_samples", type=int, default=1000, help="K")
    parser.add_argument("--batch", type=int, default=20, help="B")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timing window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--wait_quiet_minutes", type=float, default=40.0,
                        help="wait for pytest/run.py/compare_methods to finish (0: don't)")
    parser.add_argument("--validate_args", default="on,off",
                        help="torch.distributions argument checks: 'on' (today's default, "
                             "the primary number), 'off' (torch <= 1.7's default), or both")
    parser.add_argument("--smoke", type=int, default=0, help="only run N steps per version")
    parser.add_argument("--rem_tf_results", help="run_benchmarks.py JSON to compare against")
    parser.add_argument("--report_only", action="store_true",
                        help="re-write the .md from the saved .json (+ --rem_tf_results)")
    parser.add_argument("--out", default=os.path.join(RESULTS_DIR, "authors_pytorch"))
    parser.add_argument("--command", action="append", default=[],
                        help="command line to list in the report (repeatable)")
    parser.add_argument("--note", action="append", default=[],
                        help="an observation to add to the report (repeatable)")
    args = parser.parse_args()

    if args.report_only:
        with open(args.out + ".json") as f:
            authors = json.load(f)
    else:
        if not args.authors_repo:
            parser.error("--authors_repo is required")
        import torch  # noqa: PLC0415 - only where the authors' code runs

        torch.set_num_threads(args.threads)
        models = import_authors_models(args.authors_repo)
        if args.smoke:
            for version in args.versions.split(","):
                step = make_trainer(torch, models, version, args.num_samples, args.batch,
                                    args.seed)
                start = time.perf_counter()
                losses = [step() for _ in range(args.smoke)]
                print(f"{version}: losses {losses}, "
                      f"{args.smoke / (time.perf_counter() - start):.2f} steps/s incl. first")
            return
        authors = {
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "authors_commit":
                authors_commit(args.authors_repo), "num_samples": args.num_samples,
            "batch": args.batch, "warmup": args.warmup, "seconds": args.seconds,
            "windows": args.windows, "rows": measure(args, torch, models),
        }
        authors["date"] = (f"{authors['rows'][0]['started']} to "
                           f"{authors['rows'][-1]['ended']} (authors' timings)")
    rem_tf_results, rem_rows = (None, [])
    if args.rem_tf_results:
        rem_tf_results, rem_rows = rem_tf_rows(args.rem_tf_results)
        authors["rem_tf"] = {k: rem_tf_results[k] for k in
                             ("cpu", "cores", "tensorflow", "keras", "date",
                              "finished", "matmul_peak_gflops")}
        authors["rem_tf"]["rows"] = rem_rows
        authors["speedup_over_authors"] = {
            f"{r['method']} {r['step']}":
                r["steps_per_second"] / baseline_rate(authors["rows"], r["method"])
            for r in rem_rows if any(a["method"] == r["method"] for a in authors["rows"])}
    if args.command:
        authors["commands"] = args.command
    if args.note:
        authors["notes"] = args.note
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(authors, f, indent=2)
    text = markdown(authors, rem_tf_results, rem_rows, authors.get("commands", []))
    with open(args.out + ".md", "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
