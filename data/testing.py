"""Writers of small, real data files for tests (no mocks): CIFAR-10 python
batches in the exact format of the originals and Kaggle-style test files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from hpsearch.data.cifar import CIFAR10_FOLDER, CLASSES, META_FILE, TEST_FILES, TRAIN_FILES


def _batch(rng: np.random.Generator, n: int, label: str, first_index: int) -> dict:
    # Labels cycle through the classes from a random offset, so every batch
    # of >= 10 images holds every class (the hold-out is stratified).
    offset = int(rng.integers(10))
    return {
        b"batch_label": label.encode(),
        b"labels": [int((offset + i) % 10) for i in range(n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{first_index + i:05d}.png".encode() for i in range(n)],
    }


def write_cifar_batches(
    root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0, with_test: bool = True
) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``data_batch_1..5`` of
    ``n_per_batch`` random images each, ``test_batch`` of ``n_test`` (unless
    ``with_test`` is false) and ``batches.meta``, pickled with protocol 2
    like the originals. Returns ``root`` (the data_dir to pass to loaders)."""
    root = Path(root)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(TRAIN_FILES):
        _dump(folder / name, _batch(rng, n_per_batch, f"training batch {i + 1} of 5", i * n_per_batch))
    if with_test:
        _dump(folder / TEST_FILES[0], _batch(rng, n_test, "testing batch 1 of 1", 0))
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
    }
    _dump(folder / META_FILE, meta)
    return root


def write_kaggle_file(path: Path, n: int, layout: str = "flat", seed: int = 0) -> Path:
    """A Kaggle-style test pickle: ``{b'data': images, b'ids': [0..n-1]}``
    with the images in ``layout`` "flat" (N, 3072), "chw" (N, 3, 32, 32) or
    "hwc" (N, 32, 32, 3). The same seed gives the same images whatever the
    layout, so the three files must read back identically."""
    chw = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    if layout == "flat":
        data = chw.reshape(n, 3072)
    elif layout == "chw":
        data = chw
    elif layout == "hwc":
        data = np.ascontiguousarray(chw.transpose(0, 2, 3, 1))
    else:
        raise ValueError(f"unknown layout {layout!r}; allowed: flat, chw, hwc")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _dump(path, {b"data": data, b"ids": list(range(n))})
    return path


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
