"""The reusable training function: `train(config, data, callbacks) -> TrainResult`.

It knows nothing of Optuna or MLflow. Callbacks observe every epoch (and may
stop training by raising `StopTraining`); that is how the search prunes,
logs and checkpoints.

Hot path (after airbench): the data set lives on the training device as uint8,
each chunk of batches is gathered by index, augmented and normalised there
in a few batched ops; loss and accuracy accumulate on the device and are read
once per epoch, so there is no host sync per step. Every epoch's shuffle, augmentation
and dropout draws come from generators seeded by (seed, epoch), so a run
resumed from an epoch checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from hpsearch.data import DataBundle, prepare_batch
from hpsearch.models import build_model
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.execution import ExecutionPath, choose_path
from hpsearch.search.train.optim import build_optimizer, build_scheduler, build_warmup


class StopTraining(Exception):
    """Raised by a callback to end training early (e.g. pruning); the reason is kept."""


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float  # the learning rate used during this epoch
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TrainState:
    """What callbacks see; `checkpoint()` is everything needed to resume."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    param_count: int
    epoch: int = 0  # epochs completed
    history: list[EpochRecord] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    warmup: Any = None  # per-step LR warm-up (LinearLR) or None

    def checkpoint(self) -> dict[str, Any]:
        """A snapshot that shares nothing with the live training state (every
        tensor copied to the CPU), so it can be written while training goes
        on; loading it back moves the optimizer state to the parameters' device."""
        # copies: the optimizer keeps updating its buffers in place
        return resume_point(self, _cpu_state(self.model), _cpu_copy(self.optimizer.state_dict()), self.scheduler,
                            self.warmup)


def resume_point(state, model: dict, optimizer: dict, scheduler, warmup) -> dict[str, Any]:
    """The one format `train(resume=...)` reads: a run's (or a fused
    trial's) progress and best epoch from `state`, its model and optimiser
    states as given, copies of its schedules' states."""
    return {
        "epoch": state.epoch,
        "model": model,
        "optimizer": optimizer,
        "scheduler": copy.deepcopy(scheduler.state_dict()),
        "warmup": None if warmup is None else copy.deepcopy(warmup.state_dict()),
        "history": [r.to_dict() for r in state.history],
        "best_val_acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
    }


class Callback(Protocol):
    def on_epoch_end(self, record: EpochRecord, state: TrainState) -> None: ...


@dataclass
class TrainResult:
    status: str  # "completed", "stopped" (by a callback) or "diverged" (non-finite loss)
    reason: str | None
    history: list[EpochRecord]
    best_val_acc: float
    best_epoch: int
    best_state: dict[str, torch.Tensor] | None
    param_count: int
    model_config: dict[str, Any]
    device: str
    execution: dict[str, Any] = field(default_factory=dict)  # the resolved ExecutionPath.describe()

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "param_count": self.param_count,
            "epochs": [r.to_dict() for r in self.history],
            "execution": self.execution,
        }


@dataclass
class TrainingSetup:
    """Everything a run builds from its config on a device, shared by `train()`
    and `hpsearch bench` (which times these very objects): the model in the
    path's memory format, the module the loop calls, optimiser, schedule and loss."""

    config: TrainConfig
    device: torch.device
    path: ExecutionPath
    model: nn.Module
    forward: nn.Module  # `model`, or its compiled version
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    param_count: int
    warmup: Any = None  # per-step linear LR warm-up (`build_warmup`), made by `with_warmup`

    def with_warmup(self, n_train: int) -> TrainingSetup:
        """Add the per-step warm-up for a training set of `n_train` images."""
        steps = math.ceil(epoch_images(n_train, self.config.batch_size) / self.config.batch_size)
        self.warmup = build_warmup(self.config, self.optimizer, steps)
        return self

    def step(self, xb: torch.Tensor, yb: torch.Tensor):
        return train_step(self.forward, self.optimizer, self.criterion, xb, yb, self.path.autocast)

    def train_epoch(self, x, y, shuffle: torch.Generator, aug_gen: torch.Generator) -> tuple[float, float]:
        return _train_epoch(self.forward, self.optimizer, self.criterion, x, y, self.config.batch_size,
                            self.config.augment_config(), shuffle, aug_gen, self.path.memory_format,
                            self.path.autocast, self.warmup)

    def evaluate(self, x, y) -> tuple[float, float]:
        return evaluate(self.forward, x, y, self.config.eval_batch_size, self.path.memory_format,
                        self.path.autocast)


def setup(config: TrainConfig, device: torch.device, images_to_train: int | None = None,
          path: ExecutionPath | None = None) -> TrainingSetup:
    """Seeded model, optimiser and schedule for `config` on `device`, run
    the way `choose_path` picks for a run of `images_to_train` images (or
    as `path` says: the bench times given variants)."""
    path = path or choose_path(config, device, images_to_train)
    torch.manual_seed(config.seed)
    model = build_model(config.model_config()).to(device)
    model = model.to(memory_format=path.memory_format)
    optimizer = build_optimizer(config, model, fused=path.fused_sgd)
    scheduler = build_scheduler(config, optimizer)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return TrainingSetup(config, device, path, model, path.compiled(model), optimizer, scheduler, criterion,
                         config.param_count())


# Images augmented per `prepare_batch` call in the training loop, then sliced
# into batches. Its per-call cost (some 30 small ops: dispatch, OpenMP wake-up
# on CPU, kernel launches on CUDA) is then paid once per chunk, not per batch:
# at batch 64 on 2 CPU cores, 2.3x the images/s with passive OpenMP threads
# (OMP_WAIT_POLICY=PASSIVE, or any busy machine), a few % with spinning ones
# on an idle machine. The draws are per sample and, on CPU, the same stream as
# batch by batch, so training results are unchanged.
AUGMENT_CHUNK = 512


def augment_chunk(batch_size: int) -> int:
    """Images per augmentation call: whole batches, about AUGMENT_CHUNK images."""
    return batch_size * max(1, AUGMENT_CHUNK // batch_size)


def train_step(model, optimizer, criterion, xb, yb, autocast=contextlib.nullcontext):
    """One optimisation step on a prepared batch: (detached loss, logits).
    Nothing here reads a value back to the host, so on CUDA the CPU queues the
    next batch while the GPU still works on this one."""
    with autocast():
        out = model(xb)
        loss = criterion(out, yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), out.detach()


def resolve_device(name: str) -> torch.device:
    """The torch device for `TrainConfig.device`; commands call it before they
    write anything, so a missing GPU is one line and nothing half-made."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA device; allowed here: auto, cpu")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int) -> int:
    """One independent seed per (run seed, epoch): resuming needs no RNG state."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**62)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def train(
    config: TrainConfig,
    data: DataBundle,
    callbacks: list[Callback] | tuple = (),
    resume: dict[str, Any] | None = None,
    select: str = "val_acc",
) -> TrainResult:
    """Train `config` on `data`; the best epoch (whose weights are kept) is the
    one with the highest `val_acc`, or the lowest `val_loss` with
    `select="val_loss"` (a study's metric), and `best_val_acc` is that epoch's."""
    if select not in SELECT_METRICS:
        raise ValueError(f"select {select!r}; allowed: {', '.join(SELECT_METRICS)}")
    device = resolve_device(config.device)
    n_train = data.train_y.numel()
    epochs_left = config.epochs - (resume["epoch"] if resume is not None else 0)
    run = setup(config, device, images_to_train=epochs_left * epoch_images(n_train, config.batch_size))
    run.with_warmup(n_train)
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    state = TrainState(config, model, optimizer, scheduler, run.param_count, warmup=run.warmup)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if run.warmup is not None and resume.get("warmup") is not None:
            run.warmup.load_state_dict(resume["warmup"])
        state.epoch = resume["epoch"]
        state.history = [EpochRecord(**r) for r in resume["history"]]
        state.best_val_acc = resume["best_val_acc"]
        state.best_epoch = resume["best_epoch"]
        state.best_state = resume["best_state"]

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)

    status, reason = "completed", None
    for epoch in range(state.epoch + 1, config.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout draws
        shuffle = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        aug_gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch) + 1)
        train_loss, train_acc = run.train_epoch(train_x, train_y, shuffle, aug_gen)
        scheduler.step()
        val_loss, val_acc = run.evaluate(val_x, val_y)
        record = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - start)
        ended = end_epoch(record, state, callbacks, select, lambda: _cpu_state(model))
        if ended is not None:
            status, reason = ended
            break

    return TrainResult(
        status=status,
        reason=reason,
        history=state.history,
        best_val_acc=max(state.best_val_acc, 0.0),
        best_epoch=state.best_epoch,
        best_state=state.best_state,
        param_count=run.param_count,
        model_config=config.model_config().to_dict(),
        device=str(device),
        execution=run.path.describe(),
    )


SELECT_METRICS = ("val_acc", "val_loss")


def end_epoch(record: EpochRecord, state, callbacks, select: str, weights) -> tuple[str, str] | None:
    """After an epoch, for `train()` and each fused trial alike: record it,
    stop on a non-finite loss, keep the best epoch's `weights()` (a CPU copy)
    and run the callbacks; None to go on, else (status, reason)."""
    state.history.append(record)
    state.epoch = record.epoch
    if not math.isfinite(record.train_loss) or not math.isfinite(record.val_loss):
        return "diverged", (f"non-finite loss at epoch {record.epoch} "
                            f"(train {record.train_loss}, val {record.val_loss})")
    if improves(record, state, select):
        state.best_val_acc, state.best_epoch = record.val_acc, record.epoch
        state.best_state = weights()
    try:
        for cb in callbacks:
            cb.on_epoch_end(record, state)
    except StopTraining as stop:
        return "stopped", str(stop) or f"stopped at epoch {record.epoch}"
    return None


def improves(record: EpochRecord, state: TrainState, select: str) -> bool:
    if state.best_epoch == 0:
        return True
    best = state.history[state.best_epoch - 1]
    if select == "val_loss":
        return record.val_loss < best.val_loss
    return record.val_acc > best.val_acc


def epoch_images(n: int, batch_size: int) -> int:
    """Images used per epoch: a final batch of one image is dropped (BatchNorm
    cannot normalise it in training mode)."""
    return n - 1 if n % batch_size == 1 and n > 1 else n


def _train_epoch(model, optimizer, criterion, x, y, batch_size, augment, shuffle, aug_gen,
                 memory_format, autocast, warmup=None) -> tuple[float, float]:
    model.train()
    n = x.shape[0]
    order = torch.randperm(n, generator=shuffle).to(x.device, non_blocking=True)
    stop = epoch_images(n, batch_size)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    seen = 0
    chunk = augment_chunk(batch_size)
    for start in range(0, stop, chunk):
        idx = order[start : min(start + chunk, stop)]
        xc = prepare_batch(x[idx], augment, aug_gen).contiguous(memory_format=memory_format)
        yc = y[idx]
        for i in range(0, idx.numel(), batch_size):
            xb, yb = xc[i : i + batch_size], yc[i : i + batch_size]
            loss, out = train_step(model, optimizer, criterion, xb, yb, autocast)
            if warmup is not None and warmup.last_epoch < warmup.total_iters:
                warmup.step()
            loss_sum += loss.float() * yb.numel()
            correct += (out.argmax(1) == yb).sum()
            seen += yb.numel()
    return loss_sum.item() / seen, correct.item() / seen


@torch.inference_mode()
def evaluate(model, x, y, batch_size=1024, memory_format=torch.contiguous_format,
             autocast=contextlib.nullcontext) -> tuple[float, float]:
    """(mean plain cross-entropy, accuracy) over a labelled tensor set, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, x.shape[0], batch_size):
        xb = prepare_batch(x[i : i + batch_size], None, None).contiguous(memory_format=memory_format)
        yb = y[i : i + batch_size]
        with autocast():
            out = model(xb)
        loss_sum += nn.functional.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    n = max(1, x.shape[0])
    return loss_sum.item() / n, correct.item() / n


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, tta: bool = False) -> torch.Tensor:
    """Class predictions for uint8 images (N,3,32,32); `tta` averages with the mirror image."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = prepare_batch(x[i : i + batch_size].to(device), None, None)
        logits = model(xb).float().softmax(1)
        if tta:
            logits = logits + model(xb.flip(3)).float().softmax(1)
        out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
