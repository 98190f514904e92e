"""Bad inputs to the model API: build_model for every method, compile, fit with arrays /
datasets / PyDatasets / generators, evaluate, log_likelihood, encode, decode, sample, custom
networks and likelihoods, the .keras round trip. The machinery: bad_inputs.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import rem_tf
from bad_inputs import SMALL, bad, check, finite, fit, good, half, params, with_nan
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx

METHODS = sorted(rem_tf.METHODS)
NUM = "num_samples"


def model(name, run, error=ValueError, match=None, slow=False):
    return bad("model", name, run, error=error, match=match, slow=slow)


def model_ok(name, run, result_check, slow=False):
    return good("model", name, run, result_check, slow=slow)


# ------------------------------------------------------------------ custom networks

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


class RawScaleLayer(keras.layers.Layer):  # forgets to make the scale positive
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


def elementwise_normal(params):  # log_prob would not sum over the example
    import tensorflow_probability as tfp  # noqa: PLC0415

    return tfp.distributions.Normal(params, 1.0)


# ------------------------------------------------------------------ data of other kinds

class ConstantPyDataset(keras.utils.PyDataset):
    def __init__(self, batch, length=2):
        super().__init__()
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.batch


def generator(batch):
    def generate():
        while True:
            yield (batch,)
    return generate()


# ------------------------------------------------------------------------ build_model

def method_cases():
    for method in METHODS:
        yield model(f"build {method}: num_particles 0",
                    lambda c, m=method: c.fresh(m, num_particles=0), match="num_particles")
        yield model(f"build {method}: latent_dim -1",
                    lambda c, m=method: c.fresh(m, latent_dim=-1), match="latent_dim")
        yield model(f"build {method}: typo'd keyword num_particle",
                    lambda c, m=method: rem_tf.build_model(m, num_particle=5),
                    (TypeError, ValueError), "num_particle")
        yield model_ok(f"fit {method}: 1 epoch on 40 binary images, finite loss",
                       lambda c, m=method: fit(c.fresh(m), c.x, batch_size=20, epochs=1),
                       lambda h: finite(h.history["loss"]) and len(h.history["loss"]) == 1,
                       slow=True)
    for method in ("miwae", "piwae"):
        for value, label in ((0, "0"), (-2, "-2"), (2.5, "2.5"), (True, "True"), ("4", "'4'")):
            yield model(f"build {method}: num_groups {label}",
                        lambda c, m=method, v=value: c.fresh(m, num_groups=v), match="num_groups")
        yield model_ok(f"build {method}: num_groups np.int64(3) kept",
                       lambda c, m=method: c.fresh(m, num_groups=np.int64(3)),
                       lambda built: built.num_groups == 3 and type(built.num_groups) is int)
    for value, label in ((-0.1, "-0.1"), (1.5, "1.5"), (float("nan"), "nan"), ("0.5", "'0.5'"),
                         (None, "None")):
        yield model(f"build ciwae: beta {label}", lambda c, v=value: c.fresh("ciwae", beta=v),
                    match="beta")
    for method in ("vae", "iwae", "rem_v2"):
        yield model(f"build {method}: num_groups (not a {method} argument)",
                    lambda c, m=method: c.fresh(m, num_groups=4), (TypeError, ValueError),
                    "num_groups")
    yield model("build iwae: beta (not an iwae argument)", lambda c: c.fresh("iwae", beta=0.5),
                (TypeError, ValueError), "beta")
    yield model("build rem_v1: 1 particle", lambda c: c.fresh("rem_v1", num_particles=1),
                match="num_particles")
    yield model("build rem_v2: 1 particle", lambda c: c.fresh("rem_v2", num_particles=1),
                match="num_particles")


def build_cases():
    for label, kwargs, error, match in [
        ("unknown method", dict(method="rem_v3"), ValueError, "rem_v3"),
        ("method None", dict(method=None), (ValueError, TypeError), "method"),
        ("latent_dim 0", dict(latent_dim=0), ValueError, "latent_dim"),
        ("latent_dim 2.5", dict(latent_dim=2.5), ValueError, "latent_dim"),
        ("latent_dim '2'", dict(latent_dim="2"), (ValueError, TypeError), "latent_dim"),
        ("latent_dim True", dict(latent_dim=True), (ValueError, TypeError), "latent_dim"),
        ("num_particles '10'", dict(num_particles="10"), ValueError, "num_particles"),
        ("num_particles -5", dict(num_particles=-5), (ValueError, TypeError), "num_particles"),
        ("num_particles nan", dict(num_particles=float("nan")), (ValueError, TypeError),
         "num_particles"),
        ("input_shape (0,)", dict(input_shape=(0,)), ValueError, "input_shape"),
        ("input_shape ()", dict(input_shape=()), (ValueError, TypeError), "input_shape"),
        ("input_shape (-4, 4)", dict(input_shape=(-4, 4)), (ValueError, TypeError),
         "input_shape"),
        ("input_shape '16'", dict(input_shape="16"), (ValueError, TypeError), "input_shape"),
        ("input_shape None", dict(input_shape=None), (ValueError, TypeError), "input_shape"),
        ("hidden_units (8, 0)", dict(hidden_units=(8, 0)), ValueError, "hidden_units"),
        ("hidden_units (8, -1)", dict(hidden_units=(8, -1)), (ValueError, TypeError),
         "hidden_units"),
        ("hidden_units 'abc'", dict(hidden_units="abc"), (ValueError, TypeError), "hidden_units"),
        ("hidden_units (8.5,)", dict(hidden_units=(8.5,)), (ValueError, TypeError),
         "hidden_units"),
        ("covariance 'diag' (rem_v1)", dict(method="rem_v1", covariance="diag"), ValueError,
         "covariance"),
        ("seed -1", dict(seed=-1), ValueError, "seed"),
        ("seed 1.5", dict(seed=1.5), (ValueError, TypeError), "seed"),
        ("seed '3'", dict(seed="3"), (ValueError, TypeError), "seed"),
        ("activation 'nonesuch'", dict(activation="nonesuch"), (ValueError, TypeError),
         "activation|nonesuch"),
        ("scale_activation 'relu'", dict(scale_activation="relu"), ValueError, "scale_activation"),
        ("scale_activation 'nonesuch'", dict(scale_activation="nonesuch"), (ValueError, TypeError),
         "scale_activation"),
        ("decoder_output_bias of 15", dict(decoder_output_bias=np.zeros(15)), ValueError,
         "output_bias"),
        ("decoder_output_bias with NaN", dict(decoder_output_bias=np.full(16, np.nan)),
         ValueError, "decoder_output_bias must hold finite numbers"),
        ("decoder_output_bias strings", dict(decoder_output_bias=np.array(["a"] * 16)),
         ValueError, "decoder_output_bias must be an array of numbers"),
        ("likelihood 'poisson'", dict(likelihood="poisson"), ValueError,
         r"likelihood 'poisson'.*bernoulli, gaussian"),
        ("likelihood 'Bernoulli' (case)", dict(likelihood="Bernoulli"), (ValueError, TypeError),
         "Bernoulli"),
    ]:
        method = kwargs.pop("method", "iwae")
        yield model(f"build: {label}",
                    lambda c, m=method, kw=dict(kwargs): rem_tf.build_model(m, **{**SMALL, **kw}),
                    error, match)
    for label, kwargs, error, match in [
        ("ridge 0 (rem_v1)", dict(ridge=0.0), ValueError, "ridge"),
        ("ridge nan (rem_v1)", dict(ridge=float("nan")), ValueError, "ridge"),
        ("ridge inf (rem_v1)", dict(ridge=float("inf")), ValueError, "ridge"),
        ("ridge 'a' (rem_v1)", dict(ridge="a"), ValueError, "ridge"),
    ]:
        yield model(f"build: {label}", lambda c, kw=kwargs: c.fresh("rem_v1", **kw), error, match)
    for label, make, error, match in [
        ("likelihood 42", lambda: dict(likelihood=42), TypeError, "likelihood"),
        ("Gaussian(scale=0)", lambda: dict(likelihood=rem_tf.likelihoods.Gaussian(0.0)),
         ValueError, "scale"),
        ("Gaussian(scale=nan)", lambda: dict(likelihood=rem_tf.likelihoods.Gaussian(float("nan"))),
         ValueError, "scale"),
        ("Gaussian(scale=-1)", lambda: dict(likelihood=rem_tf.likelihoods.Gaussian(-1.0)),
         ValueError, "scale must be positive"),
        ("encoder a function", lambda: dict(encoder=lambda x: (x, x)), TypeError,
         "encoder must be a Keras layer"),
        ("decoder a string", lambda: dict(decoder="mlp"), TypeError, "decoder"),
    ]:
        yield model(f"build: {label}", lambda c, make=make: c.fresh(**make()), error, match)


def custom_network_cases():
    for label, make, match in [
        ("custom encoder: 3 outputs", lambda: dict(encoder=ThreeOutputsLayer()),
         r"encoder must return \(loc, scale\).*tuple of 3"),
        ("custom encoder: latent 3 != latent_dim 2", lambda: dict(encoder=WrongLatentLayer()),
         r"encoder's loc has shape \(\d+, 3\)"),
        ("custom encoder: scale not positive", lambda: dict(encoder=RawScaleLayer()),
         "encoder's scale must be > 0"),
        ("custom encoder: one tensor", lambda: dict(encoder=OneTensorLayer()), "encoder"),
        ("custom encoder: dict with wrong keys", lambda: dict(encoder=DictWrongKeysLayer()),
         "encoder|loc"),
        ("custom decoder: output [N, 17]", lambda: dict(decoder=keras.layers.Dense(17)),
         r"decoder output has shape \(\d+, 17\)"),
        ("custom decoder: output [N, 4, 4, 2]",
         lambda: dict(decoder=keras.Sequential([keras.layers.Dense(32),
                                                keras.layers.Reshape((4, 4, 2))])), "decoder"),
        ("custom decoder: returns a tuple", lambda: dict(decoder=ThreeOutputsLayer()), "decoder"),
        ("custom decoder + decoder_output_bias",
         lambda: dict(decoder=keras.layers.Dense(16), decoder_output_bias=np.zeros(16)),
         "decoder_output_bias"),
        ("likelihood callable without Independent", lambda: dict(likelihood=elementwise_normal),
         r"event shape \(\).*Independent"),
    ]:
        yield model(label, lambda c, make=make: c.fresh(**make()), match=match)
    yield model("likelihood callable returning an array", lambda c: c.fresh(likelihood=lambda p: p),
                (TypeError, ValueError), "likelihood")
    yield model("custom encoder: scale < 0 on real data (fit)",
                lambda c: fit(c.fresh(encoder=NegativeAfterTrainingLayer()), c.x, batch_size=20),
                match="scale", slow=True)
    yield model_ok("custom decoder: [N, 4, 4] for input_shape (4, 4) trains",
                   lambda c: fit(c.fresh(input_shape=(4, 4), decoder=keras.Sequential(
                       [keras.layers.Dense(16), keras.layers.Reshape((4, 4))])),
                       c.x.reshape(40, 4, 4), batch_size=20),
                   lambda h: finite(h.history["loss"]), slow=True)


# ------------------------------------------------------------------------ compile

def compile_cases():
    yield model("compile: model_optimizer alone",
                lambda c: c.fresh().compile(model_optimizer="adam"), match="proposal_optimizer")
    yield model("compile: proposal_optimizer alone",
                lambda c: c.fresh().compile(proposal_optimizer="adam"), match="model_optimizer")
    yield model("compile: a loss", lambda c: c.fresh().compile(optimizer="adam", loss="mse"),
                match="loss")
    yield model("compile: optimizer and model_optimizer",
                lambda c: c.fresh().compile(optimizer="adam", model_optimizer="adam",
                                            proposal_optimizer="adam"), match="optimizer")
    yield model("compile: optimizer 'nonesuch'",
                lambda c: c.fresh().compile(optimizer="nonesuch"), match="nonesuch|optimizer")
    yield model("compile: same optimizer object twice",
                lambda c: (lambda o: c.fresh("rem_v1").compile(model_optimizer=o,
                                                               proposal_optimizer=o))(
                    keras.optimizers.Adam()), match="same optimizer object")
    yield model("fit: not compiled", lambda c: fit(rem_tf.build_model("iwae", **SMALL), c.x),
                (RuntimeError, ValueError), "compile")


# ------------------------------------------------------------------------ fit / evaluate

def fit_cases():
    for label, make, match, extra in [
        ("array of 0.5", lambda c: half(c.x), r"x must hold binary values.*0\.5", {}),
        ("array with NaN", lambda c: with_nan(c.x), r"x.*NaN.*nan", {}),
        ("array with Inf", lambda c: with_nan(c.x, np.inf), r"x.*inf", {}),
        ("array of -1", lambda c: -c.x - 1, r"x must hold binary", {}),
        ("array of 2 (int)", lambda c: np.full((40, 16), 2, np.int64), r"x must hold binary", {}),
        ("wrong width 15", lambda c: c.x[:, :15], r"x, an array of shape \(40, 15\)", {}),
        ("wrong rank [40, 4, 4] for (16,)", lambda c: c.x.reshape(40, 4, 4), r"\(40, 4, 4\)", {}),
        ("one example unbatched", lambda c: c.x[0], r"x", {}),
        ("empty array", lambda c: c.x[:0], r"x holds no examples", {}),
        ("strings", lambda c: c.x.astype(str), r"x must be an array of numbers", {}),
        ("complex", lambda c: c.x.astype(np.complex64), r"x must be an array of numbers", {}),
        ("object array", lambda c: np.array([None] * 16, dtype=object)[None],
         r"x must be an array", {}),
        ("ragged list", lambda c: [[0.0] * 16, [0.0] * 15], r"x must be an array of numbers", {}),
        ("scalar 0", lambda c: np.float32(0), r"x: expected a batch of images", {}),
        ("tf.Tensor of 0.5", lambda c: tf.constant(half(c.x)), r"x must hold binary", {}),
        ("dict of arrays", lambda c: {"x": c.x}, r"not a dict", {}),
        ("None", lambda c: None, r"x is None", {}),
        ("unbatched dataset", lambda c: tf.data.Dataset.from_tensor_slices(c.x), "unbatched", {}),
        ("dataset of 0.5", lambda c: tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10),
         "x must hold binary values", {}),
        ("dataset, wrong width",
         lambda c: tf.data.Dataset.from_tensor_slices(c.x[:, :15]).batch(10), r"15", {}),
        ("dataset of strings",
         lambda c: tf.data.Dataset.from_tensor_slices(c.x.astype(str)).batch(10),
         "x must hold numbers|x must be", {}),
        ("dataset of dicts", lambda c: tf.data.Dataset.from_tensor_slices({"x": c.x}).batch(10),
         "dict", {}),
        ("dataset, one batch 0.5 among good ones",
         lambda c: tf.data.Dataset.from_tensor_slices(
             np.concatenate([c.x, half(c.x[:10])])).batch(10), "x must hold binary", {}),
        ("PyDataset of 2.0", lambda c: ConstantPyDataset(np.full((10, 16), 2.0, np.float32)),
         "x must hold binary values", {}),
        ("PyDataset, wrong width", lambda c: ConstantPyDataset(c.x[:10, :15]),
         r"15|expects images of shape \(16,\)", {}),
        ("generator of 0.5", lambda c: generator(half(c.x[:10])), "x must hold binary values",
         dict(steps_per_epoch=2)),
        ("generator with NaN", lambda c: generator(with_nan(c.x)[:10]), "x must hold binary",
         dict(steps_per_epoch=2)),
    ]:
        yield model(f"fit: {label}",
                    lambda c, make=make, extra=extra: fit(c.model, make(c), epochs=1, **extra),
                    match=match, slow=label == "PyDataset, wrong width")
    yield model("fit: empty dataset",
                lambda c: fit(c.fresh(), tf.data.Dataset.from_tensor_slices(c.x[:0]).batch(10)),
                match="x is an empty dataset")
    yield model("fit: empty PyDataset", lambda c: fit(c.fresh(), ConstantPyDataset(c.x[:10],
                                                                                  length=0)),
                match="no data|empty|examples|PyDataset")
    yield model("fit: dataset with an empty batch",
                lambda c: fit(c.fresh(), ConstantPyDataset(c.x[:0], length=2)),
                match=r"x holds no examples \(an empty batch\)")
    yield model("fit: PyDataset of the wrong width after a good one (retraced, shape unknown)",
                lambda c: (lambda m: (fit(m, ConstantPyDataset(c.x[:10])),
                                      fit(m, ConstantPyDataset(c.x[:10, :15]))))(c.fresh()),
                match=r"expects images of shape \(16,\).*got a batch of another shape")
    yield model("fit: batch_size 0", lambda c: fit(c.model, c.x, batch_size=0),
                match="batch_size must be an integer >= 1")
    yield model("fit: batch_size -1", lambda c: fit(c.model, c.x, batch_size=-1),
                match="batch_size must be an integer >= 1")
    yield model("fit: epochs -1", lambda c: fit(c.model, c.x, epochs=-1),
                match="epochs must be an integer >= 0")
    yield model("fit: validation_data of 0.5", lambda c: fit(c.model, c.x,
                                                             validation_data=half(c.x)),
                match="binary")
    yield model("fit: validation_data wrong width",
                lambda c: fit(c.model, c.x, validation_data=c.x[:, :15]), match="15")
    yield model("fit: gaussian, array with Inf", lambda c: fit(c.gaussian,
                                                               with_nan(c.real, np.inf)),
                match=r"x must hold finite values.*inf")
    yield model("fit: gaussian, generator with NaN",
                lambda c: fit(c.gaussian, generator(with_nan(c.real)[:10]), steps_per_epoch=2),
                match="x must hold finite values")
    yield model_ok("fit: gaussian, real values", lambda c: fit(c.gaussian, c.real, batch_size=20),
                   lambda h: finite(h.history["loss"]))
    for label, make in [
        ("bool array (binary)", lambda c: c.x.astype(bool)),
        ("uint8 0/1 array", lambda c: c.x.astype(np.uint8)),
        ("float64 array", lambda c: c.x.astype(np.float64)),
    ]:
        yield model_ok(f"fit: {label}", lambda c, make=make: fit(c.model, make(c), batch_size=20),
                       lambda h: finite(h.history["loss"]), slow=True)
    yield model_ok("fit: batch larger than the data (one step)",
                   lambda c: fit(c.model, c.x, batch_size=1000),
                   lambda h: finite(h.history["loss"]), slow=True)
    yield model_ok("fit: (x, y) dataset: labels ignored",
                   lambda c: fit(c.model, tf.data.Dataset.from_tensor_slices(
                       (c.x, np.arange(40))).batch(20)),
                   lambda h: finite(h.history["loss"]), slow=True)
    yield model("evaluate: array of 0.5", lambda c: c.model.evaluate(half(c.x), verbose=0),
                match="x must hold binary values")
    yield model("evaluate: empty array", lambda c: c.model.evaluate(c.x[:0], verbose=0),
                match="no examples")
    yield model("evaluate: dataset of 0.5", lambda c: c.model.evaluate(
        tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10), verbose=0),
        match="x must hold binary")
    yield model("fit (jit_compile): dataset of 0.5 -> NaN-loss error",
                lambda c: fit(c.fresh(jit_compile=True),
                              tf.data.Dataset.from_tensor_slices(half(c.x)).batch(10)),
                RuntimeError,
                r"NaN or Inf loss.*jit_compile=True.*binary values \(0 or 1, no NaN\)")
    yield model("fit: NaN-producing learning rate 1e30",
                lambda c: fit((lambda m: (m.compile(optimizer=keras.optimizers.SGD(1e30)), m)[1])(
                    rem_tf.build_model("iwae", **SMALL)), c.x, batch_size=10, epochs=3),
                RuntimeError, "NaN|nan|Inf", slow=True)


# ------------------------------------------------------------------------ log_likelihood

def ll(c, x=None, **kwargs):
    return c.model.log_likelihood(c.x[:4] if x is None else x, **{"num_samples": 8, **kwargs})


def log_likelihood_cases():
    for label, kwargs, match in [
        ("num_samples 0", dict(num_samples=0), NUM),
        ("num_samples -5", dict(num_samples=-5), NUM),
        ("num_samples 2.7", dict(num_samples=2.7), NUM),
        ("num_samples 5.0", dict(num_samples=5.0), NUM),
        ("num_samples True", dict(num_samples=True), NUM),
        ("num_samples '5'", dict(num_samples="5"), NUM),
        ("num_samples None", dict(num_samples=None), NUM),
        ("num_samples nan", dict(num_samples=float("nan")), NUM),
        ("num_samples 2**63", dict(num_samples=2**63),
         r"num_samples must be an integer in \[1, 9223372036854775807\]"),
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
        yield model(f"log_likelihood: {label}", lambda c, kw=kwargs: ll(c, **kw), match=match)
    for label, make, match in [
        ("x of 0.5", lambda c: half(c.x[:4]), "x must hold binary"),
        ("x with NaN", lambda c: with_nan(c.x)[:4],
         r"x must hold binary values \(0 or 1, no NaN\).*nan"),
        ("x wrong width", lambda c: c.x[:2, :15], r"x, an array of shape \(2, 15\)"),
        ("one unbatched image", lambda c: c.x[0], r"x: expected a batch"),
        ("strings", lambda c: c.x[:2].astype(str), "x must be an array of numbers"),
        ("ragged list", lambda c: [[0.0] * 16, [0.0] * 15], "x must be an array of numbers"),
        ("complex dtype", lambda c: c.x[:2].astype(np.complex64), "x must be an array of numbers"),
    ]:
        yield model(f"log_likelihood: {label}", lambda c, make=make: ll(c, x=make(c)), match=match)
    yield model_ok("log_likelihood: a dataset -> one finite value per image",
                   lambda c: ll(c, x=tf.data.Dataset.from_tensor_slices(c.x).batch(4)),
                   lambda out: np.shape(out) == (40,) and finite(out), slow=True)
    yield model_ok("log_likelihood: empty batch -> []", lambda c: ll(c, x=c.x[:0]),
                   lambda out: np.shape(out) == (0,))
    yield model_ok("log_likelihood: 7 images, batch_size 3 -> 7 finite values",
                   lambda c: ll(c, x=c.x[:7], batch_size=3),
                   lambda out: np.shape(out) == (7,) and finite(out))
    yield model_ok("log_likelihood: chunk_size > num_samples",
                   lambda c: ll(c, num_samples=3, chunk_size=100), finite)
    yield model_ok("log_likelihood: num_samples np.int64(8), K = 1",
                   lambda c: (ll(c, num_samples=np.int64(8)), ll(c, num_samples=1)),
                   lambda out: finite(out[0]) and finite(out[1]))
    yield model_ok("log_likelihood: chunked = one chunk (same particles count, close)",
                   lambda c: (ll(c, num_samples=400, chunk_size=7),
                              ll(c, num_samples=400, chunk_size=400)),
                   lambda out: abs(out[0].mean() - out[1].mean()) < 1.0)
    yield model_ok("log_likelihood: 28x28x1-style (N, 4, 4) batch for input_shape (4, 4)",
                   lambda c: c.fresh(input_shape=(4, 4)).log_likelihood(
                       c.x[:3].reshape(3, 4, 4), num_samples=4),
                   lambda out: np.shape(out) == (3,))
    yield model_ok("log_likelihood: gaussian, real x",
                   lambda c: c.gaussian.log_likelihood(c.real[:4], num_samples=8), finite)
    yield model("log_likelihood: gaussian, x with Inf",
                lambda c: c.gaussian.log_likelihood(with_nan(c.real, np.inf)[:4], num_samples=8),
                match="finite")
    yield model_ok("log_likelihood: proposal 'shifted'", lambda c: ll(c, proposal="shifted"),
                   finite)


# ------------------------------------------------------------------------ encode / decode / sample

def encode_decode_sample_cases():
    yield model("encode: wrong width", lambda c: c.model.encode(c.x[:2, :15]),
                match=r"x, an array of shape \(2, 15\)")
    yield model("encode: NaN", lambda c: c.model.encode(with_nan(c.x)[:4]),
                match="x must hold finite values")
    yield model("encode: strings", lambda c: c.model.encode(c.x[:2].astype(str)),
                match="x must be an array of numbers")
    yield model("encode: unbatched image", lambda c: c.model.encode(c.x[0]), match="batch")
    yield model_ok("encode: empty batch -> [0, 2]", lambda c: c.model.encode(c.x[:0]),
                   lambda out: tuple(out[0].shape) == (0, 2))
    yield model_ok("encode: grey values (finite) accepted", lambda c: c.model.encode(half(c.x[:3])),
                   lambda out: finite(out[0]))
    for label, z, match in [
        ("NaN latent", np.array([[0.0, np.nan]], np.float32), "z must hold finite values"),
        ("Inf latent", np.array([[np.inf, 0.0]], np.float32), "finite"),
        ("latent width 3", np.zeros((2, 3), np.float32),
         r"z must have shape \[\.\.\., latent_dim\] = \[\.\.\., 2\]"),
        ("latent width 1", np.zeros((2, 1), np.float32), "latent_dim"),
        ("scalar latent", np.float32(0.0), "latent_dim|z"),
        ("strings", np.zeros((2, 2)).astype(str), "z must be an array of numbers"),
        ("ragged", [[0.0, 0.0], [0.0]], "z must be an array"),
        ("complex", np.zeros((2, 2), np.complex64), "z must be an array"),
    ]:
        yield model(f"decode: {label}", lambda c, z=z: c.model.decode(z), match=match)
    yield model_ok("decode: empty batch -> [0, 16]",
                   lambda c: c.model.decode(np.zeros((0, 2), np.float32)),
                   lambda out: tuple(out.shape) == (0, 16))
    yield model_ok("decode: [3, 5, 2] -> [3, 5, 16]",
                   lambda c: c.model.decode(np.zeros((3, 5, 2), np.float32)),
                   lambda out: tuple(out.shape) == (3, 5, 16))
    yield model_ok("decode: float64 / int latent", lambda c: c.model.decode(np.zeros((2, 2),
                                                                                   np.int64)),
                   lambda out: tuple(out.shape) == (2, 16))
    for label, args, match in [
        ("-1", (-1,), "num_samples must be an integer"), ("2.5", (2.5,), "num_samples"),
        ("'3'", ("3",), "num_samples"), ("None", (None,), "num_samples"),
        ("True", (True,), "num_samples"), ("2**31", (2**31,), "num_samples"),
        ("seed -1", (2, -1), "seed"), ("seed 'a'", (2, "a"), "seed"),
        ("seed 1.5", (2, 1.5), "seed"),
    ]:
        yield model(f"sample: {label}", lambda c, a=args: c.model.sample(*a), match=match)
    yield model_ok("sample: 0 -> [0, 16]", lambda c: c.model.sample(0),
                   lambda out: tuple(out.shape) == (0, 16))
    yield model_ok("sample: 5 binary images, seed reproducible",
                   lambda c: (c.model.sample(5, seed=3).numpy(), c.model.sample(5, seed=3).numpy()),
                   lambda out: tuple(out[0].shape) == (5, 16)
                   and set(np.unique(out[0])) <= {0.0, 1.0} and np.array_equal(out[0], out[1]))


def keras_roundtrip(c):
    path = c.tmp / "m.keras"
    c.model.save(path)
    return keras.models.load_model(path).log_likelihood(c.x[:3], num_samples=4)


def truncated_keras_file(c):
    path = c.tmp / "t.keras"
    c.model.save(path)
    os.truncate(path, os.path.getsize(path) // 2)
    return keras.models.load_model(path)


CASES = [
    *method_cases(), *build_cases(), *custom_network_cases(), *compile_cases(), *fit_cases(),
    *log_likelihood_cases(), *encode_decode_sample_cases(),
    good("model", ".keras round trip: loaded model evaluates", keras_roundtrip, finite),
    bad("model", ".keras: loading a truncated file", truncated_keras_file, Exception,
        "keras|zip|file"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_model(case, ctx, record_property):
    check(case, ctx, record_property)
