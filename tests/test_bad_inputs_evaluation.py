"""Bad inputs to rem_tf.evaluation.evaluate, with a live model and with a SavedModel, and its
format_table. The machinery: bad_inputs.py."""

import numpy as np
import pytest

from bad_inputs import bad, check, evaluate, good, half, params, with_nan
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx
from rem_tf import evaluation

_DEFAULT = object()
NUM = "num_samples"


def ev(c, model=None, images=_DEFAULT, **kwargs):
    """evaluate on 8 images, K = 4 (both estimators), chunks of 4: `kwargs` override."""
    return evaluate(c.model if model is None else model, c.x[:8] if images is _DEFAULT else images,
                    **{"num_samples": 4, "elbo_samples": 4, "chunk_size": 4, **kwargs})


def argument_cases():
    for label, kwargs, error, match in [
        ("num_samples 0", dict(num_samples=0), (ValueError, TypeError), NUM),
        ("num_samples -1", dict(num_samples=-1), (ValueError, TypeError), NUM),
        ("num_samples 2.5", dict(num_samples=2.5), (ValueError, TypeError), NUM),
        ("num_samples '4'", dict(num_samples="4"), (ValueError, TypeError), NUM),
        ("num_samples 2**31", dict(num_samples=2**31), ValueError, NUM),
        ("chunk_size 0", dict(chunk_size=0), (ValueError, TypeError), "chunk_size"),
        ("batch_size 0", dict(batch_size=0), (ValueError, TypeError), "batch_size"),
        ("batch_size -5", dict(batch_size=-5), (ValueError, TypeError), "batch_size"),
        ("elbo_samples 0", dict(elbo_samples=0), (ValueError, TypeError), "elbo_samples"),
        ("elbo_samples -3", dict(elbo_samples=-3), (ValueError, TypeError), "elbo_samples"),
        ("elbo_samples 2.5", dict(elbo_samples=2.5), ValueError,
         "elbo_samples must be an integer"),
        ("elbo_samples '4'", dict(elbo_samples="4"), (ValueError, TypeError), "elbo_samples"),
        ("active_units_threshold -1", dict(active_units_threshold=-1.0), (ValueError, TypeError),
         "active_units_threshold"),
        ("active_units_threshold nan", dict(active_units_threshold=float("nan")), ValueError,
         "active_units_threshold must be a finite number"),
        ("active_units_threshold 'a'", dict(active_units_threshold="a"), (ValueError, TypeError),
         "active_units_threshold"),
        ("proposal 'prior'", dict(proposal="prior"), (ValueError, TypeError), "proposal"),
        ("progress not callable", dict(progress=3), TypeError, "progress must be a callable"),
    ]:
        yield bad("evaluation", f"evaluate: {label}", lambda c, kw=kwargs: ev(c, **kw), error,
                  match)


def image_cases():
    for label, make, match in [
        ("images of 0.5 (live)", lambda c: half(c.x), "images must hold binary values"),
        ("images with NaN (live)", lambda c: with_nan(c.x), "images"),
        ("strings", lambda c: c.x.astype(str), "images must be an array of numbers"),
        ("wrong width", lambda c: c.x[:, :15], r"15"),
        ("one unbatched image", lambda c: c.x[0], "images|batch"),
        ("empty", lambda c: c.x[:0], "images|empty"),
        ("None", lambda c: None, "images"),
    ]:
        yield bad("evaluation", f"evaluate: {label}", lambda c, m=make: ev(c, images=m(c)),
                  match=match)
    for label, make, match in [
        ("images of 0.5 (SavedModel)", lambda c: half(c.x), "images: rem_tf: x must hold binary"),
        ("images with NaN (SavedModel)", lambda c: with_nan(c.x), "images"),
        ("wrong width (SavedModel)", lambda c: c.x[:, :15], "15"),
        ("empty (SavedModel)", lambda c: c.x[:0], "images|empty"),
    ]:
        yield bad("evaluation", f"evaluate: {label}",
                  lambda c, m=make: ev(c, model=c.loaded, images=m(c)), match=match)
    yield bad("evaluation", "evaluate: not a model", lambda c: ev(c, model="saved_model/"),
              TypeError, "GenerativeModel|SavedModel")
    yield bad("evaluation", "evaluate: gaussian model, x with Inf",
              lambda c: ev(c, model=c.gaussian, images=with_nan(c.real, np.inf)), match="images")


def result_cases():  # evaluate traces its estimators anew for each: all but the first slow
    yield good("evaluation", "evaluate: 8 images, batch 3 -> 8 examples, finite NLL, KL >= 0",
               lambda c: ev(c, batch_size=3),
               lambda r: r["num_examples"] == 8 and np.isfinite(r["nll"])
               and r["kl_to_prior"] >= 0 and r["nll"] == -r["log_likelihood"])
    yield good("evaluation", "evaluate: per_example gives N values averaging to log_likelihood",
               lambda c: ev(c, per_example=True),
               lambda r: len(r["per_example_log_likelihood"]) == 8 and abs(
                   np.mean(r["per_example_log_likelihood"]) - r["log_likelihood"]) < 1e-4,
               slow=True)
    yield good("evaluation", "evaluate: SavedModel, flattened images, shifted proposal",
               lambda c: ev(c, model=c.loaded, proposal="shifted"),
               lambda r: r["num_examples"] == 8 and np.isfinite(r["nll"]), slow=True)
    yield good("evaluation", "evaluate: a single image", lambda c: ev(c, images=c.x[:1]),
               lambda r: r["num_examples"] == 1, slow=True)
    yield good("evaluation", "evaluate: elbo_samples not a multiple of chunk_size",
               lambda c: ev(c, elbo_samples=7, chunk_size=3), lambda r: np.isfinite(r["elbo"]),
               slow=True)
    yield good("evaluation", "evaluate: bool images", lambda c: ev(c, images=c.x[:8].astype(bool)),
               lambda r: np.isfinite(r["nll"]), slow=True)
    yield good("evaluation", "format_table of the result has the NLL row",
               lambda c: evaluation.format_table(ev(c)), lambda text: "NLL (nats)" in text,
               slow=True)


CASES = [*argument_cases(), *image_cases(), *result_cases()]


@pytest.mark.parametrize("case", params(CASES))
def test_evaluation(case, ctx, record_property):
    check(case, ctx, record_property)
