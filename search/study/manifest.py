"""What a run needs to be reproduced: seed, versions, code commit, data split."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

# The folder holding `search/`, `models/`, `data/` and `studies/`: the checkout, or
# site-packages/hpsearch/ for an installed wheel.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_STUDIES = PROJECT_ROOT / "studies"


@cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (e.g. an installed wheel): recorded as unknown
    return out.stdout.strip() or None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@cache
def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "optuna": _version("optuna"),
        "mlflow": _version("mlflow"),
        "hpsearch": _version("hpsearch"),
    }


def manifest(seed: int, data_summary: dict, device: str, **extra) -> dict:
    return {
        "seed": seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "data": data_summary,
        "device": device,
        "host": socket.gethostname(),
        **extra,
    }


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A trial's seed depends only on the study seed and the trial number (the
    original number for a retried trial), never on how many workers ran."""
    return (study_seed * 1_000_003 + trial_number) % (2**31 - 1)
