"""The Kaggle test file (no labels) and the submission CSV.

``cifar_test_nolabels.pkl`` is a pickled dict with ``b'data'`` (the images)
and ``b'ids'`` (one id per image). Copies in the wild store the images as
(N, 3072) CHW-flat like the CIFAR batches, as (N, 3, 32, 32), or as
(N, 32, 32, 3) channel-last; all three are accepted and come back
as (N, 3, 32, 32), anything else is refused. The submission is a CSV with the
header ``ID,Labels`` and one row per id, as the competition expects.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from hpsearch.data.errors import DataError, integer_per_image
from hpsearch.data.safe_pickle import safe_load_pickle

LAYOUTS = {
    "flat": "(N, 3072) CHW-flat",
    "chw": "(N, 3, 32, 32)",
    "hwc": "(N, 32, 32, 3)",
}
_ALLOWED = ", ".join(LAYOUTS.values()) + " uint8"


def _layout_of(data: np.ndarray) -> str | None:
    shape = data.shape
    if len(shape) == 2 and shape[1] == 3072:
        return "flat"
    if len(shape) == 4 and shape[1:] == (3, 32, 32):
        return "chw"
    if len(shape) == 4 and shape[1:] == (32, 32, 3):
        return "hwc"
    return None


def read_kaggle_test(path: str | os.PathLike) -> tuple[torch.Tensor, list[int]]:
    """Images (uint8, (N, 3, 32, 32)) and their ids, in file order."""
    path = Path(path)
    obj = safe_load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}; expected a dict with b'data' and b'ids'")
    data, ids = _get(obj, "data", path), _get(obj, "ids", path)
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: b'data' is a {type(data).__name__}; expected a numpy array, one of {_ALLOWED}")
    layout = _layout_of(data)
    if layout is None or data.dtype != np.uint8:
        raise DataError(f"{path}: b'data' has shape {data.shape} and dtype {data.dtype}; allowed layouts: {_ALLOWED}")
    if layout == "flat":
        images = data.reshape(-1, 3, 32, 32)
    elif layout == "hwc":
        images = data.transpose(0, 3, 1, 2)
    else:
        images = data
    if images.shape[0] == 0:
        raise DataError(f"{path}: b'data' holds 0 images; a submission needs at least one")
    id_arr = integer_per_image(ids, path, "ids", images.shape[0], "ids", f" (data shape {data.shape})")
    if (id_arr < 0).any():
        raise DataError(f"{path}: b'ids' has negative ids (first: {int(id_arr[id_arr < 0][0])}); "
                        f"allowed: whole numbers >= 0")
    unique, counts = np.unique(id_arr, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: b'ids' repeats ids ({int((counts > 1).sum())} repeated, first: "
                        f"{int(unique[counts > 1][0])} x{int(counts[counts > 1][0])}); each image needs its own id")
    return torch.from_numpy(np.ascontiguousarray(images).copy()), [int(i) for i in id_arr]


def _get(d: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path} has no {key!r} entry (keys: {sorted(map(repr, d))[:6]}); expected b'data' and b'ids'")


def write_submission(path: str | os.PathLike, ids: Iterable[int], labels: Iterable[int] | torch.Tensor) -> Path:
    """Write ``ID,Labels`` rows, one per id in order, atomically: a temporary
    file in the same directory is renamed over ``path``, so a crash never
    leaves half a submission."""
    path = Path(path)
    ids = [int(i) for i in ids]
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if len(ids) != len(labels):
        raise DataError(f"cannot write {path}: {len(ids)} ids but {len(labels)} labels; need one label per id")
    labels = [int(v) for v in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["ID", "Labels"])
            writer.writerows(zip(ids, labels, strict=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
