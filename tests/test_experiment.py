"""rem_tf.experiment, the library behind run.py, in this process: config checks, the resume
rule, builders, checkpoints (fallback, kept copies, restore_model), interruption, NaN stop,
finished runs, evaluation. Tiny data: 40 images, batch 10 (4 steps per epoch), latent 2, K = 4.
"""

import errno
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import zipfile

import keras
import ml_collections
import numpy as np
import pytest

import rem_tf
from rem_tf import experiment
from rem_tf.experiment import builders, callbacks, checkpoints, config as config_lib
from rem_tf.experiment import ConfigError, Interrupted, TrainingDiverged

from test_run_common import (  # noqa: F401 - data_dir is a fixture
    REPO, data_dir, read_csv, read_json, tiny_config,
)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """One uninterrupted `train_and_evaluate` of the tiny config: (workdir, results)."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    return workdir, experiment.train_and_evaluate(tiny_config(data_dir), workdir)


def _copy(reference, tmp_path):
    return shutil.copytree(reference[0], tmp_path / "run")


class _AtStep(keras.callbacks.Callback):
    """Calls `action(model)` once, at the end of optimizer step `step`."""

    def __init__(self, step, action):
        super().__init__()
        self.step, self.action = step, action

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            self.action(self.model)


def _interrupt(model):
    raise KeyboardInterrupt


# ------------------------------------------------------------------- training runs


def test_train_and_evaluate_returns_the_evaluation_and_writes_the_run_directory(reference):
    workdir, results = reference
    assert results["num_examples"] == 16 and results["num_samples"] == 40
    assert read_json(workdir / "eval_test.json")["nll"] == results["nll"]
    summary = read_json(workdir / "train_summary.json")
    assert summary["global_step"] == 8 and summary["resumed_from_step"] == 0
    assert set(summary["final_epoch_metrics"]) >= {"loss", "elbo", "learning_rate"}
    stored = read_json(workdir / "config.json")
    assert stored["workdir"] == str(workdir) and stored["data"]["source"] == "files"
    assert stored["evaluation"]["proposal"] == "encoder"
    assert [row["epoch"] for row in read_csv(workdir / "train_log.csv")] == ["0", "1"]
    assert read_json(workdir / "versions.json")["git_commit"]
    assert not (workdir / "kept_checkpoints").exists()  # off by default


def test_rerunning_a_finished_run_leaves_it_as_it_was(reference, data_dir, tmp_path, capsys):
    run = _copy(reference, tmp_path)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
              if p.is_file() and "saved_model" not in p.parts and p.name != "model.keras"}
    saved = experiment.train(tiny_config(data_dir), run)
    assert saved == run / "saved_model" and (saved / "saved_model.pb").is_file()
    assert "finished at step 8" in capsys.readouterr().out
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
             if p.is_file() and "saved_model" not in p.parts and p.name != "model.keras"}
    assert after == before  # summary, log, checkpoints, config, TensorBoard: untouched


def test_a_directory_named_model_keras_is_refused_in_one_line_and_kept(reference, data_dir,
                                                                       tmp_path):
    run = _copy(reference, tmp_path)
    (run / "model.keras").unlink()
    (run / "model.keras").mkdir()
    (run / "model.keras" / "mine.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"model\.keras is a directory, not a \.keras file"):
        experiment.train(tiny_config(data_dir), run)  # a finished run: only exports
    assert (run / "model.keras" / "mine.txt").read_text() == "mine"


def test_an_interrupted_run_saves_and_resumes_to_the_same_weights(reference, data_dir, tmp_path):
    config = tiny_config(data_dir)
    with pytest.raises(Interrupted, match="Interrupted at step 6") as info:
        experiment.train(config, tmp_path / "run", extra_callbacks=[_AtStep(6, _interrupt)])
    assert info.value.step == 6 and (tmp_path / "run" / "checkpoints" / "ckpt-6.index").is_file()
    experiment.train(config, tmp_path / "run")
    summary = read_json(tmp_path / "run" / "train_summary.json")
    assert summary["resumed_from_step"] == 6
    assert summary["weights_sha256"] == read_json(reference[0] / "train_summary.json")[
        "weights_sha256"]


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(reference, data_dir,
                                                                      tmp_path, caplog):
    run = _copy(reference, tmp_path)
    data = run / "checkpoints" / "ckpt-8.data-00000-of-00001"
    os.truncate(data, os.path.getsize(data) // 2)
    with caplog.at_level(logging.WARNING):
        experiment.train(tiny_config(data_dir), run)
    said = [r.getMessage() for r in caplog.records if "ckpt-8" in r.getMessage()]
    assert len(said) == 1 and "unreadable" in said[0] and "resuming from" in said[0]
    assert said[0].endswith("ckpt-7 instead.") and "\n" not in said[0]
    summary = read_json(run / "train_summary.json")
    assert summary["resumed_from_step"] == 7 and summary["global_step"] == 8
    assert summary["weights_sha256"] == read_json(reference[0] / "train_summary.json")[
        "weights_sha256"]


def test_a_checkpoint_file_naming_a_missing_checkpoint_never_restarts_silently(
        reference, data_dir, tmp_path, caplog):
    run = _copy(reference, tmp_path)
    for path in (run / "checkpoints").glob("ckpt-8.*"):
        path.unlink()  # `checkpoint` still names ckpt-8
    with caplog.at_level(logging.WARNING):
        experiment.train(tiny_config(data_dir), run)
    assert any("ckpt-8 is missing" in r.getMessage() for r in caplog.records)
    assert read_json(run / "train_summary.json")["resumed_from_step"] == 7
    # No checkpoint file left at all, but the `checkpoint` file: an error, not step 0.
    for path in (run / "checkpoints").glob("ckpt-*"):
        path.unlink()
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-8"\n')
    with pytest.raises(ConfigError, match="no readable checkpoint.*ckpt-8 is missing"):
        experiment.train(tiny_config(data_dir), run)


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    def poison(model):
        kernel = model.decoder.trainable_variables[0]
        kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    with pytest.raises(TrainingDiverged) as info:
        experiment.train(tiny_config(data_dir), tmp_path / "run",
                         extra_callbacks=[_AtStep(5, poison)])
    message = str(info.value)
    assert "\n" not in message and "rem_v2" in message and "step 6" in message
    assert "ckpt-4" in message and "particles" in message and "learning rate" in message
    kept = checkpoints.restore_model(tiny_config(data_dir), tmp_path / "run" / "checkpoints")
    assert all(np.isfinite(w).all() for w in kept.get_weights())


def test_kept_checkpoints_with_training_times_across_a_resume(data_dir, tmp_path):
    config = tiny_config(data_dir, overrides={"training.keep_checkpoint_every_steps": 2})
    with pytest.raises(Interrupted):
        experiment.train(config, tmp_path / "run", extra_callbacks=[_AtStep(5, _interrupt)])
    experiment.train(config, tmp_path / "run")
    kept = tmp_path / "run" / "kept_checkpoints"
    rows = read_csv(kept / "times.csv")
    assert list(rows[0]) == ["step", "wall_seconds", "cpu_seconds", "unix_time"]
    # Step 5, the stop, has a time row (the resumed clocks go on from it) but no copy.
    assert [int(row["step"]) for row in rows] == [2, 4, 5, 6, 8]
    assert not (kept / "ckpt-5.index").exists()
    for key in ("wall_seconds", "cpu_seconds", "unix_time"):
        values = [float(row[key]) for row in rows]
        assert values == sorted(values) and values[0] >= 0, key
    assert all((kept / f"ckpt-{s}.index").is_file() for s in (2, 4, 6, 8))
    # The kept step-8 checkpoint holds the exported weights.
    model = experiment.restore_model(config, kept / "ckpt-8")
    exported = keras.models.load_model(tmp_path / "run" / "model.keras")
    for a, b in zip(model.get_weights(), exported.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = tiny_config(data_dir, overrides={"model.latent_dim": 3})
    with pytest.raises(ConfigError, match="does not match"):
        experiment.restore_model(other, kept / "ckpt-8.index")


def test_evaluate_a_keras_file_on_the_data_it_was_trained_on(reference, tmp_path):
    workdir, results = reference
    config = experiment.default_config()  # binarized_mnist: replaced by the model's data
    config.evaluation.num_samples, config.evaluation.elbo_samples = 40, 10
    again = experiment.evaluate(config, workdir / "model.keras", tmp_path, data_from_model=True)
    assert (tmp_path / "eval_test.json").is_file() and again["dataset"] == "mnist"
    assert again["kl_to_prior"] == pytest.approx(results["kl_to_prior"], rel=1e-4)


def test_a_conv_gaussian_run_trains_resumes_and_exports_its_networks(data_dir, tmp_path):
    """model.architecture="conv", model.likelihood="gaussian": grey levels, the
    pixel-mean bias, bit-identical resume, and every saved form of the model agrees."""
    overrides = {"model.architecture": "conv", "model.likelihood": "gaussian"}
    config = tiny_config(data_dir, overrides=overrides)
    checked = experiment.check_config(config)
    assert (checked.data.train_binarization, checked.data.eval_binarization) == ("none", "none")
    grey = builders.eval_images(checked)
    assert ((grey > 0) & (grey < 1)).any()  # not binarized
    train = rem_tf.data.load_array("mnist", "train", source="files", data_dir=str(data_dir))
    np.testing.assert_allclose(builders.output_bias(checked),
                               train.reshape(len(train), -1).mean(0), rtol=1e-6)

    experiment.train_and_evaluate(config, tmp_path / "whole")
    with pytest.raises(Interrupted):
        experiment.train(config, tmp_path / "resumed", extra_callbacks=[_AtStep(5, _interrupt)])
    experiment.train(config, tmp_path / "resumed")
    whole, resumed = (read_json(tmp_path / run / "train_summary.json")
                      for run in ("whole", "resumed"))
    assert resumed["resumed_from_step"] == 5 and whole["weights_sha256"] == resumed[
        "weights_sha256"]

    model = checkpoints.restore_model(config, tmp_path / "whole" / "checkpoints")
    assert isinstance(model.likelihood, rem_tf.likelihoods.Gaussian)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.encoder._flatten_layers())
    x = grey[:6]
    loaded = keras.models.load_model(tmp_path / "whole" / "model.keras")
    exported = rem_tf.export.load(tmp_path / "whole" / "saved_model")
    expected = model.log_likelihood(x, num_samples=30, chunk_size=30)
    np.testing.assert_allclose(loaded.log_likelihood(x, num_samples=30, chunk_size=30),
                               expected, rtol=1e-5)
    np.testing.assert_allclose(model.encode(x)[0], exported.encode(x)["loc"], rtol=1e-5,
                               atol=1e-6)
    assert np.isfinite(read_json(tmp_path / "whole" / "eval_test.json")["nll"])


def test_a_checkpoint_with_model_variables_the_model_lacks_is_refused(tmp_path):
    # A model-only read ignores the optimizers' variables, but never the model's own.
    import tensorflow as tf  # noqa: PLC0415

    stored = {"dense/kernel": tf.Variable([1.0]), "decoder/pixel_bias/bias": tf.Variable([2.0])}
    prefix = tf.train.Checkpoint(model=stored, model_optimizer={"m": tf.Variable(0.0)}).write(
        str(tmp_path / "ckpt"))
    kernel = tf.Variable([0.0])
    checkpoints.read(tf.train.Checkpoint(model={"dense/kernel": kernel, **{
        "decoder/pixel_bias/bias": tf.Variable([0.0])}}), prefix)  # all there: fine
    with pytest.raises(ConfigError, match="lacks.*decoder/pixel_bias/bias"):
        checkpoints.read(tf.train.Checkpoint(model={"dense/kernel": kernel}), prefix)


def test_the_bernoulli_likelihood_refuses_grey_levels(data_dir, tmp_path):
    config = tiny_config(data_dir, overrides={"data.train_binarization": "none"})
    with pytest.raises(ConfigError, match="data.train_binarization 'none'.*gaussian"):
        experiment.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_bad_value_before_touching_the_workdir(data_dir, tmp_path):
    config = tiny_config(data_dir, overrides={"evaluation.split": "valid"})
    with pytest.raises(ConfigError, match="evaluation.split"):
        experiment.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------ config checks (no training)


def _with(config, path, value):
    """A ConfigDict like `config` with `path` = `value`, even of another type (as from JSON)."""
    tree = config.to_dict()
    *parents, last = path.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[last] = value
    return ml_collections.ConfigDict(tree)


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("training.num_particles", 2.7, "training.num_particles (--num_particles) must be an int"),
        ("model.latent_dim", 2.7, "model.latent_dim must be an integer"),
        ("training.epochs", True, "training.epochs (--epochs) must be an integer"),
        ("training.batch_size", 0, "training.batch_size (--batch_size) must be >= 1"),
        ("training.adam_epsilon", -1.0, "training.adam_epsilon must be > 0"),
        ("training.learning_rate", float("nan"), "training.learning_rate must be a finite"),
        ("seed", -1, "seed must be in [0, 2**32)"),
        ("model.hidden_units", (8, 0), "model.hidden_units"),
        ("model.output_bias_from_data", 1, "model.output_bias_from_data must be True or False"),
        ("model.beta", 1.5, "model.beta must be in [0, 1]"),
        ("model.num_groups", 0, "model.num_groups must be >= 1"),
        ("model.architecture", "resnet", "valid: mlp, conv"),
        ("model.likelihood", "laplace", "valid: bernoulli, gaussian"),
        ("model.covariance", "full", "unknown covariance 'full' (config.model.covariance)"),
        ("method", "rem_v3", "unknown method 'rem_v3' (--method / config.method)"),
        ("data.name", "cifar10", "unknown dataset 'cifar10'"),
        ("data.train_split", "test+x", "(config.data.train_split)"),
        ("evaluation.split", "valid", "unknown mnist split 'valid' (config.evaluation.split)"),
        ("evaluation.proposal", "best", "unknown proposal 'best' (config.evaluation.proposal)"),
        ("evaluation.num_examples", 0, "evaluation.num_examples must be >= 1 or None"),
        ("training.keep_checkpoint_every_steps", -1, "training.keep_checkpoint_every_steps"),
        ("distribute.strategy", "tpu", "unknown strategy 'tpu'"),
    ],
)
def test_check_config_names_the_bad_field_in_one_line(path, value, message, data_dir):
    with pytest.raises(ConfigError) as info:
        experiment.check_config(_with(tiny_config(data_dir), path, value))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("path, suggestion", [("training.epoch", "training.epochs"),
                                              ("foo.bar", None)])
def test_check_config_refuses_an_unknown_field(path, suggestion, data_dir):
    tree = tiny_config(data_dir).to_dict()
    section, field = path.split(".")
    tree.setdefault(section, {})[field] = 3
    with pytest.raises(ConfigError) as info:
        experiment.check_config(ml_collections.ConfigDict(tree))
    message = str(info.value)
    assert f"unknown config field '{path}'" in message and "\n" not in message
    assert (f"did you mean '{suggestion}'" in message) == (suggestion is not None)


def test_check_config_refuses_what_is_not_a_config():
    with pytest.raises(ConfigError, match="must be an ml_collections.ConfigDict or a dict"):
        experiment.check_config([1, 2])


def test_check_config_fills_new_fields_and_data_set_defaults_on_a_copy():
    old = experiment.default_config()
    with old.unlocked():
        del old.model["num_groups"], old.evaluation["proposal"]
    checked = experiment.check_config(old)
    assert checked.model.num_groups == 8 and checked.evaluation.proposal == "encoder"
    assert checked.data.source == "tfds" and checked.data.train_split == "train+validation"
    assert old.data.source is None and "num_groups" not in old.model  # the input is untouched


def test_method_fields_go_only_to_the_methods_that_take_them(monkeypatch):
    class Grouped(rem_tf.METHODS["iwae"]):
        def __init__(self, *, num_groups=8, **kwargs):
            super().__init__(**kwargs)
            self.num_groups = num_groups

    monkeypatch.setitem(rem_tf.METHODS, "grouped", Grouped)
    config = experiment.default_config()
    config.model.num_groups, config.model.beta = 2, 0.25
    config.method = "grouped"
    assert builders.model_options(config) == {"num_groups": 2}
    config.method = "iwae"
    assert builders.model_options(config) == {}
    config.method = "grouped"
    config.model.hidden_units, config.training.num_particles = (4,), 4
    assert builders.build_model_from_config(config, input_shape=(6,)).num_groups == 2


def test_epoch_plan_resumes_mid_epoch_then_runs_whole_epochs():
    assert builders.epoch_plan(0, 4, 3) == [(0, 0), (1, 0), (2, 0)]
    assert builders.epoch_plan(4, 4, 3) == [(1, 0), (2, 0)]
    assert builders.epoch_plan(7, 4, 3) == [(1, 3), (2, 0)]
    assert builders.epoch_plan(12, 4, 3) == []
    assert builders.epoch_plan(11, 4, 2) == []  # past the end (fewer epochs asked): nothing


def test_epoch_seed_depends_on_seed_and_epoch_only():
    seeds = {builders.epoch_seed(2019, e) for e in range(100)}
    assert len(seeds) == 100 and builders.epoch_seed(2019, 5) == builders.epoch_seed(2019, 5)
    assert builders.epoch_seed(2019, 5) != builders.epoch_seed(2020, 5)
    assert all(0 <= s < 2**31 for s in seeds)


def test_resuming_allows_more_epochs_but_not_another_model():
    from configs import default  # noqa: PLC0415

    config = default.get_config()
    config.workdir = "/tmp/x"
    stored = json.loads(config.to_json())
    config.training.epochs = 300
    config.evaluation.num_samples = 10
    config.distribute.strategy = "mirrored"
    config_lib.check_resumable(stored, config)  # fine
    config.model.latent_dim = 5
    with pytest.raises(ConfigError, match="model.latent_dim: 20 -> 5"):
        config_lib.check_resumable(stored, config)


def test_a_run_directory_from_before_a_field_existed_resumes_at_its_default():
    config = experiment.default_config()
    stored = json.loads(config.to_json())
    for section, field in [("model", "num_groups"), ("model", "architecture"),
                           ("evaluation", "proposal"), ("training", "keep_checkpoint_every_steps")]:
        del stored[section][field]
    config_lib.check_resumable(stored, config)  # the new fields at their defaults: no change
    config.model.num_groups = 4
    with pytest.raises(ConfigError, match="model.num_groups: None -> 4"):
        config_lib.check_resumable(stored, config)


def test_truncate_csv_drops_epochs_to_be_redone(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,3.0\n1,2.0\n2,1.0\n")
    callbacks.truncate_csv(path, 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,3.0", "1,2.0"]
    callbacks.truncate_csv(tmp_path / "missing.csv", 0)  # no file: nothing to do


def _load_config(name):
    spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("name", ["default", "quick", "paper_stochastic_mnist", "paper_omniglot"])
def test_config_files_are_valid_and_share_the_paper_model(name):
    from rem_tf import data  # noqa: PLC0415

    config, paper = _load_config(name), _load_config("default")
    assert config.method in rem_tf.METHODS and config.data.name in data.NAMES
    assert config.data.source is None or config.data.source in data.SOURCES
    experiment.check_config(config, "train_and_evaluate")
    for field in ("latent_dim", "hidden_units", "activation", "scale_activation", "covariance"):
        assert config.model[field] == paper.model[field], field
    assert config.seed == 2019 and config.training.learning_rate == 1e-3
    assert config.training.schedule == "burda"
    assert (REPO / "configs" / f"{name}.py").read_text().count("python run.py") >= 1


def test_paper_defaults():
    config = _load_config("default")
    assert config.model.latent_dim == 20 and tuple(config.model.hidden_units) == (200, 200)
    assert config.model.activation == "tanh"
    assert config.training.num_particles == 1000 and config.training.batch_size == 20
    assert config.training.epochs == 200 and config.data.name == "binarized_mnist"
    assert config.evaluation.num_samples == 5000
    assert config.evaluation.active_units_threshold == 0.01
    assert config.model.output_bias_from_data


def test_quick_config_runs_on_offline_mnist():
    config = _load_config("quick")
    assert config.data.name == "mnist" and config.data.source == "offline"
    assert config.training.num_particles == 10 and config.training.batch_size == 100


# ------------------------------------- run directories: old ones, disks, state files (#26)


def _single_line_storage_error(info, *names):
    message = str(info.value)
    assert isinstance(info.value, experiment.StorageError) and "\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    assert "run the same command again" in message


def _sha(workdir):
    return read_json(workdir / "train_summary.json")["weights_sha256"]


def test_a_run_directory_of_older_code_without_lock_or_config_copy_resumes_bit_for_bit(
        reference, data_dir, tmp_path):
    config = tiny_config(data_dir)
    with pytest.raises(Interrupted):
        experiment.train(config, tmp_path / "run", extra_callbacks=[_AtStep(6, _interrupt)])
    added = [tmp_path / "run" / "run.lock", tmp_path / "run" / "checkpoints" / "run_config.json"]
    for path in added:  # what commit 406ab5e's code did not write
        path.unlink()
    experiment.train(config, tmp_path / "run")
    assert read_json(tmp_path / "run" / "train_summary.json")["resumed_from_step"] == 6
    assert _sha(tmp_path / "run") == _sha(reference[0])
    assert all(path.is_file() for path in added)


def _fail_save_at(step, monkeypatch):
    """tf.train.CheckpointManager.save fails at `step` as on a full disk: a partial
    ckpt-<step>_temp directory, then TensorFlow's ResourceExhaustedError."""
    import tensorflow as tf  # noqa: PLC0415

    real = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == step:
            temp = pathlib.Path(self.directory) / f"ckpt-{step}_temp"
            temp.mkdir()
            (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{temp}/part-00000-of-00001.data; No space left on device")
        return real(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)


def test_a_full_disk_at_a_checkpoint_is_one_line_keeps_the_last_good_one_and_resumes(
        reference, data_dir, tmp_path, monkeypatch):
    config, run = tiny_config(data_dir), tmp_path / "run"
    with monkeypatch.context() as patch:
        _fail_save_at(7, patch)
        with pytest.raises(ConfigError) as info:
            experiment.train(config, run)
    _single_line_storage_error(info, "ckpt-7", "no space left", "ckpt-4, is kept")
    assert not list((run / "checkpoints").glob("*temp*"))
    assert checkpoints.unreadable(run / "checkpoints" / "ckpt-4") is None
    experiment.train(config, run)  # space is back: the same command
    assert _sha(run) == _sha(reference[0])


def _fail_replace(monkeypatch, name, code):
    """os.replace onto a file called `name` fails with errno `code` (after its temporary
    file was written), as on a full or read-only disk."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if pathlib.Path(dst).name == name:
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_at_config_json_of_a_new_workdir_is_one_line_and_leaves_no_temp_file(
        reference, data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _fail_replace(patch, "config.json", errno.ENOSPC)
        with pytest.raises(ConfigError) as info:
            experiment.train(tiny_config(data_dir), run)
    _single_line_storage_error(info, str(run / "config.json"), "no space left")
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]  # no .config.json.tmp
    experiment.train(tiny_config(data_dir), run)
    assert _sha(run) == _sha(reference[0])


def test_a_workdir_that_cannot_be_written_is_refused_before_any_work(data_dir, tmp_path,
                                                                      monkeypatch):
    real = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith("run.lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ConfigError) as info:
        experiment.train(tiny_config(data_dir), tmp_path / "run")
    _single_line_storage_error(info, str(tmp_path / "run" / "run.lock"), "read-only")
    assert list((tmp_path / "run").iterdir()) == []


def test_a_read_only_saved_model_at_export_is_one_line_and_the_run_stays_resumable(
        reference, data_dir, tmp_path, monkeypatch):
    run = _copy(reference, tmp_path)
    shutil.rmtree(run / "saved_model")

    def read_only(model, path, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    with monkeypatch.context() as patch:
        patch.setattr(rem_tf.export, "export", read_only)
        with pytest.raises(ConfigError) as info:
            experiment.train(tiny_config(data_dir), run)
    _single_line_storage_error(info, "export to", str(run / "saved_model"), "read-only")
    assert not list(run.glob(".*tmp*"))
    experiment.train(tiny_config(data_dir), run)
    assert (run / "saved_model" / "saved_model.pb").is_file()


def test_evaluate_prints_its_table_before_it_fails_to_write_its_file(reference, tmp_path,
                                                                     monkeypatch, capsys):
    config = experiment.default_config()
    config.evaluation.num_samples, config.evaluation.elbo_samples = 40, 10
    _fail_replace(monkeypatch, "eval_test.json", errno.ENOSPC)
    with pytest.raises(ConfigError) as info:
        experiment.evaluate(config, reference[0] / "saved_model", tmp_path,
                            data_from_model=True)
    _single_line_storage_error(info, str(tmp_path / "eval_test.json"), "no space left",
                               "printed above")
    assert "NLL (nats)" in capsys.readouterr().out  # the numbers are not lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]


@pytest.mark.parametrize("content", [b"", b"\x00\xff\x89garbage\x01"], ids=["empty", "binary"])
def test_a_bad_checkpoint_state_file_is_rebuilt_from_the_checkpoints(
        content, reference, data_dir, tmp_path, caplog):
    import tensorflow as tf  # noqa: PLC0415

    run = _copy(reference, tmp_path)
    (run / "checkpoints" / "checkpoint").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        experiment.train(tiny_config(data_dir), run)
    assert any("rebuilt it from the checkpoint files" in r.getMessage() for r in caplog.records)
    # The manager reads it again and goes on rotating both checkpoints.
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), str(run / "checkpoints"),
                                         max_to_keep=2)
    assert [pathlib.Path(p).name for p in manager.checkpoints] == ["ckpt-7", "ckpt-8"]
    assert pathlib.Path(manager.latest_checkpoint).name == "ckpt-8"


def test_a_torn_last_log_row_is_dropped_and_its_epoch_logged_again(reference, data_dir,
                                                                   tmp_path):
    config, run = tiny_config(data_dir), tmp_path / "run"
    with pytest.raises(Interrupted):
        experiment.train(config, run, extra_callbacks=[_AtStep(6, _interrupt)])
    with open(run / "train_log.csv", "a") as f:
        f.write("1,3.25,12")  # epoch 1's row, cut short by a kill (as older code could)
    experiment.train(config, run)
    rows, expected = read_csv(run / "train_log.csv"), read_csv(reference[0] / "train_log.csv")
    assert [row["epoch"] for row in rows] == ["0", "1"] and all(None not in r for r in rows)
    for row, ref in zip(rows, expected, strict=True):
        assert row.keys() == ref.keys()
        for key in ref:
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-6), key


@pytest.mark.parametrize("text, problem", [
    (b"epoch,loss\r\n0,3.0\r\n1,2.5,0,3.0\r\n2,1.0\r\n", "line 3"),  # a torn row + the next
    (b"epoch,loss\r\n0,3.0\r\nhello\r\n1,2.0\r\n", "line 3"),
    (b"epoch,loss\r\n1,3.0\r\n1,2.0\r\n", "line 3"),  # a second writer's row
    (b"epoch,loss\r\n0,3.0\r\n\x89PNG\xff\r\n", "not a text file"),
    (b"name,value\r\nx,1\r\n", "not a training log"),
    (b"epoch,loss\r\n0,3.0\r\n1,2", "line 3"),  # torn, but its epoch is not trained again
])
def test_a_foreign_or_garbled_log_row_is_refused_with_one_line(text, problem, tmp_path):
    path = tmp_path / "train_log.csv"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        callbacks.truncate_csv(path, 2)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == text  # left as it was


def test_truncating_the_log_on_a_full_disk_leaves_it_whole(tmp_path, monkeypatch):
    path = tmp_path / "train_log.csv"
    path.write_text("epoch,loss\n0,3.0\n1,2.0\n2,1.0\n")
    _fail_replace(monkeypatch, "train_log.csv", errno.ENOSPC)
    with pytest.raises(experiment.StorageError, match="train_log.csv: no space left"):
        callbacks.truncate_csv(path, 1)
    assert path.read_text() == "epoch,loss\n0,3.0\n1,2.0\n2,1.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train_log.csv"]


def test_a_garbled_train_summary_is_rewritten_with_a_warning(reference, data_dir, tmp_path,
                                                             caplog):
    run = _copy(reference, tmp_path)
    (run / "train_summary.json").write_text('{"global_step": 8, "weights_sha')
    with caplog.at_level(logging.WARNING):
        experiment.train(tiny_config(data_dir), run)
    assert any("train_summary.json" in r.getMessage() and "rewrote it" in r.getMessage()
               for r in caplog.records)
    summary = read_json(run / "train_summary.json")
    assert summary["global_step"] == 8 and summary["weights_sha256"] == _sha(reference[0])


def test_deleting_config_json_is_no_way_round_the_resume_check(reference, data_dir, tmp_path):
    run = _copy(reference, tmp_path)
    (run / "config.json").unlink()
    changed = tiny_config(data_dir, overrides={"training.learning_rate": 2e-3})
    with pytest.raises(ConfigError, match="training.learning_rate: 0.001 -> 0.002") as info:
        experiment.train(changed, run)
    assert "delete" not in str(info.value)
    (run / "checkpoints" / "run_config.json").unlink()  # no record at all: refused too
    with pytest.raises(ConfigError, match="has checkpoints but no config.json"):
        experiment.train(changed, run)


@pytest.mark.parametrize("where", ["export", "evaluation"])
def test_sigterm_during_export_or_evaluation_ends_like_sigterm_in_training(
        where, reference, data_dir, tmp_path, monkeypatch):
    import signal  # noqa: PLC0415

    run = _copy(reference, tmp_path)
    (run / "eval_test.json").unlink()
    if where == "export":
        module, name, again = rem_tf.export, "export", lambda: experiment.train(
            tiny_config(data_dir), run)
    else:
        module, name, again = rem_tf.evaluation, "evaluate_model", lambda: experiment.evaluate(
            tiny_config(data_dir), run / "saved_model")
    real = getattr(module, name)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(module, name, terminated)
        with pytest.raises(Interrupted) as info:
            again()
    assert "\n" not in str(info.value) and "Run the same command" in str(info.value)
    assert ("export" if where == "export" else "evaluating") in str(info.value)
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (run / "eval_test.json").exists()
    again()  # the same command finishes the job
    assert (run / ("saved_model/saved_model.pb" if where == "export" else "eval_test.json")
            ).is_file()


@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "float64"])
def test_a_keras_file_with_another_dtype_policy_is_refused_on_load(policy, reference,
                                                                   tmp_path):
    source = zipfile.ZipFile(reference[0] / "model.keras")
    config = json.loads(source.read("config.json"))
    config["config"]["dtype"]["config"]["name"] = policy
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as out:
        for item in source.namelist():
            out.writestr(item, json.dumps(config) if item == "config.json" else
                         source.read(item))
    with pytest.raises(ValueError, match=f"float32.*{policy}"):
        keras.models.load_model(path, compile=False)
    with pytest.raises(ConfigError, match=f"cannot load the model {path}.*{policy}"):
        experiment.evaluate(experiment.default_config(), path, tmp_path)
