"""Several trials of one architecture trained together as one fused model
(HFTA: Wang et al., "Horizontally Fused Training Array", MLSys 2021).

B trials that share the architecture and batch size become one network whose
every layer holds the B members' weights stacked along a leading dimension:

* the members' images travel side by side in the channels, a batch of shape
  (N, B*3, H, W); a convolution becomes one grouped convolution (groups = B),
  a BatchNorm one BatchNorm over B*C channels (each member's channels keep
  their own statistics and running averages), a Linear one batched matmul;
* the ResNet's own `forward` runs unchanged on that layout: only its leaf
  modules are swapped (`fuse_models`), so the fused model cannot drift from
  the single one. Pooling, ReLU, residual sums and SE gating are per channel.

Why grouped convolutions rather than `torch.vmap` over `functional_call`:
vmap turns a batched convolution into this very grouped convolution anyway,
but its BatchNorm rule normalises without the affine weights and applies them
afterwards, which rounds differently from `F.batch_norm` (1 ulp at once, then
growing), and it cannot give each member the dropout draws of its own seeded
generator. Swapping modules keeps the single run's kernels wherever the math
allows: BatchNorm over B*C channels and the batched Linear give each member
bit-identical values and gradients on CPU (the Linear's backward is written
out so that its weight gradient is the same matrix product as `F.linear`'s;
autograd of `bmm` transposes it, which rounds differently). The grouped
convolution is bit-identical too on most shapes, but oneDNN sums some (3
input channels, 1x1 with stride 2) in another order: about 1e-7 after one
step, which training's chaos then amplifies. `grouped=False` runs each
member's convolutions as separate calls, i.e. exactly the single run's
kernels: then a member's records, weights and BatchNorm statistics are
bit-identical to `train(config)` alone on CPU in fp32 on one thread
(tests/test_fused.py; with several threads CPU kernels split reductions by
tensor shape, BatchNorm over B*C channels otherwise than over C, and the
runs agree to rounding: 6e-7 in epoch 1's train loss on 2 threads).
Not yet with SE blocks: their very narrow Linear layers (16 -> 1 in
resnet-tiny with se) round differently batched (epoch-1 train loss off by
1.8e-5), presumably another BLAS kernel for a one-column product.

Each member keeps its own seed (initial weights built as `setup()` builds
them), data order, augmentation and dropout draws (generators seeded by
`epoch_seed(seed, epoch)`, as `train()` seeds them), learning-rate schedule
(torch's own schedulers, driven on a stand-in optimizer) and SGD
hyperparameters (`FusedSGD`: the math of `torch.optim.SGD` with per-member
tensors; Lookahead too, with per-member k and alpha, for all members or
none). A member that stops (pruned by a callback, diverged, or at its last
epoch) is dropped from the stack; the others go on unchanged (bit for bit
with `grouped=False`; with grouped convolutions a member's group position
may move, which changes the rounding of the shapes above).

On CPU fusing gains nothing: the convolutions are compute-bound and oneDNN's
grouped kernels are slower than its plain ones (`hpsearch bench --only fused`). The point is the
GPU, where a small ResNet at batch 64 leaves most of the device idle.

Not covered: `torch.compile` (fused groups run eager; an explicit mode is refused), checkpoints and resume of a fused
run. On CUDA the dropout draws differ from a single run's (torch's fused
dropout kernel draws from the global generator), so there members agree with
single runs only in distribution when dropout is on.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.data import DataBundle, prepare_batch
from hpsearch.models import build_model
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.loop import (
    SELECT_METRICS,
    EpochRecord,
    ExecutionPath,
    TrainResult,
    augment_chunk,
    end_epoch,
    epoch_images,
    epoch_seed,
    resolve_device,
    resume_point,
)
from hpsearch.search.train.optim import build_optimizer, build_scheduler, build_warmup

# -- fused layers --------------------------------------------------------------


def _stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class FusedConv2d(nn.Module):
    """B `nn.Conv2d` of one shape on (N, B*C_in, H, W). `weight` is (B, C_out,
    C_in/groups, kH, kW): member b's output channels are b*C_out ..
    (b+1)*C_out - 1, computed from its own input channels only.

    `grouped` (the default): one grouped convolution for all members, the
    fusion itself. Otherwise one convolution per member, the very call a
    single run makes: on CPU oneDNN picks other kernels for some grouped
    shapes (3 input channels, 1x1 with stride 2), which sum in another order,
    so only this mode is bit-exact there; it is for verification."""

    def __init__(self, convs: Sequence[nn.Conv2d], grouped: bool = True):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros":
            raise TypeError(f"cannot fuse Conv2d with padding_mode={c.padding_mode!r}")
        self.stride, self.padding, self.dilation, self.groups = c.stride, c.padding, c.dilation, c.groups
        self.grouped = grouped
        self.weight = nn.Parameter(_stacked([m.weight for m in convs]))
        self.bias = None if c.bias is None else nn.Parameter(_stacked([m.bias for m in convs]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.weight.shape[0]
        if not self.grouped:
            bias = [None] * b if self.bias is None else self.bias
            return torch.cat([F.conv2d(xm, w, bm, self.stride, self.padding, self.dilation, self.groups)
                              for xm, w, bm in zip(x.chunk(b, 1), self.weight, bias)], 1)
        weight = self.weight.flatten(0, 1)
        bias = None if self.bias is None else self.bias.flatten()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups * b)


class FusedBatchNorm2d(nn.Module):
    """B `nn.BatchNorm2d` as one over B*C channels; parameters and running
    statistics are (B, C) (`num_batches_tracked` is (B,)) and are updated in
    place through flat views, exactly as each member's own BatchNorm would be."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d]):
        super().__init__()
        n = norms[0]
        if not (n.affine and n.track_running_stats) or n.momentum is None:
            raise TypeError("can only fuse BatchNorm2d with affine weights, running statistics and a momentum")
        self.eps, self.momentum = n.eps, n.momentum
        self.weight = nn.Parameter(_stacked([m.weight for m in norms]))
        self.bias = nn.Parameter(_stacked([m.bias for m in norms]))
        self.register_buffer("running_mean", _stacked([m.running_mean for m in norms]))
        self.register_buffer("running_var", _stacked([m.running_var for m in norms]))
        self.register_buffer("num_batches_tracked", _stacked([m.num_batches_tracked for m in norms]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                            self.bias.view(-1), self.training, self.momentum, self.eps)


class _BatchedLinear(torch.autograd.Function):
    """y[b] = x[b] @ w[b].T + bias[b] for x (B, N, in). Written out because
    the autograd of `baddbmm` computes the weight gradient as (x^T g)^T, which
    rounds differently from `F.linear`'s g^T x; here every product is the
    single Linear's, so fused and single gradients agree bit for bit on CPU."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        # Summed in the layout F.linear sums its bias gradient in: strided (as the
        # incoming (N, B*out) gradient is), the sum rounds otherwise (seen: 4
        # members off in fc.bias after one step, 2 members not).
        grad = grad.contiguous()
        return torch.bmm(grad, weight), torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


class FusedLinear(nn.Module):
    """B `nn.Linear` on (N, B*in) -> (N, B*out): the layout the fused ResNet's
    pooled features and SE gates have."""

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        if linears[0].bias is None:
            raise TypeError("can only fuse Linear layers with a bias")
        self.weight = nn.Parameter(_stacked([m.weight for m in linears]))
        self.bias = nn.Parameter(_stacked([m.bias for m in linears]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d_in = self.weight.shape
        n = x.shape[0]
        y = _BatchedLinear.apply(x.view(n, b, d_in).transpose(0, 1), self.weight, self.bias)
        return y.transpose(0, 1).reshape(n, -1)


class FusedDropout(nn.Module):
    """Dropout on (N, B*C) where member b's mask comes from `generators[b]`, drawn
    as torch's CPU dropout draws it (bernoulli(1-p) / (1-p)), so a generator
    seeded like the global one in `train()` gives the same mask."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        b = 0 if self.generators is None else len(self.generators)
        if b == 0 or x.shape[1] % b:
            raise RuntimeError("FusedDropout needs one generator per member in training mode")
        n = x.shape[0]
        shape = (n, x.shape[1] // b)
        masks = [torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1 - self.p, generator=g)
                 for g in self.generators]
        return x * torch.stack(masks, 1).div_(1 - self.p).view_as(x)


def fuse_models(models: Sequence[nn.Module], grouped: bool = True) -> nn.Module:
    """One module that runs `models` (same structure) side by side: a copy of
    the first whose Conv2d, BatchNorm2d, Linear and Dropout leaves are replaced
    by fused ones holding every member's weights (`grouped`: see
    `FusedConv2d`). Its state dict has the members' keys, each value stacked
    along a new leading dimension."""
    fusers = {nn.Conv2d: lambda ms: FusedConv2d(ms, grouped), nn.BatchNorm2d: FusedBatchNorm2d,
              nn.Linear: FusedLinear, nn.Dropout: lambda ms: FusedDropout(ms[0].p)}
    fused = copy.deepcopy(models[0])
    for name, module in list(fused.named_modules()):
        kind = type(module)
        if kind in fusers:
            new = fusers[kind]([m.get_submodule(name) for m in models])
            parent, _, leaf = name.rpartition(".")
            setattr(fused.get_submodule(parent), leaf, new)
        elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            raise TypeError(f"cannot fuse {name or 'the model'} ({kind.__name__}): no fused version of it")
    return fused


def member_state(fused: nn.Module, b: int) -> dict[str, torch.Tensor]:
    """Member b's state dict (CPU copies), loadable into the single model."""
    return {k: v[b].detach().to("cpu", copy=True) for k, v in fused.state_dict().items()}


def _fused_layout(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """B image batches (N, C, H, W) -> one (N, B*C, H, W), member b in channels b*C..(b+1)*C-1."""
    return torch.stack(list(xs), 1).flatten(1, 2)


# -- fused SGD -------------------------------------------------------------------


class FusedSGD:
    """`torch.optim.SGD` (dampening 0) over stacked parameters with per-member
    lr, momentum, weight decay and nesterov as (B,) tensors, in a few batched
    ops per parameter, in the order torch's single-tensor SGD does them:
    d = g + wd*p; buf = d at the first step, else m*buf + d; d = d + m*buf
    (nesterov) or buf; p = p - lr*d. A member with momentum 0 gets buf = d,
    i.e. plain SGD. With Lookahead (per-member k and alpha), every k_b steps
    member b's slow weights move alpha_b towards the fast ones, which restart
    from them. `select(keep)` drops members."""

    def __init__(self, params: Sequence[torch.Tensor], configs: Sequence[TrainConfig]):
        self.params = list(params)
        device = self.params[0].device

        def per_member(values, dtype=torch.float32):
            return torch.tensor(values, dtype=dtype, device=device)

        self.neg_lr = per_member([-c.lr for c in configs])
        self.momentum = per_member([c.momentum for c in configs])
        self.weight_decay = per_member([c.weight_decay for c in configs])
        self.nesterov = per_member([c.nesterov and c.momentum > 0 for c in configs], torch.bool)
        self.any_nesterov = bool(self.nesterov.any())  # kept on the host: no device sync per step
        self.buffers: list[torch.Tensor] | None = None
        self.steps = 0
        lookahead = [c.optimizer == "lookahead" for c in configs]
        if any(lookahead) and not all(lookahead):
            raise ConfigError("optimizer: fused trials must all use sgd or all use lookahead")
        self.lookahead_k = [c.lookahead_k for c in configs] if all(lookahead) else None
        self.alpha = per_member([c.lookahead_alpha for c in configs])
        self.slow = [p.detach().clone() for p in self.params] if self.lookahead_k else None

    def _views(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.view(-1, *[1] * (p.dim() - 1)) for p in self.params]

    def set_lr(self, lrs: Sequence[float]) -> None:
        self.neg_lr.copy_(torch.tensor([-lr for lr in lrs], dtype=torch.float32))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        m = self._views(self.momentum)
        d = torch._foreach_addcmul(grads, self.params, self._views(self.weight_decay))
        if self.buffers is None:
            self.buffers = [t.clone() for t in d]
        else:
            torch._foreach_mul_(self.buffers, m)
            torch._foreach_add_(self.buffers, d)
        if self.any_nesterov:
            ahead = torch._foreach_addcmul(d, self.buffers, m)
            d = [torch.where(n, a, buf) for n, a, buf in zip(self._views(self.nesterov), ahead, self.buffers)]
        else:
            d = self.buffers
        torch._foreach_addcmul_(self.params, d, self._views(self.neg_lr))
        self.steps += 1
        if self.lookahead_k:
            self._lookahead()

    def _lookahead(self) -> None:
        due = [self.steps % k == 0 for k in self.lookahead_k]
        if not any(due):
            return
        moved = torch._foreach_addcmul(self.slow, torch._foreach_sub(self.params, self.slow), self._views(self.alpha))
        if all(due):
            torch._foreach_copy_(self.slow, moved)
            torch._foreach_copy_(self.params, moved)
            return
        for w, new, s, p in zip(self._views(torch.tensor(due, device=self.alpha.device)), moved, self.slow, self.params):
            s.copy_(torch.where(w, new, s))
            p.copy_(torch.where(w, new, p))

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the members at indices `keep` (a 1-D index tensor)."""
        self.neg_lr, self.momentum, self.weight_decay, self.nesterov, self.alpha = (
            t[keep.to(t.device)] for t in (self.neg_lr, self.momentum, self.weight_decay, self.nesterov, self.alpha))
        self.any_nesterov = bool(self.nesterov.any())
        if self.buffers is not None:
            self.buffers = [t[keep.to(t.device)] for t in self.buffers]
        if self.slow is not None:
            self.slow = [t[keep.to(t.device)] for t in self.slow]
            self.lookahead_k = [self.lookahead_k[i] for i in keep.tolist()]


# -- the fused trials ------------------------------------------------------------

# Fields every member must share: they shape the fused model or the batches.
SHARED_KEYS = ("batch_size", "eval_batch_size", "device", "channels_last", "amp", "compile")


def check_fusable(configs: Sequence[TrainConfig]) -> None:
    """ConfigError (one line) unless `configs` can be trained as one fused model."""
    if not configs:
        raise ConfigError("fused trials: no configs given")
    first = configs[0]
    arch = vars(first.model_config())
    for i, c in enumerate(configs[1:], start=1):
        other = vars(c.model_config())
        diff = [f"{k} {arch[k]!r} vs {other[k]!r}" for k in arch if arch[k] != other[k]]
        if diff:
            raise ConfigError(f"fused trials must share the architecture: trial 0 and trial {i} differ in "
                              f"{', '.join(diff)}")
        for key in SHARED_KEYS:
            if getattr(c, key) != getattr(first, key):
                raise ConfigError(f"{key}: fused trials must share it; trial 0 has {getattr(first, key)!r}, "
                                  f"trial {i} has {getattr(c, key)!r}")
    if first.compile not in ("auto", "off"):  # "auto" resolves to uncompiled for a fused group
        raise ConfigError(f"compile: {first.compile!r} is not supported for fused trials; allowed: auto, off")


class _Schedule:
    """A member's learning rate, step by step: torch's own epoch schedule and
    warm-up (`build_scheduler`, `build_warmup`) driven on a stand-in optimizer,
    so every value is the one a single run's optimizer would hold."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int):
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        self.scheduler = build_scheduler(config, self.optimizer)
        self.warmup = build_warmup(config, self.optimizer, steps_per_epoch)
        self.optimizer.step()  # a no-op (no gradient) that keeps torch's "scheduler before optimizer" warning quiet

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def after_step(self) -> bool:
        """Advance the warm-up; True when the lr changed."""
        if self.warmup is not None and self.warmup.last_epoch < self.warmup.total_iters:
            self.warmup.step()
            return True
        return False


@dataclass(eq=False)
class MemberState:
    """What a member's callbacks see (the fused counterpart of `TrainState`)."""

    config: TrainConfig
    trials: FusedTrials
    param_count: int
    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def model_state(self) -> dict[str, torch.Tensor]:
        """This member's current weights and buffers (CPU copies)."""
        return member_state(self.trials.model, self.trials.members.index(self))

    def checkpoint(self) -> dict[str, Any]:
        """This member's resume point in `train()`'s format (`TrainState.checkpoint`):
        `train(config, data, resume=...)` goes on from it as the member would
        have, so a fused trial's epoch checkpoint is resumed by a single run.
        Its optimiser state is a torch SGD's (and Lookahead's), made by
        building the single run's optimiser and schedule and filling them
        with this member's momentum buffers, slow weights and learning rate."""
        trials = self.trials
        b = trials.members.index(self)
        schedule = trials.schedules[b]
        model = build_model(self.config.model_config())
        model.load_state_dict(member_state(trials.model, b))
        optimizer = build_optimizer(self.config, model)
        build_scheduler(self.config, optimizer)  # sets each group's initial_lr, as a single run's does
        fused = trials.optimizer
        if fused.buffers is not None and self.config.momentum != 0:  # torch keeps no buffer without momentum
            for p, buf in zip(model.parameters(), fused.buffers):
                optimizer.state[p]["momentum_buffer"] = buf[b].detach().to("cpu", copy=True)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr
        state = optimizer.state_dict()
        if fused.slow is not None:
            state["lookahead"] = {"steps": fused.steps, "slow": [[s[b].detach().to("cpu", copy=True)
                                                                  for s in fused.slow]],
                                  "k": self.config.lookahead_k, "alpha": self.config.lookahead_alpha}
        return resume_point(self, member_state(trials.model, b), copy.deepcopy(state), schedule.scheduler,
                            schedule.warmup)


class FusedTrials:
    """The members' fused model, fused SGD and per-member schedules on one
    device, with the epoch loop pieces of `TrainingSetup` for all of them."""

    def __init__(self, configs: Sequence[TrainConfig], device: torch.device, n_train: int, grouped: bool = True):
        check_fusable(configs)
        self.configs = list(configs)
        self.device = device
        # Compiled variants are measured on one trial's model; a fused model is another graph.
        self.path = ExecutionPath.of(configs[0], device).uncompiled("fused trials run eager")
        models = []
        for c in configs:
            torch.manual_seed(c.seed)  # as setup(): the same initial weights as a single run
            models.append(build_model(c.model_config()))
        self.model = fuse_models(models, grouped).to(device)
        self.optimizer = FusedSGD(list(self.model.parameters()), configs)
        bs = configs[0].batch_size
        steps = math.ceil(epoch_images(n_train, bs) / bs)
        self.schedules = [_Schedule(c, steps) for c in configs]
        self.criteria = [nn.CrossEntropyLoss(label_smoothing=c.label_smoothing) for c in configs]
        self.members = [MemberState(c, self, c.param_count()) for c in configs]
        self.dropouts = [m for m in self.model.modules() if isinstance(m, FusedDropout)]

    def __len__(self) -> int:
        return len(self.configs)

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every member on its batch: xb (N, B*3, H, W), yb (B, N);
        (detached per-member losses (B,), logits (B, N, classes))."""
        n = xb.shape[0]
        with self.path.autocast():
            logits = self.model(xb).view(n, len(self), -1).transpose(0, 1)
            losses = torch.stack([crit(logits[b], yb[b]) for b, crit in enumerate(self.criteria)])
        self.optimizer.zero_grad()
        losses.sum().backward()  # members share no weights: each gets its own loss's gradient
        self.optimizer.step()
        return losses.detach(), logits.detach()

    def train_epoch(self, x, y, epoch: int) -> tuple[list[float], list[float]]:
        """One epoch of every member, each with its own order, augmentation and
        dropout draws seeded as `train()` seeds them: (train losses, accuracies)."""
        self.model.train()
        seeds = [epoch_seed(c.seed, epoch) for c in self.configs]
        for d in self.dropouts:
            d.generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        aug_gens = [torch.Generator(device=self.device).manual_seed(s + 1) for s in seeds]
        orders = [torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(s)).to(x.device) for s in seeds]
        augments = [c.augment_config() for c in self.configs]
        bs = self.configs[0].batch_size
        stop = epoch_images(x.shape[0], bs)
        loss_sum = torch.zeros(len(self), device=x.device)
        correct = torch.zeros(len(self), device=x.device, dtype=torch.long)
        seen = 0
        for start in range(0, stop, augment_chunk(bs)):
            idx = [o[start : min(start + augment_chunk(bs), stop)] for o in orders]
            xc = _fused_layout([prepare_batch(x[i], a, g) for i, a, g in zip(idx, augments, aug_gens)])
            xc = xc.contiguous(memory_format=self.path.memory_format)
            yc = torch.stack([y[i] for i in idx])
            for i in range(0, idx[0].numel(), bs):
                yb = yc[:, i : i + bs]
                losses, logits = self.step(xc[i : i + bs], yb)
                if any([s.after_step() for s in self.schedules]):
                    self.optimizer.set_lr([s.lr for s in self.schedules])
                loss_sum += losses.float() * yb.shape[1]
                correct += (logits.argmax(-1) == yb).sum(1)
                seen += yb.shape[1]
        return [v / seen for v in loss_sum.tolist()], [v / seen for v in correct.tolist()]

    @torch.inference_mode()
    def evaluate(self, x, y) -> tuple[list[float], list[float]]:
        """(mean cross-entropy, accuracy) of every member on one labelled set."""
        self.model.eval()
        loss_sum = torch.zeros(len(self), device=x.device)
        correct = torch.zeros(len(self), device=x.device, dtype=torch.long)
        bs = self.configs[0].eval_batch_size
        for i in range(0, x.shape[0], bs):
            xb = prepare_batch(x[i : i + bs], None, None)
            xb = xb.repeat(1, len(self), 1, 1).contiguous(memory_format=self.path.memory_format)
            yb = y[i : i + bs]
            with self.path.autocast():
                logits = self.model(xb).view(xb.shape[0], len(self), -1).transpose(0, 1)
            loss_sum += torch.stack([F.cross_entropy(out.float(), yb, reduction="sum") for out in logits])
            correct += (logits.argmax(-1) == yb).sum(1)
        n = max(1, x.shape[0])
        return [v / n for v in loss_sum.tolist()], [v / n for v in correct.tolist()]

    def start_epoch(self) -> list[float]:
        """Each member's lr for the coming epoch (set on the optimizer)."""
        lrs = [s.lr for s in self.schedules]
        self.optimizer.set_lr(lrs)
        return lrs

    def end_epoch(self) -> None:
        for s in self.schedules:
            s.scheduler.step()

    def keep(self, indices: Sequence[int]) -> None:
        """Drop every member not in `indices` from the stack and the optimizer."""
        keep = torch.tensor(list(indices), dtype=torch.long)
        with torch.no_grad():
            for t in [*self.model.parameters(), *self.model.buffers()]:
                t.grad = None
                t.data = t.data[keep.to(t.device)]
        self.optimizer.select(keep)
        pick = list(indices)
        self.configs = [self.configs[i] for i in pick]
        self.schedules = [self.schedules[i] for i in pick]
        self.criteria = [self.criteria[i] for i in pick]
        self.members = [self.members[i] for i in pick]


def train_fused(
    configs: Sequence[TrainConfig],
    data: DataBundle,
    callbacks: Sequence[Sequence[Any]] | None = None,
    select: str = "val_acc",
    grouped: bool = True,
) -> list[TrainResult]:
    """Train `configs` as one fused model; one `TrainResult` per config, in
    order, each as `train(config, data, callbacks[i], select=select)` would
    give it: on CPU in fp32 the same records and weights bit for bit with
    `grouped=False`, and up to the summation order of oneDNN's grouped
    convolution kernels with `grouped=True` (see `FusedConv2d`).
    `callbacks[i]` see (record, MemberState); a StopTraining they raise stops
    member i only. A member also leaves at its own last epoch or when its
    loss is not finite; the others carry on."""
    if select not in SELECT_METRICS:
        raise ValueError(f"select {select!r}; allowed: {', '.join(SELECT_METRICS)}")
    check_fusable(configs)
    callbacks = [list(cbs) for cbs in callbacks] if callbacks is not None else [[] for _ in configs]
    if len(callbacks) != len(configs):
        raise ValueError(f"{len(callbacks)} callback lists for {len(configs)} configs")
    device = resolve_device(configs[0].device)
    trials = FusedTrials(configs, device, data.train_y.numel(), grouped)
    execution = {**trials.path.describe(), "fused_members": len(configs), "grouped_convolutions": grouped}
    states = list(trials.members)
    outcome: dict[int, tuple[str, str | None]] = {}
    index = {id(s): i for i, s in enumerate(states)}
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)

    epoch = 0
    while len(trials):
        epoch += 1
        start = time.perf_counter()
        lrs = trials.start_epoch()
        train_loss, train_acc = trials.train_epoch(train_x, train_y, epoch)
        trials.end_epoch()
        val_loss, val_acc = trials.evaluate(val_x, val_y)
        seconds = time.perf_counter() - start
        keep = []
        for b, state in enumerate(list(trials.members)):
            i = index[id(state)]
            record = EpochRecord(epoch, train_loss[b], train_acc[b], val_loss[b], val_acc[b], lrs[b], seconds)
            done = end_epoch(record, state, callbacks[i], select, lambda b=b: member_state(trials.model, b))
            if done is None and epoch < state.config.epochs:
                keep.append(b)
            else:
                outcome[i] = done or ("completed", None)
        if len(keep) < len(trials):
            trials.keep(keep)

    return [
        TrainResult(
            status=outcome[i][0],
            reason=outcome[i][1],
            history=s.history,
            best_val_acc=max(s.best_val_acc, 0.0),
            best_epoch=s.best_epoch,
            best_state=s.best_state,
            param_count=s.param_count,
            model_config=s.config.model_config().to_dict(),
            device=str(device),
            execution=execution,
        )
        for i, s in enumerate(states)
    ]

