"""Speed and memory benchmarks of rem_tf (not tests: they print and save numbers).

    python benchmarks/run_benchmarks.py                 # everything
    python benchmarks/run_benchmarks.py --quick         # paper settings only

Writes `benchmarks/results/<host>.json` and `.md`:
- the float32 matmul peak of this machine, measured in TensorFlow in the same run;
- training steps/s of every method at the paper's settings (K = 1000, B = 20,
  20-200-200-784 networks) for three steps: `plain` (TF graph, autodiff of the
  Bernoulli likelihood), `fast` (the default: TF graph with the likelihood and
  its gradient fused by XLA, `fused_likelihood=True`) and `fast + XLA` (the
  whole step compiled, `jit_compile=True`), with the achieved GFLOP/s and its
  fraction of the matmul-bound limit (peak ÷ FLOPs per step);
- steps/s of every method for K in {1, 10, 100, 1000, 5000} (fast step);
- throughput and peak memory of `log_likelihood` with K = 5000 over 10,000 images.

FLOPs per step count the decoder matmuls only (the encoder runs once per image,
not per particle): F = 2·K·B·(L·H + H·H + H·D) for one forward pass over the
particles. A step costs 3F (forward, weight gradients, input gradients) for
vae, iwae and rws, and 4F for rem_v1 and rem_v2 (one more forward pass for the
hyperproposal particles) and for iwae_stl and iwae_dreg (a second backward pass
through the decoder for the encoder's gradient).
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import rem_tf  # noqa: E402
import machine  # noqa: E402  (benchmarks/machine.py)
from machine import HIDDEN, LATENT, cpu_model  # noqa: E402

BATCH = 20
PASSES_PER_STEP = {"vae": 3, "iwae": 3, "rws": 3, "rem_v1": 4, "rem_v2": 4, "iwae_stl": 4,
                   "iwae_dreg": 4}
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def decoder_forward_flops(num_particles, batch=BATCH):
    return machine.decoder_forward_flops(num_particles, batch)


def step_flops(method, num_particles):
    return PASSES_PER_STEP.get(method, 4) * decoder_forward_flops(num_particles)


def timed(fn, min_seconds, min_runs=3):
    """Best rate over repeated calls: returns seconds per call (min over runs)."""
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peak(seconds):
    """Best float32 GFLOP/s of square matmuls (TF graph and XLA), this machine."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a = tf.random.normal([n, n])
        b = tf.random.normal([n, n])
        for jit in (False, True):
            f = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=jit)
            f(a, b).numpy()
            per_call = timed(lambda: f(a, b).numpy(), seconds / 6)
            best = max(best, 2 * n**3 / per_call / 1e9)
    return best


def synthetic_batches(seed=0):
    images = (np.random.default_rng(seed).random((200, 28, 28, 1)) < 0.13).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(images).batch(BATCH, drop_remainder=True).repeat()


STEPS = {  # name: (fused_likelihood, jit_compile)
    "plain": (False, False),
    "fast": (True, False),
    "fast + XLA": (True, True),
}


def train_steps_per_second(method, num_particles, step, seconds):
    fused, jit_compile = STEPS[step]
    model = rem_tf.build_model(method, num_particles=num_particles, latent_dim=LATENT,
                               hidden_units=HIDDEN, seed=2019, fused_likelihood=fused)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit_compile)
    iterator = iter(synthetic_batches())
    model.make_train_function()
    train = model.train_function
    train(iterator)  # trace and compile
    [v.numpy() for v in train(iterator).values()]
    steps = 0
    start = time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        logs = train(iterator)
        steps += 1
    float(logs["loss"])  # wait for the last step
    return steps / (time.perf_counter() - start)


def evaluation_child(num_images, num_samples, chunk_size, batch_size, jit):
    """Runs in a subprocess so that its peak RSS is the evaluation's own."""
    model = rem_tf.build_model("iwae", latent_dim=LATENT, hidden_units=HIDDEN, seed=2019)
    images = (np.random.default_rng(1).random((num_images, 28, 28, 1)) < 0.13).astype(np.float32)
    model.log_likelihood(images[:batch_size], num_samples=num_samples, chunk_size=chunk_size,
                         batch_size=batch_size, jit_compile=jit)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    values = model.log_likelihood(images, num_samples=num_samples, chunk_size=chunk_size,
                                  batch_size=batch_size, jit_compile=jit)
    seconds = time.perf_counter() - start
    assert np.all(np.isfinite(values))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    particles = num_images * num_samples
    print(json.dumps({
        "images": num_images, "num_samples": num_samples, "chunk_size": chunk_size,
        "batch_size": batch_size, "jit_compile": jit, "seconds": seconds,
        "images_per_second": num_images / seconds,
        "gflops": particles * decoder_forward_flops(1, 1) / seconds / 1e9,
        "peak_rss_gib": peak, "rss_before_gib": rss_before,
    }))


def evaluation(num_images, num_samples, jit):
    out = subprocess.run(
        [sys.executable, __file__, "--eval_child", str(num_images), str(num_samples),
         str(int(jit))],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results):
    peak = results["matmul_peak_gflops"]
    lines = [
        f"Machine: {results['cpu']} ({results['cores']} cores), "
        f"TensorFlow {results['tensorflow']}, "
        f"{results['date']}. float32 matmul peak measured in this run: **{peak:.0f} GFLOP/s**.",
        "",
        "| method | K | B | step | steps/s | GFLOP/step | GFLOP/s | % of matmul limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["paper_settings"]:
        lines.append(
            f"| {row['method']} | {row['num_particles']} | {BATCH} | {row['step']} | "
            f"{row['steps_per_second']:.2f} | {row['gflop_per_step']:.1f} | {row['gflops']:.0f} | "
            f"{100 * row['fraction_of_limit']:.0f} % |")
    if results.get("particle_sweep"):
        ks = sorted({row["num_particles"] for row in results["particle_sweep"]})
        lines += ["", "Steps/s of the fast step against K (B = 20):", "",
                  "| method | " + " | ".join(f"K={k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for method in dict.fromkeys(row["method"] for row in results["particle_sweep"]):
            rates = {r["num_particles"]: r["steps_per_second"]
                     for r in results["particle_sweep"] if r["method"] == method}
            lines.append(f"| {method} | " + " | ".join(
                f"{rates[k]:.2f}" if k in rates else "–" for k in ks) + " |")
    for row in results.get("evaluation", []):
        lines += ["", f"`log_likelihood` with K = {row['num_samples']} over {row['images']} images "
                  f"(chunks of {row['chunk_size']} particles × {row['batch_size']} images, "
                  f"{'XLA' if row['jit_compile'] else 'TF graph'}): {row['seconds']:.0f} s, "
                  f"{row['images_per_second']:.0f} images/s, {row['gflops']:.0f} GFLOP/s, "
                  f"peak memory {row['peak_rss_gib']:.2f} GiB (process RSS)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="paper settings only, short timings")
    parser.add_argument("--seconds", type=float, default=8.0, help="timing window per measurement")
    parser.add_argument("--methods", default=",".join(rem_tf.METHODS))
    parser.add_argument("--eval_images", type=int, default=10000)
    parser.add_argument("--eval_child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.eval_child:
        num_images, num_samples, jit = args.eval_child
        return evaluation_child(num_images, num_samples, 200, 100, bool(jit))

    methods = args.methods.split(",")
    results = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "host": socket.gethostname(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"), "paper_settings": [], "particle_sweep": [],
        "evaluation": [],
    }
    results["matmul_peak_gflops"] = peak = matmul_peak(args.seconds)
    print(f"matmul peak: {peak:.1f} GFLOP/s", flush=True)
    for method in methods:
        for step in STEPS:
            rate = train_steps_per_second(method, 1000, step, args.seconds)
            flops = step_flops(method, 1000)
            row = {
                "method": method, "num_particles": 1000, "step": step,
                "steps_per_second": rate, "gflop_per_step": flops / 1e9,
                "gflops": rate * flops / 1e9, "fraction_of_limit": rate * flops / 1e9 / peak,
            }
            results["paper_settings"].append(row)
            print(json.dumps(row), flush=True)
    if not args.quick:
        for method in methods:
            for k in (1, 10, 100, 1000, 5000):
                if k < rem_tf.METHODS[method].min_particles:
                    continue  # e.g. REM needs K >= 2
                rate = train_steps_per_second(method, k, "fast", args.seconds / 2)
                results["particle_sweep"].append(
                    {"method": method, "num_particles": k, "steps_per_second": rate})
                print(method, k, f"{rate:.2f} steps/s", flush=True)
        for jit in (False, True):
            row = evaluation(args.eval_images, 5000, jit)
            results["evaluation"].append(row)
            print(json.dumps(row), flush=True)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stem = os.path.join(RESULTS_DIR, "quick" if args.quick else "latest")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
