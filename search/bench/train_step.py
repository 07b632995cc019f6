"""Benchmark part 2, the training step: a plain fp32 loop against the path
`train()` runs (`setup()`'s `TrainingSetup`: same model, optimiser and step)
and the whole epoch loop with augmentation; and, at each batch size, the step
variants `execution.choose_path` chooses among (fp32 / bf16 autocast,
contiguous / channels_last, foreach / fused SGD, eager / torch.compile modes),
kept in the measured-figures file by `hpsearch bench`."""

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


def _ours(config, device, xs, ys, path=None):
    """`train()`'s step: the `TrainingSetup` it builds (on `path`, default
    the one `choose_path` picks now), stepped as it steps it; also returns the setup."""
    from hpsearch.search.train.loop import setup

    run = setup(config, device, path=path)
    run.model.train()
    xs = [x.contiguous(memory_format=run.path.memory_format) for x in xs]

    def step(i: int) -> None:
        run.step(xs[i % len(xs)], ys[i % len(ys)])

    step.run = run
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
    """Plain loop vs `train()`'s current path, and its epoch loop, at one batch size."""
    from hpsearch.search.train.config import TrainConfig

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    rounds = []
    with threads(cores):
        naive, ours = _naive(config, device, xs, ys), _ours(config, device, xs, ys)
        path = ours.run.path
        for _ in range(sizes.rounds):
            _, tn = timed_steps(naive, device, sizes.step_warmup, sizes.step_steps)
            _, to = timed_steps(ours, device, sizes.step_warmup, sizes.step_steps)
            rounds.append({"naive": batch_size / tn, "ours": batch_size / to})
        del naive, ours
        full, syncs = _full_loop(config, device, batch_size, sizes.step_steps)
    n, o = median([r["naive"] for r in rounds]), median([r["ours"] for r in rounds])
    return {
        "model": model_name,
        "batch_size": batch_size,
        "naive_images_per_s": n,
        "ours_images_per_s": o,
        "ratio": ratio(o, n),
        "rounds": rounds,
        "ours_path": {"channels_last": path.channels_last, "bf16_autocast": path.amp, "compile": path.compile,
                      "fused_sgd": path.fused_sgd},
        "ours_why": path.why,
        "ours_with_augmentation_images_per_s": full,
        "host_syncs_per_step": syncs,
        "steps_per_round": sizes.step_steps,
    }


def eager_variants() -> list[dict[str, Any]]:
    from hpsearch.search.train.execution import variant

    return [variant(amp, cl) for amp in (False, True) for cl in (False, True)]


def steps_at(batch_size: int, sizes: Sizes) -> int:
    """Timed steps per side at a batch size: `sizes.step_steps` at batch 64,
    fewer at larger batches (about the same images), never under 5."""
    return max(5, sizes.step_steps * 64 // max(64, batch_size)) if batch_size > 64 else sizes.step_steps


def bench_variants(model_name: str, device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    """The eager step variants at one batch size, in interleaved rounds
    (medians), against the plain loop; then fused SGD on the fastest of them."""
    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.execution import ExecutionPath, variant_key

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    steps = steps_at(batch_size, sizes)
    plans = eager_variants()
    rates: dict[str, list[float]] = {"plain": []}
    with threads(cores):
        sides = {"plain": _naive(config, device, xs, ys)}
        for v in plans:
            sides[variant_key(v)] = _ours(config, device, xs, ys, ExecutionPath.of_variant(v, device))
        for _ in range(sizes.rounds):
            for name, step in sides.items():
                _, t = timed_steps(step, device, sizes.step_warmup, steps)
                rates.setdefault(name, []).append(batch_size / t)
        del sides
        out = {variant_key(v): {**v, "images_per_s": median(rates[variant_key(v)])} for v in plans}
        best = max(out.values(), key=lambda v: v["images_per_s"])
        fused = {**{k: best[k] for k in ("amp", "channels_last", "compile")}, "fused_sgd": True}
        # fused SGD against foreach on the same variant, interleaved as above
        pair = {"foreach": _ours(config, device, xs, ys, ExecutionPath.of_variant(best, device)),
                "fused": _ours(config, device, xs, ys, ExecutionPath.of_variant(fused, device))}
        sgd: dict[str, list[float]] = {"foreach": [], "fused": []}
        for _ in range(sizes.rounds):
            for name, step in pair.items():
                _, t = timed_steps(step, device, sizes.step_warmup, steps)
                sgd[name].append(batch_size / t)
        del pair
    # the fused figure is scaled to the foreach side's rate in the big table, so
    # both sides of the pair come from the same rounds
    fused_rate = best["images_per_s"] * median(sgd["fused"]) / median(sgd["foreach"])
    out[variant_key(fused)] = {**fused, "images_per_s": fused_rate,
                               "sgd_pair_images_per_s": {k: median(v) for k, v in sgd.items()}}
    plain = median(rates["plain"])
    for v in out.values():
        v["vs_plain"] = ratio(v["images_per_s"], plain)
    return {"model": model_name, "batch_size": batch_size, "steps_per_round": steps, "rounds": sizes.rounds,
            "plain_images_per_s": plain, "variants": out}


def compile_plan(batch_sizes: list[int], main: int, modes: tuple[str, ...]) -> list[tuple[str, int]]:
    """(mode, batch size) in the order measured until the time budget runs
    out: the main batch size first, then the smallest (launch-bound, where
    CUDA graphs should help most), max-autotune (slowest to compile) only at
    the main batch size, then the larger batch sizes."""
    quick_modes = [m for m in modes if m != "max-autotune"]
    others = sorted(b for b in batch_sizes if b != main)
    plan = [(m, main) for m in quick_modes]
    plan += [(m, b) for b in others[:1] for m in quick_modes]
    plan += [("max-autotune", main)] if "max-autotune" in modes else []
    return plan + [(m, b) for b in others[1:] for m in quick_modes]


def bench_compiled(model_name: str, device, batch_size: int, sizes: Sizes, cores: int, base: dict[str, Any],
                   mode: str) -> dict[str, Any]:
    """`base` (the fastest eager variant at this batch size) compiled with
    `mode`: images/s after warm-up, and the compile seconds a run pays (its
    first training step plus its first evaluation forward, which compiles
    the eval-mode graph)."""
    import torch

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.execution import ExecutionPath, break_even_images

    torch._dynamo.reset()  # each variant compiles from scratch, as a new run's process would
    v = {**{k: base[k] for k in ("amp", "channels_last", "fused_sgd")}, "compile": mode}
    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    with threads(cores):
        step = _ours(config, device, xs, ys, ExecutionPath.of_variant(v, device))
        run = step.run
        sync(device)
        start = time.perf_counter()
        step(0)
        sync(device)
        first = time.perf_counter() - start
        run.forward.eval()
        start = time.perf_counter()
        with torch.inference_mode(), run.path.autocast():
            run.forward(xs[0].contiguous(memory_format=run.path.memory_format))
        sync(device)
        eval_first = time.perf_counter() - start
        run.forward.train()
        # reduce-overhead records its CUDA graphs over the first calls: warm up past them
        rates = []
        for _ in range(sizes.rounds):
            _, t = timed_steps(step, device, max(sizes.step_warmup, 3), steps_at(batch_size, sizes))
            rates.append(batch_size / t)
    rate = median(rates)
    compile_s = first + eval_first
    be = break_even_images(compile_s, base["images_per_s"], rate)
    return {**v, "images_per_s": rate, "first_step_seconds": first, "first_eval_seconds": eval_first,
            "compile_seconds": compile_s, "vs_eager": ratio(rate, base["images_per_s"]),
            "break_even_images": be}


def bench_cudnn_benchmark(model_name: str, device, batch_size: int, sizes: Sizes, base: dict[str, Any]) -> dict:
    """`base` (the fastest eager variant) with cudnn.benchmark on (CUDA; it may
    pick nondeterministic algorithms, so it is reported, not chosen)."""
    import torch

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.execution import ExecutionPath

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        step = _ours(config, device, xs, ys, ExecutionPath.of_variant(base, device))
        _, t = timed_steps(step, device, sizes.step_warmup, sizes.step_steps)
    finally:
        torch.backends.cudnn.benchmark = before
    return {"images_per_s": batch_size / t, "speedup": ratio(batch_size / t, base["images_per_s"])}


def bench_all_variants(model_name: str, device, batch_sizes: list[int], main: int, sizes: Sizes, cores: int,
                       say, save) -> dict[str, Any]:
    """Every step variant: the eager ones at each batch size, then the
    compile modes on the fastest eager variant of their batch size, in
    `compile_plan`'s order until `sizes.compile_budget_s` is spent. `save(out)`
    is called after each measurement (a time limit leaves what was measured)."""
    import torch

    from hpsearch.search.bench import attempt
    from hpsearch.search.train.execution import variant_key

    out: dict[str, Any] = {"batch_sizes": batch_sizes, "by_batch_size": {}, "compile_skipped": []}
    for b in batch_sizes:
        say(f"  step variants at batch {b} ...")
        out["by_batch_size"][str(b)] = attempt(lambda b=b: bench_variants(model_name, device, b, sizes, cores))
        save(out)
    start = time.monotonic()
    for mode, b in compile_plan(batch_sizes, main, sizes.compile_modes):
        row = out["by_batch_size"].get(str(b), {})
        if "variants" not in row:
            continue
        if time.monotonic() - start > sizes.compile_budget_s:
            out["compile_skipped"].append(f"{mode} at batch {b}: past the {sizes.compile_budget_s:.0f} s budget")
            continue
        base = max((v for v in row["variants"].values() if v["compile"] == "off"), key=lambda v: v["images_per_s"])
        say(f"  torch.compile mode={mode} at batch {b} on {variant_key(base)} (compilation takes a while) ...")
        v = attempt(lambda mode=mode, b=b, base=base: bench_compiled(model_name, device, b, sizes, cores, base, mode))
        if "error" in v:
            row.setdefault("errors", {})[f"compile:{mode}"] = v["error"]
        else:
            v["vs_plain"] = ratio(v["images_per_s"], row["plain_images_per_s"])
            row["variants"][variant_key(v)] = v
        save(out)
    torch._dynamo.reset()
    if device.type == "cuda" and "variants" in out["by_batch_size"].get(str(main), {}):
        row = out["by_batch_size"][str(main)]
        base = max((v for v in row["variants"].values() if v["compile"] == "off"), key=lambda v: v["images_per_s"])
        out["cudnn_benchmark"] = attempt(lambda: {"on": variant_key(base), "batch_size": main,
                                                  **bench_cudnn_benchmark(model_name, device, main, sizes, base)})
        save(out)
    return out
