"""Bad flags, config files and run directories given to run.py, as a user runs it (a subprocess
each, some seconds: all slow). A bad input must end with exit status 2 and exactly one
`error:` line on stderr naming it. The machinery: bad_inputs.py."""

import json
import os
import re

import pytest

from bad_inputs import Outcome, bad, changed, check, files, good, params
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx
from test_run_common import run_py, tiny_args


def run_bad(name, run):
    return bad("run", name, run, Exception, slow=True)


def run_ok(name, run, result_check):
    return good("run", name, run, result_check, slow=True)


def one_error_line(proc, names, status=2):
    """Raises the Outcome of a run.py call that must fail with one `error:` line naming
    `names`."""
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    detail = f"exit {proc.returncode}: " + " | ".join(lines[-3:])[:400]
    if proc.returncode == 0:
        raise Outcome("SILENT", "exit 0: " + (proc.stdout.strip().splitlines() or [""])[-1][:300])
    if proc.returncode != status or len(lines) != 1 or not lines[0].startswith("error: "):
        raise Outcome("UNCLEAR", detail)
    missing = [n for n in names if n not in lines[0]]
    if missing:
        raise Outcome("UNCLEAR", f"does not name {missing}: {detail}")
    raise Outcome("CLEAR", detail)


def run_py_fails(flags, names, prepare=None, data=True):
    """run(c): run.py [tiny data flags] FLAGS [--workdir or prepare(c)] must fail naming
    `names`."""
    def run(c):
        workdir = c.tmp / "runpy" / re.sub(r"\W+", "_", " ".join(flags))[:60]
        extra = prepare(c) if prepare else [f"--workdir={workdir}"]
        one_error_line(run_py([*(tiny_args(c.data_dir, epochs=1) if data else []), *flags,
                               *extra], check=False), names)
    return run


def flag_cases():
    for flags, names, data in [
        (["--config=configs/missing.py"], ["configs/missing.py"], False),
        (["--config=configs/missing.py", "--config.seed=3"], ["configs/missing.py"], False),
        (["--config.training.epoch=3"], ["--config.training.epoch", "epochs"], True),
        (["--config.foo.bar=1"], ["foo"], True),
        (["--config.seed=-1"], ["seed"], True),
        (["--config.training.learning_rate=nan"], ["learning_rate"], True),
        (["--num_particles=0"], ["num_particles"], True),
        (["--batch_size=-4"], ["batch_size"], True),
        (["--epochs=0"], ["epochs"], True),
        (["--method=rem_v3"], ["rem_v3"], True),
        (["--dataset=cifar10"], ["cifar10"], True),
        (["--config.evaluation.split=valid"], ["evaluation.split", "valid"], True),
        (["--config.data.data_dir=/nonexistent/dir"], ["/nonexistent/dir"], True),
        (["--mode=evaluate", "--saved_model=/nonexistent/model"], ["/nonexistent/model"], False),
        (["--config=README.md"], ["README.md"], False),
    ]:
        yield run_bad(f"run.py {' '.join(flags)}", run_py_fails(flags, names, data=data))


def prepared(kind):
    """prepare(c): flags for run.py on a copy of the finished run, damaged as `kind` says."""
    def prepare(c):
        run = c.copy_run(f"runpy_{kind}")
        if kind == "workdir_file":
            (run / "a_file").write_text("")
            return [f"--workdir={run / 'a_file'}"]
        if kind == "checkpoints":
            for path in (run / "checkpoints").glob("ckpt-*.data-*"):
                os.truncate(path, os.path.getsize(path) // 2)
            return [f"--workdir={run}", "--epochs=2"]
        if kind == "config_json":
            (run / "config.json").write_text('{"method": "rem_v2", ')
            return [f"--workdir={run}"]
        if kind == "saved_model":
            os.truncate(run / "saved_model" / "saved_model.pb", 200)
            return ["--mode=evaluate", f"--saved_model={run / 'saved_model'}"]
        if kind == "keras":
            os.truncate(run / "model.keras", 500)
            return ["--mode=evaluate", f"--saved_model={run / 'model.keras'}"]
        if kind == "mismatch":
            return [f"--workdir={run}", "--num_particles=5"]
        raise AssertionError(kind)
    return prepare


def run_directory_cases():
    for kind, names, data in [
        ("workdir_file", ["a_file"], True), ("checkpoints", ["checkpoint"], True),
        ("config_json", ["config.json"], True), ("saved_model", ["saved_model"], False),
        ("keras", ["model.keras"], False), ("mismatch", ["num_particles"], True),
    ]:
        yield run_bad(f"run.py on a run directory: {kind.replace('_', ' ')}",
                      run_py_fails([], names, prepare=prepared(kind), data=data))


def not_an_export(path):
    return "saved_model" not in path.parts and path.name != "model.keras"


def run_twice(c):
    workdir = c.tmp / "runpy" / "twice"
    args = [*tiny_args(c.data_dir, epochs=1), f"--workdir={workdir}"]
    first = run_py(args, check=False)
    if first.returncode != 0:
        raise Outcome("UNCLEAR", f"first run exit {first.returncode}: {first.stderr[-300:]}")
    before = files(workdir)
    second = run_py(args, check=False)
    gone = changed(workdir, before, lambda p: not_an_export(p) and p.name != "eval_test.json"
                   and "tensorboard" not in p.parts)
    if gone:
        raise Outcome("LOST", f"the second run changed or removed {gone}")
    if second.returncode != 0:
        raise Outcome("UNCLEAR", f"second run exit {second.returncode}: {second.stderr[-300:]}")
    return json.loads((workdir / "eval_test.json").read_text())


def evaluate_in_other_workdir(c):
    out = c.tmp / "runpy" / "evaldir"
    proc = run_py(["--mode=evaluate", f"--saved_model={c.run_dir / 'saved_model'}",
                   f"--workdir={out}", "--config.evaluation.num_samples=10",
                   "--config.evaluation.elbo_samples=4"], check=False)
    if proc.returncode != 0:
        raise Outcome("UNCLEAR", f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return json.loads((out / "eval_test.json").read_text())


def batch_larger_than_data(c):
    workdir = c.tmp / "runpy" / "bigbatch"
    proc = run_py([*tiny_args(c.data_dir, epochs=1), f"--workdir={workdir}", "--batch_size=100",
                   "--mode=train"], check=False)
    if proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1:
        raise Outcome("CLEAR", proc.stderr.strip())
    if proc.returncode != 0:
        raise Outcome("UNCLEAR", f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return json.loads((workdir / "train_summary.json").read_text())


def epochs_not_a_number(c):
    """absl's own two-line message with exit status 1 is documented as it is; one error line
    with status 2 is clear too."""
    proc = run_py(["--epochs=abc", f"--workdir={c.tmp / 'runpy' / 'abc'}"], check=False)
    if proc.returncode == 1 and "epochs" in proc.stderr and "Traceback" not in proc.stderr:
        raise Outcome("CLEAR", "absl: " + " | ".join(proc.stderr.strip().splitlines())[:300])
    one_error_line(proc, ["epochs"])


def config_file(name, text):
    """run(c): run.py --config=<a file `name` holding `text`> must fail naming it."""
    def run(c):
        path = c.tmp / "configs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        one_error_line(run_py([f"--config={path}", f"--workdir={c.tmp / 'runpy' / name}"],
                              check=False), [name])
    return run


def other_cases():
    yield run_ok("run.py twice on the same workdir: nothing lost, evaluation again", run_twice,
                 lambda r: r["num_examples"] == 16)
    yield run_ok("run.py --mode=evaluate on the SavedModel (its own data)",
                 evaluate_in_other_workdir,
                 lambda r: r["num_examples"] == 16 and r["num_samples"] == 10)
    yield run_ok("run.py --batch_size=100 > 40 images: one error line or one step per epoch",
                 batch_larger_than_data, lambda s: s["global_step"] >= 1)
    yield run_bad("run.py --epochs=abc (absl's own message)", epochs_not_a_number)
    yield run_bad("run.py with a stray positional argument",
                  lambda c: one_error_line(run_py(["extra_argument"], check=False),
                                           ["extra_argument"]))
    for name, text, what in [
        ("no_get_config.py", "x = 1\n", "without get_config()"),
        ("raises.py", "def get_config():\n    raise RuntimeError('boom')\n",
         "whose get_config raises"),
        ("returns_dict.py", "def get_config():\n    return {'method': 'iwae'}\n",
         "whose get_config returns a dict"),
        ("import_error.py", "import nonexistent_module_xyz\n", "with an import error"),
    ]:
        yield run_bad(f"run.py --config=a file {what}", config_file(name, text))
    yield run_bad("run.py --config=a directory",
                  lambda c: one_error_line(run_py(["--config=configs",
                                                   f"--workdir={c.tmp / 'runpy' / 'cd'}"],
                                                  check=False), ["configs"]))


CASES = [*flag_cases(), *run_directory_cases(), *other_cases()]


@pytest.mark.parametrize("case", params(CASES))
def test_run(case, ctx, record_property):
    check(case, ctx, record_property)
