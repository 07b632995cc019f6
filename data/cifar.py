"""CIFAR-10 from the standard python batches, read into uint8 tensors.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html, "python version"):
``cifar-10-batches-py/data_batch_1..5`` (training) and ``test_batch``, each a
pickled dict with ``b'data'``, a uint8 array (N, 3072) holding every image as
1024 red, then 1024 green, then 1024 blue values in row-major order (so a
reshape to (N, 3, 32, 32) is channel-first), and ``b'labels'``, N ints in
0..9; ``batches.meta`` holds ``b'label_names'``. The originals hold 10,000
images per batch; nothing here relies on that, so a user's own subset or a
test fixture loads too.

The batches are read here rather than through ``torchvision.datasets.CIFAR10``,
whose integrity check rejects any copy whose md5 differs from the originals;
torchvision is used only to download the archive when files are missing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch

from hpsearch.data.errors import DataError, integer_per_image
from hpsearch.data.safe_pickle import safe_load_pickle

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # from the CIFAR-10 page / torchvision
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SHAPE = (3, 32, 32)
_DOWNLOAD_TIMEOUT_S = 60  # per socket operation: a dead network fails instead of hanging


def default_data_dir() -> Path:
    """``$HPSEARCH_DATA_DIR`` if set, else ``~/.cache/hpsearch/data``."""
    env = os.environ.get("HPSEARCH_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hpsearch" / "data"


def _files_for(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_FILES
    if split == "test":
        return TEST_FILES
    raise DataError(f"unknown CIFAR-10 split {split!r}; allowed: train, test")


def load_cifar10(data_dir: str | os.PathLike | None, split: str, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, (N, 3, 32, 32)) and labels (int64, (N,)) of one split.

    Reads only the files of that split: loading ``train`` never opens
    ``test_batch``. Missing files are downloaded when ``download`` is true;
    anything missing, unreadable or malformed is a one-line ``DataError``."""
    files = _files_for(split)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = root / CIFAR10_FOLDER
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        reason = _download(root) if download else "download is off"
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            raise DataError(
                f"CIFAR-10 {split} files missing in {folder}: {', '.join(missing)} ({reason}); "
                f"place the python batches there (extract {CIFAR10_URL}) or point --data-dir / HPSEARCH_DATA_DIR at them"
            )
    xs, ys = [], []
    for name in files:
        x, y = read_batch(folder / name)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs) if len(xs) > 1 else xs[0].copy()  # own, writable memory
    y = np.concatenate(ys)
    return torch.from_numpy(x.reshape(-1, *IMAGE_SHAPE)), torch.from_numpy(y)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: data (N, 3072) uint8 and labels (N,) int64, validated."""
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}; expected a CIFAR-10 batch dict with b'data' and b'labels'")
    data = _get(batch, "data", path)
    labels = _get(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' is a {found}; expected a uint8 array of shape (N, 3072) (CHW-flat 3x32x32)")
    labels_arr = integer_per_image(labels, path, "labels", data.shape[0], "labels")
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() > 9):
        raise DataError(
            f"{path}: labels range {int(labels_arr.min())}..{int(labels_arr.max())}; CIFAR-10 labels must be in 0..9"
        )
    return data, labels_arr.astype(np.int64)


def read_class_names(data_dir: str | os.PathLike | None) -> list[str]:
    """Class names from ``batches.meta`` when it is there, else the standard ten."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path = root / CIFAR10_FOLDER / META_FILE
    if not path.is_file():
        return list(CLASSES)
    meta = safe_load_pickle(path)
    names = _get(meta, "label_names", path) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(CLASSES):
        raise DataError(f"{path}: expected b'label_names', a list of {len(CLASSES)} class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _get(d: dict, key: str, path: Path):
    """``d[b'key']`` (Python 2 pickles read with encoding='bytes') or ``d['key']``."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path} has no {key!r} entry (keys: {sorted(map(repr, d))[:6]}); expected a CIFAR-10 python batch")


def _download(root: Path) -> str:
    """Fetch and extract the archive into ``root``; returns why it failed
    (a short reason for the error message) if the files are still missing."""
    from torchvision.datasets.utils import download_and_extract_archive

    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(CIFAR10_URL, download_root=str(root), md5=CIFAR10_MD5)
        return f"the archive downloaded from {CIFAR10_URL} did not contain them"
    except Exception as e:  # no network, proxy, disk full, bad archive: all end in the message
        return f"download from {CIFAR10_URL} failed: {type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(previous)
