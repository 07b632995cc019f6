"""`hpsearch bench`: our fast paths against the naive ones, side by side in one process.

Three comparisons, each measured in interleaved rounds so that a
neighbour's load hits both sides alike; the median of the rounds is reported:

1. Data path, images/s. Ours, as `train()` runs it: a uint8 data set
   resident on the device, chunks of whole batches (`augment_chunk`) gathered
   by index and augmented + normalised by `hpsearch.data.prepare_batch` (default
   `AugmentConfig`). The report's: torchvision's
   `Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
   RandomRotation(15), ColorJitter(0.2, 0.2, 0.2), ToTensor(), Normalize])` on
   PIL images through a `DataLoader` with one worker per core the process may
   use (ours gets as many torch threads), batches moved to the device.
2. Training step, images/s, same model, batch size and synthetic input: a plain
   fp32 loop (contiguous, no autocast, no compile, `loss.item()` every step)
   against `train()`'s path (`setup()`'s `TrainingSetup`: channels_last and
   bf16 autocast on CUDA, no host sync per step), and `train()`'s whole
   epoch loop (gather + augmentation + step; on CUDA with a count of host
   syncs per step). On CUDA also torch.compile and cudnn.benchmark on top of
   our path, measured last (compilation is slow).
3. Search overhead: a real small study through `run_study` with
   the default SQLite stores in a temporary directory; per trial,
   (wall time from Optuna's datetime_start/complete - the epochs' `seconds`) /
   wall time. An epoch's `seconds` covers training and evaluation, so what is
   left is MLflow logging, checkpoints, Optuna storage calls and set-up.

Results are written to the JSON file after every part, so a run cut short by a
time limit still leaves what it measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hpsearch.search.bench.data_path import bench_data
from hpsearch.search.bench.environment import SIZES, default_model, environment, usable_cores
from hpsearch.search.bench.overhead import bench_overhead
from hpsearch.search.bench.train_step import bench_compile, bench_cudnn_benchmark, bench_step

PARTS = ("data", "step", "fused", "overhead", "parity", "search")


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part's figures, or the one-line reason it failed (the other parts still run)."""
    try:
        return fn()
    except Exception as e:  # a benchmark reports what broke and goes on
        text = str(e).strip().splitlines()
        return {"error": f"{type(e).__name__}: {text[0] if text else ''}"[:500]}



@dataclass(frozen=True)
class BenchOptions:
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    json_path: str | None = None
    quick: bool = False
    parts: tuple[str, ...] = PARTS
    rounds: int | None = None


def run_bench(opts: BenchOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen parts; returns (and writes, if asked) every figure."""
    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.loop import resolve_device

    device = resolve_device(opts.device)  # --device cuda without a GPU: one line
    cores = usable_cores()
    sizes = SIZES[(device.type, opts.quick)]
    if opts.rounds is not None:
        sizes = replace(sizes, rounds=max(1, opts.rounds))
    model = opts.model or default_model(device.type)
    batch_size = opts.batch_size or TrainConfig().batch_size
    TrainConfig(model=model, batch_size=batch_size)  # unknown preset or bad size: one line, before any work
    result: dict[str, Any] = {"hpsearch_bench": 1, **environment(device, cores), "model": model,
                              "batch_size": batch_size, "quick": opts.quick, "sizes": asdict(sizes)}

    def save() -> None:
        if opts.json_path:
            Path(opts.json_path).write_text(json.dumps(result, indent=2, default=str))

    save()
    if "data" in opts.parts:
        say(f"data path: {sizes.rounds} round(s) of {sizes.data_images:,} images a side ...")
        result["data_path"] = _attempt(lambda: bench_data(device, batch_size, sizes, cores))
        save()
    if "step" in opts.parts:
        say(f"training step: {model}, batch {batch_size}, {sizes.rounds} round(s) of {sizes.step_steps} steps ...")
        result["train_step"] = _attempt(lambda: bench_step(model, device, batch_size, sizes, cores))
        save()
        rate = result["train_step"].get("ours_with_augmentation_images_per_s")
        if rate and not opts.quick:  # `hpsearch studies` estimates a grid's time from it
            from hpsearch.search.study.compute import record_speed

            record_speed(f"{device.type}: {result['device_name']}", model, batch_size, rate)
    if "fused" in opts.parts:
        say(f"several trials as one fused model: {model}, batch {batch_size}, "
            f"{', '.join(map(str, sizes.fused_members))} trial(s) ...")
        from hpsearch.search.bench.fused import bench_fused

        result["fused_trials"] = _attempt(lambda: bench_fused(model, device, batch_size, sizes))
        save()
    if "overhead" in opts.parts:
        say(f"search overhead: {sizes.describe_trial()} ...")
        result["search_overhead"] = _attempt(lambda: bench_overhead(device, sizes))
        save()
    if "parity" in opts.parts:
        say(f"accuracy parity: {model}, {sizes.parity_seeds} seed(s) x {sizes.parity_epochs} epoch(s) a side, "
            f"with and without augmentation, on real digits ...")
        from hpsearch.search.bench.parity import bench_parity  # torchvision and PIL: loaded only here

        result["accuracy_parity"] = _attempt(lambda: bench_parity(model, device, sizes))
        save()
    if "search" in opts.parts:
        a = sizes.search_axes
        say(f"grid cost: Table 2 cut to {a[0]} x {a[1]} x {a[2]} x {a[3]} cells of {model}, {sizes.search_epochs} "
            f"epochs, full grid and fast grid (shared prefixes + halving) on real digits ...")
        from hpsearch.search.bench.search import bench_search

        result["grid_search"] = _attempt(lambda: bench_search(model, device, sizes, say))
        save()
    step = result.get("train_step", {})
    if device.type == "cuda" and "ours_images_per_s" in step:
        variants = step["variants"] = {}
        for name, fn in (("compile", bench_compile), ("cudnn_benchmark", bench_cudnn_benchmark)):
            say(f"training step with {name.replace('_', '.')}"
                + (" (compilation takes a while) ..." if name == "compile" else " ..."))
            variants[name] = _attempt(lambda fn=fn: fn(model, device, batch_size, sizes, step["ours_images_per_s"]))
            save()
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """'part: reason' for every part that failed."""
    out = [f"{k}: {v['error']}" for k, v in result.items() if isinstance(v, dict) and "error" in v]
    for name, v in result.get("train_step", {}).get("variants", {}).items():
        if "error" in v:
            out.append(f"train_step {name}: {v['error']}")
    return out
