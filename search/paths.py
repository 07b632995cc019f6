"""Checking a path a command will write to, before it writes anything."""

from __future__ import annotations

from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """`path` itself, or the closest folder above it that exists: what decides
    whether `path` can be made (it must be a folder, and writable)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
