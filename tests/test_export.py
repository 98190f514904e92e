"""SavedModel export: signatures, loading without rem_tf, and evaluation on it."""

import inspect
import json
import os
import signal
import subprocess
import sys

import numpy as np
import keras
import pytest
import scipy.special
import tensorflow as tf

import rem_tf
from rem_tf import evaluation, export

K = 300  # importance samples in the comparisons

# Runs in a fresh interpreter where `import rem_tf` fails: only TensorFlow.
LOAD_WITHOUT_REM_TF = r"""
import sys
sys.modules["rem_tf"] = None  # any `import rem_tf` now raises ImportError
import json
import numpy as np
import tensorflow as tf
path, images, num_samples = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3])
try:
    import rem_tf  # noqa: F401
    raise SystemExit("rem_tf is importable")
except ImportError:
    pass
loaded = tf.saved_model.load(path)
out = {"seed_state": [v.numpy().tolist() for v in loaded.model_variables
                      if v.name.startswith("particle_seed/")][0]}  # as exported
out["log_likelihood"] = loaded.log_likelihood(images, num_samples).numpy().tolist()
out["log_likelihood_shifted"] = loaded.log_likelihood_shifted(images, num_samples).numpy().tolist()
codes = loaded.encode(images)
out["loc"] = codes["loc"].numpy().tolist()
out["scale"] = codes["scale"].numpy().tolist()
out["logits"] = loaded.decode(codes["loc"]).numpy().tolist()
out["elbo"] = loaded.elbo(images).numpy().tolist()
samples = loaded.sample(5).numpy()
out["sample_shape"] = list(samples.shape)
out["sample_values"] = sorted(set(np.unique(samples).tolist()))
signature = loaded.signatures["log_likelihood"](x=tf.constant(images),
                                                num_samples=tf.constant(7, tf.int64))
out["signature_keys"] = {k: sorted(s.structured_outputs) for k, s in loaded.signatures.items()}
out["signature_shape"] = list(signature["log_likelihood"].shape)
print("RESULT " + json.dumps(out))
"""


def load_in_fresh_process(path, images, num_samples, tmp_path):
    """Calls every signature of the SavedModel at `path` in a process without rem_tf."""
    np.save(tmp_path / "images.npy", images)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_REM_TF, str(path), str(tmp_path / "images.npy"),
         str(num_samples)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return (rng.random((12, 28, 28, 1)) < 0.3).astype(np.float32)


def tiny_model(seed=3):
    return rem_tf.build_model("rem_v2", latent_dim=2, hidden_units=(8,), num_particles=4, seed=seed)


def test_saved_model_loads_without_rem_tf_and_agrees_with_the_live_model(images, tmp_path):
    model = tiny_model()
    path = export.export(model, tmp_path / "saved_model", chunk_size=64, elbo_samples=10,
                         metadata={"method": "rem_v2"})
    # The first call after export starts from the exported particle-seed state,
    # exactly as the first call of a freshly loaded SavedModel does.
    live = export.ModelFunctions(model, chunk_size=64, elbo_samples=10)
    reference = live.log_likelihood(images, K).numpy()
    reference_shifted = live.log_likelihood_shifted(images, K).numpy()  # next seeds, as loaded
    out = load_in_fresh_process(path, images, K, tmp_path)

    np.testing.assert_allclose(out["log_likelihood"], reference, rtol=1e-5)
    np.testing.assert_allclose(out["log_likelihood_shifted"], reference_shifted, rtol=1e-5)
    loc, scale = model.encode(images)
    np.testing.assert_allclose(out["loc"], loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["scale"], scale, rtol=1e-5, atol=1e-6)
    logits = model.decode(loc).numpy().reshape(-1, 28, 28, 1)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    assert len(out["elbo"]) == len(images)
    assert np.all(np.asarray(out["elbo"]) <= np.asarray(out["log_likelihood"]) + 1.0)
    assert out["sample_shape"] == [5, 28, 28, 1] and set(out["sample_values"]) <= {0.0, 1.0}
    assert out["signature_keys"] == {
        "log_likelihood": ["log_likelihood"], "log_likelihood_shifted": ["log_likelihood"],
        "elbo": ["elbo"], "encode": ["loc", "scale"],
        "decode": ["logits"], "sample": ["images"], "serving_default": ["log_likelihood"],
    }
    assert out["signature_shape"] == [len(images)]
    assert out["seed_state"] == [3, 0]  # the model had drawn nothing before export
    info = export.metadata(path)
    assert info["method"] == "rem_v2" and info["input_shape"] == [28, 28, 1]
    assert info["latent_dim"] == 2 and info["chunk_size"] == 64 and info["elbo_samples"] == 10


def test_export_replaces_atomically_and_rejects_non_binary_input(images, tmp_path):
    model = tiny_model()
    path = tmp_path / "saved_model"
    export.export(model, path, chunk_size=16)
    export.export(model, path, chunk_size=32)  # replaces the old one
    assert export.metadata(path)["chunk_size"] == 32
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]  # no temporary left
    loaded = export.load(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="binary"):
        loaded.log_likelihood(images * 0.5, 4)
    with pytest.raises(ValueError, match="not a SavedModel"):
        export.load(tmp_path)


def test_exported_log_likelihood_matches_quadrature_with_a_partial_last_chunk():
    # 1-D latent: log p(x) = log ∫ N(z; 0, 1) Π_d Bern(x_d | decoder(z)) dz on a grid.
    keras.utils.set_random_seed(0)
    model = rem_tf.build_model("iwae", latent_dim=1, hidden_units=(8,), input_shape=(6,), seed=3)
    # Proposal = prior (zero output layers: loc 0, scale exp(0) = 1), so every importance
    # weight is p(x|z) <= 1 and the 20,000-particle estimate is within 0.02 nats for any
    # decoder; an untrained encoder's narrow proposal made this depend on the weight init.
    for layer in (model.encoder.loc_layer, model.encoder.scale_layer):
        for variable in layer.weights:
            variable.assign(tf.zeros_like(variable))
    x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype(np.float32)
    grid = np.linspace(-12, 12, 24001)
    logits = model.decode(grid[:, None].astype(np.float32)).numpy().astype(np.float64)  # [G, 6]
    log_lik = (x[None] * logits[:, None] - np.logaddexp(0, logits[:, None])).sum(-1)  # [G, 5]
    log_prior = -0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
    exact = scipy.special.logsumexp(log_lik + log_prior[:, None], axis=0)
    exact += np.log(grid[1] - grid[0])
    functions = export.ModelFunctions(model, chunk_size=3000)
    estimate = functions.log_likelihood(x, 20000).numpy()  # 6 full chunks and one of 2000
    np.testing.assert_allclose(estimate, exact, atol=0.02)


def test_evaluate_live_and_loaded_agree_and_count_active_units(images, tmp_path):
    model = tiny_model()
    path = export.export(model, tmp_path / "sm", chunk_size=50, elbo_samples=20)
    loaded = export.load(path)
    live = evaluation.evaluate_model(model, images, num_samples=120, chunk_size=50, batch_size=5,
                                     elbo_samples=20)
    from_disk = evaluation.evaluate_model(loaded, images, num_samples=120, batch_size=5)
    for key in ("log_likelihood", "elbo", "kl_to_prior"):
        assert live[key] == pytest.approx(from_disk[key], rel=1e-5), key
    assert live["nll"] == -live["log_likelihood"]
    # Active units and KL by hand from the encoder.
    loc, scale = (t.numpy().astype(np.float64) for t in model.encode(images))
    variance = loc.var(axis=0)
    np.testing.assert_allclose(live["encoder_mean_variance"], variance, rtol=1e-4, atol=1e-9)
    assert live["active_units"] == int(np.sum(variance > 0.01))
    kl = 0.5 * np.sum(loc**2 + scale**2 - 1 - 2 * np.log(scale), axis=1).mean()
    assert live["kl_to_prior"] == pytest.approx(kl, rel=1e-4)
    assert live["num_examples"] == len(images) and live["latent_dim"] == 2
    table = evaluation.format_table(live, title="tiny")
    assert "NLL" in table and "active units" in table


def test_active_units_threshold():
    assert evaluation.active_units([0.5, 0.011, 0.01, 0.0]) == 2
    assert evaluation.active_units([0.5, 0.011, 0.01, 0.0], threshold=0.001) == 3


def test_evaluate_takes_flattened_images_and_rejects_bad_ones(images, tmp_path):
    path = export.export(tiny_model(), tmp_path / "sm", chunk_size=50, elbo_samples=20)
    # Two loads start from the same exported seed state, so they draw the same particles.
    shaped = evaluation.evaluate_model(export.load(path), images, num_samples=60, batch_size=5)
    flat = evaluation.evaluate_model(export.load(path), images.reshape(len(images), 784),
                                     num_samples=60, batch_size=5)
    for key in ("log_likelihood", "elbo", "kl_to_prior"):
        assert flat[key] == pytest.approx(shaped[key], rel=1e-6), key
    with pytest.raises(ValueError, match=r"\(28, 28, 1\).*\(12, 783\)"):
        evaluation.evaluate_model(tiny_model(), images.reshape(12, 784)[:, :783], num_samples=4)
    with pytest.raises(ValueError, match="binary"):
        evaluation.evaluate_model(tiny_model(), images * 0.5, num_samples=4)


def test_the_old_name_evaluate_warns_and_gives_what_evaluate_model_gives(images, tmp_path):
    path = export.export(tiny_model(), tmp_path / "sm", chunk_size=50, elbo_samples=20)
    # Two loads start from the same exported seed state, so they draw the same particles.
    new = evaluation.evaluate_model(export.load(path), images, num_samples=30, batch_size=5)
    with pytest.warns(DeprecationWarning, match=r"renamed rem_tf\.evaluation\.evaluate_model"):
        old = evaluation.evaluate(export.load(path), images, num_samples=30, batch_size=5)
    new.pop("seconds"), old.pop("seconds")
    assert old == new
    assert inspect.signature(evaluation.evaluate) == inspect.signature(evaluation.evaluate_model)


def test_model_export_is_rem_tf_export_and_loads_without_rem_tf(images, tmp_path):
    model = tiny_model()
    model.export(tmp_path / "saved_model", verbose=False, chunk_size=64, elbo_samples=10)
    reference = export.ModelFunctions(model, chunk_size=64).log_likelihood(images, K).numpy()
    out = load_in_fresh_process(tmp_path / "saved_model", images, K, tmp_path)
    assert set(out["signature_keys"]) == {*export.SIGNATURES, "serving_default"}
    assert out["signature_keys"]["serving_default"] == ["log_likelihood"]
    np.testing.assert_allclose(out["log_likelihood"], reference, rtol=1e-5)
    assert export.metadata(tmp_path / "saved_model")["elbo_samples"] == 10
    with pytest.raises(ValueError, match="input_signature must be None"):
        model.export(tmp_path / "other", input_signature=[tf.TensorSpec([None, 784])])
    with pytest.raises(ValueError, match="tf_saved_model"):
        model.export(tmp_path / "other", format="onnx")


# Runs every signature through the graph-and-session loader that `saved_model_cli run`
# and TF Serving use, and through tf.saved_model.load, without rem_tf.
RUN_SIGNATURES = r"""
import json, sys
sys.modules["rem_tf"] = None
import numpy as np
import tensorflow as tf
from tensorflow.python.tools import saved_model_cli

path, outdir = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
values = {"x": (rng.random((3, 28, 28, 1)) < 0.3).astype(np.float32),
          "z": rng.normal(size=(3, 2)).astype(np.float32),
          "num_samples": np.array(50, np.int64), "num": np.array(4, np.int64)}
agree = {}
for name in sorted(tf.saved_model.load(path).signatures):
    signature = tf.saved_model.load(path).signatures[name]  # a fresh load: the exported seeds
    inputs = {key: values[key] for key in signature.structured_input_signature[1]}
    eager = signature(**{k: tf.constant(v) for k, v in inputs.items()})
    out = f"{outdir}/{name}"
    saved_model_cli.run_saved_model_with_feed_dict(path, "serve", name, inputs, out, True)
    agree[name] = {key: np.load(f"{out}/{key}.npy").tolist() == value.numpy().tolist()
                   for key, value in eager.items()}
np.save(f"{outdir}/x.npy", values["x"])
np.save(f"{outdir}/k.npy", values["num_samples"])
print("RESULT " + json.dumps(agree))
"""


def test_saved_model_cli_runs_every_signature_as_tf_saved_model_load(tmp_path):
    path = export.export(tiny_model(), tmp_path / "saved_model", chunk_size=16, elbo_samples=5)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", RUN_SIGNATURES, path, str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    agree = json.loads(proc.stdout.split("RESULT ")[-1])
    assert set(agree) == {*export.SIGNATURES, "serving_default"}
    assert all(all(keys.values()) and keys for keys in agree.values()), agree
    # The command itself, as a user runs it, on the default signature (TF Serving's).
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"x={tmp_path}/x.npy;num_samples={tmp_path}/k.npy",
         "--outdir", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "cli" / "log_likelihood.npy"),
                                  np.load(tmp_path / "log_likelihood" / "log_likelihood.npy"))


# ------------------------------------------------ export owns only what it wrote


def test_export_refuses_a_user_file_inside_the_saved_model_and_leaves_others_alone(
        tmp_path, monkeypatch):
    path = tmp_path / "saved_model"
    # The name old versions used for the replaced export, and one like export's temporaries
    # but without its marker file: both are the user's.
    users = [".saved_model-old", ".saved_model.rem_tf-export-mine"]
    for name in users:
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("mine")
    export.export(tiny_model(), path, chunk_size=16)
    for user_file in (path / "notes.txt", path / "assets.extra" / "mine.json"):
        user_file.write_text("mine")
        with pytest.raises(ValueError, match=f"holds {user_file}, which rem_tf.export did not"):
            export.export(tiny_model(), path, chunk_size=32)
        assert user_file.read_text() == "mine"
        assert export.metadata(path)["chunk_size"] == 16  # the old export is still there
        user_file.unlink()
    # A swap that fails halfway (e.g. a full disk) puts the earlier export back.
    renames = []

    def failing_replace(source, target):
        renames.append(source)
        if len(renames) == 2:
            raise OSError("no space left on device")
        os.rename(source, target)

    monkeypatch.setattr(export.os, "replace", failing_replace)
    with pytest.raises(OSError, match="no space"):
        export.export(tiny_model(), path, chunk_size=32)
    monkeypatch.undo()
    assert export.metadata(path)["chunk_size"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == [*users, "saved_model"]
    export.export(tiny_model(), path, chunk_size=32)  # a replacement
    assert export.metadata(path)["chunk_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == [*users, "saved_model"]
    for name in users:
        assert (tmp_path / name / "keep.txt").read_text() == "mine"


# Exports twice, the second time killed (os._exit) at the swap's second rename: the old
# SavedModel is moved aside, the new one not yet in place.
KILLED_EXPORT = r"""
import os, sys
import rem_tf
from rem_tf import export
model = rem_tf.build_model("iwae", latent_dim=2, hidden_units=(8,), num_particles=2, seed=3)
export.export(model, sys.argv[1])
renames = []
def replace(source, target):
    renames.append(source)
    if len(renames) == 2:
        os._exit(9)
    os.rename(source, target)
os.replace = replace
export.export(model, sys.argv[1])
"""


def test_a_killed_exports_temporaries_are_removed_by_the_next_export(tmp_path):
    path = tmp_path / "saved_model"
    proc = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(path)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 9, proc.stderr[-3000:]
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert len(stale) == 2 and all(".saved_model.rem_tf-export-" in n for n in stale), stale
    assert not path.exists()
    export.export(tiny_model(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]
    assert export.metadata(path)["class"] == "REMv2"


def test_a_running_exports_temporary_is_not_removed(tmp_path):
    # Another export to the same path, still running (here: a sleeping process).
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / ".saved_model.rem_tf-export-busy"
        busy.mkdir()
        (busy / ".rem_tf_export").write_text(f"rem_tf.export {sleeper.pid} {os.uname().nodename}\n")
        export.export(tiny_model(), tmp_path / "saved_model")
        assert busy.is_dir()
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


def test_rem_tf_reaches_its_submodules_lazily():
    code = ("import sys, rem_tf\n"
            "lazy = ('rem_tf.evaluation', 'rem_tf.experiment', 'rem_tf.export')\n"
            "assert not [m for m in lazy if m in sys.modules], 'imported eagerly'\n"
            "assert callable(rem_tf.export.export) and callable(rem_tf.evaluation.evaluate_model)\n"
            "assert callable(rem_tf.experiment.train) and callable(rem_tf.models.GenerativeModel)\n"
            "assert {'export', 'evaluation', 'experiment'} <= set(dir(rem_tf))\n"
            "assert not hasattr(rem_tf, 'nonexistent')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
