"""rem_tf.presets: the shipped presets and the save → from_preset round trip."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import rem_tf
from rem_tf import presets


def small_model(method="rem_v2", **kwargs):
    return rem_tf.build_model(method, input_shape=(16,), latent_dim=3, hidden_units=(8,),
                              num_particles=5, seed=7, **kwargs)


def trained(binary_data, method="rem_v2"):
    model = small_model(method)
    model.compile(model_optimizer=keras.optimizers.Adam(1e-2),
                  proposal_optimizer=keras.optimizers.Adam(3e-3))
    model.fit(binary_data[0][:60], batch_size=20, epochs=1, verbose=0, shuffle=False)
    return model


def state(model, optimizers=True):
    """Every number that decides what the model does next: weights, seed state, optimizers."""
    values = model.get_weights() + [model.seed_generator.state.numpy()]
    if optimizers:
        values += [v.numpy() for v in model.optimizer.variables]
        values += [v.numpy() for v in model.proposal_optimizer.variables]
    return values


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_from_preset_of_a_saved_model_continues_training_exactly(binary_data, tmp_path):
    model = trained(binary_data)
    presets.save(model, tmp_path / "mine", metrics={"test_nll": 12.5})
    restored = rem_tf.from_preset(tmp_path / "mine")
    assert type(restored) is type(model)
    assert_same(state(restored), state(model))
    test = binary_data[1][:20]
    np.testing.assert_array_equal(  # the same seed state: the same particles
        restored.log_likelihood(test, num_samples=50), model.log_likelihood(test, num_samples=50))
    # The oracle of "fit continues": the original model trained on, step for step.
    for m in (model, restored):
        m.fit(binary_data[0][:60], batch_size=20, epochs=1, verbose=0, shuffle=False)
    assert_same(state(restored), state(model))


def test_a_preset_without_optimizer_state_has_the_weights_and_fresh_optimizers(
        binary_data, tmp_path):
    model = trained(binary_data)
    presets.save(model, tmp_path / "light", include_optimizer=False)
    restored = rem_tf.from_preset(tmp_path / "light")
    assert_same(state(restored, optimizers=False), state(model, optimizers=False))
    assert int(restored.optimizer.iterations.numpy()) == 0
    assert int(restored.proposal_optimizer.iterations.numpy()) == 0
    # Both optimizers compiled with the stored hyperparameters (Adam 1e-2 and 3e-3).
    np.testing.assert_allclose(float(restored.optimizer.learning_rate.numpy()), 1e-2)
    np.testing.assert_allclose(float(restored.proposal_optimizer.learning_rate.numpy()), 3e-3)
    assert not metadata(tmp_path / "light")["optimizer_state"]
    uncompiled = rem_tf.from_preset(tmp_path / "light", compile=False)
    assert not uncompiled.compiled


def metadata(path):
    return json.loads((path / presets.METADATA_FILE).read_text())


def test_own_networks_round_trip(binary_data, tmp_path):
    encoder = rem_tf.networks.GaussianEncoder(
        keras.Sequential([keras.Input((16,)), keras.layers.Dense(6, activation="relu")]), 3)
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16)])
    model = rem_tf.build_model("iwae", encoder=encoder, decoder=decoder, latent_dim=3,
                               input_shape=(16,), num_particles=4, seed=3)
    presets.save(model, tmp_path / "own")  # uncompiled: no optimizer state to keep
    restored = rem_tf.from_preset(tmp_path / "own", compile=False)
    assert_same(state(restored, optimizers=False), state(model, optimizers=False))
    test = binary_data[1][:10]
    np.testing.assert_array_equal(restored.log_likelihood(test, num_samples=20),
                                  model.log_likelihood(test, num_samples=20))


@pytest.mark.parametrize("damage", ["one byte", "truncated"])
def test_a_changed_weights_file_is_one_clear_error(binary_data, tmp_path, damage):
    presets.save(trained(binary_data), tmp_path / "p")
    weights = tmp_path / "p" / presets.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    if damage == "one byte":
        data[len(data) // 2] ^= 1
    else:
        del data[len(data) // 2:]
    weights.write_bytes(bytes(data))
    with pytest.raises(presets.PresetError, match="does not match the sha256"):
        rem_tf.from_preset(tmp_path / "p")


def test_an_unknown_name_lists_the_shipped_presets():
    with pytest.raises(presets.PresetError, match="unknown preset 'no_such_model'") as err:
        rem_tf.from_preset("no_such_model")
    for name in presets.list():
        assert name in str(err.value)


def test_save_never_replaces_files(binary_data, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(presets.PresetError, match="not an empty directory"):
        presets.save(trained(binary_data), tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(presets.PresetError, match="not a preset"):
        rem_tf.from_preset(tmp_path / "busy")


def test_list_and_card_show_the_saved_metrics(binary_data, tmp_path, monkeypatch):
    model = trained(binary_data, "iwae")
    presets.save(model, tmp_path / "iwae_toy", metrics={"test_nll": 9.87654, "active_units": 3},
                 metadata={"training": {"epochs": 1}}, description="A toy.")
    monkeypatch.setattr(presets, "SHIPPED", tmp_path)
    listed = presets.list()
    assert list(listed) == ["iwae_toy"]
    assert listed["iwae_toy"]["method"] == "iwae"
    assert listed["iwae_toy"]["test_nll"] == 9.87654
    assert listed["iwae_toy"]["active_units"] == 3
    assert listed["iwae_toy"]["epochs"] == 1
    card = (tmp_path / "iwae_toy" / presets.CARD_FILE).read_text()
    assert "| test_nll | 9.88 |" in card and 'rem_tf.from_preset("iwae_toy")' in card
    assert rem_tf.from_preset("iwae_toy").num_particles == 5  # a name, found in SHIPPED


# ------------------------------------------------------------- the shipped presets


@pytest.fixture(scope="module")
def mnist_test_digits():
    """The first 500 test digits of the offline MNIST copy, fixed binarization [500, 28, 28, 1]."""
    dataset = rem_tf.data.load("mnist", "test", source="offline", batch_size=500, shuffle=False)
    return next(iter(dataset.as_numpy_iterator()))


@pytest.mark.parametrize("name", presets.list())
def test_shipped_preset_loads_and_reproduces_its_recorded_check(name, mnist_test_digits):
    info = presets.metadata(name)
    directory = presets.directory_of(name)
    assert presets.file_sha256(directory / presets.WEIGHTS_FILE) == info["weights_sha256"]
    model = rem_tf.from_preset(name)
    assert model.compiled and model.proposal_optimizer is not None
    check = info["check"]
    assert check["examples"] == len(mnist_test_digits) == 500
    nll = -float(np.mean(model.log_likelihood(
        mnist_test_digits, num_samples=check["num_samples"], chunk_size=check["chunk_size"],
        batch_size=check["batch_size"])))
    # The same seed state draws the same particles; what is left is float round-off
    # across CPU kernels, far below the K = 1000 estimator's seed-to-seed spread
    # (check["seed_spread"], the same digits with another seed).
    assert abs(nll - check["nll"]) <= max(0.05, check["seed_spread"]), (nll, check)
    for key in presets.HEADLINE_METRICS:
        assert np.isfinite(info["metrics"][key]), key


# ------------------------------------------------ the runner: --mode=evaluate --preset


def test_the_runner_evaluates_a_preset_like_a_saved_model(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mnist.npz",  # grey levels 0..255, as the offline copy
             train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
             test=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8))
    model = rem_tf.build_model("iwae", latent_dim=2, hidden_units=(8,), num_particles=3, seed=5)
    presets.save(model, tmp_path / "tiny_mnist")
    config = rem_tf.experiment.default_config()
    config.data.name, config.data.train_split = "mnist", "train"
    config.data.source, config.data.data_dir = "files", str(tmp_path / "data")
    config.evaluation.num_samples, config.evaluation.elbo_samples = 20, 5
    results = rem_tf.experiment.evaluate(config, preset=tmp_path / "tiny_mnist",
                                         out_dir=tmp_path / "out")
    images = rem_tf.experiment.builders.eval_images(rem_tf.experiment.check_config(
        config, "evaluate"))
    expected = rem_tf.evaluation.evaluate_model(  # the oracle: the same model, the same seed state
        rem_tf.from_preset(tmp_path / "tiny_mnist", compile=False), images, num_samples=20,
        chunk_size=config.evaluation.chunk_size, batch_size=config.evaluation.batch_size,
        elbo_samples=5)
    assert results["nll"] == pytest.approx(expected["nll"], abs=1e-4)
    assert json.loads((tmp_path / "out" / "eval_test.json").read_text())["nll"] == results["nll"]
    with pytest.raises(rem_tf.experiment.ConfigError, match="unknown preset 'nope'.*--preset"):
        rem_tf.experiment.evaluate(config, preset="nope")


def test_run_py_preset_flag_names_an_unknown_preset_in_one_line():
    root = pathlib.Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "run.py"), "--mode=evaluate",
                           "--preset=nope"], capture_output=True, text=True, timeout=300,
                          cwd=root, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown preset 'nope'")
