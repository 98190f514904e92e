"""The command line, run.py, end to end on tiny data: train → export → evaluate, resume
after a kill, and one line with exit status 2 for every bad flag, value, path or file.

Every run.py call is a subprocess (as a user runs it), on 40 images, batch 10
(4 steps per epoch), latent 2, K = 4. The library behind it,
rem_tf.experiment, is tested in test_experiment.py.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from test_run_common import (  # noqa: F401 - data_dir is a fixture
    REPO, data_dir, environment, read_csv, read_json, run_py, tiny_args, train_command,
    train_in_subprocess,
)

LOAD_WITHOUT_REM_TF = r"""
import sys
sys.modules["rem_tf"] = None  # `import rem_tf` now raises ImportError
import json
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
seed = [v.numpy().tolist() for v in loaded.model_variables if v.name.startswith("particle_seed/")]
out = {"seed_state": seed[0], "log_likelihood": loaded.log_likelihood(images, 200).numpy().tolist(),
       "loc": loaded.encode(images)["loc"].numpy().tolist()}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """One uninterrupted train_and_evaluate run: (workdir, CompletedProcess)."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_py([*tiny_args(data_dir), f"--workdir={workdir}"])
    return workdir, proc


def test_run_directory_holds_config_logs_checkpoints_exports_and_evaluation(reference):
    workdir, proc = reference
    config = read_json(workdir / "config.json")
    assert config["method"] == "rem_v2" and config["data"]["name"] == "mnist"
    assert config["training"]["batch_size"] == 10 and config["training"]["num_particles"] == 4
    assert config["model"]["hidden_units"] == [8] and config["workdir"] == str(workdir)
    versions = read_json(workdir / "versions.json")
    for key in ("python", "tensorflow", "keras", "tensorflow_probability", "numpy", "rem_tf"):
        assert versions[key], key
    assert read_json(workdir / "run.json")["steps_per_epoch"] == 4
    rows = read_csv(workdir / "train_log.csv")
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "elbo", "log_likelihood", "kl_to_prior", "learning_rate"} <= set(rows[0])
    # Burda schedule: epoch 0 at 1e-3, epoch 1 (stage 1) at 1e-3·10^(−1/7).
    assert float(rows[0]["learning_rate"]) == pytest.approx(1e-3)
    assert float(rows[1]["learning_rate"]) == pytest.approx(1e-3 * 10 ** (-1 / 7), rel=1e-6)
    # TensorBoard scalars, one per epoch.
    events = glob.glob(str(workdir / "tensorboard" / "train" / "events.out.tfevents.*"))
    assert events
    losses = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            if value.tag == "epoch_loss":
                losses[event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(losses) == [1, 2]
    assert losses[2] == pytest.approx(float(rows[1]["loss"]), rel=1e-6)
    assert (workdir / "checkpoints" / "checkpoint").is_file()
    assert (workdir / "model.keras").is_file()
    assert (workdir / "saved_model" / "saved_model.pb").is_file()
    results = read_json(workdir / "eval_test.json")
    assert results["num_examples"] == 16 and results["num_samples"] == 40
    assert results["nll"] == pytest.approx(-results["log_likelihood"])
    assert results["log_likelihood"] >= results["elbo"] - 1.0
    assert 0 <= results["active_units"] <= 2 and results["kl_to_prior"] >= 0
    assert "NLL (nats)" in proc.stdout and "active units" in proc.stdout
    summary = read_json(workdir / "train_summary.json")
    assert summary["global_step"] == 8 and summary["resumed_from_step"] == 0


def test_saved_model_reloads_without_rem_tf_and_agrees_with_the_trained_model(reference, data_dir,
                                                                              tmp_path):
    import keras  # noqa: PLC0415

    from rem_tf import data, export  # noqa: PLC0415

    workdir, _ = reference
    images = next(iter(data.load("mnist", "test", source="files", data_dir=data_dir,
                                 batch_size=8))).numpy()
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_REM_TF, str(workdir / "saved_model"),
         str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=300,
        env=environment(), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])

    # The in-process model: the .keras file of the same run, at the exported seed state.
    model = keras.models.load_model(workdir / "model.keras")
    model.seed_generator.state.assign(np.asarray(out["seed_state"], np.int64).astype(
        model.seed_generator.state.dtype))
    np.testing.assert_allclose(out["loc"], model.encode(images)[0], rtol=1e-5, atol=1e-6)
    chunk = export.metadata(workdir / "saved_model")["chunk_size"]
    live = export.ModelFunctions(model, chunk_size=chunk).log_likelihood(images, 200).numpy()
    np.testing.assert_allclose(out["log_likelihood"], live, rtol=1e-5)
    # and, with other particles, the model's own estimator agrees to Monte Carlo error
    # (K = 2000: the spread of the estimate on this tiny model is well below 0.5 nats)
    other = model.log_likelihood(images, num_samples=2000)
    np.testing.assert_allclose(other, live, atol=0.5)


def test_kill_mid_epoch_and_rerun_resumes_to_the_same_result(reference, data_dir, tmp_path):
    reference_dir, _ = reference
    args = [*tiny_args(data_dir), f"--workdir={tmp_path / 'run'}", "--mode=train"]
    # Checkpoints at steps 3, 4 (end of epoch 1) and 7; dies right after step 7,
    # in the middle of epoch 2, without any clean-up: the same run (tiny_config is
    # tiny_args' config) in `experiment.train`, with a callback that exits like a kill.
    killed = train_in_subprocess(data_dir, tmp_path / "run", exit_after_step=7, check=False)
    assert killed.returncode == 3, killed.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "ckpt-7.index").is_file()
    assert [row["epoch"] for row in read_csv(tmp_path / "run" / "train_log.csv")] == ["0"]

    resumed = run_py(args)  # the same command again
    assert "Resuming" in resumed.stderr and "from step 7" in resumed.stderr
    summary = read_json(tmp_path / "run" / "train_summary.json")
    expected = read_json(reference_dir / "train_summary.json")
    assert summary["resumed_from_step"] == 7 and summary["global_step"] == expected["global_step"]
    # Weights, both optimizers, the particle seed state and the data order were
    # restored: the result is the uninterrupted run's, bit for bit.
    assert summary["weights_sha256"] == expected["weights_sha256"]
    rows, reference_rows = (read_csv(d / "train_log.csv") for d in (tmp_path / "run",
                                                                      reference_dir))
    assert len(rows) == len(reference_rows) == 2
    for row, ref in zip(rows, reference_rows):
        for key in ref:
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-6), key

    # Once finished, the same command trains no more (it re-exports) and leaves the
    # run's summary and log as they were.
    files = {name: (tmp_path / "run" / name).read_bytes()
             for name in ("train_summary.json", "train_log.csv", "config.json", "run.json")}
    again = run_py(args)
    assert "finished at step 8" in again.stdout
    assert read_json(tmp_path / "run" / "train_summary.json")["resumed_from_step"] == 7
    assert len(read_csv(tmp_path / "run" / "train_log.csv")) == 2
    for name, content in files.items():
        assert (tmp_path / "run" / name).read_bytes() == content, name


def test_another_config_in_the_same_workdir_is_refused(reference, data_dir):
    workdir, _ = reference
    proc = run_py([*tiny_args(data_dir), f"--workdir={workdir}", "--num_particles=5"],
                  check=False)
    assert proc.returncode == 2
    assert "training.num_particles: 4 -> 5" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_mode_on_the_saved_model_and_on_the_keras_file(reference, tmp_path):
    workdir, _ = reference
    # The data section comes from the SavedModel's stored config (the tiny files);
    # the evaluation settings from --config (default.py) with overrides.
    proc = run_py(["--mode=evaluate", f"--saved_model={workdir / 'saved_model'}",
                   f"--workdir={tmp_path / 'a'}", "--config.evaluation.num_samples=30",
                   "--config.evaluation.elbo_samples=10"])
    results = read_json(tmp_path / "a" / "eval_test.json")
    assert results["num_samples"] == 30 and results["num_examples"] == 16
    assert results["dataset"] == "mnist" and results["source"] == "files"
    assert "NLL (nats)" in proc.stdout
    run_py(["--mode=evaluate", f"--saved_model={workdir / 'model.keras'}",
            f"--workdir={tmp_path / 'b'}", "--config.evaluation.num_samples=30",
            "--config.evaluation.elbo_samples=10"])
    from_keras = read_json(tmp_path / "b" / "eval_test.json")
    assert from_keras["model"].endswith("model.keras")
    # Same weights, other particles: the two NLLs agree to Monte Carlo error.
    assert from_keras["nll"] == pytest.approx(results["nll"], abs=1.0)
    assert from_keras["kl_to_prior"] == pytest.approx(results["kl_to_prior"], rel=1e-4)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_particles=0"], "training.num_particles (--num_particles) must be >= 1"),
        (["--mode=evaluate", "--saved_model=/nonexistent/model"], "no SavedModel"),
        (["--method=rem_v3"], "unknown method 'rem_v3'"),
        (["--dataset=cifar10"], "unknown dataset 'cifar10'"),
        (["--method=rem_v1", "--num_particles=1"], "rem_v1 needs num_particles >= 2"),
        (["DATA", "--batch_size=7", "--strategy=mirrored", "--config.distribute.num_cpu_devices=2"],
         "not divisible by the 2 replicas"),
        (["--dataset=mnist", "--config.data.source=files", "--config.data.data_dir=EMPTY"],
         "no local file"),
    ],
)
def test_bad_flags_fail_with_one_line_and_status_2(flags, message, data_dir, tmp_path):
    flags = [f.replace("EMPTY", str(tmp_path)) for f in flags]
    if flags[0] == "DATA":
        flags = [*tiny_args(data_dir), *flags[1:]]
    proc = run_py([*flags, f"--workdir={tmp_path / 'run'}"], check=False)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_a_bad_flag_prints_one_line_and_no_tensorflow_start_up_messages():
    env = environment()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # run.py's own default
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), "--method=bogus"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert (proc.stdout + proc.stderr).strip().splitlines() == [
        proc.stderr.strip()], proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: unknown method 'bogus'")


def test_a_mistyped_plain_flag_gets_absls_two_lines_and_status_1():
    proc = run_py(["--epochs=abc"], check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "FATAL Flags parsing error: flag --epochs=abc: invalid literal for int() with base 10: "
        "'abc'", "Pass --helpshort or --helpfull to see help on flags."]


def _copy_run(reference_dir, tmp_path):
    shutil.copytree(reference_dir, tmp_path / "run")
    return tmp_path / "run"


def _truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


def _truncate_checkpoints(run):
    for data in (run / "checkpoints").glob("ckpt-*.data-*"):
        _truncate(data)
    return [f"--workdir={run}"]


def _corrupt_config_json(run):
    (run / "config.json").write_text('{"method": "rem_v2", ')
    return [f"--workdir={run}"]


def _config_json_a_list(run):
    (run / "config.json").write_text("[1, 2]")
    return [f"--workdir={run}"]


def _workdir_inside_a_file(run):
    (run / "a_file").write_text("")
    return [f"--workdir={run / 'a_file' / 'sub'}"]


def _corrupt_saved_model(run):
    _truncate(run / "saved_model" / "saved_model.pb")
    return ["--mode=evaluate", f"--saved_model={run / 'saved_model'}"]


def _corrupt_keras_file(run):
    _truncate(run / "model.keras")
    return ["--mode=evaluate", f"--saved_model={run / 'model.keras'}"]


def _workdir_is_a_file(run):
    (run / "a_file").write_text("")
    return [f"--workdir={run / 'a_file'}"]



def _slow(*row):
    """A row that only checks a config value (the same checks as test_experiment.py's
    in-process check_config rows): through run.py only in the slow run."""
    return pytest.param(*row, marks=pytest.mark.slow)



@pytest.mark.parametrize(
    "flags, prepare, names",
    [
        (["--config=configs/missing.py"], None, ["configs/missing.py", "--config"]),
        (["--config=README.md"], None, ["README.md", "--config", "SyntaxError"]),
        (["--config=configs/__init__.py"], None, ["configs/__init__.py", "no get_config()"]),
        (["--config=configs"], None, ["'configs'", "is a directory"]),
        (["stray_argument"], None, ["unexpected arguments: stray_argument"]),
        (["--config.training.epoch=3"], None, ["--config.training.epoch", "epochs"]),
        (["--config.foo.bar=1"], None, ["'foo'", "--config.foo.bar"]),
        _slow(["--config.seed=-1"], None, ["seed"]),
        _slow(["--config.training.adam_epsilon=-1"], None, ["training.adam_epsilon", "> 0"]),
        _slow(["--config.evaluation.split=valid"], None, ["evaluation.split", "'valid'"]),
        _slow(["--config.model.architecture=resnet"], None, ["model.architecture", "mlp, conv"]),
        _slow(["--config.evaluation.proposal=best"], None, ["evaluation.proposal", "shifted"]),
        (["DATA"], _workdir_is_a_file, ["a_file", "--workdir"]),
        (["DATA"], _truncate_checkpoints, ["no readable checkpoint", "ckpt-8", "ckpt-7"]),
        (["DATA"], _corrupt_config_json, ["config.json", "not valid JSON"]),
        (["DATA"], _config_json_a_list, ["config.json", "not an object"]),
        (["DATA"], _workdir_inside_a_file, ["a_file", "--workdir"]),
        ([], _corrupt_saved_model, ["saved_model", "cannot load"]),
        ([], _corrupt_keras_file, ["model.keras", "cannot load"]),
    ],
    ids=["config-file", "config-syntax-error", "config-no-get-config", "config-directory",
         "stray-argument", "config-field", "config-section", "seed", "adam-epsilon",
         "eval-split", "architecture", "proposal", "workdir-file", "checkpoints",
         "config-json", "config-json-list", "workdir-inside-file", "saved-model", "keras-file"],
)
def test_bad_input_is_one_line_naming_it_and_status_2(flags, prepare, names, reference,
                                                       data_dir, tmp_path):
    if flags[:1] == ["DATA"]:
        flags = [*tiny_args(data_dir), *flags[1:]]
    extra = prepare(_copy_run(reference[0], tmp_path)) if prepare else [
        f"--workdir={tmp_path / 'run'}"]
    proc = run_py([*flags, *extra], check=False)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for name in names:
        assert name in lines[0], (name, lines[0])


# ------------------------------------------------- one owner, full and read-only disks


def test_a_second_process_on_a_workdir_in_use_is_refused_and_the_first_is_unharmed(
        reference, data_dir, tmp_path):
    from rem_tf import experiment  # noqa: PLC0415

    workdir, pause = tmp_path / "run", tmp_path / "pause"
    first = subprocess.Popen(
        train_command(data_dir, workdir, pause=(pause, 5)), cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
        stdin=subprocess.DEVNULL)
    try:
        for _ in range(3000):  # the first holds the workdir, paused after step 5
            if pause.with_suffix(".paused").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert pause.with_suffix(".paused").exists(), first.communicate()[1][-3000:]
        # Not blocking: refused at once (a blocked second run would hit the timeout).
        second = run_py([*tiny_args(data_dir), f"--workdir={workdir}"], check=False,
                        timeout=300)
        assert second.returncode == 2, second.stderr[-3000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr[-3000:]
        for name in (str(workdir), f"process {first.pid}", socket.gethostname()):
            assert name in lines[0], (name, lines[0])
        # An evaluation that would write into it is refused too, before any work.
        with pytest.raises(experiment.ConfigError, match=f"in use by process {first.pid}"):
            experiment.evaluate(experiment.default_config(), reference[0] / "saved_model",
                                workdir)
    finally:
        pause.with_suffix(".go").touch()
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert read_json(workdir / "train_summary.json")["weights_sha256"] == read_json(
        reference[0] / "train_summary.json")["weights_sha256"]
    assert (workdir / "run.lock").read_text() == ""  # released: it names no one


_FULL_DISK = r"""
set -e
M="$1"; OUT="$2"; shift 2
mount -t tmpfs -o size=16m tmpfs "$M"
run() { python "$REPO/run.py" "$@" --workdir="$M/run" --mode=train; }
mount -o remount,ro "$M"
run "$@" --epochs=1 >"$OUT/ro.out" 2>"$OUT/ro.err" && echo 0 >"$OUT/ro.rc" || echo $? >"$OUT/ro.rc"
ls -A "$M" >"$OUT/ro.ls"
mount -o remount,rw "$M"
run "$@" --epochs=1 >/dev/null 2>"$OUT/one.err"
free=$(df -k --output=avail "$M" | tail -1)
dd if=/dev/zero of="$M/filler" bs=1k count=$((free - 60)) 2>/dev/null
run "$@" --epochs=2 >"$OUT/full.out" 2>"$OUT/full.err" && echo 0 >"$OUT/full.rc" \
  || echo $? >"$OUT/full.rc"
ls -A "$M/run/checkpoints" >"$OUT/full.ls"
python -c "from rem_tf.experiment import checkpoints
print(checkpoints.unreadable('$M/run/checkpoints/ckpt-4'))" >"$OUT/full.ckpt4" 2>/dev/null
rm "$M/filler"
run "$@" --epochs=2 >/dev/null 2>"$OUT/again.err"
cp "$M/run/train_summary.json" "$OUT/"
"""


def test_a_read_only_or_full_disk_is_one_line_and_the_same_command_resumes_identically(
        reference, data_dir, tmp_path):
    """A real tmpfs in a user+mount namespace (ENOSPC, EROFS); where that is impossible the
    in-process tests of test_experiment.py inject the same errors by monkeypatching."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs tmpfs {tmp_path}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (unshare): the monkeypatched ENOSPC / EROFS "
                    "tests of test_experiment.py cover it")
    (tmp_path / "mnt").mkdir()
    args = [a for a in tiny_args(data_dir) if not a.startswith("--epochs")]
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", _FULL_DISK, "bash",
         str(tmp_path / "mnt"), str(tmp_path), *args], cwd=REPO, capture_output=True,
        text=True, timeout=900, env=environment(REPO=str(REPO)), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stderr[-3000:], (tmp_path / "again.err").read_text()
                                  if (tmp_path / "again.err").exists() else "")
    for case, names in [("ro", ["mnt/run", "read-only"]),
                        ("full", ["ckpt-7", "no space left", "ckpt-4", "is kept"])]:
        text = (tmp_path / f"{case}.err").read_text()
        assert (tmp_path / f"{case}.rc").read_text().strip() == "2", text[-3000:]
        errors = [line for line in text.splitlines() if "error" in line.lower()]
        assert "Traceback" not in text and len(errors) == 1, text[-3000:]
        assert errors[0].startswith("error: ") and text.strip().endswith(errors[0])
        for name in names:
            assert name in errors[0], (name, errors[0])
    assert (tmp_path / "ro.ls").read_text().split() == []  # checked before any work
    assert not [n for n in (tmp_path / "full.ls").read_text().split() if "temp" in n]
    assert (tmp_path / "full.ckpt4").read_text().strip() == "None"  # the last good one
    assert read_json(tmp_path / "train_summary.json")["weights_sha256"] == read_json(
        reference[0] / "train_summary.json")["weights_sha256"]
