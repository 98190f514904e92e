"""Your own data: the npz source (any image shape) through the whole runner, any TFDS image
dataset by name (``tfds.testing.mock_data``), ``rem_tf.data.binarize``, dict and batched
tf.data datasets in the model API, and a TFDS download that cannot start failing fast.
"""

import errno
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import rem_tf
from rem_tf import data, evaluation, experiment, export
from rem_tf.data import DataError
from rem_tf.experiment import ConfigError, Interrupted, config as config_lib

from test_run_common import read_json, tiny_config

SHAPE = (8, 8)  # the size of scikit-learn's digits


@pytest.fixture(autouse=True)
def fresh_caches():
    data.clear_cache()
    yield
    data.clear_cache()


def write_digits_like(path, num_train=40, num_test=16, seed=0):
    """An .npz of uint8 grey-level 8×8 images from 3 noisy prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((3, *SHAPE)) < 0.4

    def draw(n):
        ink = prototypes[rng.integers(0, 3, n)] ^ (rng.random((n, *SHAPE)) < 0.05)
        return np.round(255 * ink * rng.uniform(0.6, 1.0, (n, 1, 1))).astype(np.uint8)

    np.savez(path, train=draw(num_train), test=draw(num_test))
    return path


# ------------------------------------------------------------------------ npz source


def test_npz_source_reads_any_image_shape(tmp_path):
    path = write_digits_like(tmp_path / "digits.npz")
    with np.load(path) as npz:
        train = npz["train"]
    assert data.info("digits", source="npz", path=path) == {"train": 40, "test": 16}
    grey = data.load_array("digits", "train", source="npz", path=path)
    np.testing.assert_allclose(grey[..., 0], train / 255.0, rtol=1e-6)
    test = np.concatenate(list(data.load("digits", "test", source="npz", path=path,
                                         batch_size=5).as_numpy_iterator()))
    assert test.shape == (16, 8, 8, 1) and set(np.unique(test)) <= {0.0, 1.0}
    # [N, D] vectors stay vectors, [N, H, W, C] images keep their channels.
    np.savez(tmp_path / "other.npz", train=np.zeros((4, 5), np.uint8),
             test=np.ones((2, 6, 4, 3), np.float32))
    assert data.load_array("x", "train", source="npz", path=tmp_path / "other.npz").shape == (4, 5)
    assert data.load_array("x", "test", source="npz", path=tmp_path / "other.npz").shape == (
        2, 6, 4, 3)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(source="npz"), "needs path="),
    (dict(source="files", path="x.npz"), "read only with source='npz'"),
    (dict(source="npz", path="missing.npz"), "missing.npz does not exist"),
])
def test_npz_source_errors_say_the_fix(kwargs, pattern, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=pattern):
        data.load_array("mnist", "train", **kwargs)


def test_runner_trains_resumes_exports_and_evaluates_on_an_npz(tmp_path):
    """8×8 images: the model's input_shape comes from the data, a resumed run ends with
    the uninterrupted run's weights, and kept checkpoints, export and evaluation work."""
    path = write_digits_like(tmp_path / "digits.npz")
    overrides = {"data.source": "npz", "data.path": str(path), "data.data_dir": None,
                 "training.keep_checkpoint_every_steps": 4}
    config = tiny_config(tmp_path, overrides=overrides)

    class StopAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 6:
                raise KeyboardInterrupt

    reference = experiment.train(config, tmp_path / "reference")
    with pytest.raises(Interrupted, match="step 6"):
        experiment.train(config, tmp_path / "run", extra_callbacks=[StopAt()])
    results = experiment.train_and_evaluate(config, tmp_path / "run")

    summary = read_json(tmp_path / "run" / "train_summary.json")
    assert summary["resumed_from_step"] == 6 and summary["global_step"] == 8
    assert summary["weights_sha256"] == read_json(
        tmp_path / "reference" / "train_summary.json")["weights_sha256"]
    assert read_json(tmp_path / "run" / "config.json")["data"]["path"] == str(path)
    assert sorted(p.name for p in (tmp_path / "run" / "kept_checkpoints").glob("ckpt-*.index")
                  ) == ["ckpt-4.index", "ckpt-8.index"]
    assert tuple(export.metadata(reference)["input_shape"]) == (8, 8, 1)
    loaded = export.load(tmp_path / "run" / "saved_model")
    assert tuple(loaded.log_likelihood.input_signature[0].shape[1:]) == (8, 8, 1)
    assert results["num_examples"] == 16 and results["dataset"] == str(path)
    assert results["log_likelihood"] >= results["elbo"] - 1.0
    # the exported model evaluated again, on the data it was trained on
    again = experiment.evaluate(experiment.default_config(), tmp_path / "run" / "saved_model",
                                tmp_path / "again", data_from_model=True)
    assert again["num_examples"] == 16


def test_config_path_implies_npz_and_old_config_json_still_resumes(tmp_path):
    path = write_digits_like(tmp_path / "digits.npz")
    config = experiment.default_config()
    config.data.path = str(path)
    checked = experiment.check_config(config)
    assert checked.data.source == "npz" and checked.data.train_split == "train"
    bad = experiment.default_config()
    bad.data.source, bad.data.path = "files", str(path)
    with pytest.raises(ConfigError, match="data.path is read only with data.source 'npz'"):
        experiment.check_config(bad)
    # config.json written before data.path existed: accepted as it is
    stored = config_lib.as_dict(experiment.check_config(experiment.default_config()))
    del stored["data"]["path"]
    config_lib.check_resumable(stored, experiment.check_config(stored))


# ------------------------------------------------------------------- TFDS by name


def test_any_tfds_image_dataset_by_name(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        fashion = data.load_array("tfds:fashion_mnist", "train", source="tfds",
                                  data_dir=tmp_path)
        expected = np.stack([x for x, _ in tfds.as_numpy(tfds.load(
            "fashion_mnist", split="train", data_dir=tmp_path, as_supervised=True))])
        cifar = data.load("tfds:cifar10", "test", source="tfds", data_dir=tmp_path,
                          batch_size=6)
        cifar = next(iter(cifar)).numpy()
    assert fashion.shape == (6, 28, 28, 1)
    np.testing.assert_allclose(fashion, expected / 255.0, rtol=1e-6)
    assert cifar.shape == (6, 32, 32, 3) and set(np.unique(cifar)) <= {0.0, 1.0}
    checked = experiment.check_config(
        tiny_config(tmp_path, overrides={"data.name": "tfds:fashion_mnist",
                                         "data.source": None}))
    assert checked.data.source == "tfds" and checked.data.train_split == "train"
    with pytest.raises(DataError, match="TFDS has no dataset 'no_such_set'"):
        data.load_array("tfds:no_such_set", "train", source="tfds", data_dir=tmp_path)


def test_unreachable_tfds_download_fails_fast_and_leaves_nothing(tmp_path, monkeypatch):
    """Every connection fails as with no network: TFDS's own retries with backoff would
    wait minutes; one DataError with the ways to get the data comes in seconds, also for
    the default config (TFDS binarized_mnist)."""
    import urllib3.util.connection  # noqa: PLC0415 - what requests connects with

    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    started = time.monotonic()
    with pytest.raises(DataError) as info:
        data.load("binarized_mnist", "test", source="tfds", data_dir=tmp_path / "tfds")
    assert time.monotonic() - started < 60
    message = str(info.value)
    assert "Network is unreachable" in message and "nothing was left behind" in message
    for way in ("(1) TFDS", "(2) local files", "(3) offline copy"):
        assert way in message
    assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*"))

    config = experiment.default_config()
    config.data.data_dir = str(tmp_path / "default")
    started = time.monotonic()
    with pytest.raises(DataError, match="could not download/prepare 'binarized_mnist'"):
        experiment.train(config, tmp_path / "run")
    assert time.monotonic() - started < 60
    assert not any((tmp_path / "default").rglob("*"))


# ------------------------------------------------------------------------- binarize


def test_binarize_arrays():
    grey = np.random.default_rng(0).integers(0, 256, (200, 5, 5)).astype(np.uint8)
    fixed = data.binarize(grey, "fixed", seed=3)
    assert fixed.dtype == np.float32 and fixed.shape == grey.shape
    assert set(np.unique(fixed)) == {0.0, 1.0}
    np.testing.assert_array_equal(fixed, data.binarize(grey, "fixed", seed=3))
    assert not np.array_equal(fixed, data.binarize(grey, "fixed", seed=4))
    # a Bernoulli sample of the intensities: its mean over many pixels is close to theirs
    assert abs(fixed.mean() - (grey / 255.0).mean()) < 0.02
    np.testing.assert_array_equal(data.binarize(grey, "threshold"), grey / 255.0 > 0.5)
    np.testing.assert_allclose(data.binarize(grey, "none"), grey / 255.0, rtol=1e-6)
    with pytest.raises(DataError, match="pass a tf.data.Dataset"):
        data.binarize(grey, "dynamic")
    with pytest.raises(DataError, match="expected 0..255"):
        data.binarize(grey.astype(np.int32) * 2, "fixed")


def test_binarize_datasets_of_dicts_tuples_and_images():
    grey = np.random.default_rng(1).integers(0, 256, (8, 4, 4, 1)).astype(np.uint8)
    labels = np.arange(8)
    as_dicts = tf.data.Dataset.from_tensor_slices({"image": grey, "label": labels}).batch(4)
    dynamic = data.binarize(as_dicts, "dynamic", seed=5)
    first = [e for e in dynamic.as_numpy_iterator()]
    second = [e for e in dynamic.as_numpy_iterator()]
    assert [e["label"].tolist() for e in first] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    images = np.concatenate([e["image"] for e in first])
    assert images.dtype == np.float32 and set(np.unique(images)) <= {0.0, 1.0}
    assert not np.array_equal(images, np.concatenate([e["image"] for e in second]))
    again = np.concatenate([e["image"] for e in data.binarize(
        as_dicts, "dynamic", seed=5).as_numpy_iterator()])
    np.testing.assert_array_equal(images, again)  # a fresh dataset, the same seed
    fixed = data.binarize(tf.data.Dataset.from_tensor_slices((grey, labels)), "fixed", seed=5)
    passes = [np.stack([x for x, _ in fixed.as_numpy_iterator()]) for _ in range(2)]
    np.testing.assert_array_equal(*passes)
    threshold = data.binarize(tf.data.Dataset.from_tensor_slices(grey), "threshold")
    np.testing.assert_array_equal(np.stack(list(threshold.as_numpy_iterator())),
                                  grey / 255.0 > 0.5)


# ------------------------------------------------ datasets in the model API (items 6, 7)


def _tiny_model():
    model = rem_tf.build_model("iwae", latent_dim=2, hidden_units=(8,), input_shape=(4, 4, 1),
                               num_particles=3, seed=1)
    model.compile(model_optimizer=keras.optimizers.Adam(1e-2),
                  proposal_optimizer=keras.optimizers.Adam(1e-2))
    return model


def _binary_images(n=12, seed=2):
    return (np.random.default_rng(seed).random((n, 4, 4, 1)) < 0.4).astype(np.uint8)


def test_fit_and_evaluate_take_tfds_style_dict_datasets():
    images = _binary_images()
    model = _tiny_model()
    dicts = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(12)})
    history = model.fit(dicts.batch(4), epochs=2, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 6 and len(history.history["loss"]) == 2
    from_dicts = model.evaluate(dicts.batch(4), verbose=0, return_dict=True)
    assert np.isfinite(from_dicts["loss"])
    with pytest.raises(ValueError, match="without an 'image' entry.*dataset.map"):
        model.fit(tf.data.Dataset.from_tensor_slices({"pixels": images}).batch(4), verbose=0)


def test_grey_level_integer_dataset_is_one_error_with_the_fix():
    grey = (np.random.default_rng(3).random((8, 4, 4, 1)) * 255).astype(np.uint8)
    model = _tiny_model()
    dataset = tf.data.Dataset.from_tensor_slices({"image": grey}).batch(4)
    with pytest.raises(ValueError, match=r"uint8 images with values up to \d+ .*"
                                         r"rem_tf.data.binarize\(dataset, 'dynamic'\)"):
        model.fit(dataset, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0  # refused before any step ran
    model.fit(data.binarize(dataset, "dynamic"), verbose=0)  # the fix works
    with pytest.raises(ValueError, match=r"rem_tf.data.binarize\(x, 'fixed'\)"):
        model.log_likelihood(grey)  # the NumPy error names the same helper


def test_log_likelihood_and_evaluate_on_a_batched_dataset_equal_the_array_result():
    images = _binary_images(10).astype(np.float32)
    model = _tiny_model()
    state = model.seed_generator.state.numpy()
    on_array = model.log_likelihood(images, num_samples=30, batch_size=4)
    model.seed_generator.state.assign(state)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(10))).batch(3)
    on_dataset = model.log_likelihood(dataset, num_samples=30, batch_size=4)
    np.testing.assert_array_equal(on_dataset, on_array)

    model.seed_generator.state.assign(state)
    expected = evaluation.evaluate_model(model, images, num_samples=30, batch_size=4)
    model.seed_generator.state.assign(state)
    got = evaluation.evaluate_model(model, tf.data.Dataset.from_tensor_slices(
        {"image": images}).batch(3), num_samples=30, batch_size=4)
    for key in ("log_likelihood", "elbo", "kl_to_prior", "num_examples"):
        assert got[key] == expected[key], key
    with pytest.raises(ValueError, match="batch it"):
        model.log_likelihood(tf.data.Dataset.from_tensor_slices(images), num_samples=3)
