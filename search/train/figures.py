"""The measured-figures file: what `hpsearch bench` measured on each device,
read by `execution.choose_path` (how a run executes) and by `hpsearch
studies` (how long a grid takes).

One JSON file (env `HPSEARCH_SPEEDS`, default `~/.cache/hpsearch/speeds.json`),
keyed by device name ("cuda: NVIDIA H200", "cpu: <model name>"):

    {"version": 2, "devices": {"<device>": {
        "speeds":   {"<model>@<batch>": {model, batch_size, images_per_s}},  # train()'s epoch loop
        "steps":    {"<model>@<batch>": {model, batch_size, plain_images_per_s,
                                         variants: {"<key>": {amp, channels_last, compile, fused_sgd,
                                                              images_per_s, compile_seconds}}}},
        "accuracy": {"<model>": {epochs, seeds, classes: {"<class>": {val_acc, mean, keeps_accuracy, ...}}}},
        "fused":    {"<model>@<batch>": {members: [{members, fused_images_per_s, vs_one_trial_alone}]}},
        "processes": {"<model>@<batch>[+mps]": {workers: [{processes, aggregate_images_per_s, ...}]}}}}}

The version-1 file (a flat `{"<model>@<batch>": {device, ...}}` of speeds) is
read as the speeds of the devices it names. Every write replaces the file
atomically (a temporary file, then `replace`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

VERSION = 2


def speeds_file() -> Path:
    return Path(os.environ.get("HPSEARCH_SPEEDS", Path.home() / ".cache" / "hpsearch" / "speeds.json"))


def device_name(device) -> str:
    """The name figures are kept under: the GPU's (`torch.cuda.get_device_name`) or the CPU's model name."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def device_key(device) -> str:
    return f"{device.type}: {device_name(device)}"


def key(model: str, batch_size: int) -> str:
    return f"{model}@{batch_size}"


def load() -> dict[str, Any]:
    """Every figure on file; an unreadable or missing file is no figures."""
    path = speeds_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if known.get("version") == VERSION:
        return known
    figures: dict[str, Any] = {"version": VERSION, "devices": {}}
    for row in known.values():  # version 1: speeds only, each naming its device
        if isinstance(row, dict) and {"device", "model", "batch_size", "images_per_s"} <= set(row):
            speeds = device_figures(figures, row["device"]).setdefault("speeds", {})
            speeds[key(row["model"], row["batch_size"])] = {k: row[k] for k in ("model", "batch_size", "images_per_s")}
    return figures


def save(figures: dict[str, Any]) -> None:
    path = speeds_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=2))
    tmp.replace(path)


def device_figures(figures: dict[str, Any], device: str) -> dict[str, Any]:
    return figures.setdefault("devices", {}).setdefault(device, {})


def merge(figures: dict[str, Any], device: str, section: str, name: str, record: dict[str, Any]) -> None:
    """Put one record in `figures` (in memory): section 'steps', 'accuracy', ... under `name`."""
    device_figures(figures, device).setdefault(section, {})[name] = record


def record(device: str, section: str, name: str, value: dict[str, Any]) -> None:
    """Read the file, put one record in it, write it back."""
    figures = load()
    merge(figures, device, section, name, value)
    save(figures)


def nearest(rows: list[dict[str, Any]], batch_sizes: list[int]) -> dict[str, Any] | None:
    """The row measured at the batch size nearest (on a log scale) the
    median of `batch_sizes` (64 if none); the first of equally near rows;
    None without rows."""
    if not rows:
        return None
    target = sorted(batch_sizes)[len(batch_sizes) // 2] if batch_sizes else 64
    return min(rows, key=lambda v: abs(math.log2(v["batch_size"]) - math.log2(target)))


# -- speeds, as `hpsearch studies` reads them ---------------------------------
def record_speed(device: str, model: str, batch_size: int, images_per_s: float) -> None:
    """Kept by `hpsearch bench` (its training-step part, augmentation included)."""
    record(device, "speeds", key(model, batch_size),
           {"model": model, "batch_size": batch_size, "images_per_s": images_per_s})


def measured_speed(model: str, batch_sizes: list[int], device: str | None = None) -> dict | None:
    """The measurement for this model nearest the grid's batch sizes (their
    median), on `device` or any device on file (the first recorded wins a
    tie), or None if the bench never measured this model."""
    rows = []
    for name, figs in load()["devices"].items():
        if device is None or name == device:
            rows += [{**v, "device": name} for v in figs.get("speeds", {}).values() if v.get("model") == model]
    return nearest(rows, batch_sizes)


def nearest_steps(figures: dict[str, Any], device: str, model: str, batch_size: int) -> dict[str, Any] | None:
    """The step figures of `model` on `device` at `batch_size`, else at the
    nearest measured batch size (on a log scale; the smaller of two as near), or None."""
    steps = figures.get("devices", {}).get(device, {}).get("steps", {})
    rows = [v for v in steps.values() if v.get("model") == model and v.get("variants")]
    return nearest(sorted(rows, key=lambda v: v["batch_size"]), [batch_size])
