"""Trains a list of run.py runs one after another and keeps a checkpoint every N steps.

    python experiments/train_queue.py --runs_root=/work/runs \
        paper_regime/iwae:--method=iwae paper_regime/rem_v2:--method=rem_v2 ...

Each job is `<workdir under runs_root>:<run.py flags separated by commas>`; it
runs `python run.py --config=configs/paper_regime.py --mode=train --workdir=...`
with those flags (re-running a job resumes it, as run.py does). While a job runs,
every checkpoint whose step is a multiple of --keep_every is copied into
`<workdir>/kept_checkpoints/` (run.py keeps only the last two) and its step, the
wall-clock seconds since the job started training (the checkpoint file's mtime)
and the CPU seconds the job had used (a resumed job's clocks go on from its last
kept checkpoint's) are appended to `<workdir>/kept_checkpoints/times.csv`.
No TensorFlow here: this only starts processes and copies files.
"""

import argparse
import csv
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpu_seconds(pid):
    """utime + stime of a process and its waited-for children, in seconds (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def kept_rows(kept):
    times = kept / "times.csv"
    if not times.is_file():
        return []
    with open(times) as f:
        return list(csv.DictReader(f))


def keep_new(workdir, keep_every, started_wall, pid, base):
    """Copies new kept checkpoints; `base` = (wall, cpu) seconds before this invocation."""
    ckdir, kept = workdir / "checkpoints", workdir / "kept_checkpoints"
    state = ckdir / "checkpoint"
    if not state.is_file():
        return
    done = {int(row["step"]) for row in kept_rows(kept)}
    for step in sorted({int(s) for s in re.findall(r'"ckpt-(\d+)"', state.read_text())}):
        if step % keep_every or step in done:
            continue
        files = list(ckdir.glob(f"ckpt-{step}.*"))
        if not files:
            continue
        kept.mkdir(exist_ok=True)
        for f in files:
            shutil.copy2(f, kept / f.name)
        mtime = (ckdir / f"ckpt-{step}.index").stat().st_mtime
        new = not (kept / "times.csv").is_file()
        with open(kept / "times.csv", "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "wall_seconds", "cpu_seconds", "unix_time"])
            writer.writerow([step, f"{base[0] + mtime - started_wall:.1f}",
                             f"{base[1] + cpu_seconds(pid):.1f}", f"{mtime:.1f}"])


def run_job(workdir, flags, keep_every, config, threads):
    workdir.mkdir(parents=True, exist_ok=True)
    # A resumed job restarts from its last kept checkpoint (every 1000 steps and every
    # epoch end are checkpoints): its clocks go on from that checkpoint's.
    rows = kept_rows(workdir / "kept_checkpoints")
    base = (float(rows[-1]["wall_seconds"]), float(rows[-1]["cpu_seconds"])) if rows else (0, 0)
    command = [sys.executable, str(ROOT / "run.py"), f"--config={config}", "--mode=train",
               f"--workdir={workdir}", *flags]
    with open(workdir / "queue_stdout.log", "a") as log:
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        started = time.time()
        env = dict(os.environ)
        if threads:  # TensorFlow's own thread pools (read by TF at start-up)
            env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env=env)
        while process.poll() is None:
            try:
                keep_new(workdir, keep_every, started, process.pid, base)
            except (OSError, ValueError):
                pass
            time.sleep(3)
        return process.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs_root", default=str(ROOT / "runs"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "paper_regime.py"))
    parser.add_argument("--keep_every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-/inter-op threads per job (0: TF's default); "
                             "1 lets two queues share 2 cores")
    parser.add_argument("jobs", nargs="+")
    args = parser.parse_args()
    for job in args.jobs:
        name, _, flags = job.partition(":")
        code = run_job(pathlib.Path(args.runs_root) / name, [f for f in flags.split(",") if f],
                       args.keep_every, args.config, args.threads)
        print(f"{name}: exit {code}", flush=True)


if __name__ == "__main__":
    main()
