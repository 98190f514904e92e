"""Bad inputs to the export: rem_tf.export.export / load / metadata, and the exported functions
and signatures of the SavedModel loaded with TensorFlow only. Its refusals are TensorFlow's own
(multi-line) errors, so one_line is not asked of them. The machinery: bad_inputs.py."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bad_inputs import Outcome, bad, check, finite, good, half, params, with_nan
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx
from rem_tf import export

TFI = tf.errors.InvalidArgumentError


def saved(name, run, error, match):
    """A bad input to the loaded SavedModel `s`: run(s, c)."""
    return bad("savedmodel", name, lambda c: run(c.loaded, c), error, match, one_line=False)


def saved_ok(name, run, result_check, slow=False):
    return good("savedmodel", name, lambda c: run(c.loaded, c), result_check, slow=slow)


def int64(value):
    return tf.constant(value, tf.int64)


FUNCTION_CASES = [
    saved("log_likelihood: x of 0.5", lambda s, c: s.log_likelihood(half(c.x), 4), TFI,
          "rem_tf: x must hold binary"),
    saved("log_likelihood: x with NaN", lambda s, c: s.log_likelihood(with_nan(c.x), 4), TFI,
          "rem_tf: x must hold binary"),
    saved("log_likelihood: num_samples 0", lambda s, c: s.log_likelihood(c.x, 0), TFI,
          "num_samples must be >= 1"),
    saved("log_likelihood: num_samples -7", lambda s, c: s.log_likelihood(c.x, -7), TFI,
          "num_samples must be >= 1"),
    saved("log_likelihood: num_samples 2**63", lambda s, c: s.log_likelihood(c.x, 2**63),
          TypeError, r"(?s)out-of-range integer.*num_samples: TensorSpec\(shape=\(\), "
          r"dtype=tf.int64"),
    saved("log_likelihood: num_samples 2.5", lambda s, c: s.log_likelihood(c.x, 2.5),
          (TypeError, ValueError), "num_samples"),
    saved("log_likelihood: num_samples '4'", lambda s, c: s.log_likelihood(c.x, "4"),
          (TypeError, ValueError), "num_samples"),
    saved("log_likelihood: wrong width", lambda s, c: s.log_likelihood(c.x[:, :15], 4),
          (TypeError, ValueError), r"(?s)shape=\(\d*, 15\).*TensorSpec\(shape=\(None, 16\)"),
    saved("log_likelihood: unbatched image", lambda s, c: s.log_likelihood(c.x[0], 4),
          (TypeError, ValueError), r"x|shape"),
    saved("log_likelihood: non-numeric strings",
          lambda s, c: s.log_likelihood(np.full((2, 16), "a"), 4), (TypeError, ValueError), r"x"),
    saved("log_likelihood_shifted: x of 0.5",
          lambda s, c: s.log_likelihood_shifted(half(c.x), 4), TFI, "rem_tf: x must hold binary"),
    saved("log_likelihood_shifted: num_samples 0",
          lambda s, c: s.log_likelihood_shifted(c.x, 0), TFI, "num_samples must be >= 1"),
    saved("elbo: x of 0.5", lambda s, c: s.elbo(half(c.x)), TFI, "x must hold binary"),
    saved("elbo: wrong width", lambda s, c: s.elbo(c.x[:, :15]), (TypeError, ValueError), "15"),
    saved("encode: NaN", lambda s, c: s.encode(with_nan(c.x)), TFI, "x must be finite"),
    saved("encode: Inf", lambda s, c: s.encode(with_nan(c.x, np.inf)), TFI, "x must be finite"),
    saved("decode: NaN latent", lambda s, c: s.decode(np.array([[0.0, np.nan]], np.float32)), TFI,
          "z must be finite"),
    saved("decode: Inf latent", lambda s, c: s.decode(np.array([[np.inf, 0.0]], np.float32)), TFI,
          "z must be finite"),
    saved("decode: latent width 3", lambda s, c: s.decode(np.zeros((2, 3), np.float32)),
          (TypeError, ValueError), r"z"),
    saved("decode: 1-d latent", lambda s, c: s.decode(np.zeros(2, np.float32)),
          (TypeError, ValueError), r"z"),
    saved("decode: strings", lambda s, c: s.decode(np.array([["a", "b"]])), TypeError,
          r"(?s)z: TensorSpec\(shape=\(None, 2\), dtype=tf.float32"),
    saved("sample: -1", lambda s, c: s.sample(-1), TFI, "num must be >= 0"),
    saved("sample: 2.5", lambda s, c: s.sample(2.5), (TypeError, ValueError), "num"),
    saved("sample: 2**63", lambda s, c: s.sample(2**63), (TypeError, ValueError), "num"),
    saved("signature log_likelihood: x of 0.5",
          lambda s, c: s.signatures["log_likelihood"](x=tf.constant(half(c.x)),
                                                      num_samples=int64(4)),
          TFI, "x must hold binary"),
    saved("signature log_likelihood: int32 num_samples",
          lambda s, c: s.signatures["log_likelihood"](x=tf.constant(c.x),
                                                      num_samples=tf.constant(4, tf.int32)),
          (TypeError, ValueError, TFI), "num_samples|int32|int64"),
    saved("signature decode: NaN latent",
          lambda s, c: s.signatures["decode"](z=tf.constant([[np.nan, 0.0]], tf.float32)), TFI,
          "z must be finite"),
    saved("signature sample: -3", lambda s, c: s.signatures["sample"](num=int64(-3)), TFI,
          "num must be >= 0"),
    bad("savedmodel", "gaussian log_likelihood: x with Inf",
        lambda c: c.gaussian_loaded.log_likelihood(with_nan(c.real, np.inf), 4), TFI, "finite",
        one_line=False, slow=True),
]

RESULT_CASES = [
    saved_ok("log_likelihood: empty batch -> []", lambda s, c: s.log_likelihood(c.x[:0], 4),
             lambda out: tuple(out.shape) == (0,)),
    saved_ok("log_likelihood_shifted: empty batch -> []",
             lambda s, c: s.log_likelihood_shifted(c.x[:0], 4),
             lambda out: tuple(out.shape) == (0,)),
    saved_ok("elbo: empty batch -> []", lambda s, c: s.elbo(c.x[:0]),
             lambda out: tuple(out.shape) == (0,)),
    saved_ok("encode: empty batch -> [0, 2]", lambda s, c: s.encode(c.x[:0]),
             lambda out: tuple(out["loc"].shape) == (0, 2)),
    saved_ok("decode: empty batch -> [0, 16]", lambda s, c: s.decode(np.zeros((0, 2), np.float32)),
             lambda out: tuple(out.shape) == (0, 16)),
    saved_ok("sample: 0 -> [0, 16]", lambda s, c: s.sample(0),
             lambda out: tuple(out.shape) == (0, 16)),
    saved_ok("sample: 3 binary images", lambda s, c: s.sample(3),
             lambda out: tuple(out.shape) == (3, 16) and set(np.unique(out.numpy())) <= {0.0, 1.0}),
    saved_ok("decode: float64 latent (cast)", lambda s, c: s.decode(np.zeros((2, 2))),
             lambda out: tuple(out.shape) == (2, 16)),
    saved_ok("log_likelihood: int32 0/1 x (cast)",
             lambda s, c: s.log_likelihood(c.x[:3].astype(np.int32), 4),
             lambda out: finite(out) and tuple(out.shape) == (3,)),
    saved_ok("log_likelihood: numeric strings '0'/'1' (parsed by TensorFlow)",
             lambda s, c: s.log_likelihood(c.x[:3].astype(str), 4),
             lambda out: finite(out) and tuple(out.shape) == (3,)),
    saved_ok("log_likelihood: float64 x (cast)",
             lambda s, c: s.log_likelihood(c.x[:3].astype(np.float64), 4),
             lambda out: finite(out) and tuple(out.shape) == (3,)),
    saved_ok("log_likelihood: num_samples 1", lambda s, c: s.log_likelihood(c.x[:3], 1), finite),
    saved_ok("log_likelihood: num_samples 2**32 + 5 is not wrapped to 5 (int64 input)",
             lambda s, c: s.signatures["log_likelihood"].structured_input_signature,
             lambda sig: sig[1]["num_samples"].dtype == tf.int64),
    saved_ok("log_likelihood agrees with the live model (same weights, K = 2000)",
             lambda s, c: (s.log_likelihood(c.x[:4], 2000).numpy(),
                           c.model.log_likelihood(c.x[:4], num_samples=2000)),
             lambda pair: np.allclose(pair[0], pair[1], atol=0.3), slow=True),
    saved_ok("log_likelihood: K not a multiple of the chunk size (13 of 8)",
             lambda s, c: s.log_likelihood(c.x[:2], 13).numpy(), finite),
    saved_ok("signature log_likelihood: dict output",
             lambda s, c: s.signatures["log_likelihood"](x=tf.constant(c.x[:2]),
                                                         num_samples=int64(4)),
             lambda out: tuple(out["log_likelihood"].shape) == (2,)),
    good("savedmodel", "decode: the Gaussian export gives loc and scale",
         lambda c: c.gaussian_loaded.signatures["decode"](z=tf.zeros([2, 2])),
         lambda out: {"loc", "scale"} <= set(out), slow=True),
    good("savedmodel", "rem_tf.export.metadata: method and shapes",
         lambda c: export.metadata(c.saved_model_path),
         lambda meta: meta.get("method") in ("iwae", "IWAE") or "iwae" in json.dumps(meta).lower()),
]


def export_into_user_directory(c):
    """export into a directory holding notes.txt: refused, and notes.txt kept."""
    target = c.tmp / "sm_existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    try:
        return export.export(c.model, target)
    finally:
        if (target / "notes.txt").read_text() != "mine":
            raise Outcome("LOST", "export over a user's directory removed or changed notes.txt")


def a_file(path):
    path.write_text("x")
    return path


EXPORT_CASES = [
    bad("savedmodel", "rem_tf.export.load: not a SavedModel directory",
        lambda c: export.load(c.tmp), ValueError, "SavedModel"),
    bad("savedmodel", "rem_tf.export.export: chunk_size 0",
        lambda c: export.export(c.model, c.tmp / "sm0", chunk_size=0), ValueError, "chunk_size"),
    bad("savedmodel", "rem_tf.export.export: elbo_samples -1",
        lambda c: export.export(c.model, c.tmp / "sm1", elbo_samples=-1), ValueError,
        "elbo_samples"),
    bad("savedmodel", "rem_tf.export.export: chunk_size 'a'",
        lambda c: export.export(c.model, c.tmp / "sm2", chunk_size="a"), ValueError,
        "chunk_size must be an integer"),
    bad("savedmodel", "rem_tf.export.export: chunk_size 2.5",
        lambda c: export.export(c.model, c.tmp / "sm3", chunk_size=2.5), (ValueError, TypeError),
        "chunk_size"),
    bad("savedmodel", "rem_tf.export.export: path is a file",
        lambda c: export.export(c.model, a_file(c.tmp / "afile_sm")), Exception, "afile_sm"),
    bad("savedmodel", "rem_tf.export.export: not a model",
        lambda c: export.export("model", c.tmp / "sm4"), TypeError,
        "model must be a rem_tf GenerativeModel"),
    good("savedmodel", "rem_tf.export.export into an empty directory",
         lambda c: export.export(c.model, (c.tmp / "sm_empty").mkdir() or c.tmp / "sm_empty",
                                 chunk_size=8, elbo_samples=4), export.is_saved_model, slow=True),
    bad("savedmodel", "rem_tf.export.export into a directory holding a user file keeps it",
        export_into_user_directory, ValueError,
        "which rem_tf.export did not write; nothing is replaced or deleted"),
]

CASES = [*FUNCTION_CASES, *RESULT_CASES, *EXPORT_CASES]


@pytest.mark.parametrize("case", params(CASES))
def test_savedmodel(case, ctx, record_property):
    check(case, ctx, record_property)
