"""`hpsearch bench`: our fast paths against the naive ones, side by side in one process.

Three comparisons (issue 6), each measured in interleaved rounds so that a
neighbour's load hits both sides alike; the median of the rounds is reported:

1. Data path, images/s. Ours, as `search.train` runs it: a uint8 data set
   resident on the device, chunks of whole batches (`augment_chunk`) gathered
   by index and augmented + normalised by `data.prepare_batch` (default
   `AugmentConfig`). The report's: torchvision's
   `Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
   RandomRotation(15), ColorJitter(0.2, 0.2, 0.2), ToTensor(), Normalize])` on
   PIL images through a `DataLoader` with one worker per core the process may
   use (ours gets as many torch threads), batches moved to the device.
2. Training step, images/s, same model, batch size and synthetic input: a plain
   fp32 loop (contiguous, no autocast, no compile, `loss.item()` every step)
   against `search.train`'s path (`FastPath` + `train_step`: channels_last and
   bf16 autocast on CUDA, no host sync per step), and `search.train`'s whole
   epoch loop (gather + augmentation + step; on CUDA with a count of host
   syncs per step). On CUDA also torch.compile and cudnn.benchmark on top of
   our path, measured last (compilation is slow).
3. Search overhead: a real small study through `search.runner.run_study` with
   the default SQLite stores in a temporary directory; per trial,
   (wall time from Optuna's datetime_start/complete - the epochs' `seconds`) /
   wall time. An epoch's `seconds` covers training and evaluation, so what is
   left is MLflow logging, checkpoints, Optuna storage calls and set-up.

Results are written to the JSON file after every part, so a run cut short by a
time limit still leaves what it measured.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import platform
import statistics
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

PARTS = ("data", "step", "overhead")
OVERHEAD_TARGET = 0.02  # issue 6: search overhead <= 2% of a trial's wall time
DATA_TARGET = 10.0  # issue 6: our data path >= 10x the report's pipeline


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
                          trials=6, epochs=3, synthetic_size=6000, val_size=1000),
    ("cuda", False): Sizes(rounds=2, data_images=16384, data_pool=16384, step_warmup=10, step_steps=40,
                           trials=2, epochs=3, synthetic_size=50000, val_size=5000),
    ("cpu", True): Sizes(rounds=1, data_images=256, data_pool=256, step_warmup=1, step_steps=2,
                         trials=1, epochs=1, synthetic_size=300, val_size=100),
    ("cuda", True): Sizes(rounds=1, data_images=1024, data_pool=1024, step_warmup=2, step_steps=5,
                          trials=1, epochs=1, synthetic_size=600, val_size=100),
}


def default_model(device_type: str) -> str:
    # resnet-seed is the report's network; on 2 CPU cores one of its steps takes
    # seconds, so the CPU default is the tiny preset.
    return "resnet-seed" if device_type == "cuda" else "resnet-tiny"


# ---------------------------------------------------------------------------
# timing helpers
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


# ---------------------------------------------------------------------------
# 1. data path
class PilImages:
    """The report's input pipeline: HWC uint8 arrays, one PIL image per item."""

    def __init__(self, images_hwc, labels, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def report_transform(cfg):
    """torchvision's equivalent of `cfg` (the report's augmentations)."""
    from torchvision import transforms as T

    from hpsearch.data import CIFAR10_MEAN, CIFAR10_STD

    return T.Compose([
        T.RandomCrop(32, padding=cfg.crop_padding),
        T.RandomHorizontalFlip(),
        T.RandomRotation(cfg.rotation),
        T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation),
        T.ToTensor(),
        T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])


def bench_data(device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from hpsearch.data import AugmentConfig, prepare_batch
    from hpsearch.search.train.loop import augment_chunk

    cfg = AugmentConfig()
    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (sizes.data_pool, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (sizes.data_pool,), generator=gen)
    n_batches = max(1, math.ceil(sizes.data_images / batch_size))
    n_images = n_batches * batch_size

    # Ours, as search.train's loop does it: the pool lives on the device; a
    # chunk of whole batches is an index gather plus one prepare_batch call.
    x_dev, y_dev = pool.to(device), labels.to(device)
    aug_gen = torch.Generator(device=device).manual_seed(1)
    chunk = augment_chunk(batch_size)

    def ours() -> float:
        order = torch.randint(0, sizes.data_pool, (n_images + chunk,), generator=gen).to(device)
        prepare_batch(x_dev[order[n_images:]], cfg, aug_gen)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for i in range(0, n_images, chunk):
            idx = order[i: min(i + chunk, n_images)]
            xc, yc = prepare_batch(x_dev[idx], cfg, aug_gen), y_dev[idx]
        _sync(device)
        del xc, yc
        return n_images / (time.perf_counter() - start)

    # Theirs: one worker per core; the warm-up drains the loader's initial
    # prefetch (workers x prefetch_factor batches) so the timed part is steady.
    dataset = PilImages(pool.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy(), report_transform(cfg))
    warmup = max(3, 2 * cores * 2)
    pin = device.type == "cuda"

    def theirs() -> float:
        sampler = RandomSampler(dataset, replacement=True, num_samples=(warmup + n_batches) * batch_size,
                                generator=torch.Generator().manual_seed(2))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cores,
                            pin_memory=pin, drop_last=True)
        it = iter(loader)
        for _ in range(warmup):
            xb, yb = next(it)
            xb, yb = xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin)
        _sync(device)
        start = time.perf_counter()
        for _ in range(n_batches):
            xb, yb = next(it)
            xb, yb = xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin)
        _sync(device)
        rate = n_images / (time.perf_counter() - start)
        del it  # shuts the workers down before the next measurement
        return rate

    rounds = []
    with _threads(cores):
        for _ in range(sizes.rounds):
            rounds.append({"ours": ours(), "torchvision": theirs()})
    o, t = _median([r["ours"] for r in rounds]), _median([r["torchvision"] for r in rounds])
    return {
        "ours_images_per_s": o,
        "torchvision_images_per_s": t,
        "ratio": _ratio(o, t),
        "rounds": rounds,
        "images_per_round": n_images,
        "batch_size": batch_size,
        "augment_chunk": chunk,  # images per prepare_batch call (search.train.augment_chunk)
        "num_workers": cores,
        "torch_threads": cores,
        "augment": cfg.to_dict(),
        "target_ratio": DATA_TARGET,
    }


# ---------------------------------------------------------------------------
# 2. training step
def _step_inputs(device, batch_size: int, n: int = 4):
    import torch

    from hpsearch.data import prepare_batch

    gen = torch.Generator().manual_seed(3)
    xs = [prepare_batch(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=gen), None)
          .to(device) for _ in range(n)]
    ys = [torch.randint(0, 10, (batch_size,), generator=gen).to(device) for _ in range(n)]
    return xs, ys


def _timed_steps(step: Callable[[int], None], device, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the first step, seconds per timed step after `warmup` steps)."""
    _sync(device)
    start = time.perf_counter()
    step(0)
    _sync(device)
    first = time.perf_counter() - start
    for i in range(1, warmup):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return first, (time.perf_counter() - start) / steps


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
    """`search.train`'s step: the same FastPath and train_step."""
    import torch
    from torch import nn

    from hpsearch.models import ResNet
    from hpsearch.search.train.optim import build_optimizer
    from hpsearch.search.train.loop import FastPath, train_step

    path = FastPath.of(config, device)
    torch.manual_seed(0)
    model = ResNet(config.model_config()).to(device).to(memory_format=path.memory_format).train()
    forward = path.forward(model)
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()
    xs = [x.contiguous(memory_format=path.memory_format) for x in xs]

    def step(i: int) -> None:
        train_step(forward, optimizer, criterion, xs[i % len(xs)], ys[i % len(ys)], path.autocast)

    return step


def _full_loop(config, device, batch_size: int, steps: int) -> tuple[float, float | None]:
    """`search.train._train_epoch` itself (gather, augmentation, step, running
    metrics) over `steps` batches: (images/s, host syncs per step on CUDA,
    not counting the epoch's final read of its loss and accuracy)."""
    import torch
    from torch import nn

    from hpsearch.models import ResNet
    from hpsearch.search.train.optim import build_optimizer
    from hpsearch.search.train.loop import FastPath, _train_epoch, augment_chunk

    path = FastPath.of(config, device)
    gen = torch.Generator().manual_seed(4)
    n = steps * batch_size
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    torch.manual_seed(0)
    model = ResNet(config.model_config()).to(device).to(memory_format=path.memory_format)
    forward = path.forward(model)
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()

    def epoch(images: torch.Tensor, labels: torch.Tensor) -> None:
        _train_epoch(forward, optimizer, criterion, images, labels, batch_size, config.augment_config(),
                     torch.Generator().manual_seed(5), torch.Generator(device=device).manual_seed(6),
                     path.memory_format, path.autocast)

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
    _sync(device)
    start = time.perf_counter()
    epoch(x, y)
    _sync(device)
    return n / (time.perf_counter() - start), syncs


def bench_step(model_name: str, device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    import torch

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.loop import FastPath

    config = TrainConfig(model=model_name, device=device.type, batch_size=batch_size)
    xs, ys = _step_inputs(device, batch_size)
    rounds = []
    with _threads(cores):
        naive, ours = _naive(config, device, xs, ys), _ours(config, device, xs, ys)
        for _ in range(sizes.rounds):
            _, tn = _timed_steps(naive, device, sizes.step_warmup, sizes.step_steps)
            _, to = _timed_steps(ours, device, sizes.step_warmup, sizes.step_steps)
            rounds.append({"naive": batch_size / tn, "ours": batch_size / to})
        del naive, ours
        full, syncs = _full_loop(config, device, batch_size, sizes.step_steps)
    n, o = _median([r["naive"] for r in rounds]), _median([r["ours"] for r in rounds])
    fast = FastPath.of(config, device)
    path = {"channels_last": fast.memory_format == torch.channels_last, "bf16_autocast": fast.amp,
            "compile": fast.compile}
    return {
        "model": model_name,
        "batch_size": batch_size,
        "naive_images_per_s": n,
        "ours_images_per_s": o,
        "ratio": _ratio(o, n),
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
    first, t = _timed_steps(_ours(config, device, xs, ys), device, max(sizes.step_warmup, 5), sizes.step_steps)
    rate = batch_size / t
    gain = 1 / eager_rate - 1 / rate  # seconds saved per image
    return {
        "images_per_s": rate,
        "speedup": _ratio(rate, eager_rate),
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
        _, t = _timed_steps(_ours(config, device, xs, ys), device, sizes.step_warmup, sizes.step_steps)
    finally:
        torch.backends.cudnn.benchmark = before
    return {"images_per_s": batch_size / t, "speedup": _ratio(batch_size / t, eager_rate)}


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part's figures, or the one-line reason it failed (the other parts still run)."""
    try:
        return fn()
    except Exception as e:  # a benchmark reports what broke and goes on
        text = str(e).strip().splitlines()
        return {"error": f"{type(e).__name__}: {text[0] if text else ''}"[:500]}


# ---------------------------------------------------------------------------
# 3. search overhead
STUDY_TOML = """\
# hpsearch bench: a small TPE study with a median pruner that never prunes
# (n_startup_trials = n_trials) but is consulted every epoch, as in real studies.
[study]
sampler = "tpe"
pruner = "median"
pruner_options = {{ n_startup_trials = {trials}, n_warmup_steps = 0 }}
n_trials = {trials}
seed = 0

[train]
model = "resnet-tiny"
dataset = "synthetic"
synthetic_size = {synthetic_size}
val_size = {val_size}
epochs = {epochs}
batch_size = 64
scheduler = "cosine"
weight_decay = 5e-4

[space]
lr = {{ low = 0.02, high = 0.2, log = true }}
"""

# Where the time outside the epochs goes: (category, owner, attribute). Time is
# exclusive: a timed call inside another is counted once, in its own category.
_PER_EPOCH = ("mlflow_epoch_metrics", "epoch_checkpoint", "optuna_report_prune")
_TIMED = (
    ("mlflow_epoch_metrics", "hpsearch.search.study.tracking:Tracker", "log_epoch"),
    ("mlflow_run_setup_and_end", "hpsearch.search.study.tracking:Tracker", "create_run"),
    ("mlflow_run_setup_and_end", "hpsearch.search.study.tracking:Tracker", "set_tags"),
    ("mlflow_run_setup_and_end", "hpsearch.search.study.tracking:Tracker", "finish"),
    ("mlflow_run_setup_and_end", "hpsearch.search.study.tracking:Tracker", "reopen"),
    ("mlflow_run_setup_and_end", "hpsearch.search.study.objective", "log_config"),
    ("mlflow_outputs_and_best_checkpoint", "hpsearch.search.study.objective", "log_outputs"),
    ("epoch_checkpoint", "hpsearch.search.study.objective:EpochCheckpoint", "on_epoch_end"),  # snapshot + wait for the last write
    ("epoch_checkpoint", "hpsearch.search.study.objective:EpochCheckpoint", "close"),
    ("optuna_report_prune", "optuna.trial:Trial", "report"),
    ("optuna_report_prune", "optuna.trial:Trial", "should_prune"),
    ("optuna_suggest_and_attrs", "optuna.trial:Trial", "set_user_attr"),
    ("optuna_suggest_and_attrs", "optuna.trial:Trial", "suggest_float"),
    ("optuna_suggest_and_attrs", "optuna.trial:Trial", "suggest_int"),
    ("optuna_suggest_and_attrs", "optuna.trial:Trial", "suggest_categorical"),
    ("optuna_suggest_and_attrs", "hpsearch.search.study.objective:Objective", "_check_grid"),
    ("train_outside_epochs", "hpsearch.search.study.objective", "train"),
)


class _Timers:
    """Patches the calls above with exclusive-time wrappers, per trial."""

    def __init__(self):
        self.by_trial: dict[int, dict[str, float]] = {}
        self.current: dict[str, float] = defaultdict(float)
        self.stack: list[float] = []
        self.patched: list[tuple[Any, str, Any]] = []

    def _wrap(self, category: str, fn):
        timers = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            # Only the training thread's time is overhead: the epoch checkpoint
            # write and its MLflow record run on a background thread.
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            start = time.perf_counter()
            timers.stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.perf_counter() - start
                nested = timers.stack.pop()
                timers.current[category] += total - nested
                if timers.stack:
                    timers.stack[-1] += total

        return timed

    def _patch(self, owner, name: str, new) -> None:
        self.patched.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)

    def __enter__(self):
        import importlib

        for category, where, name in _TIMED:
            module, _, cls = where.partition(":")
            owner = importlib.import_module(module)
            if cls:
                owner = getattr(owner, cls)
            self._patch(owner, name, self._wrap(category, getattr(owner, name)))
        from hpsearch.search.study.objective import Objective

        original = Objective.__call__
        timers = self

        def call(objective, trial):
            timers.current = timers.by_trial.setdefault(trial.number, defaultdict(float))
            return original(objective, trial)

        self._patch(Objective, "__call__", call)
        return self

    def __exit__(self, *exc):
        for owner, name, old in reversed(self.patched):
            setattr(owner, name, old)
        self.patched.clear()


@contextlib.contextmanager
def _study_directory():
    """A temporary working directory with no store settings from outside, so
    the default stores (mlruns/ under it) are the ones used; afterwards the
    process's settings are as they were (`mlflow.set_tracking_uri`, which the
    study calls, also exports MLFLOW_TRACKING_URI)."""
    keys = ("MLFLOW_TRACKING_URI", "HPSEARCH_STORAGE", "HPSEARCH_CHECKPOINT_DIR")
    saved = {k: os.environ.pop(k, None) for k in keys}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)
            import mlflow

            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None: unset
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def bench_overhead(device, sizes: Sizes) -> dict[str, Any]:
    try:
        import mlflow  # noqa: F401
        import optuna
        import plotly  # noqa: F401
    except ImportError as e:
        return {"skipped": f"{e.name} is not installed"}
    from mlflow.tracking import MlflowClient

    from hpsearch.search.study.runner import RunOptions, run_study

    size = {"model": "resnet-tiny", "trials": sizes.trials, "epochs": sizes.epochs,
            "train_images": sizes.synthetic_size - sizes.val_size, "val_images": sizes.val_size,
            "batch_size": 64, "sampler": "tpe", "pruner": "median", "stores": "default SQLite (mlruns/)"}
    with _study_directory() as tmp:
        spec = tmp / "bench.toml"
        spec.write_text(STUDY_TOML.format(**asdict(sizes)))
        opts = RunOptions(study=str(spec), device=device.type, quiet=True)
        with _Timers() as timers, contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            run_study(opts)
            total = time.perf_counter() - started
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{tmp}/mlruns/optuna.db")
        client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        trials = []
        for t in study.get_trials(deepcopy=False):
            if t.datetime_complete is None or t.datetime_start is None:
                continue
            wall = (t.datetime_complete - t.datetime_start).total_seconds()
            epochs = [m.value for m in client.get_metric_history(t.user_attrs["mlflow_run_id"], "epoch_seconds")]
            overhead = wall - sum(epochs)
            parts = dict(timers.by_trial.get(t.number, {}))
            parts["train_outside_epochs"] = max(0.0, parts.get("train_outside_epochs", 0.0) - sum(epochs))
            parts["other"] = overhead - sum(parts.values())
            trials.append({"number": t.number, "state": t.state.name, "wall_seconds": wall,
                           "epoch_seconds": sum(epochs), "epochs": len(epochs), "overhead_seconds": overhead,
                           "overhead_fraction": _ratio(overhead, wall),
                           "breakdown_seconds": {k: round(v, 4) for k, v in sorted(parts.items())}})
    if not trials:
        return {"skipped": "no trial finished", "trial_size": size}
    wall = sum(t["wall_seconds"] for t in trials)
    over = sum(t["overhead_seconds"] for t in trials)
    later = trials[1:]
    breakdown: dict[str, float] = defaultdict(float)
    for t in trials:
        for k, v in t["breakdown_seconds"].items():
            breakdown[k] += v / len(trials)
    n_epochs = sum(t["epochs"] for t in trials)
    per_epoch = sum(breakdown[k] for k in _PER_EPOCH) * len(trials) / max(1, n_epochs)
    return {
        "fraction": _ratio(over, wall),
        "first_trial_fraction": trials[0]["overhead_fraction"],
        "later_trials_fraction": (_ratio(sum(t["overhead_seconds"] for t in later),
                                         sum(t["wall_seconds"] for t in later)) if later else None),
        "mean_trial_seconds": wall / len(trials),
        "mean_overhead_seconds": over / len(trials),
        "per_epoch_overhead_seconds": per_epoch,  # epoch checkpoint, epoch metrics, report + prune
        "per_trial_fixed_seconds": over / len(trials) - per_epoch * n_epochs / len(trials),
        "mean_epoch_seconds": sum(t["epoch_seconds"] for t in trials) / max(1, n_epochs),
        "breakdown_seconds_per_trial": {k: round(v, 4) for k, v in sorted(breakdown.items())},
        "trials": trials,
        "study_seconds": total,
        "trial_size": size,
        "target_fraction": OVERHEAD_TARGET,
    }


# ---------------------------------------------------------------------------
# the whole run
@dataclass(frozen=True)
class BenchOptions:
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    json_path: str | None = None
    quick: bool = False
    parts: tuple[str, ...] = PARTS
    rounds: int | None = None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def environment(device, cores: int) -> dict[str, Any]:
    import torch
    import torchvision

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
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


def run_bench(opts: BenchOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen parts; returns (and writes, if asked) every figure."""
    import json

    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.errors import UserError
    from hpsearch.search.train.loop import resolve_device

    try:
        device = resolve_device(opts.device)
    except RuntimeError as e:  # --device cuda without a GPU
        raise UserError(str(e)) from None
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
    if "overhead" in opts.parts:
        say(f"search overhead: {sizes.describe_trial()} ...")
        result["search_overhead"] = _attempt(lambda: bench_overhead(device, sizes))
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
