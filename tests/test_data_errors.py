"""Bad input to rem_tf.data: every case is one DataError naming the argument or file.

One row per case: the call, the files it finds, and a piece of the message (the
argument's name or the file's name) that tells the user what to fix.
"""

import io
import os
import pathlib

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from rem_tf import data
from rem_tf.data import DataError
from test_data import fresh_caches  # noqa: F401  (shared fixture)

ROW = " ".join(["1"] * 784) + "\n"
SAVE = {".npz": lambda f, arrays: np.savez(f, **arrays), ".mat": scipy.io.savemat}
GOOD_NPZ = {"train": np.zeros((4, 28, 28), np.uint8), "test": np.zeros((2, 28, 28), np.uint8)}
GOOD_MAT = {"data": np.zeros((784, 3)), "testdata": np.zeros((784, 2))}
AMAT = "binarized_mnist_train.amat"


def saved(suffix, **arrays):
    """The bytes of ``arrays`` saved as a ``suffix`` (``.npz`` / ``.mat``) file."""
    buf = io.BytesIO()
    SAVE[suffix](buf, arrays)
    return buf.getvalue()


def write(path, content):
    """Write ``content`` to ``path``: bytes, str, or a dict of arrays (``.npz`` / ``.mat``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = saved(path.suffix, **content)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


# (id, function, arguments, files {relative path: content}, text the message must name)
# "{d}" in an argument is the test's data directory.
F = dict(source="files", data_dir="{d}")
MNIST = dict(name="mnist", split="test", **F)
BMNIST = dict(name="binarized_mnist", split="train", **F)
OMNI = dict(name="omniglot", split="train", **F)
CASES = [
    # arguments
    ("name-unknown", "info", dict(name="cifar10"), {}, "cifar10"),
    ("name-none", "load", dict(name=None, split="test"), {}, "dataset name None"),
    ("name-case", "load_array", dict(name="MNIST", split="test"), {}, "'MNIST'"),
    ("name-array", "load", dict(name=np.array(["mnist"]), split="test"), {}, "dataset name"),
    ("split-unknown", "load", dict(name="mnist", split="valid"), {}, "split 'valid'"),
    ("split-missing-validation", "load", dict(name="mnist", split="validation"), {}, "split"),
    ("split-none", "load_array", dict(name="mnist", split=None), {}, "split None"),
    ("split-train+test", "load", dict(name="mnist", split="train+test"), {}, "'train+test'"),
    ("source-unknown", "load", dict(name="mnist", split="test", source="web"), {}, "source"),
    ("source-none", "load_array", dict(name="mnist", split="test", source=None), {}, "source"),
    ("binarization-unknown", "load", dict(MNIST, binarization="otsu"), {}, "binarization"),
    ("binarization-empty", "load", dict(MNIST, binarization=""), {}, "binarization"),
    ("batch_size-0", "load", dict(MNIST, batch_size=0), {}, "batch_size"),
    ("batch_size-negative", "load", dict(MNIST, batch_size=-3), {}, "batch_size"),
    ("batch_size-float", "load", dict(MNIST, batch_size=2.5), {}, "batch_size"),
    ("batch_size-integral-float", "load", dict(MNIST, batch_size=10.0), {}, "batch_size"),
    ("batch_size-bool", "load", dict(MNIST, batch_size=True), {}, "batch_size"),
    ("batch_size-str", "load", dict(MNIST, batch_size="10"), {}, "batch_size"),
    ("batch_size-nan", "load", dict(MNIST, batch_size=float("nan")), {}, "batch_size"),
    ("seed-str", "load", dict(MNIST, seed="7"), {}, "seed"),
    ("seed-none", "load", dict(MNIST, seed=None), {}, "seed"),
    ("seed-float", "load", dict(MNIST, seed=1.5), {}, "seed"),
    ("seed-bool", "load", dict(MNIST, seed=True), {}, "seed"),
    ("seed-negative", "load", dict(MNIST, seed=-1), {}, "seed"),
    ("fixed_seed-str", "load", dict(MNIST, fixed_seed="a"), {}, "fixed_seed"),
    ("fixed_seed-negative", "load", dict(MNIST, fixed_seed=-1), {}, "fixed_seed"),
    ("fixed_seed-none", "load", dict(MNIST, fixed_seed=None), {}, "fixed_seed"),
    ("shuffle-str", "load", dict(MNIST, shuffle="no"), {}, "shuffle"),
    ("drop_remainder-str", "load", dict(MNIST, drop_remainder="False"), {}, "drop_remainder"),
    # data_dir
    ("data_dir-int", "load_array", dict(name="mnist", split="test", data_dir=123), {},
     "data_dir"),
    ("data_dir-empty", "load_array", dict(name="mnist", split="test", data_dir=""), {},
     "data_dir"),
    ("data_dir-file-files", "load_array", dict(MNIST, data_dir="{d}/f"), {"f": "x"},
     "is not a directory"),
    ("data_dir-file-auto", "load", dict(name="mnist", split="test", data_dir="{d}/f"),
     {"f": "x"}, "is not a directory"),
    ("data_dir-file-offline", "load", dict(name="mnist", split="test", source="offline",
                                           data_dir="{d}/f"), {"f": "x"}, "is not a directory"),
    ("data_dir-file-tfds", "load", dict(name="mnist", split="test", source="tfds",
                                        data_dir="{d}/f"), {"f": "x"}, "is not a directory"),
    ("data_dir-inside-file", "load", dict(name="binarized_mnist", split="test",
                                          data_dir="{d}/f/sub"), {"f": "x"}, "/f is a file"),
    ("data_dir-inside-file-fetch", "fetch_offline_mnist", dict(data_dir="{d}/f/sub"),
     {"f": "x"}, "/f is a file"),
    ("offline-folder-is-file", "load", dict(name="mnist", split="test", source="offline",
                                            data_dir="{d}"), {"offline": "x"},
     "offline cache folder"),
    # .amat
    ("amat-empty", "load_array", BMNIST, {AMAT: ""}, AMAT + ": is empty"),
    ("amat-truncated", "load_array", BMNIST, {AMAT: ROW + ROW[:300] + "\n"}, AMAT),
    ("amat-783-values", "load_array", BMNIST, {AMAT: "0 " * 783 + "\n"}, AMAT),
    ("amat-nan", "load_array", BMNIST, {AMAT: "nan " + ROW[2:]}, AMAT),
    ("amat-value-2", "load_array", BMNIST, {AMAT: "2 " + ROW[2:]}, AMAT),
    ("amat-text", "load_array", BMNIST, {AMAT: "hello world\n"}, AMAT),
    ("amat-binary", "load_array", BMNIST, {AMAT: bytes(range(256)) * 4}, AMAT),
    ("amat-directory", "load_array", BMNIST, {AMAT + "/x": ""}, AMAT + ": is not a regular"),
    # chardata.mat
    ("mat-empty", "load_array", OMNI, {"chardata.mat": b""}, "chardata.mat"),
    ("mat-truncated", "load_array", OMNI,
     {"chardata.mat": saved(".mat", data=np.zeros((784, 50)))[:300]}, "chardata.mat"),
    ("mat-no-testdata", "load_array", dict(OMNI, split="test"),
     {"chardata.mat": {"data": np.zeros((784, 2))}}, "chardata.mat"),
    ("mat-wrong-shape", "load_array", OMNI,
     {"chardata.mat": dict(GOOD_MAT, data=np.zeros((28, 28)))}, "chardata.mat"),
    ("mat-nan", "load_array", OMNI,
     {"chardata.mat": dict(GOOD_MAT, data=np.full((784, 2), np.nan))}, "chardata.mat"),
    ("mat-above-1", "load_array", OMNI,
     {"chardata.mat": dict(GOOD_MAT, data=np.full((784, 2), 3.5))}, "chardata.mat"),
    ("mat-no-images", "load_array", OMNI,
     {"chardata.mat": dict(GOOD_MAT, data=np.zeros((784, 0)))}, "chardata.mat"),
    # .npz
    ("npz-empty", "load_array", MNIST, {"mnist.npz": b""}, "mnist.npz"),
    ("npz-truncated", "load_array", MNIST,
     {"mnist.npz": saved(".npz", test=np.zeros((50, 784), np.uint8))[:500]}, "mnist.npz"),
    ("npz-is-npy", "load_array", MNIST, {"mnist.npz": b"\x93NUMPY" + b"\0" * 50}, "mnist.npz"),
    ("npz-no-array", "load_array", MNIST, {"mnist.npz": {"images": GOOD_NPZ["test"]}},
     "mnist.npz"),
    ("npz-wrong-shape", "load_array", MNIST,
     {"mnist.npz": {"test": np.zeros((2, 27, 28), np.uint8)}}, "mnist.npz"),
    ("npz-0-d", "load_array", MNIST, {"mnist.npz": {"test": np.array(3)}}, "mnist.npz"),
    ("npz-no-images", "load_array", MNIST,
     {"mnist.npz": {"test": np.zeros((0, 784), np.uint8)}}, "mnist.npz"),
    ("npz-nan", "load_array", MNIST,
     {"mnist.npz": {"test": np.full((2, 784), np.nan, np.float32)}}, "mnist.npz"),
    ("npz-float-above-1", "load_array", MNIST,
     {"mnist.npz": {"test": np.full((2, 784), 2.0, np.float32)}}, "mnist.npz"),
    ("npz-int-300", "load_array", MNIST,
     {"mnist.npz": {"test": np.full((2, 784), 300, np.int32)}}, "mnist.npz"),
    ("npz-negative", "load_array", MNIST,
     {"mnist.npz": {"test": np.full((2, 784), -1, np.int8)}}, "mnist.npz"),
    ("npz-strings", "load_array", MNIST, {"mnist.npz": {"test": np.full((2, 784), "a")}},
     "mnist.npz"),
    ("npz-pickle", "load_array", MNIST,
     {"mnist.npz": {"test": np.array([None, 1], dtype=object)}}, "mnist.npz"),
    ("npz-grey-for-binarized", "load_array", dict(BMNIST),
     {"binarized_mnist.npz": {"train": np.full((2, 784), 9, np.uint8)}},
     "binarized_mnist.npz"),
    # offline cache
    ("offline-empty", "load_array", dict(MNIST, source="offline"),
     {"offline/mnist.npz": b""}, "offline/mnist.npz"),
    ("offline-foreign", "load_array", dict(MNIST, source="offline"),
     {"offline/mnist.npz": GOOD_NPZ}, "offline/mnist.npz"),
    ("offline-foreign-auto", "load", dict(name="mnist", split="train", data_dir="{d}"),
     {"offline/mnist.npz": GOOD_NPZ}, "offline/mnist.npz"),
    ("offline-foreign-fetch", "fetch_offline_mnist", dict(data_dir="{d}"),
     {"offline/mnist.npz": GOOD_NPZ}, "offline/mnist.npz"),
    ("offline-directory", "load", dict(MNIST, source="offline"),
     {"offline/mnist.npz/x": ""}, "offline/mnist.npz"),
    ("offline-omniglot", "load", dict(name="omniglot", split="test", source="offline",
                                      data_dir="{d}"), {}, "offline"),
    # missing files
    ("files-missing", "load", MNIST, {}, "mnist.npz"),
    ("files-missing-auto", "load", dict(name="omniglot", split="test", data_dir="{d}"), {},
     "chardata.mat"),
]


@pytest.fixture
def no_download(monkeypatch):
    """Nothing here may reach the network."""

    def boom(*args, **kwargs):
        raise AssertionError("no download in this test")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", boom)
    monkeypatch.setattr(data.offline, "pip_download", boom)


@pytest.mark.parametrize("fn, kwargs, files, names", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_data_error_naming_it(fn, kwargs, files, names, tmp_path,
                                               no_download):
    for rel, content in files.items():
        write(tmp_path / rel, content)
    kwargs = {k: v.format(d=tmp_path) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(DataError) as err:
        result = getattr(data, fn)(**kwargs)
        if fn == "load":
            next(iter(result))
    assert names in str(err.value)


def test_environment_data_dir_that_is_a_file_names_the_variable(tmp_path, monkeypatch,
                                                                no_download):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("REM_TF_DATA_DIR", str(tmp_path / "f"))
    with pytest.raises(DataError, match=r"\$REM_TF_DATA_DIR .*f is not a directory"):
        data.load_array("mnist", "test")


def test_valid_unusual_arguments_are_accepted(tmp_path):
    np.savez(tmp_path / "mnist.npz", **GOOD_NPZ)
    kw = dict(source="files", data_dir=pathlib.Path(tmp_path))
    ds = data.load("mnist", "test", batch_size=np.int64(2), seed=np.int64(3),
                   shuffle=np.bool_(True), fixed_seed=2**40, drop_remainder=np.bool_(False),
                   **kw)
    assert [b.shape[0] for b in ds] == [2]
    # seeds of run.py's epoch_seed go up to 2**63 - 1 (TF takes them modulo 2**31 - 1)
    assert len(list(data.load("mnist", "train", seed=2**63 - 1, **kw))) == 4


def test_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    """A permission error (simulated: the tests may run as root) names the file."""
    np.savez(tmp_path / "mnist.npz", **GOOD_NPZ)
    real_is_file = pathlib.Path.is_file

    def is_file(self):
        if self.name == "mnist.npz":
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    with pytest.raises(DataError, match=r"mnist\.npz: Permission denied.*data_dir"):
        data.load_array("mnist", "test", source="files", data_dir=tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_really_is_a_data_error(tmp_path):
    np.savez(tmp_path / "mnist.npz", **GOOD_NPZ)
    (tmp_path / "mnist.npz").chmod(0)
    with pytest.raises(DataError, match=r"mnist\.npz"):
        data.load_array("mnist", "test", source="files", data_dir=tmp_path)


def test_tfds_read_failure_is_a_data_error(tmp_path):
    def as_dataset(self, split, **kwargs):
        raise tf.errors.DataLossError(None, None, "corrupted record at 12")

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        with pytest.raises(DataError, match="corrupted record.*delete it"):
            data.load_array("mnist", "test", source="tfds", data_dir=tmp_path)
