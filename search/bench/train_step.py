"""Benchmark part 2, the training step: a plain fp32 loop against the path
`train()` runs (`setup()`'s `TrainingSetup`: same model, optimiser and step),
and the whole epoch loop with augmentation; on CUDA also torch.compile and
cudnn.benchmark on top of our path."""

from __future__ import annotations

import time
import warnings
from typing import Any

from hpsearch.search.bench.environment import Sizes, median, ratio, sync, threads, timed_steps


def _step_inputs(device, batch_size: int, n: int = 4):
    import torch

    from hpsearch.data import prepare_batch

    gen = torch.Generator().manual_seed(3)
    xs = [prepare_batch(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=gen), None)
          .to(device) for _ in range(n)]
    ys = [torch.randint(0, 10, (batch_size,), generator=gen).to(device) for _ in range(n)]
    return xs, ys


def _naive(config, device, xs, ys):
    """A plain loop as a first PyTorch script writes it."""
    import torch
    from torch import nn

    from hpsearch.models import ResNet
    from hpsearch.search.train.optim import build_optimizer

    torch.manual_seed(0)
    model = ResNet(config.model_config()).to(device).train()
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()

    def step(i: int) -> None:
        out = model(xs[i % len(xs)])
        loss = criterion(out, ys[i % len(ys)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # what a logging line per step costs: a host sync

    return step


def _ours(config, device, xs, ys):
    """`train()`'s step: the `TrainingSetup` it builds, stepped as it steps it."""
    from hpsearch.search.train.loop import setup

    run = setup(config, device)
    run.model.train()
    xs = [x.contiguous(memory_format=run.path.memory_format) for x in xs]

    def step(i: int) -> None:
        run.step(xs[i % len(xs)], ys[i % len(ys)])

    return step


def _full_loop(config, device, batch_size: int, steps: int) -> tuple[float, float | None]:
    """`train()`'s epoch loop itself (gather, augmentation, step, running
    metrics) over `steps` batches: (images/s, host syncs per step on CUDA,
    not counting the epoch's final read of its loss and accuracy)."""
    import torch

    from hpsearch.search.train.loop import augment_chunk, setup

    gen = torch.Generator().manual_seed(4)
    n = steps * batch_size
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    run = setup(config, device)

    def epoch(images: torch.Tensor, labels: torch.Tensor) -> None:
        run.train_epoch(images, labels, torch.Generator().manual_seed(5),
                        torch.Generator(device=device).manual_seed(6))

    epoch(x[: 2 * batch_size], y[: 2 * batch_size])  # warm-up
    syncs = None
    if device.type == "cuda":
        # Count the host syncs of two augmentation chunks' worth of steps; the
        # loop reads its loss and accuracy once at the end of the epoch (two
        # syncs), anything else is a leak.
        k = min(steps, 2 * augment_chunk(batch_size) // batch_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                epoch(x[: k * batch_size], y[: k * batch_size])
            finally:
                torch.cuda.set_sync_debug_mode("default")
        hits = sum("synchroniz" in str(w.message) for w in caught)
        syncs = round(max(0, hits - 2) / k, 3)
    sync(device)
    start = time.perf_counter()
    epoch(x, y)
    sync(device)
    return n / (time.perf_counter() - start), syncs


def bench_step(model_name: str, device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    import torch

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.loop import ExecutionPath

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    rounds = []
    with threads(cores):
        naive, ours = _naive(config, device, xs, ys), _ours(config, device, xs, ys)
        for _ in range(sizes.rounds):
            _, tn = timed_steps(naive, device, sizes.step_warmup, sizes.step_steps)
            _, to = timed_steps(ours, device, sizes.step_warmup, sizes.step_steps)
            rounds.append({"naive": batch_size / tn, "ours": batch_size / to})
        del naive, ours
        full, syncs = _full_loop(config, device, batch_size, sizes.step_steps)
    n, o = median([r["naive"] for r in rounds]), median([r["ours"] for r in rounds])
    fast = ExecutionPath.of(config, device)
    path = {"channels_last": fast.memory_format == torch.channels_last, "bf16_autocast": fast.amp,
            "compile": fast.compile}
    return {
        "model": model_name,
        "batch_size": batch_size,
        "naive_images_per_s": n,
        "ours_images_per_s": o,
        "ratio": ratio(o, n),
        "rounds": rounds,
        "ours_path": path,
        "ours_with_augmentation_images_per_s": full,
        "host_syncs_per_step": syncs,
        "steps_per_round": sizes.step_steps,
    }


def bench_compile(model_name: str, device, batch_size: int, sizes: Sizes, eager_rate: float) -> dict[str, Any]:
    """Our step with torch.compile on (CUDA): is it worth making the default?"""
    from hpsearch.search.train.config import TrainConfig

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size, compile=True)
    xs, ys = _step_inputs(device, batch_size)
    first, t = timed_steps(_ours(config, device, xs, ys), device, max(sizes.step_warmup, 5), sizes.step_steps)
    rate = batch_size / t
    gain = 1 / eager_rate - 1 / rate  # seconds saved per image
    return {
        "images_per_s": rate,
        "speedup": ratio(rate, eager_rate),
        "first_step_seconds": first,  # compilation of forward and backward
        "break_even_images": first / gain if gain > 0 else None,
    }


def bench_cudnn_benchmark(model_name: str, device, batch_size: int, sizes: Sizes,
                          eager_rate: float) -> dict[str, Any]:
    """Our step with cudnn.benchmark on (CUDA; it may pick nondeterministic algorithms)."""
    import torch

    from hpsearch.search.train.config import TrainConfig

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        _, t = timed_steps(_ours(config, device, xs, ys), device, sizes.step_warmup, sizes.step_steps)
    finally:
        torch.backends.cudnn.benchmark = before
    return {"images_per_s": batch_size / t, "speedup": ratio(batch_size / t, eager_rate)}
