"""CIFAR-10 python batches: real files written in tmp_path, no mocks."""

import pickle

import numpy as np
import pytest
import torch

from hpsearch.data import CLASSES, DataError, default_data_dir, load_cifar10, load_dataset
from hpsearch.data.testing import write_cifar_batches

FOLDER = "cifar-10-batches-py"


def _raw(path):
    with open(path, "rb") as f:  # our own fixture file: a plain pickle.load is fine here
        return pickle.load(f, encoding="bytes")


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_train_and_test_round_trip_exactly_in_chw_order(tmp_path):
    root = write_cifar_batches(tmp_path, n_per_batch=20, n_test=13, seed=1)
    x, y = load_cifar10(root, "train", download=False)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (100,) and y.dtype == torch.int64
    batches = [_raw(root / FOLDER / f"data_batch_{i}") for i in range(1, 6)]
    flat = np.concatenate([b[b"data"] for b in batches])
    assert np.array_equal(x.reshape(100, 3072).numpy(), flat)
    assert y.tolist() == sum((b[b"labels"] for b in batches), [])
    # CHW: the first 1024 values of a row are the red plane, row-major.
    assert np.array_equal(x[17, 0].numpy(), flat[17, :1024].reshape(32, 32))
    assert np.array_equal(x[17, 2, 5].numpy(), flat[17, 2048 + 5 * 32 : 2048 + 6 * 32])
    xt, yt = load_cifar10(root, "test", download=False)
    raw_test = _raw(root / FOLDER / "test_batch")
    assert xt.shape == (13, 3, 32, 32) and np.array_equal(xt.reshape(13, 3072).numpy(), raw_test[b"data"])
    assert yt.tolist() == raw_test[b"labels"]


def test_batches_of_different_sizes(tmp_path):
    root = write_cifar_batches(tmp_path, n_per_batch=7)
    rng = np.random.default_rng(0)
    for i, n in ((2, 1), (4, 13)):
        _dump(root / FOLDER / f"data_batch_{i}", {
            b"batch_label": b"odd", b"labels": list(rng.integers(0, 10, n)),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f"] * n,
        })
    x, y = load_cifar10(root, "train", download=False)
    assert x.shape[0] == y.shape[0] == 7 + 1 + 7 + 13 + 7


def test_train_split_never_opens_test_batch(tmp_path):
    root = write_cifar_batches(tmp_path, n_per_batch=20, with_test=False)
    x, _ = load_cifar10(root, "train", download=False)
    assert x.shape[0] == 100
    # A test_batch that would fail to load must not matter until asked for.
    (root / FOLDER / "test_batch").write_bytes(b"not a pickle")
    bundle = load_dataset("cifar10", data_dir=root, val_size=20, download=False)
    assert len(bundle.train_y) == 80 and len(bundle.val_y) == 20
    with pytest.raises(DataError, match="test_batch"):
        bundle.load_test()


def test_missing_files_without_download_say_where_they_go(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "nowhere", "train", download=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / FOLDER) in msg and "data_batch_1" in msg and "data_batch_5" in msg
    assert "place" in msg and "\n" not in msg
    root = write_cifar_batches(tmp_path / "partial", with_test=False)
    with pytest.raises(DataError, match=r"test files missing in .*: test_batch"):
        load_cifar10(root, "test", download=False)


def test_failed_download_is_one_line_with_the_directory(tmp_path, offline):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "offline", "train", download=True)
    msg = str(err.value)
    assert "download" in msg and str(tmp_path / "offline" / FOLDER) in msg and "data_batch_1" in msg
    assert "place" in msg and "\n" not in msg


def test_truncated_and_corrupt_batches(tmp_path):
    root = write_cifar_batches(tmp_path)
    path = root / FOLDER / "data_batch_3"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - 100])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(root, "train", download=False)
    path.write_bytes(b"\x00" * 50)
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(root, "train", download=False)


def test_crafted_batch_does_not_run_code(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'MARKER'}",))

    root = write_cifar_batches(tmp_path / "d")
    _dump(root / FOLDER / "data_batch_1", {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar10(root, "train", download=False)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    "batch, needle",
    [
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, r"shape \(4, 3000\).*\(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "float32"),
        ({b"data": np.zeros((4, 3, 32, 32), np.uint8), b"labels": [0] * 4}, r"shape \(4, 3, 32, 32\)"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "3 labels for 4 images"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"0\.\.9"),
        ({b"data": np.zeros((4, 3072), np.uint8)}, "labels"),
        ([1, 2, 3], "dict"),
    ],
)
def test_malformed_batches_are_refused_naming_the_file(tmp_path, batch, needle):
    root = write_cifar_batches(tmp_path)
    _dump(root / FOLDER / "data_batch_2", batch)
    with pytest.raises(DataError, match=needle) as err:
        load_cifar10(root, "train", download=False)
    assert str(root / FOLDER / "data_batch_2") in str(err.value) and "\n" not in str(err.value)


def test_str_keys_are_accepted_too(tmp_path):
    root = write_cifar_batches(tmp_path, n_per_batch=5)
    _dump(root / FOLDER / "data_batch_1", {"data": np.ones((5, 3072), np.uint8), "labels": [1] * 5})
    x, y = load_cifar10(root, "train", download=False)
    assert x.shape[0] == 25 and int(x[0].sum()) == 3072 and y[:5].tolist() == [1] * 5


def test_unknown_split_and_default_dir(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="allowed: train, test"):
        load_cifar10(tmp_path, "val")
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == tmp_path / "here"
    monkeypatch.delenv("HPSEARCH_DATA_DIR")
    assert default_data_dir().parts[-3:] == (".cache", "hpsearch", "data")


def test_cifar10_bundle(tmp_path):
    root = write_cifar_batches(tmp_path, n_per_batch=40, n_test=20, seed=3)
    b = load_dataset("cifar10", data_dir=root, val_size=50, split_seed=0, download=False)
    assert b.name == "cifar10" and b.classes == CLASSES and b.num_classes == 10
    assert b.train_x.shape == (150, 3, 32, 32) and b.val_x.shape == (50, 3, 32, 32)
    assert b.train_x.dtype == torch.uint8 and b.val_y.dtype == torch.int64
    assert torch.bincount(b.val_y, minlength=10).tolist() == [5] * 10  # stratified: 20 of each class in 200
    x, y = load_cifar10(root, "train", download=False)
    pool = {bytes(img.numpy().tobytes()) for img in x}
    assert all(bytes(img.numpy().tobytes()) in pool for img in b.val_x)
    again = load_dataset("cifar10", data_dir=root, val_size=50, split_seed=0, download=False)
    assert again.digest == b.digest and torch.equal(again.val_x, b.val_x)
    assert load_dataset("cifar10", data_dir=root, val_size=50, split_seed=1, download=False).digest != b.digest
    assert b.summary() == {"name": "cifar10", "n_train": 150, "n_val": 50, "split_seed": 0, "digest": b.digest}
    xt, yt = b.load_test()
    assert xt.shape == (20, 3, 32, 32) and yt.shape == (20,)
    with pytest.raises(DataError, match="allowed: cifar10, synthetic"):
        load_dataset("mnist")
