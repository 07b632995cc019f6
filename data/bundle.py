"""A data set split for training: what ``load_dataset`` hands to training."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hpsearch.data.cifar import load_cifar10, read_class_names
from hpsearch.data.errors import DataError
from hpsearch.data.split import holdout_split, split_digest
from hpsearch.data.synthetic import SYNTHETIC_CLASSES, make_synthetic

DATASETS = ("cifar10", "synthetic")
# The synthetic test split: half the pool, at most 10,000 images (CIFAR-10's
# test size), from the "test" stream of the data seed, so it shares no draws
# with the training pool.
SYNTHETIC_TEST_MAX = 10_000


@dataclass
class DataBundle:
    """Training and validation tensors of one data set and split (CPU; uint8
    images (N, 3, 32, 32), int64 labels) and the test split on demand."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    val_size: int
    split_seed: int
    digest: str
    classes: list[str]
    num_classes: int = 10
    _test_loader: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, repr=False, compare=False
    )
    _test: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def load_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test split, loaded on first call (for cifar10 that is the one
        time ``test_batch`` is read) and kept."""
        if self._test is None:
            if self._test_loader is None:
                raise DataError(f"data set {self.name!r} has no test split")
            self._test = self._test_loader()
        return self._test

    def summary(self) -> dict:
        return {
            "name": self.name,
            "n_train": int(self.train_y.numel()),
            "n_val": int(self.val_y.numel()),
            "split_seed": int(self.split_seed),
            "digest": self.digest,
        }


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_size: int = 5000,
    split_seed: int = 0,
    synthetic_size: int = 20000,
    download: bool = True,
    synthetic_seed: int = 0,
) -> DataBundle:
    """Load ``name`` (one of ``DATASETS``) and hold out a stratified
    validation split of ``val_size`` images chosen by ``split_seed``.

    cifar10: the 50,000 training images of ``<data_dir>/cifar-10-batches-py``
    (downloaded if missing and ``download``); ``load_test()`` reads
    ``test_batch``. synthetic: a pool of ``synthetic_size`` images made from
    ``synthetic_seed``; its test split has ``min(synthetic_size // 2, 10000)``
    images from an independent stream of the same seed."""
    if name == "cifar10":
        root = Path(data_dir).expanduser() if data_dir is not None else None
        x, y = load_cifar10(root, "train", download=download)
        classes = read_class_names(root)

        def test_loader():
            return load_cifar10(root, "test", download=download)

    elif name == "synthetic":
        if isinstance(synthetic_size, bool) or int(synthetic_size) != synthetic_size or synthetic_size < 2:
            raise DataError(f"synthetic_size {synthetic_size!r} is too small; allowed: a whole number >= 2")
        x, y = make_synthetic(int(synthetic_size), synthetic_seed, split="train")
        classes = list(SYNTHETIC_CLASSES)
        n_test = min(int(synthetic_size) // 2, SYNTHETIC_TEST_MAX)

        def test_loader():
            return make_synthetic(n_test, synthetic_seed, split="test")

    else:
        raise DataError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")

    train_idx, val_idx = holdout_split(y, val_size, split_seed)
    # The synthetic pool is defined by its seed, so the seed is part of its name
    # in the digest; CIFAR-10 is identified by its labels.
    digest_name = name if name == "cifar10" else f"{name}:{synthetic_seed}"
    return DataBundle(
        name=name,
        train_x=x[train_idx],
        train_y=y[train_idx],
        val_x=x[val_idx],
        val_y=y[val_idx],
        val_size=int(val_size),
        split_seed=int(split_seed),
        digest=split_digest(digest_name, y, val_idx, split_seed),
        classes=classes,
        num_classes=len(classes),
        _test_loader=test_loader,
    )
