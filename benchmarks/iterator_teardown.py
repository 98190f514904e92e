"""How long freeing a used epoch iterator of `rem_tf.data`'s pipeline takes, with tf.data
autotuning on (TensorFlow's default) and off (the pipeline's setting). Not a test.

    python benchmarks/iterator_teardown.py                  # 4 epochs per setting, ~9 min

Keras frees the tf.data iterator of every epoch it ends, and `rem_tf.experiment` makes one
per epoch; the zoo's runs (one TensorFlow thread on a core of their own) sat idle there for
~20-40 s after many epochs, waiting for tf.data's autotuning thread. This script reproduces
that on one core: each "epoch" draws the 3,000 batches of 20 MNIST digits one by one,
keeping the core busy for `--step_ms` after each as a training step would, then frees the
iterator and times it. The settings alternate epoch by epoch, so both see the same machine.

Writes `benchmarks/results/iterator_teardown.{json,md}`.
"""

import argparse
import gc
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

import rem_tf  # noqa: E402
from machine import cpu_model  # noqa: E402  (this directory is on sys.path)

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def epoch_dataset(epoch, autotune):
    """One epoch of the training pipeline (real MNIST, offline copy), autotuning on or off."""
    dataset = rem_tf.data.load("mnist", "train", source="offline", batch_size=20, shuffle=True,
                               seed=2019 + epoch, drop_remainder=True)
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return dataset.with_options(options)


def one_epoch(epoch, autotune, step_seconds):
    """(batches, seconds drawing them, seconds freeing the iterator)."""
    iterator = iter(epoch_dataset(epoch, autotune))
    start, batches = time.perf_counter(), 0
    for _ in iterator:
        busy_until = time.perf_counter() + step_seconds
        while time.perf_counter() < busy_until:  # a step computes: the core is not idle
            pass
        batches += 1
    drawn = time.perf_counter()
    del iterator
    gc.collect()
    return batches, drawn - start, time.perf_counter() - drawn


def markdown(result):
    lines = [
        "# Freeing an epoch's tf.data iterator",
        "",
        f"`python benchmarks/iterator_teardown.py --epochs={result['epochs']} "
        f"--step_ms={result['step_ms']}` on {result['cpu']}, pinned to one core with one "
        f"TensorFlow thread, TensorFlow {result['tensorflow']}, {result['date']}. Each epoch "
        f"draws {result['batches']} batches of 20 MNIST digits and keeps the core busy for "
        f"{result['step_ms']} ms after each (a training step's stand-in), then frees the "
        "iterator.",
        "",
        "| tf.data autotuning | epochs | freeing the iterator: each epoch (s) | mean (s) "
        "| max (s) | of the epoch's wall time |",
        "|---|---|---|---|---|---|",
    ]
    for name, arm in result["settings"].items():
        teardown, drawn = arm["teardown_seconds"], arm["draw_seconds"]
        lines.append(
            f"| {name} | {len(teardown)} | {', '.join(f'{t:.2f}' for t in teardown)} | "
            f"{sum(teardown) / len(teardown):.2f} | {max(teardown):.2f} | "
            f"{100 * sum(teardown) / (sum(teardown) + sum(drawn)):.1f} % |")
    lines += ["", "`rem_tf.data.load`'s pipeline turns autotuning off.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per setting.")
    parser.add_argument("--step_ms", type=float, default=20.0,
                        help="Busy time after each batch (ms): 20 gives ~60 s epochs.")
    parser.add_argument("--core", type=int, default=0, help="The one core to run on.")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    settings = {"on (TensorFlow's default)": True, "off (rem_tf's pipeline)": False}
    measured = {name: {"draw_seconds": [], "teardown_seconds": []} for name in settings}
    for epoch in range(args.epochs):
        for name, autotune in settings.items():
            batches, drawn, teardown = one_epoch(epoch, autotune, args.step_ms / 1000)
            measured[name]["draw_seconds"].append(round(drawn, 3))
            measured[name]["teardown_seconds"].append(round(teardown, 3))
            print(f"epoch {epoch}, autotuning {name}: drew {drawn:.1f} s, freed in "
                  f"{teardown:.2f} s", flush=True)
    result = {
        "cpu": cpu_model(), "host": platform.node(), "tensorflow": tf.__version__,
        "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "step_ms": args.step_ms,
        "batches": batches, "settings": measured,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "iterator_teardown.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "iterator_teardown.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
