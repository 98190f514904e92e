"""Tests of rem_tf.data: local files, TFDS, splits, binarizations and the pipeline.

Local-file and TFDS (``tfds.testing.mock_data``) tests run on small data written here.
The offline copy is tested in test_data_offline.py, bad input in test_data_errors.py.
"""

import pathlib

import keras
import numpy as np
import pytest
import scipy.io

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from rem_tf import data  # noqa: E402
from rem_tf.data import DataError  # noqa: E402


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def fresh_caches():
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def no_tfds_download(monkeypatch):
    """Fail loudly if anything calls TFDS's download_and_prepare."""

    def boom(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called here")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", boom)


def collect(ds):
    """All elements of a dataset (batched or not) as one array [N, 28, 28, 1]."""
    parts = list(ds.as_numpy_iterator())
    if parts and parts[0].ndim == 4:
        return np.concatenate(parts)
    return np.stack(parts)


def write_amat(path, rows):
    np.savetxt(path, rows, fmt="%d", delimiter=" ")


def asymmetric_image(r, c):
    """A 28x28 image with a single 1 at (r, c): orientation errors move it."""
    img = np.zeros((28, 28), np.uint8)
    img[r, c] = 1
    return img


def sort_rows(a):
    flat = a.reshape(len(a), -1)
    return flat[np.lexsort(flat.T[::-1])]


@pytest.fixture
def amat_dir(tmp_path):
    rng = np.random.default_rng(0)
    splits = {"train": 7, "valid": 3, "test": 5}
    content = {}
    for split, n in splits.items():
        rows = (rng.random((n, 784)) < 0.3).astype(np.uint8)
        if split == "test":
            rows[0] = asymmetric_image(0, 27).reshape(-1)  # row-major: index 27
        write_amat(tmp_path / f"binarized_mnist_{split}.amat", rows)
        content[split] = rows.reshape(-1, 28, 28, 1).astype(np.float32)
    return tmp_path, content


# ------------------------------------------------------------------------ info / args


def test_info_split_sizes():
    assert data.info("binarized_mnist") == {
        "train": 50_000, "validation": 10_000, "test": 10_000, "train+validation": 60_000,
    }
    assert data.info("mnist") == {"train": 60_000, "test": 10_000}
    assert data.info("omniglot") == {"train": 24_345, "test": 8_070}


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as err:
        data.info("fashion_mnist")
    for name in ("binarized_mnist", "mnist", "omniglot"):
        assert name in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(DataError, match="binarized_mnist"):
        data.load("cifar10", "train")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(name="mnist", split="validation"), "unknown split 'validation'.*train, test"),
        (dict(name="omniglot", split="train+validation"), "unknown split"),
        (dict(name="mnist", split="test", source="internet"), "unknown source.*offline"),
        (dict(name="mnist", split="test", binarization="otsu"), "unknown binarization.*dynamic"),
    ],
)
def test_bad_arguments_raise_before_any_io(kwargs, pattern, tmp_path):
    name, split = kwargs.pop("name"), kwargs.pop("split")
    with pytest.raises(DataError, match=pattern):
        data.load(name, split, data_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ .amat files


def test_amat_values_orientation_and_split_sizes(amat_dir):
    directory, content = amat_dir
    for split, key in (("train", "train"), ("validation", "valid"), ("test", "test")):
        got = data.load_array("binarized_mnist", split, source="files", data_dir=directory)
        assert got.dtype == np.float32 and got.shape == content[key].shape
        np.testing.assert_array_equal(got, content[key])
    test = data.load_array("binarized_mnist", "test", source="files", data_dir=directory)
    assert test[0, 0, 27, 0] == 1 and test[0, 27, 0, 0] == 0

    both = data.load_array("binarized_mnist", "train+validation", source="files",
                           data_dir=directory)
    np.testing.assert_array_equal(both, np.concatenate([content["train"], content["valid"]]))

    # the dataset: evaluation split in file order, binary already (binarization = identity)
    ds = data.load("binarized_mnist", "test", source="files", data_dir=directory)
    np.testing.assert_array_equal(collect(ds), content["test"])
    dyn = data.load("binarized_mnist", "test", source="files", data_dir=directory,
                    binarization="dynamic", batch_size=2)
    np.testing.assert_array_equal(collect(dyn), content["test"])
    # training split: shuffled by default, same images
    tv = collect(data.load("binarized_mnist", "train+validation", source="files",
                           data_dir=directory, batch_size=4))
    assert tv.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(sort_rows(tv), sort_rows(both))


def test_amat_auto_prefers_local_files(amat_dir, no_tfds_download):
    directory, content = amat_dir
    got = data.load_array("binarized_mnist", "validation", data_dir=directory)
    np.testing.assert_array_equal(got, content["valid"])


def test_amat_not_binary_names_the_file(tmp_path):
    rows = np.zeros((2, 784))
    rows[1, 5] = 0.5
    path = tmp_path / "binarized_mnist_train.amat"
    np.savetxt(path, rows, fmt="%g")
    with pytest.raises(DataError, match="binarized_mnist_train.amat.*not binary"):
        data.load("binarized_mnist", "train", source="files", data_dir=tmp_path)


def test_amat_wrong_width_names_the_file(tmp_path):
    path = tmp_path / "binarized_mnist_test.amat"
    write_amat(path, np.zeros((3, 783), np.uint8))
    with pytest.raises(DataError, match=r"binarized_mnist_test\.amat.*784"):
        data.load_array("binarized_mnist", "test", source="files", data_dir=tmp_path)


# --------------------------------------------------------------------- chardata.mat


def test_chardata_fortran_order_and_splits(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.random((6, 28, 28)).astype(np.float64)
    test = rng.random((4, 28, 28)).astype(np.float64)
    train[0] = 0.0
    train[0, 2, 5] = 1.0  # asymmetric: transposing would move it to (5, 2)
    # Burda's layout: 784 x N, each column is an image stored column-major.
    scipy.io.savemat(tmp_path / "chardata.mat", {
        "data": np.stack([im.reshape(-1, order="F") for im in train], axis=1),
        "testdata": np.stack([im.reshape(-1, order="F") for im in test], axis=1),
    })
    got = data.load_array("omniglot", "train", source="files", data_dir=tmp_path)
    assert got.shape == (6, 28, 28, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got[..., 0], train, rtol=1e-6)
    assert got[0, 2, 5, 0] == 1.0 and got[0, 5, 2, 0] == 0.0
    # the same as Burda et al.'s iwae code: data.T.reshape(-1,28,28).reshape(-1,784,'F')
    mat = scipy.io.loadmat(tmp_path / "chardata.mat")
    burda = mat["testdata"].T.reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    got_test = data.load_array("omniglot", "test", data_dir=tmp_path)  # auto -> files
    np.testing.assert_allclose(got_test.reshape(-1, 784), burda, rtol=1e-6)

    # defaults: test is fixed (same twice), train is dynamic (differs between epochs)
    ds_test = data.load("omniglot", "test", data_dir=tmp_path)
    a, b = collect(ds_test), collect(ds_test)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0}
    ds_train = data.load("omniglot", "train", data_dir=tmp_path, batch_size=3)
    assert not np.array_equal(collect(ds_train), collect(ds_train))


def test_chardata_wrong_shape_names_the_file(tmp_path):
    scipy.io.savemat(tmp_path / "chardata.mat",
                     {"data": np.zeros((783, 3)), "testdata": np.zeros((784, 2))})
    with pytest.raises(DataError, match=r"chardata\.mat.*784 x N"):
        data.load_array("omniglot", "train", source="files", data_dir=tmp_path)


def test_omniglot_auto_without_files_does_not_use_tfds(tmp_path, monkeypatch):
    monkeypatch.setattr(data.tfds, "is_prepared", lambda builder: True)
    with tfds.testing.mock_data(num_examples=3):
        with pytest.raises(DataError, match=r"chardata\.mat"):
            data.load_array("omniglot", "train", data_dir=tmp_path)


# ------------------------------------------------------------------------------ .npz


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (9, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (4, 784), dtype=np.uint8)  # flat, row-major
    np.savez(tmp_path / "mnist.npz", train=train, test=test)
    got = data.load_array("mnist", "train", source="files", data_dir=tmp_path)
    np.testing.assert_allclose(got[..., 0], train / 255.0, rtol=1e-6)
    got = data.load_array("mnist", "test", source="files", data_dir=tmp_path)
    np.testing.assert_allclose(got.reshape(4, 784), test / 255.0, rtol=1e-6)

    # Keras' mnist.npz names (x_train / x_test) and float [N,28,28,1] for omniglot
    other = tmp_path / "keras"
    other.mkdir()
    np.savez(other / "mnist.npz", x_train=train, x_test=train[:2], y_train=np.arange(9))
    np.testing.assert_allclose(
        data.load_array("mnist", "test", source="files", data_dir=other)[..., 0],
        train[:2] / 255.0, rtol=1e-6)
    floats = rng.random((5, 28, 28, 1)).astype(np.float32)
    np.savez(other / "omniglot.npz", train=floats, test=floats[:1])
    np.testing.assert_array_equal(
        data.load_array("omniglot", "train", source="files", data_dir=other), floats)


def test_npz_errors_name_the_file(tmp_path):
    np.savez(tmp_path / "binarized_mnist.npz", train=np.full((2, 28, 28), 7, np.uint8),
             test=np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(DataError, match=r"binarized_mnist\.npz.*not binary"):
        data.load_array("binarized_mnist", "train", source="files", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"binarized_mnist\.npz.*shape \(2, 28, 27\)"):
        data.load_array("binarized_mnist", "test", source="files", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"binarized_mnist\.npz.*no array 'validation'"):
        data.load_array("binarized_mnist", "validation", source="files", data_dir=tmp_path)
    np.savez(tmp_path / "mnist.npz", train=np.full((2, 784), 1.5, np.float32))
    with pytest.raises(DataError, match=r"mnist\.npz.*\[0, 1\]"):
        data.load_array("mnist", "train", source="files", data_dir=tmp_path)


def test_missing_file_names_path_and_the_three_ways(tmp_path, no_tfds_download):
    with pytest.raises(DataError) as err:
        data.load("binarized_mnist", "train", source="files", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "binarized_mnist_train.amat") in msg
    assert "source='tfds'" in msg and "local files" in msg and "offline" in msg
    # auto: no files, TFDS not prepared (and never downloaded), no offline copy
    with pytest.raises(DataError, match=r"binarized_mnist_test\.amat.*TFDS"):
        data.load("binarized_mnist", "test", data_dir=tmp_path)
    with pytest.raises(DataError, match="offline copy holds grey-level MNIST only"):
        data.load("omniglot", "test", source="offline", data_dir=tmp_path)


def test_env_var_is_the_default_data_dir(tmp_path, monkeypatch):
    images = np.arange(2 * 784).reshape(2, 28, 28) % 2
    np.savez(tmp_path / "binarized_mnist.npz", test=images.astype(np.uint8))
    monkeypatch.setenv("REM_TF_DATA_DIR", str(tmp_path))
    assert data.cache_dir() == tmp_path
    np.testing.assert_array_equal(
        data.load_array("binarized_mnist", "test", source="files")[..., 0], images)
    monkeypatch.delenv("REM_TF_DATA_DIR")
    assert data.cache_dir() == pathlib.Path("~/.cache/rem_tf").expanduser()


# ---------------------------------------------------------------------- binarization


@pytest.fixture
def grey_dir(tmp_path):
    """mnist.npz with 64 constant-intensity images (77/255 ~ 0.302) and a test ramp."""
    train = np.full((64, 28, 28), 77, np.uint8)
    test = np.zeros((12, 28, 28), np.uint8)
    test[:, :, :14] = 255  # left half always on
    test[:, :, 14:] = np.arange(12, dtype=np.uint8)[:, None, None] * 20 + 10
    test[0, 0, 14:20] = [126, 127, 128, 129, 0, 255]
    np.savez(tmp_path / "mnist.npz", train=train, test=test)
    return tmp_path


def test_dynamic_differs_between_epochs_and_is_reproducible(grey_dir):
    kw = dict(source="files", data_dir=grey_dir, batch_size=16)
    ds = data.load("mnist", "train", **kw)  # default for train: dynamic + shuffle
    first, second = collect(ds), collect(ds)
    assert first.shape == (64, 28, 28, 1) and first.dtype == np.float32
    for epoch in (first, second):
        assert set(np.unique(epoch)) == {0.0, 1.0}
        assert abs(epoch.mean() - 77 / 255) < 0.01  # Bernoulli(p) has mean p
    assert np.mean(first != second) > 0.2  # 2p(1-p) ~ 0.42 of pixels change
    # a fresh run with the same seed repeats the same sequence; another seed does not
    again = data.load("mnist", "train", **kw)
    np.testing.assert_array_equal(collect(again), first)
    np.testing.assert_array_equal(collect(again), second)
    other = data.load("mnist", "train", seed=7, **kw)
    assert not np.array_equal(collect(other), first)
    # unbatched elements are sampled too
    single = collect(data.load("mnist", "train", source="files", data_dir=grey_dir,
                               binarization="dynamic", shuffle=False))
    assert single.shape == (64, 28, 28, 1) and abs(single.mean() - 77 / 255) < 0.01


def test_autotuning_is_off_and_changes_no_batch(grey_dir):
    """tf.data's autotuning thread made freeing each epoch's iterator wait ~20-40 s
    (benchmarks/iterator_teardown.py): the pipeline turns it off, which must not change a
    value or the order (resumed runs rely on the batches bit for bit)."""
    kw = dict(source="files", data_dir=grey_dir, batch_size=16)
    for split in ("train", "test"):  # dynamic + shuffled, fixed
        dataset = data.load("mnist", split, **kw)
        assert dataset.options().autotune.enabled is False
        autotuned = tf.data.Options()
        autotuned.autotune.enabled = True
        again = data.load("mnist", split, **kw).with_options(autotuned)
        assert again.options().autotune.enabled is True
        np.testing.assert_array_equal(collect(again), collect(dataset))


def test_dynamic_differs_between_keras_fit_epochs(grey_dir):
    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.seen = tf.Variable(tf.zeros([64, 28, 28, 1]), trainable=False)

        def train_step(self, batch):
            self.seen.assign(batch)
            return {"ones": tf.reduce_sum(batch)}

    seen = []
    model = Recorder()
    model.compile()
    ds = data.load("mnist", "train", source="files", data_dir=grey_dir, batch_size=64,
                   shuffle=False)
    callback = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.seen.numpy()))
    model.fit(ds, epochs=2, verbose=0, callbacks=[callback])
    assert len(seen) == 2 and set(np.unique(seen[0])) == {0.0, 1.0}
    assert np.mean(seen[0] != seen[1]) > 0.2


def test_fixed_is_the_same_every_time(grey_dir):
    kw = dict(source="files", data_dir=grey_dir)
    ds = data.load("mnist", "test", batch_size=5, **kw)  # default for test: fixed
    a, b = collect(ds), collect(ds)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(collect(data.load("mnist", "test", seed=99, **kw)), a)
    data.clear_cache()  # a fresh process draws the same sample
    np.testing.assert_array_equal(collect(data.load("mnist", "test", **kw)), a)
    grey = data.load_array("mnist", "test", **kw)
    assert set(np.unique(a)) == {0.0, 1.0}
    assert np.all(a[grey == 1.0] == 1) and np.all(a[grey == 0.0] == 0)
    assert abs(a[:, :, 14:].mean() - grey[:, :, 14:].mean()) < 0.01
    # fixed on a shuffled training split: the same images, new order each epoch
    train = data.load("mnist", "train", binarization="fixed", batch_size=8, **kw)
    e1, e2 = collect(train), collect(train)
    np.testing.assert_array_equal(sort_rows(e1), sort_rows(e2))
    # another fixed_seed gives another (fixed) sample
    c = collect(data.load("mnist", "test", fixed_seed=1, **kw))
    assert not np.array_equal(a, c)


def test_threshold_is_greater_than_half(grey_dir):
    kw = dict(source="files", data_dir=grey_dir)
    got = collect(data.load("mnist", "test", binarization="threshold", batch_size=5, **kw))
    grey = data.load_array("mnist", "test", **kw)
    np.testing.assert_array_equal(got, (grey > 0.5).astype(np.float32))
    np.testing.assert_array_equal(got[0, 0, 14:20, 0], [0, 0, 1, 1, 0, 1])
    # exactly 0.5 is not above the threshold
    floats = np.full((2, 28, 28), 0.5, np.float32)
    floats[1] = np.linspace(0.0, 1.0, 784, dtype=np.float32).reshape(28, 28)
    np.savez(grey_dir / "omniglot.npz", train=floats, test=floats)
    got = collect(data.load("omniglot", "test", binarization="threshold", **kw))
    np.testing.assert_array_equal(got[..., 0], (floats > 0.5).astype(np.float32))
    assert got[0].sum() == 0


def test_batching_and_shuffle_defaults(grey_dir):
    kw = dict(source="files", data_dir=grey_dir, binarization="threshold")
    sizes = [b.shape[0] for b in data.load("mnist", "test", batch_size=5, **kw)]
    assert sizes == [5, 5, 2]
    sizes = [b.shape[0]
             for b in data.load("mnist", "test", batch_size=5, drop_remainder=True, **kw)]
    assert sizes == [5, 5]
    grey = data.load_array("mnist", "test", source="files", data_dir=grey_dir)
    # evaluation split: not shuffled, file order
    np.testing.assert_array_equal(collect(data.load("mnist", "test", **kw)), grey > 0.5)
    # with shuffle=True the order changes between epochs, the images do not
    ds = data.load("mnist", "test", shuffle=True, **kw)
    e1, e2 = collect(ds), collect(ds)
    assert not np.array_equal(e1, e2)
    np.testing.assert_array_equal(sort_rows(e1), sort_rows(e2))


# ------------------------------------------------------------------------------ TFDS


def test_tfds_source_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("mnist", "train", source="tfds", data_dir=tmp_path, batch_size=5)
        got = collect(ds)
        assert got.shape == (12, 28, 28, 1) and got.dtype == np.float32
        assert set(np.unique(got)) <= {0.0, 1.0}
        grey = data.load_array("mnist", "test", source="tfds", data_dir=tmp_path)
        expected = np.stack([ex["image"] for ex in tfds.as_numpy(
            tfds.load("mnist", split="test", data_dir=tmp_path))]) / 255.0
        np.testing.assert_allclose(grey, expected, rtol=1e-6)

    with tfds.testing.mock_data(num_examples=7, max_value=1):
        got = data.load_array("binarized_mnist", "validation", source="tfds", data_dir=tmp_path)
        expected = np.stack([ex["image"] for ex in tfds.as_numpy(
            tfds.load("binarized_mnist", split="validation", data_dir=tmp_path))])
        np.testing.assert_array_equal(got, expected.astype(np.float32))
        both = data.load("binarized_mnist", "train+validation", source="tfds",
                         data_dir=tmp_path, batch_size=4)
        assert sum(b.shape[0] for b in both) == 14

    data.clear_cache()
    with tfds.testing.mock_data(num_examples=3, max_value=255):
        with pytest.raises(DataError, match="not binary"):
            data.load_array("binarized_mnist", "test", source="tfds", data_dir=tmp_path)


def test_tfds_omniglot_is_inverted_and_resized(tmp_path):
    image = np.full((105, 105, 3), 255, np.uint8)  # white page
    image[:52, :52] = 0  # a black stroke block in the top-left quarter

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensors({"image": image}).repeat(4)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        got = data.load_array("omniglot", "train", source="tfds", data_dir=tmp_path)
        binary = collect(data.load("omniglot", "test", source="tfds", data_dir=tmp_path))
    assert got.shape == (4, 28, 28, 1) and got.dtype == np.float32
    assert np.all(got[:, :13, :13] > 0.99) and np.all(got[:, 15:, :] < 0.01)
    assert binary.shape == (4, 28, 28, 1) and set(np.unique(binary)) == {0.0, 1.0}


def test_tfds_download_failure_is_a_data_error(tmp_path, monkeypatch):
    def fail(self, *args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(DataError, match="no route to host.*local files"):
        data.load("binarized_mnist", "test", source="tfds", data_dir=tmp_path)


def test_auto_order_files_then_prepared_tfds(tmp_path, monkeypatch, no_tfds_download):
    monkeypatch.setattr(data.tfds, "is_prepared", lambda builder: True)
    with tfds.testing.mock_data(num_examples=5):
        got = data.load_array("mnist", "test", data_dir=tmp_path)  # no files: TFDS
        assert got.shape == (5, 28, 28, 1)
        np.savez(tmp_path / "mnist.npz", test=np.zeros((3, 28, 28), np.uint8))
        got = data.load_array("mnist", "test", data_dir=tmp_path)  # files win
        assert got.shape == (3, 28, 28, 1)
