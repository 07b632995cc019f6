"""What the machine's GPUs are set up for, as far as placing work on them
goes (no torch import: `hpsearch run --workers` and the bench's worker
processes read it before they start)."""

from __future__ import annotations

import os
from pathlib import Path


def mps_status() -> dict:
    """Whether a CUDA MPS control daemon is up: its pipe directory
    (CUDA_MPS_PIPE_DIRECTORY, default /tmp/nvidia-mps) holds a `control` pipe.
    Under MPS the kernels of processes sharing a GPU run concurrently instead
    of taking turns."""
    pipes = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    return {"pipe_directory": str(pipes), "running": (pipes / "control").exists()}
