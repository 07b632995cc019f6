"""Epoch checkpoints of a study's trials on disk: where they live, and whether
one may be resumed.

A trial's `last.pt` is written every epoch under
`$HPSEARCH_CHECKPOINT_DIR/<study name>-<study uid>/trial-<origin>/` (default
`mlruns/checkpoints`), the uid being made when the study is created, so two
studies of one name on different storages never share a folder. A checkpoint
also carries its owner: the study's uid, the trial's origin number and the
resolved training configuration. A retry resumes only a checkpoint whose owner is exactly its
own; anything else (another study of the same name, other parameters, a torn
or foreign file) is reported in one line and training starts from epoch 0.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hpsearch.search.errors import UserError
from hpsearch.search.paths import nearest_existing

DEFAULT_CHECKPOINT_DIR = Path("mlruns/checkpoints")
# A study name is one path segment: letters, digits, '.', '_' and '-', starting
# with a letter or digit (so never '.', '..', a path or an absolute path).
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESUME_KEYS = ("owner", "epoch", "model", "optimizer", "scheduler", "history", "best_val_acc", "best_epoch",
               "best_state")


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise UserError(f"study name {name!r} is not allowed; allowed: 1-128 letters, digits, '.', '_' or '-', "
                        f"starting with a letter or digit")
    return name


def checkpoint_root() -> Path:
    return Path(os.environ.get("HPSEARCH_CHECKPOINT_DIR", DEFAULT_CHECKPOINT_DIR))


def study_checkpoint_dir(study_name: str, study_uid: str) -> Path:
    return checkpoint_root() / f"{check_study_name(study_name)}-{study_uid[:12]}"


def trial_checkpoint_dir(study_name: str, study_uid: str, origin: int) -> Path:
    return study_checkpoint_dir(study_name, study_uid) / f"trial-{origin:05d}"


def check_checkpoint_root() -> Path:
    """The checkpoint folder, or the nearest folder that would hold it, must be
    a writable directory; checked before any store is touched, without writing."""
    root = checkpoint_root()
    probe = nearest_existing(root)
    where = "HPSEARCH_CHECKPOINT_DIR" if "HPSEARCH_CHECKPOINT_DIR" in os.environ else "the default"
    if probe.exists() and not probe.is_dir():
        raise UserError(f"checkpoint folder {root} ({where}) cannot be made: {probe} is a file; "
                        f"set HPSEARCH_CHECKPOINT_DIR to a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"checkpoint folder {root} ({where}) is not writable ({probe}); "
                        f"set HPSEARCH_CHECKPOINT_DIR to a writable folder")
    return root


def owner(study_uid: str, origin: int, config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must carry to be resumed by a trial: the device a run
    trains on is left out, since a retry may run elsewhere."""
    return {"study_uid": study_uid, "origin": int(origin),
            "config": {k: v for k, v in config.items() if k != "device"}}


def read_resume(path: Path, expected_owner: dict[str, Any]) -> tuple[dict | None, str | None]:
    """(the checkpoint to resume from, None), or (None, why it cannot be
    resumed), or (None, None) when there is none."""
    if not path.exists():
        return None, None
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torn, truncated or not a torch file at all: several exception types
        return None, f"checkpoint {path} cannot be read ({type(e).__name__})"
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in RESUME_KEYS):
        return None, f"checkpoint {path} is not an hpsearch epoch checkpoint"
    found = ckpt["owner"]
    if not isinstance(found, dict) or found.get("study_uid") != expected_owner["study_uid"]:
        return None, f"checkpoint {path} belongs to another study of the same name"
    if found.get("origin") != expected_owner["origin"]:
        return None, f"checkpoint {path} belongs to trial {found.get('origin')}"
    if found.get("config") != expected_owner["config"]:
        keys = sorted(k for k in set(found.get("config") or {}) | set(expected_owner["config"])
                      if (found.get("config") or {}).get(k) != expected_owner["config"].get(k))
        return None, f"checkpoint {path} was trained with other values ({', '.join(keys[:4])})"
    epoch, history = ckpt["epoch"], ckpt["history"]
    epochs = expected_owner["config"].get("epochs", epoch)
    if not (isinstance(epoch, int) and isinstance(history, list) and len(history) == epoch and 1 <= epoch <= epochs):
        return None, f"checkpoint {path} is inconsistent (epoch {epoch!r})"
    return ckpt, None
