"""One clear error for every bad input, at every public entry point of the model API.

Each row of `CASES` is one bad (or borderline) input to one entry point: the error
it must raise and a pattern its message must match, which names the offending
argument; or, for inputs that are fine (an empty batch, `sample(0)`), a check of the
result. `classify` sorts an outcome into clear / correct / unclear / silently wrong;
the test requires clear or correct for every row.
"""

import re
from typing import Callable, NamedTuple, Optional

import keras
import numpy as np
import pytest
import tensorflow as tf

import rem_tf
from rem_tf import evaluation, export

SMALL = dict(latent_dim=2, hidden_units=(16,), input_shape=(16,), num_particles=5, seed=1)


class Case(NamedTuple):
    name: str
    run: Callable  # run(ctx) -> result
    error: Optional[type]  # the exception type expected, or None: the call must succeed
    match: object  # a regex the message must match, or (error None) a check of the result
    new_api: bool = False  # uses an argument that rem_tf 0.2 did not have


class Context:
    """Models and data shared by the cases (built once per module)."""

    def __init__(self, tmp_dir):
        rng = np.random.default_rng(0)
        self.x = (rng.random((40, 16)) < 0.3).astype(np.float32)
        self.real = rng.normal(size=(40, 16)).astype(np.float32)
        self.model = rem_tf.build_model("iwae", **SMALL)
        self.model.compile(optimizer="adam")
        self.tmp_dir = tmp_dir
        self._gaussian = self._loaded = None

    def fresh(self, method="iwae", jit_compile=False, **kwargs):
        model = rem_tf.build_model(method, **{**SMALL, **kwargs})
        model.compile(optimizer="adam", jit_compile=jit_compile)
        return model

    @property
    def gaussian(self):
        if self._gaussian is None:
            self._gaussian = self.fresh(likelihood="gaussian")
        return self._gaussian

    @property
    def loaded(self):
        if self._loaded is None:
            from rem_tf import export  # noqa: PLC0415

            path = export.export(self.model, self.tmp_dir / "saved_model", chunk_size=8,
                                 elbo_samples=4)
            self._loaded = export.load(path)
        return self._loaded


class ValuesPyDataset(keras.utils.PyDataset):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return self.batch


def generator(batch):
    def generate():
        while True:
            yield (batch,)
    return generate()


class ThreeOutputs(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        h = self.dense(x)
        return h, tf.exp(h), h


class WrongLatent(keras.layers.Layer):
    def build(self, input_shape):
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        h = self.dense(x)
        return h, tf.exp(h)


class RawScale(keras.layers.Layer):  # forgets to make the scale positive
    def build(self, input_shape):
        self.loc, self.scale = keras.layers.Dense(2), keras.layers.Dense(2)

    def call(self, x):
        return self.loc(x), self.scale(x)


def elementwise_normal(params):  # log_prob would not sum over the example
    import tensorflow_probability as tfp  # noqa: PLC0415

    return tfp.distributions.Normal(params, 1.0)


def half(x):
    return x * 0.5


def with_nan(x):
    x = x.copy()
    x[3, 4] = np.nan
    return x


def fit(model, data, **kwargs):
    return model.fit(data, verbose=0, **kwargs)


def export_to(c, name, make_dir=False, **kwargs):
    path = c.tmp_dir / name
    if make_dir:
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    try:
        return export.export(c.model, path, **kwargs)
    finally:
        assert not make_dir or (path / "notes.txt").read_text() == "mine"


NUM = r"num_samples"
CASES = [
    # ------------------------------------------------------------ build_model
    Case("build: unknown method", lambda c: rem_tf.build_model("rem_v3"), ValueError, "rem_v3"),
    Case("build: unknown likelihood name", lambda c: c.fresh(likelihood="poisson"), ValueError,
         r"likelihood 'poisson'.*bernoulli, gaussian", new_api=True),
    Case("build: likelihood not callable", lambda c: c.fresh(likelihood=42), TypeError,
         "likelihood", new_api=True),
    Case("build: latent_dim 0", lambda c: c.fresh(latent_dim=0), ValueError, "latent_dim"),
    Case("build: latent_dim 2.5", lambda c: c.fresh(latent_dim=2.5), ValueError, "latent_dim"),
    Case("build: REM with 1 particle", lambda c: c.fresh("rem_v1", num_particles=1), ValueError,
         "num_particles"),
    Case("build: num_particles '10'", lambda c: c.fresh(num_particles="10"), ValueError,
         "num_particles"),
    Case("build: input_shape (0,)", lambda c: c.fresh(input_shape=(0,)), ValueError,
         "input_shape"),
    Case("build: hidden_units (16, 0)", lambda c: c.fresh(hidden_units=(16, 0)), ValueError,
         "hidden_units"),
    Case("build: covariance 'diag'", lambda c: c.fresh("rem_v1", covariance="diag"), ValueError,
         "covariance"),
    Case("build: ridge 0", lambda c: c.fresh("rem_v1", ridge=0.0), ValueError, "ridge"),
    Case("build: seed -1", lambda c: c.fresh(seed=-1), ValueError, "seed"),
    Case("build: scale_activation 'relu'", lambda c: c.fresh(scale_activation="relu"), ValueError,
         "scale_activation"),
    Case("build: decoder_output_bias of wrong length",
         lambda c: c.fresh(decoder_output_bias=np.zeros(15)), ValueError, "output_bias"),
    Case("build: encoder a function", lambda c: c.fresh(encoder=lambda x: (x, x)), TypeError,
         "encoder must be a Keras layer", new_api=True),
    Case("build: encoder returns 3 tensors", lambda c: c.fresh(encoder=ThreeOutputs()),
         ValueError, r"encoder must return \(loc, scale\).*tuple of 3", new_api=True),
    Case("build: encoder latent size 3 != 2", lambda c: c.fresh(encoder=WrongLatent()),
         ValueError, r"encoder's loc has shape \(2, 3\)", new_api=True),
    Case("build: encoder scale not positive", lambda c: c.fresh(encoder=RawScale()), ValueError,
         "encoder's scale must be > 0", new_api=True),
    Case("build: decoder output [N, 17] != [N, 16]",
         lambda c: c.fresh(decoder=keras.layers.Dense(17)), ValueError,
         r"decoder output has shape \(3, 17\)", new_api=True),
    Case("build: decoder_output_bias with NaN",
         lambda c: c.fresh(decoder_output_bias=np.full(16, np.nan)), ValueError,
         "decoder_output_bias must hold finite numbers", new_api=True),
    Case("build: decoder_output_bias of strings",
         lambda c: c.fresh(decoder_output_bias=np.array(["a"] * 16)), ValueError,
         "decoder_output_bias must be an array of numbers", new_api=True),
    Case("build: decoder_output_bias with own decoder",
         lambda c: c.fresh(decoder=keras.layers.Dense(16), decoder_output_bias=np.zeros(16)),
         ValueError, "decoder_output_bias", new_api=True),
    Case("build: likelihood without tfd.Independent",
         lambda c: c.fresh(likelihood=elementwise_normal), ValueError,
         r"event shape \(\).*Independent", new_api=True),
    Case("build: Gaussian scale -1",
         lambda c: c.fresh(likelihood=rem_tf.likelihoods.Gaussian(-1.0)), ValueError,
         "scale must be positive", new_api=True),
    # ------------------------------------------------------------------- compile
    Case("compile: model_optimizer alone", lambda c: c.fresh().compile(model_optimizer="adam"),
         ValueError, "proposal_optimizer"),
    Case("compile: one optimizer object as both model_ and proposal_optimizer",
         lambda c: (lambda o: c.fresh("rem_v1").compile(model_optimizer=o, proposal_optimizer=o))(
             keras.optimizers.Adam()), ValueError, "same optimizer object", new_api=True),
    Case("compile: a loss", lambda c: c.fresh().compile(optimizer="adam", loss="mse"), ValueError,
         "loss"),
    # ----------------------------------------------------------------------- fit
    Case("fit: array of 0.5", lambda c: fit(c.model, half(c.x)), ValueError,
         r"x must hold binary values.*0\.5"),
    Case("fit: array with NaN", lambda c: fit(c.model, with_nan(c.x)), ValueError, r"x.*NaN"),
    Case("fit: array of wrong shape", lambda c: fit(c.model, c.x[:, :15]), ValueError,
         r"x, an array of shape \(40, 15\)"),
    Case("fit: empty array", lambda c: fit(c.model, c.x[:0]), ValueError, "x holds no examples"),
    Case("fit: array of strings", lambda c: fit(c.model, c.x.astype(str)), ValueError,
         "x must be an array of numbers"),
    Case("fit: a scalar", lambda c: fit(c.model, np.float32(0)), ValueError,
         r"x: expected a batch of images", new_api=True),
    Case("fit: a dict of arrays", lambda c: fit(c.model, {"x": c.x}), ValueError, "not a dict",
         new_api=True),
    Case("fit: x None", lambda c: fit(c.model, None), ValueError, "x is None", new_api=True),
    Case("fit: batch_size 0", lambda c: fit(c.model, c.x, batch_size=0), ValueError,
         "batch_size must be an integer >= 1", new_api=True),
    Case("fit: batch_size -1", lambda c: fit(c.model, c.x, batch_size=-1), ValueError,
         "batch_size must be an integer >= 1", new_api=True),
    Case("fit: epochs -1", lambda c: fit(c.model, c.x, epochs=-1), ValueError,
         "epochs must be an integer >= 0", new_api=True),
    Case("fit: empty dataset", lambda c: fit(c.fresh(), tf.data.Dataset.from_tensor_slices(
        c.x[:0]).batch(10)), ValueError, "x is an empty dataset", new_api=True),
    Case("fit: PyDataset of empty batches", lambda c: fit(c.fresh(), ValuesPyDataset(c.x[:0])),
         ValueError, r"x holds no examples \(an empty batch\)", new_api=True),
    Case("fit: PyDataset of the wrong width after a good one (retraced, shape unknown)",
         lambda c: (lambda m: (fit(m, ValuesPyDataset(c.x[:10])),
                               fit(m, ValuesPyDataset(c.x[:10, :15]))))(c.fresh()), ValueError,
         r"expects images of shape \(16,\).*got a batch of another shape", new_api=True),
    Case("fit: unbatched dataset",
         lambda c: fit(c.model, tf.data.Dataset.from_tensor_slices(c.x)), ValueError,
         "unbatched"),
    Case("fit: dataset of 0.5", lambda c: fit(c.model, tf.data.Dataset.from_tensor_slices(
        half(c.x)).batch(10)), ValueError, "x must hold binary values"),
    Case("fit: PyDataset of 2.0", lambda c: fit(c.model, ValuesPyDataset(np.full((10, 16), 2.0,
         np.float32)), epochs=1), ValueError, "x must hold binary values"),
    Case("fit: generator of 0.5", lambda c: fit(c.model, generator(half(c.x[:10])),
         steps_per_epoch=2), ValueError, "x must hold binary values"),
    Case("fit (jit_compile=True): dataset of 0.5, XLA drops the assertion -> NaN loss",
         lambda c: fit(c.fresh(jit_compile=True), tf.data.Dataset.from_tensor_slices(
             half(c.x)).batch(10)), RuntimeError,
         r"NaN or Inf loss.*jit_compile=True.*binary values \(0 or 1, no NaN\)"),
    Case("fit: gaussian, array with Inf",
         lambda c: fit(c.gaussian, np.where(c.real > 2, np.inf, c.real)), ValueError,
         r"x must hold finite values.*inf", new_api=True),
    Case("fit: gaussian, generator with NaN",
         lambda c: fit(c.gaussian, generator(with_nan(c.real)[:10]), steps_per_epoch=2),
         ValueError, "x must hold finite values", new_api=True),
    Case("fit: gaussian, real values train",
         lambda c: fit(c.gaussian, c.real, batch_size=20).history["loss"], None,
         lambda losses: np.isfinite(losses).all(), new_api=True),
    Case("evaluate: array of 0.5", lambda c: c.model.evaluate(half(c.x), verbose=0), ValueError,
         "x must hold binary values"),
    # ---------------------------------------------------------- log_likelihood
    Case("log_likelihood: num_samples 2.7",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=2.7), ValueError, NUM),
    Case("log_likelihood: num_samples 0",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=0), ValueError, NUM),
    Case("log_likelihood: num_samples True",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=True), ValueError, NUM),
    Case("log_likelihood: num_samples 2**63 (not an int64)",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=2**63), ValueError,
         r"num_samples must be an integer in \[1, 9223372036854775807\]"),
    Case("log_likelihood: chunk_size 0",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=5, chunk_size=0), ValueError,
         "chunk_size"),
    Case("log_likelihood: chunk_size 2**31 (not an int32)",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=5, chunk_size=2**31), ValueError,
         "chunk_size"),
    Case("log_likelihood: batch_size 0",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=5, batch_size=0), ValueError,
         "batch_size"),
    Case("log_likelihood: proposal 'prior'",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=5, proposal="prior"), ValueError,
         "proposal"),
    Case("log_likelihood: empty batch", lambda c: c.model.log_likelihood(c.x[:0], num_samples=5),
         None, lambda out: out.shape == (0,)),
    Case("log_likelihood: wrong shape",
         lambda c: c.model.log_likelihood(c.x[:2, :15], num_samples=5), ValueError,
         r"x, an array of shape \(2, 15\)"),
    Case("log_likelihood: one unbatched image",
         lambda c: c.model.log_likelihood(c.x[0], num_samples=5), ValueError,
         r"x: expected a batch"),
    Case("log_likelihood: NaN", lambda c: c.model.log_likelihood(with_nan(c.x)[:4], num_samples=5),
         ValueError, r"x must hold binary values \(0 or 1, no NaN\).*nan"),
    Case("log_likelihood: strings",
         lambda c: c.model.log_likelihood(c.x[:2].astype(str), num_samples=5), ValueError,
         "x must be an array of numbers"),
    Case("log_likelihood: ragged list",
         lambda c: c.model.log_likelihood([[0.0] * 16, [0.0] * 15], num_samples=5), ValueError,
         "x must be an array of numbers"),
    Case("log_likelihood: complex dtype",
         lambda c: c.model.log_likelihood(c.x[:2].astype(np.complex64), num_samples=5),
         ValueError, "x must be an array of numbers"),
    Case("log_likelihood: jit_compile 'yes'",
         lambda c: c.model.log_likelihood(c.x[:2], num_samples=5, jit_compile="yes"), ValueError,
         "jit_compile"),
    # ------------------------------------------------------ encode / decode / sample
    Case("encode: wrong shape", lambda c: c.model.encode(c.x[:2, :15]), ValueError,
         r"x, an array of shape \(2, 15\)"),
    Case("encode: NaN", lambda c: c.model.encode(with_nan(c.x)[:4]), ValueError,
         "x must hold finite values"),
    Case("encode: strings", lambda c: c.model.encode(c.x[:2].astype(str)), ValueError,
         "x must be an array of numbers"),
    Case("encode: empty batch", lambda c: c.model.encode(c.x[:0]), None,
         lambda out: tuple(out[0].shape) == (0, 2)),
    Case("decode: NaN latent", lambda c: c.model.decode(np.array([[0.0, np.nan]], np.float32)),
         ValueError, "z must hold finite values"),
    Case("decode: latent of size 3", lambda c: c.model.decode(np.zeros((2, 3), np.float32)),
         ValueError, r"z must have shape \[\.\.\., latent_dim\] = \[\.\.\., 2\]"),
    Case("decode: strings", lambda c: c.model.decode(np.zeros((2, 2)).astype(str)), ValueError,
         "z must be an array of numbers"),
    Case("sample: -1", lambda c: c.model.sample(-1), ValueError, "num_samples must be an integer"),
    Case("sample: 2.5", lambda c: c.model.sample(2.5), ValueError, "num_samples"),
    Case("sample: seed 'a'", lambda c: c.model.sample(2, seed="a"), ValueError, "seed"),
    Case("sample: 0", lambda c: c.model.sample(0), None, lambda out: tuple(out.shape) == (0, 16)),
    # ---------------------------------------------------------------- SavedModel
    Case("SavedModel log_likelihood: x of 0.5", lambda c: c.loaded.log_likelihood(half(c.x), 4),
         tf.errors.InvalidArgumentError, "x must hold binary"),
    Case("SavedModel log_likelihood: num_samples 0", lambda c: c.loaded.log_likelihood(c.x, 0),
         tf.errors.InvalidArgumentError, "num_samples must be >= 1"),
    Case("SavedModel log_likelihood: num_samples 2**63 (not an int64)",
         lambda c: c.loaded.log_likelihood(c.x, 2**63), TypeError,
         r"(?s)out-of-range integer.*num_samples: TensorSpec\(shape=\(\), dtype=tf.int64"),
    Case("SavedModel log_likelihood: wrong shape",
         lambda c: c.loaded.log_likelihood(c.x[:, :15], 4), (TypeError, ValueError),
         r"(?s)shape=\(2?\d*, 15\).*TensorSpec\(shape=\(None, 16\)"),
    Case("SavedModel log_likelihood: empty batch", lambda c: c.loaded.log_likelihood(c.x[:0], 4),
         None, lambda out: tuple(out.shape) == (0,)),
    Case("SavedModel elbo: x of 0.5", lambda c: c.loaded.elbo(half(c.x)),
         tf.errors.InvalidArgumentError, "x must hold binary"),
    Case("SavedModel encode: NaN", lambda c: c.loaded.encode(with_nan(c.x)),
         tf.errors.InvalidArgumentError, "x must be finite"),
    Case("SavedModel decode: NaN latent",
         lambda c: c.loaded.decode(np.array([[0.0, np.nan]], np.float32)),
         tf.errors.InvalidArgumentError, "z must be finite"),
    Case("SavedModel decode: float64 latent (cast)", lambda c: c.loaded.decode(np.zeros((2, 2))),
         None, lambda out: tuple(out.shape) == (2, 16)),
    Case("SavedModel decode: latent of non-numeric strings",
         lambda c: c.loaded.decode(np.array([["a", "b"]])), TypeError,
         r"(?s)z: TensorSpec\(shape=\(None, 2\), dtype=tf.float32"),
    Case("SavedModel elbo: empty batch", lambda c: c.loaded.elbo(c.x[:0]), None,
         lambda out: tuple(out.shape) == (0,)),
    Case("SavedModel sample: -1", lambda c: c.loaded.sample(-1), tf.errors.InvalidArgumentError,
         "num must be >= 0"),
    # ------------------------------------------------------- evaluation.evaluate_model
    Case("evaluate(): images of 0.5 (live)",
         lambda c: evaluation.evaluate_model(c.model, half(c.x), num_samples=4), ValueError,
         "images must hold binary values"),
    Case("evaluate(): images of 0.5 (SavedModel)",
         lambda c: evaluation.evaluate_model(c.loaded, half(c.x), num_samples=4), ValueError,
         "images: rem_tf: x must hold binary"),
    Case("evaluate(): strings",
         lambda c: evaluation.evaluate_model(c.model, c.x.astype(str), num_samples=4),
         ValueError, "images must be an array of numbers"),
    Case("evaluate(): elbo_samples 2.5",
         lambda c: evaluation.evaluate_model(c.model, c.x, num_samples=4, elbo_samples=2.5),
         ValueError,
         "elbo_samples must be an integer", new_api=True),
    Case("evaluate(): active_units_threshold NaN",
         lambda c: evaluation.evaluate_model(c.model, c.x, num_samples=4,
                                             active_units_threshold=float("nan")), ValueError,
         "active_units_threshold must be a finite number", new_api=True),
    Case("evaluate(): progress not callable",
         lambda c: evaluation.evaluate_model(c.model, c.x, num_samples=4, progress=3), TypeError,
         "progress must be a callable", new_api=True),
    Case("export(): chunk_size 'a'",
         lambda c: export_to(c, "chunk_a", chunk_size="a"), ValueError,
         "chunk_size must be an integer", new_api=True),
    Case("export(): not a model", lambda c: export.export("m", c.tmp_dir / "not_a_model"),
         TypeError, "model must be a rem_tf GenerativeModel", new_api=True),
    Case("export(): over a directory that is not a SavedModel (never replaced)",
         lambda c: export_to(c, "user_dir", make_dir=True), ValueError,
         "which rem_tf.export did not write; nothing is replaced or deleted", new_api=True),
    Case("evaluate(): num_samples 2**31",
         lambda c: evaluation.evaluate_model(c.model, c.x, num_samples=2**31), ValueError, NUM),
]


def classify(case, ctx):
    """(outcome, detail): outcome is clear, correct, unclear or silently wrong."""
    try:
        result = case.run(ctx)
    except Exception as error:  # noqa: BLE001 (every outcome is classified)
        message = f"{type(error).__name__}: {error}"
        if case.error is not None and isinstance(error, case.error) and re.search(
                case.match, str(error)):
            return "clear", message
        return "unclear", message
    if case.error is None:
        return ("correct" if case.match(result) else "silently wrong"), repr(result)[:200]
    return "silently wrong", f"no error; returned {repr(result)[:200]}"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Context(tmp_path_factory.mktemp("inputs"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_error(case, ctx):
    outcome, detail = classify(case, ctx)
    assert outcome == ("clear" if case.error is not None else "correct"), detail


def test_log_likelihood_counts_particles_in_int64_beyond_2_31():
    # K = 2**31 − 1 cannot be run here; the particle counting `_importance_pass` uses for
    # it is checked instead (in int32, i · C overflowed and the last chunks were masked
    # out): ⌈K / C⌉ chunks, all of chunk n − 2 kept, exactly the remaining ones of chunk
    # n − 1, and log K finite.
    base = rem_tf.GenerativeModel
    for num_samples, chunk in ((2**31 - 1, 200), (2**31 + 7, 200), (2**62 + 1, 4096)):
        k, c, n = base._chunk_counts(tf.constant(num_samples), chunk)
        assert int(n) == -(-num_samples // chunk)
        assert np.all(base._chunk_mask(k, c, n - 2).numpy())
        kept = int(np.sum(base._chunk_mask(k, c, n - 1).numpy()))
        assert kept == num_samples - (int(n) - 1) * chunk and 1 <= kept <= chunk
        assert not np.any(base._chunk_mask(k, c, n).numpy())
        log_k = float(tf.math.log(tf.cast(k, tf.float32)))
        assert abs(log_k - np.log(num_samples)) < 1e-6 * np.log(num_samples)
