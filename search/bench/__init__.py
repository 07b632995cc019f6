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
from hpsearch.search.bench.train_step import bench_all_variants, bench_step

PARTS = ("data", "step", "paths", "fused", "processes", "overhead", "parity", "search")
CUDA_BATCH_SIZES = (32, 64, 256, 512)
RUN_LENGTHS = (3, 200)  # epochs of the runs whose defaults the bench prints (smoke trial, the report's)
CIFAR10_TRAIN = 45_000  # a CIFAR-10 epoch with a 5,000-image hold-out


def attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
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
    batch_sizes: tuple[int, ...] | None = None  # step variants [default: CUDA_BATCH_SIZES on CUDA, else batch_size]


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
        result["data_path"] = attempt(lambda: bench_data(device, batch_size, sizes, cores))
        save()
    from hpsearch.search.train import figures as figs

    dkey = figs.device_key(device)
    # This run's figures join the file's in memory; a --quick run's sizes are
    # too small to mean anything, so only a full run writes them back.
    known = figs.load()
    batch_sizes = list(opts.batch_sizes or (CUDA_BATCH_SIZES if device.type == "cuda" else (batch_size,)))
    result["batch_sizes"] = batch_sizes

    def keep(section: str, name: str, record: dict) -> None:
        figs.merge(known, dkey, section, name, record)
        if not opts.quick:
            figs.record(dkey, section, name, record)

    if "step" in opts.parts:
        say(f"training step: {model}, batch {batch_size}, {sizes.rounds} round(s) of {sizes.step_steps} steps ...")
        result["train_step"] = attempt(lambda: bench_step(model, device, batch_size, sizes, cores))
        save()
        rate = result["train_step"].get("ours_with_augmentation_images_per_s")
        if rate:  # `hpsearch studies` estimates a grid's time from it
            keep("speeds", figs.key(model, batch_size),
                 {"model": model, "batch_size": batch_size, "images_per_s": rate})
        say(f"step variants: {model} at batch {', '.join(map(str, batch_sizes))}; torch.compile "
            f"{', '.join(sizes.compile_modes) or 'not measured'} ...")

        def partial(out: dict) -> None:
            result["step_variants"] = out
            save()

        main = batch_size if batch_size in batch_sizes else batch_sizes[0]
        result["step_variants"] = attempt(
            lambda: bench_all_variants(model, device, batch_sizes, main, sizes, cores, say, partial))
        save()
        for b, row in result["step_variants"].get("by_batch_size", {}).items():
            if "variants" in row:
                keep("steps", figs.key(model, int(b)), {**row, "torch": result["torch"]})
    if "paths" in opts.parts:
        from hpsearch.search.bench.paths import bench_paths

        steps = figs.nearest_steps(known, dkey, model, batch_size)
        say(f"accuracy of the step variants: {model}, batch {batch_size}, {sizes.paths_seeds} seed(s) x "
            f"{sizes.parity_epochs} epoch(s) a class, on real digits ...")

        def partial(out: dict[str, Any]) -> None:
            result["paths"] = {**out, "partial": True}
            save()

        result["paths"] = attempt(lambda: bench_paths(
            model, device, batch_size, steps["variants"] if steps else {}, sizes, say, opts.quick, partial))
        save()
        if "classes" in result["paths"]:
            keep("accuracy", model, result["paths"])
    if "step" in opts.parts or "paths" in opts.parts:
        result["defaults"] = defaults(model, device, batch_sizes, known)
        for line in describe_defaults(result["defaults"]):
            say(line)
        save()
    if "fused" in opts.parts:
        say(f"several trials as one fused model: {model}, batch {batch_size}, "
            f"{', '.join(map(str, sizes.fused_members))} trial(s) ...")
        from hpsearch.search.bench.fused import bench_fused

        result["fused_trials"] = attempt(lambda: bench_fused(model, device, batch_size, sizes))
        save()
        say("fused trials against the same trials alone: 4 trials x 2 epochs, curves compared ...")
        from hpsearch.search.bench.fused import fused_agreement

        result["fused_agreement"] = attempt(lambda: fused_agreement(model, device, batch_size, opts.quick))
        save()
        if "members" in result["fused_trials"]:
            keep("fused", figs.key(model, batch_size), result["fused_trials"])
    if "processes" in opts.parts:
        from hpsearch.search.bench.processes import bench_processes
        from hpsearch.search.gpus import mps_status

        mps = device.type == "cuda" and mps_status()["running"]
        say(f"worker processes sharing the {device.type} device: {model}, batch {batch_size}, "
            f"{', '.join(map(str, sizes.process_counts))} process(es), {sizes.process_seconds:g} s each"
            + (" (CUDA MPS running)" if mps else "") + " ...")
        result["processes"] = attempt(lambda: bench_processes(model, device, batch_size, sizes, cores))
        save()
        if "rows" in result["processes"]:
            keep("processes", figs.key(model, batch_size) + ("+mps" if mps else ""), result["processes"])
    if "overhead" in opts.parts:
        say(f"search overhead: {sizes.describe_trial()} ...")
        result["search_overhead"] = attempt(lambda: bench_overhead(device, sizes))
        save()
    if "parity" in opts.parts:
        say(f"accuracy parity: {model}, {sizes.parity_seeds} seed(s) x {sizes.parity_epochs} epoch(s) a side, "
            f"with and without augmentation, on real digits ...")
        from hpsearch.search.bench.parity import bench_parity  # torchvision and PIL: loaded only here

        result["accuracy_parity"] = attempt(lambda: bench_parity(model, device, sizes))
        save()
    if "search" in opts.parts:
        a = sizes.search_axes
        say(f"grid cost: Table 2 cut to {a[0]} x {a[1]} x {a[2]} x {a[3]} cells of {model}, {sizes.search_epochs} "
            f"epochs, full grid and fast grid (shared prefixes + halving) on real digits ...")
        from hpsearch.search.bench.search import bench_search

        result["grid_search"] = attempt(lambda: bench_search(model, device, sizes, say))
        save()
    return result


def defaults(model: str, device, batch_sizes: list[int], figures: dict) -> dict[str, dict[str, Any]]:
    """What `choose_path` picks now at each batch size, for a CIFAR-10-sized
    run of each of RUN_LENGTHS epochs."""
    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.execution import choose_path, variant_key

    out: dict[str, dict[str, Any]] = {}
    for b in batch_sizes:
        config = TrainConfig(model=model, batch_size=b, device=device.type)
        for epochs in RUN_LENGTHS:
            path = choose_path(config, device, epochs * CIFAR10_TRAIN, figures)
            out.setdefault(str(b), {})[f"{epochs}_epochs"] = {"path": variant_key(path.variant()),
                                                             **path.describe()}
    return out


def describe_defaults(d: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["defaults on this device (choose_path, CIFAR-10-sized runs):"]
    for b, runs in d.items():
        lines.append(f"  batch {b}: " + "; ".join(f"{k.replace('_', ' ')} -> {v['path']}" for k, v in runs.items()))
    return lines


def failures(result: dict[str, Any]) -> list[str]:
    """'part: reason' for every part that failed."""
    out = [f"{k}: {v['error']}" for k, v in result.items() if isinstance(v, dict) and "error" in v]
    for b, row in result.get("step_variants", {}).get("by_batch_size", {}).items():
        if "error" in row:
            out.append(f"step variants at batch {b}: {row['error']}")
        for name, err in row.get("errors", {}).items():
            out.append(f"step variant {name} at batch {b}: {err}")
    if "error" in result.get("step_variants", {}).get("cudnn_benchmark", {}):
        out.append(f"cudnn.benchmark: {result['step_variants']['cudnn_benchmark']['error']}")
    return out
