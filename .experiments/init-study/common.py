"""Shared set-up of the issue-9 measurements: the MNIST fixture and a config."""
from __future__ import annotations

import os
from pathlib import Path

from hpsearch.data import load_dataset
from hpsearch.data.real_fixture import find_mnist_wheel, write_cifar_fixture
from hpsearch.search.train.command import resolve_train_config

FIXTURE = Path(os.environ.get("ISSUE9_FIXTURE", "/tmp/i9/fx"))


def fixture_dir() -> Path:
    if not (FIXTURE / "cifar-10-batches-py" / "test_batch").is_file():
        assert find_mnist_wheel() is not None, "set HPSEARCH_MNIST_WHEEL"
        write_cifar_fixture(FIXTURE, n_train=10_000, n_test=2_000, seed=0)
    return FIXTURE


def bundle(val_size: int):
    return load_dataset("cifar10", data_dir=fixture_dir(), val_size=val_size, split_seed=0, download=False)


def config(**options):
    """What `hpsearch train --epochs E ...` resolves to (milestones scaled), on cpu."""
    return resolve_train_config({"dataset": "cifar10", "device": "cpu", **options}, [])
