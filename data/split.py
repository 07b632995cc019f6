"""The fixed, stratified hold-out split and the digest that identifies it.

Validation is a hold-out of the training set (the evaluation protocol: "Data and the
evaluation protocol"): model selection and pruning use it, the test set is
left alone. Stratified so that every class keeps its share in both parts,
and deterministic in the seed so every trial of a study sees the same split.
"""

from __future__ import annotations

import hashlib
import json

import torch

from hpsearch.data.errors import DataError


def _class_quotas(counts: torch.Tensor, val_size: int) -> torch.Tensor:
    """Per-class hold-out sizes proportional to the class counts, rounded by
    largest remainder (Hamilton's method) so that they sum to val_size
    exactly; ties go to the lower class index."""
    total = int(counts.sum())
    exact = counts.to(torch.float64) * val_size / total
    quotas = torch.floor(exact).to(torch.int64)
    short = val_size - int(quotas.sum())
    if short > 0:
        remainder = exact - quotas.to(torch.float64)
        # Stable sort on the negated remainder: largest first, then class order.
        order = torch.sort(-remainder, stable=True).indices
        quotas[order[:short]] += 1
    return quotas


def holdout_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): sorted int64 indices into ``labels``, disjoint,
    covering all of it, with ``val_size`` held out in per-class proportion.
    The members of each class are chosen by a permutation from a
    ``torch.Generator`` seeded with ``seed``, so the split depends on nothing
    else (not on the global RNG, not on the device)."""
    labels = torch.as_tensor(labels).reshape(-1).to("cpu", torch.int64)
    n = labels.numel()
    if isinstance(val_size, bool) or int(val_size) != val_size:
        raise DataError(f"hold-out size must be a whole number of images, got {val_size!r}")
    val_size = int(val_size)
    if val_size <= 0 or val_size >= n:
        what = "empty" if val_size <= 0 else f"as large as the training set ({n})"
        raise DataError(
            f"hold-out of {val_size} images is {what}; allowed 1..{n - 1}"
            if n > 1
            else f"hold-out of {val_size} images is impossible: the training set has {n} image(s); need at least 2"
        )
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    quotas = _class_quotas(counts, val_size)

    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    # Group the shuffled indices by class (a stable sort keeps the random
    # order inside each class); the first quota of every group is held out.
    by_class = perm[torch.sort(inverse[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    cls_sorted = inverse[by_class]
    rank = torch.arange(n) - starts[cls_sorted]
    held = rank < quotas[cls_sorted]
    val_idx = torch.sort(by_class[held]).values
    train_idx = torch.sort(by_class[~held]).values
    return train_idx, val_idx


def _tensor_sha256(t: torch.Tensor) -> str:
    t = t.detach().to("cpu", torch.int64).contiguous()
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def split_digest(name: str, labels: torch.Tensor, val_idx: torch.Tensor, seed: int) -> str:
    """16 hex digits of a sha256 over the data set name, its size, the
    hold-out size and seed, and hashes of the label tensor and of the held-out
    indices: two runs with equal digests trained and validated on the same
    split of the same labelled data."""
    labels = torch.as_tensor(labels).reshape(-1)
    val_idx = torch.as_tensor(val_idx).reshape(-1)
    record = {
        "name": name,
        "n": int(labels.numel()),
        "val_size": int(val_idx.numel()),
        "seed": int(seed),
        "labels_sha256": _tensor_sha256(labels),
        "val_idx_sha256": _tensor_sha256(val_idx),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
