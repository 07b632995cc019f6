"""What every benchmark part shares: the machine and its sizes, timing helpers."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on (affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Sizes:
    rounds: int  # interleaved repeats of each side-by-side pair (medians reported)
    data_images: int  # images timed per side and round
    data_pool: int  # distinct images both data paths draw from
    step_warmup: int  # steps before timing (per side and round)
    step_steps: int  # timed steps per side and round
    trials: int  # overhead study: trials
    epochs: int  # ... epochs per trial
    synthetic_size: int  # ... synthetic pool (train + validation)
    val_size: int  # ... validation hold-out
    parity_train: int  # accuracy parity: real-image training set (the hold-out taken from it)
    parity_val: int  # ... validation hold-out
    parity_epochs: int  # ... epochs of each run
    parity_seeds: int  # ... seeds per side and augmentation setting
    search_axes: tuple[int, ...]  # grid cost: values of Table 2's batch size, gamma, weight decay, milestones
    search_epochs: int  # ... epochs of each cell (milestones scaled from 200)
    search_train: int  # ... real-image training set (the hold-out taken from it)
    search_val: int  # ... validation hold-out
    search_eta: int  # ... the fast grid's reduction factor
    fused_members: tuple[int, ...] = (1, 2, 4)  # several trials as one model: trials per fused model
    compile_modes: tuple[str, ...] = ()  # step variants: torch.compile modes measured (none: eager only)
    compile_budget_s: float = 0.0  # ... no further compile variant starts after this many seconds
    paths_seeds: int = 2  # accuracy check of the step variants: seeds per numerics class
    process_counts: tuple[int, ...] = (1, 2, 4)  # worker processes sharing the device
    process_seconds: float = 10.0  # ... timed seconds per worker, after warm-up

    def describe_trial(self) -> str:
        return (f"{self.trials} trials x {self.epochs} epochs of resnet-tiny on "
                f"{self.synthetic_size - self.val_size:,} train / {self.val_size:,} val synthetic images")


# On CPU the overhead study has the shape of the smoke study (studies/smoke.toml:
# 6 trials of 3 epochs on 5,000 train / 1,000 val images), the offline demo
# users run first and the smallest real study, so the least favourable to the
# overhead share. On CUDA such a trial is over in seconds, so there the data
# set is CIFAR-10-sized, as a real trial's.
SIZES = {
    ("cpu", False): Sizes(rounds=3, data_images=6144, data_pool=4096, step_warmup=2, step_steps=12,
                          trials=6, epochs=3, synthetic_size=6000, val_size=1000,
                          parity_train=10000, parity_val=5000, parity_epochs=3, parity_seeds=3,
                          search_axes=(2, 4, 2, 2), search_epochs=16, search_train=2000, search_val=1000,
                          search_eta=4, compile_modes=("default",), compile_budget_s=300, process_seconds=10),
    ("cuda", False): Sizes(rounds=2, data_images=16384, data_pool=16384, step_warmup=10, step_steps=40,
                           trials=2, epochs=3, synthetic_size=50000, val_size=5000,
                           parity_train=10000, parity_val=5000, parity_epochs=3, parity_seeds=3,
                           search_axes=(4, 4, 2, 2), search_epochs=20, search_train=20000, search_val=5000,
                           search_eta=4, fused_members=(1, 2, 4, 8, 16),
                           compile_modes=("default", "reduce-overhead", "max-autotune"), compile_budget_s=150,
                           process_seconds=8),
    ("cpu", True): Sizes(rounds=1, data_images=256, data_pool=256, step_warmup=1, step_steps=2,
                         trials=1, epochs=1, synthetic_size=300, val_size=100,
                         parity_train=300, parity_val=100, parity_epochs=1, parity_seeds=1,
                         search_axes=(1, 2, 1, 2), search_epochs=4, search_train=300, search_val=100, search_eta=2,
                         fused_members=(1, 2), process_counts=(1, 2), process_seconds=1.0),
    ("cuda", True): Sizes(rounds=1, data_images=1024, data_pool=1024, step_warmup=2, step_steps=5,
                          trials=1, epochs=1, synthetic_size=600, val_size=100,
                          parity_train=300, parity_val=100, parity_epochs=1, parity_seeds=1,
                          search_axes=(1, 2, 1, 2), search_epochs=4, search_train=300, search_val=100, search_eta=2,
                          compile_modes=("default",), compile_budget_s=60, process_counts=(1, 2), process_seconds=2.0),
}


def default_model(device_type: str) -> str:
    # resnet-seed is the report's network; on 2 CPU cores one of its steps takes
    # seconds, so the CPU default is the tiny preset.
    return "resnet-seed" if device_type == "cuda" else "resnet-tiny"


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step: Callable[[int], None], device, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the first step, seconds per timed step after `warmup` steps)."""
    sync(device)
    start = time.perf_counter()
    step(0)
    sync(device)
    first = time.perf_counter() - start
    for i in range(1, warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    return first, (time.perf_counter() - start) / steps


@contextlib.contextmanager
def threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def environment(device, cores: int) -> dict[str, Any]:
    import torch
    import torchvision

    from hpsearch.search.train.figures import device_name

    name = device_name(device)
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cores": cores,
        "torch_threads": cores,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
