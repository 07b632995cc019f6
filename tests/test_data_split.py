"""The stratified hold-out and its digest."""

import pytest
import torch

from hpsearch.data import DataError, holdout_split, split_digest


def _labels(counts, seed=0):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def test_stratified_sorted_disjoint_and_complete():
    y = _labels([500, 300, 200, 103, 97, 50, 50, 40, 30, 1])
    n, val_size = len(y), 137
    train_idx, val_idx = holdout_split(y, val_size, seed=3)
    assert len(val_idx) == val_size and len(train_idx) == n - val_size
    assert torch.equal(val_idx, val_idx.sort().values) and torch.equal(train_idx, train_idx.sort().values)
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(n))
    assert train_idx.dtype == val_idx.dtype == torch.int64
    counts = torch.bincount(y, minlength=10)
    held = torch.bincount(y[val_idx], minlength=10)
    exact = counts.double() * val_size / n
    assert held.sum() == val_size
    assert torch.all((held - exact).abs() < 1), (held, exact)


def test_largest_remainder_rounding():
    # exact shares 3.5 and 1.5: the tie goes to the lower class index
    _, val_idx = holdout_split(_labels([7, 3]), 5, seed=0)
    assert torch.bincount(_labels([7, 3])[val_idx]).tolist() == [4, 1]
    y = _labels([50, 30, 20])
    _, val_idx = holdout_split(y, 10, seed=0)
    assert torch.bincount(y[val_idx]).tolist() == [5, 3, 2]


def test_deterministic_in_the_seed_and_independent_of_global_rng():
    y = _labels([100] * 10)
    torch.manual_seed(1)
    a = holdout_split(y, 100, seed=5)
    torch.manual_seed(2)
    torch.rand(10)
    b = holdout_split(y, 100, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = holdout_split(y, 100, seed=6)
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("val_size", [0, -5, 100, 101])
def test_impossible_sizes_are_refused(val_size):
    y = _labels([10] * 10)
    with pytest.raises(DataError) as err:
        holdout_split(y, val_size, seed=0)
    msg = str(err.value)
    assert "allowed 1..99" in msg and "\n" not in msg
    if val_size >= 100:
        assert f"hold-out of {val_size} images is as large as the training set (100)" in msg


def test_digest_identifies_data_and_split():
    y = _labels([20] * 10)
    _, val = holdout_split(y, 30, seed=0)
    d = split_digest("cifar10", y, val, 0)
    assert len(d) == 16 and int(d, 16) >= 0
    assert d == split_digest("cifar10", y.clone(), val.clone(), 0)
    _, val1 = holdout_split(y, 30, seed=1)
    y2 = y.clone()
    y2[0] = (y2[0] + 1) % 10
    others = {
        split_digest("synthetic", y, val, 0),
        split_digest("cifar10", y, val1, 1),
        split_digest("cifar10", y, val, 1),
        split_digest("cifar10", y2, val, 0),
    }
    assert d not in others and len(others) == 4
