"""The Kaggle test file in its three layouts, and the submission CSV."""

import os
import pickle

import numpy as np
import pytest
import torch

from hpsearch.data import DataError, read_kaggle_test, write_submission
from hpsearch.data.testing import write_kaggle_file


def test_three_layouts_read_identically(tmp_path):
    reads = {lay: read_kaggle_test(write_kaggle_file(tmp_path / f"{lay}.pkl", 9, lay, seed=4)) for lay in ("flat", "chw", "hwc")}
    expected = np.random.default_rng(4).integers(0, 256, size=(9, 3, 32, 32), dtype=np.uint8)
    for lay, (x, ids) in reads.items():
        assert x.shape == (9, 3, 32, 32) and x.dtype == torch.uint8, lay
        assert np.array_equal(x.numpy(), expected), lay
        assert ids == list(range(9))


def test_str_keys_and_array_ids(tmp_path):
    path = tmp_path / "k.pkl"
    path.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "ids": np.array([7, 8, 9])}))
    x, ids = read_kaggle_test(path)
    assert x.shape == (3, 3, 32, 32) and ids == [7, 8, 9]


@pytest.mark.parametrize(
    "data",
    [
        np.zeros((4, 32, 32), np.uint8),
        np.zeros((4, 3, 16, 16), np.uint8),
        np.zeros((4, 1024, 3), np.uint8),
        np.zeros((4, 3072), np.float32),
        np.zeros((4, 3, 32, 32), np.int64),
    ],
)
def test_unknown_layouts_are_refused(tmp_path, data):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({b"data": data, b"ids": list(range(4))}))
    with pytest.raises(DataError) as err:
        read_kaggle_test(path)
    msg = str(err.value)
    assert str(path) in msg and str(data.shape) in msg and "(N, 32, 32, 3)" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "obj, needle",
    [
        ({b"data": np.zeros((4, 3072), np.uint8), b"ids": [0, 1, 2]}, "3 ids for 4 images"),
        ({b"data": np.zeros((4, 3072), np.uint8)}, "ids"),
        ({b"ids": [0]}, "data"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"ids": ["a", "b"]}, "integers"),
        ([1, 2], "dict"),
    ],
)
def test_malformed_files_are_refused(tmp_path, obj, needle):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DataError, match=needle) as err:
        read_kaggle_test(path)
    assert str(path) in str(err.value)


def test_crafted_kaggle_file_does_not_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'MARKER'}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"ids": [0]}))
    with pytest.raises(DataError):
        read_kaggle_test(path)
    assert not (tmp_path / "MARKER").exists()


def test_write_submission_format_and_atomic_replace(tmp_path):
    path = tmp_path / "out" / "submission.csv"
    write_submission(path, [10, 11, 12], torch.tensor([3, 0, 9]))
    assert path.read_text() == "ID,Labels\n10,3\n11,0\n12,9\n"
    write_submission(path, np.array([5]), [np.int64(2)])  # replaces the old file
    assert path.read_text() == "ID,Labels\n5,2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.csv"]  # no temp file left
    with pytest.raises(DataError, match="2 ids but 1 labels"):
        write_submission(path, [1, 2], [0])
    assert path.read_text() == "ID,Labels\n5,2\n"
