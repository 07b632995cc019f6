"""Self-describing checkpoints: the weights plus the configs that rebuild the model.

Written atomically (temp file, then rename) so a crash never leaves half a
file; read with `weights_only=True` so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from hpsearch.models import ResNet, ResNetConfig

FORMAT = "hpsearch-checkpoint/1"


class CheckpointError(ValueError):
    pass


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_model_checkpoint(path, state_dict, model_config: dict, train_config: dict, **metrics) -> Path:
    """The best-model checkpoint: state dict, the config that rebuilds the model,
    the training config, and the metrics it was selected on."""
    return atomic_save(
        {
            "format": FORMAT,
            "model_config": model_config,
            "train_config": train_config,
            "state_dict": state_dict,
            "metrics": metrics,
        },
        path,
    )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises several types for a corrupt file
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an hpsearch checkpoint (format {FORMAT})")
    return ckpt


def load_model(path: str | os.PathLike) -> tuple[ResNet, dict[str, Any]]:
    """Rebuild the network from the checkpoint alone and load its weights."""
    ckpt = load_checkpoint(path)
    model = ResNet(ResNetConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
