"""Bad inputs to rem_tf.experiment: check_config field by field, and train / evaluate /
restore_model on bad, damaged or foreign run directories (nothing of a run may be lost).
The cases on a run directory share one tiny finished run (`Context.run_dir`, some seconds): they
are slow. The machinery: bad_inputs.py."""

import os
import shutil

import ml_collections
import numpy as np
import pytest

import rem_tf
from bad_inputs import Outcome, bad, changed, check, files, good, params, quiet
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx
from rem_tf import data, experiment

CE = experiment.ConfigError


def check_config(c, overrides, mode="train_and_evaluate"):
    """check_config of the tiny config with `overrides` set even to another type (as a config
    read from JSON or built from a dict would hold them)."""
    tree = c.config().to_dict()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return experiment.check_config(ml_collections.ConfigDict(tree), mode)


def without_beta(config):
    config.model.unlock()
    del config.model.beta
    return config


def config_cases():
    for key, value, match in [
        ("method", "rem_v3", "rem_v3"), ("method", None, "method"), ("seed", -1, "seed"),
        ("seed", 2.5, "seed"), ("seed", True, "seed"), ("seed", "7", "seed"),
        ("seed", 2**40, "seed"),
        ("data.name", "cifar10", "cifar10"), ("data.source", "web", "web"),
        ("data.train_split", "valid", "valid"), ("data.train_binarization", "otsu", "otsu"),
        ("data.eval_binarization", "otsu", "otsu"),
        ("model.latent_dim", 0, "latent_dim"), ("model.latent_dim", 2.0, "latent_dim"),
        ("model.hidden_units", (0,), "hidden_units"),
        ("model.hidden_units", "200", "hidden_units"),
        ("model.activation", "nonesuch", "activation"),
        ("model.scale_activation", "relu", "scale_activation|scale activation"),
        ("model.covariance", "diag", "covariance"), ("model.ridge", 0.0, "ridge"),
        ("model.ridge", float("nan"), "ridge"), ("model.ridge", "a", "ridge"),
        ("model.output_bias_clip", 0.7, "output_bias_clip"),
        ("model.output_bias_from_data", "yes", "output_bias_from_data"),
        ("model.architecture", "resnet", "architecture"),
        ("model.likelihood", "poisson", "likelihood"),
        ("model.num_groups", 0, "num_groups"), ("model.beta", 1.5, "beta"),
        ("model.beta", float("nan"), "beta"),
        ("training.epochs", 0, "epochs"), ("training.epochs", 2.7, "epochs"),
        ("training.epochs", True, "epochs"), ("training.batch_size", -1, "batch_size"),
        ("training.num_particles", 0, "num_particles"),
        ("training.optimizer", "rmsprop", "rmsprop"),
        ("training.learning_rate", 0.0, "learning_rate"),
        ("training.learning_rate", float("nan"), "learning_rate"),
        ("training.learning_rate", float("inf"), "learning_rate"),
        ("training.learning_rate", "1e-3", "learning_rate"),
        ("training.schedule", "cosine", "cosine"), ("training.adam_beta_1", 1.0, "adam_beta_1"),
        ("training.adam_beta_2", -0.1, "adam_beta_2"),
        ("training.adam_epsilon", 0.0, "adam_epsilon"),
        ("training.steps_per_execution", 0, "steps_per_execution"),
        ("training.jit_compile", "yes", "jit_compile"),
        ("training.checkpoint_every_steps", 0, "checkpoint_every_steps"),
        ("training.keep_checkpoint_every_steps", -1, "keep_checkpoint_every_steps"),
        ("evaluation.split", "valid", "valid"), ("evaluation.proposal", "best", "proposal"),
        ("evaluation.num_samples", 0, "num_samples"),
        ("evaluation.num_samples", 2**31, "num_samples"),
        ("evaluation.chunk_size", 0, "chunk_size"), ("evaluation.batch_size", 0, "batch_size"),
        ("evaluation.elbo_samples", -1, "elbo_samples"),
        ("evaluation.active_units_threshold", -0.5, "active_units_threshold"),
        ("evaluation.num_examples", 0, "num_examples"),
        ("distribute.strategy", "tpu", "tpu"),
        ("distribute.num_cpu_devices", -1, "num_cpu_devices"),
        ("workdir", 5, "workdir"),
    ]:
        yield bad("experiment", f"check_config: {key} = {value!r}",
                  lambda c, k=key, v=value: check_config(c, {k: v}), CE, match)
    yield bad("experiment", "check_config: mode 'predict'",
              lambda c: experiment.check_config(c.config(), "predict"), CE, "predict")
    yield bad("experiment", "check_config: unknown field training.epoch",
              lambda c: check_config(c, {"training.epoch": 3}), CE, "epoch")
    yield bad("experiment", "check_config: unknown section foo",
              lambda c: check_config(c, {"foo": 1}), CE, "foo")
    yield bad("experiment", "check_config: not a config (a list)",
              lambda c: experiment.check_config([1, 2]), (CE, TypeError), "config")
    yield good("experiment", "check_config: a config lacking model.beta gets the default 0.5",
               lambda c: experiment.check_config(without_beta(c.config())),
               lambda config: config.model.beta == 0.5)
    yield good("experiment", "check_config: hidden_units () (linear networks) builds a model",
               lambda c: experiment.build_model_from_config(
                   check_config(c, {"model.hidden_units": ()})),
               lambda built: isinstance(built, rem_tf.GenerativeModel))
    yield good("experiment", "check_config: evaluate mode ignores training fields",
               lambda c: check_config(c, {"training.epochs": 0}, mode="evaluate"),
               lambda config: config.training.epochs == 0)


# ------------------------------------------------------------------------ train

def train(c, workdir, overrides=None, epochs=1):
    with quiet():
        return experiment.train(c.config(overrides, epochs=epochs), workdir)


def a_file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def data_dir_5(c):
    tree = c.config().to_dict()
    tree["data"]["data_dir"] = 5
    return experiment.train(ml_collections.ConfigDict(tree), c.tmp / "exp" / "data_dir_5")


def no_workdir(c):
    config = c.config()
    config.workdir = None
    return experiment.train(config)


def refused_and_kept(name, overrides, names):
    """run(c): train a copy of the finished run with `overrides`: a one-line ConfigError
    naming `names`, and not a file of the run changed."""
    def run(c):
        workdir = c.copy_run(name)
        before = files(workdir)
        try:
            train(c, workdir, overrides)
        except CE as err:
            gone = changed(workdir, before)
            if gone:
                raise Outcome("LOST", f"refused, but changed {gone}") from None
            ok = all(n in str(err) for n in names) and len(str(err).splitlines()) == 1
            raise Outcome("CLEAR" if ok else "UNCLEAR", f"ConfigError: {err}") from None
        raise Outcome("SILENT", f"{overrides} resumed the run")
    return run


def not_an_export(path):
    return "saved_model" not in path.parts and path.name != "model.keras"


def rerun_finished(c):
    workdir = c.copy_run("rerun")
    before = files(workdir)
    train(c, workdir)
    gone = changed(workdir, before, not_an_export)
    if gone:
        raise Outcome("LOST", f"re-running a finished run changed {gone}")
    return files(workdir)


def more_epochs(c):
    from test_run_common import read_csv, read_json  # noqa: PLC0415

    workdir = c.copy_run("more_epochs")
    train(c, workdir, epochs=2)
    return read_json(workdir / "train_summary.json"), read_csv(workdir / "train_log.csv")


def saved_model_dir_holds_user_files(c):
    workdir = c.copy_run("user_saved_model")
    shutil.rmtree(workdir / "saved_model")
    (workdir / "saved_model").mkdir()
    notes = workdir / "saved_model" / "notes.txt"
    notes.write_text("mine")
    try:
        train(c, workdir)
    except CE as err:
        if not notes.is_file() or notes.read_text() != "mine":
            raise Outcome("LOST", "refused, but notes.txt is gone") from None
        ok = "saved_model" in str(err) and len(str(err).splitlines()) == 1
        raise Outcome("CLEAR" if ok else "UNCLEAR", f"ConfigError: {err}") from None
    except Exception as err:  # noqa: BLE001
        raise Outcome("UNCLEAR" if notes.is_file() else "LOST",
                      f"{type(err).__name__}: {err}") from None
    if not notes.is_file():
        raise Outcome("LOST", "the export replaced <workdir>/saved_model and its notes.txt")
    raise Outcome("SILENT", "exported next to the user's files")


def damaged_run(name, damage, epochs=1):
    """run(c): `damage(workdir)` on a copy of the finished run, then train it again."""
    def run(c):
        workdir = c.copy_run(name)
        damage(workdir)
        return train(c, workdir, epochs=epochs)
    return run


def truncate_checkpoints(workdir):
    for path in (workdir / "checkpoints").glob("ckpt-*.data-*"):
        os.truncate(path, os.path.getsize(path) // 2)


def garbage_checkpoint_state(c):
    from test_run_common import read_json  # noqa: PLC0415

    workdir = c.copy_run("garbage_ckpt")
    (workdir / "checkpoints" / "checkpoint").write_text("garbage {{{")
    train(c, workdir, epochs=2)
    return read_json(workdir / "train_summary.json")


def train_cases():
    yield bad("experiment", "train: data.data_dir = 5 (checked when the data is read)",
              data_dir_5, (CE, data.DataError), "data_dir")
    yield bad("experiment", "train: workdir is a file",
              lambda c: train(c, a_file(c.tmp / "exp" / "wfile")), CE, "workdir")
    yield bad("experiment", "train: workdir inside a file",
              lambda c: train(c, a_file(c.tmp / "exp" / "afile2") / "run"), CE,
              "workdir|afile2")
    yield bad("experiment", "train: no workdir", no_workdir, CE, "workdir")
    for name, error, run in [
        ("train: resume with another num_particles is refused, nothing changed", CE,
         refused_and_kept("mismatch", {"training.num_particles": 5}, ["num_particles"])),
        ("train: resume with another method is refused, nothing changed", CE,
         refused_and_kept("other_method", {"method": "iwae"}, ["method"])),
        ("train: <workdir>/saved_model holds other files: refused, kept", CE,
         saved_model_dir_holds_user_files),
    ]:
        yield bad("experiment", name, run, error, slow=True)
    yield good("experiment", "train: a finished run again leaves it as it was", rerun_finished,
               lambda result: any(p.name == "saved_model.pb" for p in result), slow=True)
    yield good("experiment", "train: resume with more epochs continues (2 log rows, step 8)",
               more_epochs, lambda r: r[0]["global_step"] == 8 and len(r[1]) == 2, slow=True)
    yield bad("experiment", "train: corrupt config.json",
              damaged_run("corrupt_cfg", lambda w: (w / "config.json").write_text('{"method": ')),
              CE, "config.json", slow=True)
    yield bad("experiment", "train: config.json holds a list",
              damaged_run("cfg_list", lambda w: (w / "config.json").write_text("[1, 2]")),
              CE, "config.json", slow=True)
    yield bad("experiment", "train: every checkpoint truncated",
              damaged_run("bad_ckpt", truncate_checkpoints, epochs=2), CE, "checkpoint",
              slow=True)
    yield good("experiment",
               "train: garbage 'checkpoint' state file: resumes from the newest ckpt-4",
               garbage_checkpoint_state,
               lambda s: s["resumed_from_step"] == 4 and s["global_step"] == 8, slow=True)


# ------------------------------------------------------------------------ evaluate / restore

def evaluate_at(path, **kwargs):
    """run(c): experiment.evaluate of the model at path(c)."""
    def run(c):
        with quiet():
            return experiment.evaluate(c.config(), path(c), out_dir=c.tmp / "evalout", **kwargs)
    return run


def damaged_copy(name, damage, target):
    """path(c): a copy of the finished run, `damage(workdir)` done, its file `target`."""
    def path(c):
        workdir = c.copy_run(name)
        damage(workdir)
        return workdir / target
    return path


def text_file(path):
    path.write_text("hello")
    return path


def evaluate_cases():
    yield bad("experiment", "evaluate: missing model path",
              evaluate_at(lambda c: c.tmp / "nonexistent"), CE, "nonexistent")
    yield bad("experiment", "evaluate: an empty directory",
              evaluate_at(lambda c: (c.tmp / "emptydir").mkdir() or c.tmp / "emptydir"), CE,
              "saved_model")
    yield bad("experiment", "evaluate: a text file named .keras",
              evaluate_at(lambda c: text_file(c.tmp / "x.keras")), CE, "x.keras")
    for name, copy, damage, target, match in [
        ("evaluate: truncated saved_model.pb", "trunc_sm",
         lambda w: os.truncate(w / "saved_model" / "saved_model.pb", 100), "saved_model",
         "saved_model"),
        ("evaluate: truncated model.keras", "trunc_keras",
         lambda w: os.truncate(w / "model.keras", 1000), "model.keras", "model.keras"),
        ("evaluate: saved_model variables deleted", "novars",
         lambda w: shutil.rmtree(w / "saved_model" / "variables"), "saved_model", "saved_model"),
    ]:
        yield bad("experiment", name, evaluate_at(damaged_copy(copy, damage, target)), CE, match,
                  slow=True)
    yield good("experiment", "evaluate: the run's SavedModel on its own data",
               evaluate_at(lambda c: c.run_dir / "saved_model", data_from_model=True),
               lambda r: r["num_examples"] == 16 and np.isfinite(r["nll"]), slow=True)
    yield bad("experiment", "restore_model: a missing checkpoint",
              lambda c: experiment.restore_model(c.config(), c.tmp / "nonexistent" / "ckpt-3"),
              CE, "nonexistent|checkpoint")
    yield bad("experiment", "restore_model: checkpoint of another architecture",
              lambda c: experiment.restore_model(c.config({"model.latent_dim": 3}),
                                                 c.run_dir / "checkpoints"),
              CE, "checkpoint", slow=True)
    yield good("experiment", "restore_model: newest checkpoint of the run directory",
               lambda c: experiment.restore_model(c.config(), c.run_dir / "checkpoints"),
               lambda built: isinstance(built, rem_tf.GenerativeModel), slow=True)


CASES = [*config_cases(), *train_cases(), *evaluate_cases()]


@pytest.mark.parametrize("case", params(CASES))
def test_experiment(case, ctx, record_property):
    check(case, ctx, record_property)
