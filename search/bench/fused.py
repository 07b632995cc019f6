"""Benchmark part 6, several trials on one device: B trials of one
architecture and batch size trained as one fused model
(`hpsearch.search.train.fused`, HFTA-style grouped convolutions, fused SGD with
per-trial lr, momentum and weight decay) against one trial alone, in
aggregate training images/s of the device, on fixed prepared batches (the
training step alone: forward, backward, optimiser)."""

from __future__ import annotations

from typing import Any

from hpsearch.search.bench.environment import Sizes, timed_steps

FUSED_TARGET = 4.0  # aggregate images/s of the device against one trial alone (resnet-seed, batch 64, CUDA)


def measure(configs, data, device, steps: int, warmup: int, grouped: bool = True) -> dict[str, float]:
    """Training images/s of one fused step of all trials against the same
    trials stepped one after another (`train_step` on `setup()`'s objects, as
    `train()` runs them), on one fixed prepared batch (no data loading), after
    `warmup` untimed steps; `grouped` is `FusedConv2d`'s."""
    import torch

    from hpsearch.data import prepare_batch
    from hpsearch.search.train.fused import FusedTrials
    from hpsearch.search.train.loop import setup, train_step

    bs = configs[0].batch_size
    x = prepare_batch(data.train_x[:bs].to(device), None, None)
    y = data.train_y[:bs].to(device)
    trials = FusedTrials(configs, device, data.train_y.numel(), grouped)
    trials.model.train()
    for d in trials.dropouts:
        d.generators = [torch.Generator(device=device).manual_seed(c.seed) for c in configs]
    xf = x.repeat(1, len(configs), 1, 1).contiguous(memory_format=trials.path.memory_format)
    yf = y.expand(len(configs), -1)
    _, fused_s = timed_steps(lambda i: trials.step(xf, yf), device, warmup, steps)
    runs = [setup(c, device) for c in configs]
    for r in runs:
        r.model.train()
    xs = x.contiguous(memory_format=runs[0].path.memory_format)

    def sequential(i: int) -> None:
        for r in runs:
            train_step(r.forward, r.optimizer, r.criterion, xs, y, r.path.autocast)

    _, seq_s = timed_steps(sequential, device, warmup, steps)
    images = bs * len(configs)
    return {"members": len(configs), "fused_images_per_s": images / fused_s,
            "sequential_images_per_s": images / seq_s, "speedup": seq_s / fused_s}


def bench_fused(model: str, device, batch_size: int, sizes: Sizes) -> dict[str, Any]:
    import torch

    from hpsearch.search.train.config import TrainConfig

    size = max(2 * batch_size, 200)
    data = TrainConfig(dataset="synthetic", synthetic_size=size, val_size=size // 2).data_config().load(None)
    rows = []
    for b in sizes.fused_members:
        configs = [TrainConfig(model=model, batch_size=batch_size, device=device.type, seed=i,
                               lr=0.05 * (1 + i % 4), momentum=0.9 if i % 2 == 0 else 0.8,
                               weight_decay=(1e-4, 5e-4)[i % 2]) for i in range(b)]
        rows.append(measure(configs, data, device, steps=sizes.step_steps, warmup=sizes.step_warmup))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    alone = rows[0]["sequential_images_per_s"] if rows and rows[0]["members"] == 1 else None
    for r in rows:
        r["vs_one_trial_alone"] = r["fused_images_per_s"] / alone if alone else None
    return {"model": model, "batch_size": batch_size, "steps": sizes.step_steps, "members": rows,
            "one_trial_images_per_s": alone, "target": FUSED_TARGET}


def fused_agreement(model: str, device, batch_size: int, quick: bool) -> dict[str, Any]:
    """Does a fused trial give its trial's curve? Four trials (different seed,
    lr, momentum, weight decay) trained as one model with grouped
    convolutions (as `hpsearch run --fuse` trains them on a GPU) and each
    alone with `train()`, 2 epochs on synthetic images: the largest
    difference in any epoch's train loss and val accuracy. On CPU in fp32
    the members differ from their single runs only by the grouped kernels'
    summation order; on CUDA also by bf16 rounding where bf16 is chosen."""
    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.fused import train_fused
    from hpsearch.search.train.loop import train

    n = 256 if quick else 2048
    base = dict(model=model, batch_size=batch_size, device=device.type, dataset="synthetic", epochs=2,
                synthetic_size=n + n // 4, val_size=n // 4, scheduler="none")
    configs = [TrainConfig(**base, seed=10 + i, lr=0.05 * (1 + i % 2), momentum=(0.9, 0.8)[i // 2],
                           weight_decay=(1e-4, 5e-4)[i % 2]) for i in range(4)]
    data = configs[0].data_config().load(None)
    fused = train_fused(configs, data, grouped=True)
    alone = [train(c, data) for c in configs]
    loss = max(abs(f.train_loss - a.train_loss) for fr, ar in zip(fused, alone)
               for f, a in zip(fr.history, ar.history))
    acc = max(abs(f.val_acc - a.val_acc) for fr, ar in zip(fused, alone) for f, a in zip(fr.history, ar.history))
    return {"trials": len(configs), "epochs": 2, "train_images": n, "max_train_loss_diff": loss,
            "max_val_acc_diff": acc, "execution": fused[0].execution.get("why", "")}
