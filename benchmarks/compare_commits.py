"""Training-step time of two versions of rem_tf, measured alternately (A B A B …).

    python benchmarks/compare_commits.py fe13858~1            # that commit vs the work tree
    python benchmarks/compare_commits.py OLD NEW --methods=iwae,rem_v2 --rounds=3 --steps=25

Each round runs one fresh process per version, in turn, which builds every method at the
paper's settings (K = 1000, batch 20, 20-200-200-784, the default fast step), takes three
warm-up steps and reports the MEDIAN of `--steps` step times. Alternating the versions and
taking medians keeps slow drifts of a shared machine (other jobs, clock changes) out of
the comparison; stop other work on the machine for clean numbers. Versions other than
the work tree are checked out with `git worktree` into a temporary directory.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process with the version's root and benchmarks/ first on PYTHONPATH:
# argv = methods, steps.
CHILD = r"""
import json, sys, time
import keras, rem_tf
from machine import HIDDEN, LATENT
from run_benchmarks import synthetic_batches
out = {}
for method in sys.argv[1].split(","):
    model = rem_tf.build_model(method, num_particles=1000, latent_dim=LATENT,
                               hidden_units=HIDDEN, seed=2019)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    batches = iter(synthetic_batches())
    model.make_train_function()
    for _ in range(3):
        float(model.train_function(batches)["loss"])
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        float(model.train_function(batches)["loss"])
        times.append(time.perf_counter() - start)
    out[method] = sorted(times)[len(times) // 2]
print("RESULT " + json.dumps(out))
"""


def checkout(revision, directory):
    """The root of `revision` (None: the work tree), checked out under `directory`."""
    if revision is None:
        return ROOT
    path = os.path.join(directory, revision.replace("/", "_").replace("~", "_"))
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", path, revision],
                   check=True, capture_output=True)
    return path


def step_times(root, methods, steps):
    path = os.pathsep.join([root, os.path.join(root, "benchmarks")])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", CHILD, methods, str(steps)],
                          capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="a git revision, e.g. a commit before a change")
    parser.add_argument("new", nargs="?", default=None, help="a git revision; default: work tree")
    parser.add_argument("--methods", default="iwae,rem_v2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        roots = {"old": checkout(args.old, directory), "new": checkout(args.new, directory)}
        try:
            rounds = {"old": [], "new": []}
            for i in range(args.rounds):
                for which, root in roots.items():
                    rounds[which].append(step_times(root, args.methods, args.steps))
                    print(f"round {i + 1} {which}: {rounds[which][-1]}", flush=True)
        finally:
            for root in roots.values():
                if root != ROOT:
                    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", root],
                                   capture_output=True)
    print(f"median step time (s) over {args.rounds} rounds, old = {args.old}, "
          f"new = {args.new or 'work tree'}:")
    for method in args.methods.split(","):
        old = statistics.mean(r[method] for r in rounds["old"])
        new = statistics.mean(r[method] for r in rounds["new"])
        print(f"  {method}: old {old:.3f}, new {new:.3f} ({(new / old - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
