"""The bad-input cases' machinery: a case, its outcome, and the shared tiny models (no tests here).

A `Case` is one input to one public entry point — `model` (build_model, compile, fit, evaluate,
log_likelihood, encode, decode, sample, custom networks), `data` (rem_tf.data), `evaluation`
(rem_tf.evaluation.evaluate), `experiment` (rem_tf.experiment), `run` (run.py as a subprocess)
or `savedmodel` (the export, loaded with tf.saved_model.load) — and what must happen. The
test files `test_bad_inputs_<entry>.py` hold the cases; `classify` sorts what happened into
  CLEAR    one error of the documented type whose message names the argument / field / file
           (run.py: exit status 2 and exactly one `error:` line on stderr);
  OK       a fine (or borderline) input gave the right result, checked;
  UNCLEAR  a traceback, another exception type, a message that does not name the input, or a
           multi-line message where one line is promised;
  SILENT   no error for bad input, or a wrong / truncated result;
  LOST     files of a run or of the data cache were lost or changed.
A test passes on CLEAR or OK; conftest.py's terminal summary counts the outcomes per entry point.
"""

import contextlib
import dataclasses
import io
import re
import shutil
from typing import Any, Callable, Optional

import keras
import numpy as np
import pytest

import rem_tf
from rem_tf import evaluation, experiment, export

OUTCOMES = ("CLEAR", "OK", "UNCLEAR", "SILENT", "LOST")
PASSING = ("CLEAR", "OK")
USER_PROPERTY = "bad_input"  # a test's ("bad_input", (entry, outcome)) record for the summary
SMALL = dict(latent_dim=2, hidden_units=(8,), input_shape=(16,), num_particles=4, seed=1)


@dataclasses.dataclass(frozen=True)
class Case:
    """One input to one entry point, and what must happen.

    run(ctx) makes the call. error: the exception type(s) expected (None: the call must
    succeed and `check(result)` must hold). match: a regex the message must match (it names
    the input). one_line: the message must be one line (False where TensorFlow's own
    multi-line refusal is documented). slow: the case trains, exports or starts run.py.
    """

    entry: str
    name: str
    run: Callable[["Context"], Any]
    error: Any = None
    match: Optional[str] = None
    check: Optional[Callable[[Any], bool]] = None
    one_line: bool = True
    slow: bool = False


def bad(entry, name, run, error=ValueError, match=None, one_line=True, slow=False):
    """A bad input: `run` must raise `error` with a message matching `match`."""
    return Case(entry, name, run, error=error, match=match, one_line=one_line, slow=slow)


def good(entry, name, run, check, slow=False):
    """A fine or borderline input: `run` must succeed and `check(result)` hold."""
    return Case(entry, name, run, check=check, slow=slow)


class Outcome(Exception):
    """Raised by a case that classifies itself (run.py's exit status, lost files)."""

    def __init__(self, outcome, detail):
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


def classify(case, ctx):
    """(outcome, detail): runs `case` and sorts what happened into one of OUTCOMES."""
    try:
        result = case.run(ctx)
    except Outcome as own:
        return own.outcome, own.detail
    except Exception as err:  # noqa: BLE001 - every outcome is classified
        message = str(err)
        detail = f"{type(err).__name__}: {message}"
        if case.error is None:
            return "UNCLEAR", "a fine input was refused: " + detail
        if not isinstance(err, case.error):
            return "UNCLEAR", "wrong type: " + detail
        if case.match is not None and not re.search(case.match, message):
            return "UNCLEAR", "does not name the input: " + detail
        if case.one_line and len(message.strip().splitlines()) != 1:
            return "UNCLEAR", "multi-line: " + detail
        return "CLEAR", detail
    if case.error is not None:
        return "SILENT", f"no error; returned {short(result)}"
    try:
        ok = case.check(result)
    except Exception as err:  # noqa: BLE001
        return "SILENT", f"check failed ({type(err).__name__}: {err}) on {short(result)}"
    return ("OK" if ok else "SILENT"), short(result)


def short(value, n=200):
    return " ".join(repr(value).split())[:n]


def params(cases):
    """`cases` as pytest parameters: the case name as id (`-k 'fit and dict'`), slow marked."""
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])
            for case in cases]


def check(case, ctx, record_property):
    """The test of one case: records its outcome for the summary, fails unless CLEAR or OK."""
    with contextlib.redirect_stdout(io.StringIO()):
        outcome, detail = classify(case, ctx)
    record_property(USER_PROPERTY, (case.entry, outcome))
    if outcome not in PASSING:
        expected = "CLEAR" if case.error is not None else "OK"
        pytest.fail(f"{outcome} (expected {expected}): {detail}", pytrace=False)


# ------------------------------------------------------------------------ shared state

class Context:
    """Tiny models, data and run directories of one test file, built on first use."""

    def __init__(self, tmp):
        self.tmp = tmp
        rng = np.random.default_rng(0)
        self.x = (rng.random((40, 16)) < 0.3).astype(np.float32)  # [40, 16] binary
        self.real = rng.normal(size=(40, 16)).astype(np.float32)  # [40, 16] real
        self._cache = {}

    def once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def fresh(self, method="iwae", jit_compile=False, **kwargs):
        model = rem_tf.build_model(method, **{**SMALL, **kwargs})
        model.compile(optimizer="adam", jit_compile=jit_compile)
        return model

    @property
    def model(self):
        return self.once("model", self.fresh)

    @property
    def gaussian(self):
        return self.once("gaussian", lambda: self.fresh(likelihood="gaussian"))

    @property
    def saved_model_path(self):
        return self.once("saved_path", lambda: export.export(
            self.model, self.tmp / "saved_model", chunk_size=8, elbo_samples=4))

    @property
    def loaded(self):
        return self.once("loaded", lambda: export.load(self.saved_model_path))

    @property
    def gaussian_loaded(self):
        return self.once("gaussian_loaded", lambda: export.load(export.export(
            self.gaussian, self.tmp / "saved_gaussian", chunk_size=8, elbo_samples=4)))

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


@pytest.fixture(scope="module", name="ctx")
def ctx_fixture(tmp_path_factory):
    """The fixture `ctx`: a test file's `Context`; import it into a test module to use it."""
    keras.utils.set_random_seed(2019)
    return Context(tmp_path_factory.mktemp("bad_inputs"))


# ------------------------------------------------------------------------ small helpers

@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def evaluate(model, images, **kwargs):
    """rem_tf.evaluation.evaluate_model: the one place the cases name it."""
    return evaluation.evaluate_model(model, images, **kwargs)


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


def files(directory):
    """{relative path: bytes} of every file below `directory`."""
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def changed(directory, before, keep=lambda p: True):
    """The files of `before` (a `files` snapshot) that `keep` selects and that are gone or
    changed now."""
    after = files(directory)
    return [str(p) for p in before if keep(p) and (p not in after or after[p] != before[p])]
