"""Benchmark part 6, several trials on one device: B trials of one
architecture and batch size trained as one fused model
(`hpsearch.search.train.fused`, HFTA-style grouped convolutions, fused SGD with
per-trial lr, momentum and weight decay) against one trial alone, in
aggregate training images/s of the device, on fixed prepared batches (the
training step alone: forward, backward, optimiser)."""

from __future__ import annotations

from typing import Any

from hpsearch.search.bench.environment import Sizes

FUSED_TARGET = 4.0  # aggregate images/s of the device against one trial alone (resnet-seed, batch 64, CUDA)


def bench_fused(model: str, device, batch_size: int, sizes: Sizes) -> dict[str, Any]:
    import torch

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.fused import measure

    size = max(2 * batch_size, 200)
    data = TrainConfig(dataset="synthetic", synthetic_size=size, val_size=size // 2).data_config().load(None)
    rows = []
    for b in sizes.fused_members:
        configs = [TrainConfig(model=model, batch_size=batch_size, device=device.type, seed=i,
                               lr=0.05 * (1 + i % 4), momentum=0.9 if i % 2 == 0 else 0.8,
                               weight_decay=(1e-4, 5e-4)[i % 2]) for i in range(b)]
        rows.append(measure(configs, data, steps=sizes.step_steps, warmup=sizes.step_warmup))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    alone = rows[0]["sequential_images_per_s"] if rows and rows[0]["members"] == 1 else None
    for r in rows:
        r["vs_one_trial_alone"] = r["fused_images_per_s"] / alone if alone else None
    return {"model": model, "batch_size": batch_size, "steps": sizes.step_steps, "members": rows,
            "one_trial_images_per_s": alone, "target": FUSED_TARGET}
