"""The synthetic data set: shape, determinism, disjoint test split, speed."""


import pytest
import torch

from hpsearch.data import SYNTHETIC_CLASSES, DataError, load_dataset, make_synthetic


def test_shapes_dtypes_and_balanced_labels():
    x, y = make_synthetic(1000, seed=0)
    assert x.shape == (1000, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (1000,) and y.dtype == torch.int64
    assert torch.bincount(y, minlength=10).tolist() == [100] * 10
    assert x.float().std() > 20  # not blank: motifs, clutter and noise
    assert make_synthetic(0, seed=0)[0].shape == (0, 3, 32, 32)


def test_deterministic_per_seed_and_different_across_seeds(monkeypatch):
    a, ya = make_synthetic(300, seed=5)
    b, yb = make_synthetic(300, seed=5)
    c, _ = make_synthetic(300, seed=6)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)
    # Images are rendered in chunks; the chunk size must not change them.
    monkeypatch.setattr("data.synthetic._CHUNK", 7)
    assert torch.equal(make_synthetic(300, seed=5)[0], a)


def test_classes_differ_on_average():
    x, y = make_synthetic(2000, seed=1)
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)])
    gaps = torch.cdist(means.flatten(1), means.flatten(1))
    assert gaps[~torch.eye(10, dtype=torch.bool)].min() > 0


def test_bundle_sizes_and_test_split_disjoint_from_pool():
    b = load_dataset("synthetic", synthetic_size=600, val_size=100, split_seed=0)
    assert b.name == "synthetic" and b.classes == SYNTHETIC_CLASSES and b.num_classes == 10
    assert b.train_x.shape == (500, 3, 32, 32) and b.val_x.shape == (100, 3, 32, 32)
    assert torch.bincount(b.val_y, minlength=10).tolist() == [10] * 10
    xt, yt = b.load_test()
    assert xt.shape == (300, 3, 32, 32) and yt.dtype == torch.int64
    assert b.load_test()[0] is xt  # loaded once
    pool = {img.numpy().tobytes() for img in torch.cat([b.train_x, b.val_x])}
    assert not any(img.numpy().tobytes() in pool for img in xt)
    assert b.summary() == {"name": "synthetic", "n_train": 500, "n_val": 100, "split_seed": 0, "digest": b.digest}
    again = load_dataset("synthetic", synthetic_size=600, val_size=100, split_seed=0)
    assert again.digest == b.digest and torch.equal(again.train_x, b.train_x)
    assert load_dataset("synthetic", synthetic_size=600, val_size=100, split_seed=1).digest != b.digest
    assert load_dataset("synthetic", synthetic_size=600, val_size=100, synthetic_seed=1).digest != b.digest


def test_default_test_split_is_cifar_sized():
    b = load_dataset("synthetic", synthetic_size=20000, val_size=5000)
    assert len(b.train_y) == 15000 and len(b.val_y) == 5000
    assert len(b.load_test()[1]) == 10000


@pytest.mark.parametrize("kw", [dict(val_size=600), dict(synthetic_size=1), dict(val_size=0)])
def test_bad_sizes_are_data_errors(kw):
    with pytest.raises(DataError):
        load_dataset("synthetic", **{"synthetic_size": 600, "val_size": 100, **kw})
