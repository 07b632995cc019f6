"""Optimizers and LR schedules named by `TrainConfig`.

SGD and the schedules are torch's. Lookahead (Zhang, Lucas, Hinton and Ba
2019, arXiv:1907.08610) is not in torch or torchvision, so it is written here:
it wraps any optimizer, and every k fast steps moves slow weights a fraction
alpha towards the fast ones and restarts the fast weights from there.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from hpsearch.search.train.config import TrainConfig


class Lookahead:
    """Lookahead on top of an optimizer, through torch's public optimizer
    hooks (checked with torch 2.4-2.14): a step post-hook moves the slow weights
    every k steps, and state-dict hooks carry the step count and slow weights
    inside the optimizer's own `state_dict()`, so checkpoints and resumes need
    nothing extra. The optimizer stays a plain torch optimizer, which LR
    schedulers drive as usual."""

    KEY = "lookahead"

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        self.k, self.alpha, self.steps = k, alpha, 0
        self.slow = [[p.detach().clone() for p in g["params"]] for g in optimizer.param_groups]
        optimizer.register_step_post_hook(self._after_step)
        optimizer.register_state_dict_post_hook(self._save)
        optimizer.register_load_state_dict_pre_hook(self._load)

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if self.steps % self.k == 0:
            for group, slow in zip(optimizer.param_groups, self.slow):
                for p, s in zip(group["params"], slow):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)

    def _save(self, optimizer, state_dict: dict) -> dict:
        state_dict[self.KEY] = {"steps": self.steps, "slow": self.slow, "k": self.k, "alpha": self.alpha}
        return state_dict

    def _load(self, optimizer, state_dict: dict) -> dict:
        state_dict = dict(state_dict)
        saved = state_dict.pop(self.KEY)
        self.steps = saved["steps"]
        with torch.no_grad():
            for dst, src in zip(self.slow, saved["slow"]):
                for d, s in zip(dst, src):
                    d.copy_(s)
        return state_dict


def build_optimizer(config: TrainConfig, model: nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    """SGD (foreach, torch's default; `fused`: one fused kernel, the same
    arithmetic), wrapped in Lookahead if the config says so."""
    sgd = torch.optim.SGD(
        model.parameters(),
        fused=fused or None,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    if config.optimizer == "lookahead":
        Lookahead(sgd, k=config.lookahead_k, alpha=config.lookahead_alpha)
    return sgd


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """An epoch-level schedule (stepped once per epoch)."""
    if config.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(config.milestones), gamma=config.gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def build_warmup(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Linear warm-up over the first ``config.warmup_epochs`` epochs (Goyal et
    al. 2017), stepped once per batch, or None when off: torch's ``LinearLR``
    from lr/T to lr over T = warmup_epochs * steps_per_epoch steps. Built
    after the epoch schedule, on the same optimizer: both of torch's
    schedulers scale the current lr, so they compose (epoch milestones still
    multiply by gamma)."""
    total = config.warmup_epochs * steps_per_epoch
    if total < 2:
        return None
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / total, end_factor=1.0, total_iters=total)


# Config keys whose values act only from the first LR milestone of a
# multistep schedule: before it, every value of these trains identically.
MULTISTEP_LATE_KEYS = ("gamma", "milestones")


def schedule_fork(config: TrainConfig) -> tuple[int, tuple[str, ...]]:
    """(F, keys): the first F epochs of `config` are the same for every value
    of `keys`, given the same seed. For a multistep schedule F is the first
    milestone and the keys are gamma and the milestones (the LR is `lr` until
    the step after epoch F). A warm-up that lasts into epoch F is left out of
    sharing (F = 0), so that the LR after epoch F depends on nothing but the
    epoch schedule; other schedules depend on all their values from epoch 1."""
    if config.scheduler != "multistep" or not config.milestones:
        return 0, ()
    first = min(min(config.milestones), config.epochs)
    if config.warmup_epochs >= first:
        return 0, ()
    return first, MULTISTEP_LATE_KEYS


def continue_schedule(config: TrainConfig, optimizer_state: dict, scheduler_state: dict, epoch: int,
                      epoch_lr: float) -> tuple[dict, dict]:
    """The optimiser and scheduler states with which `config` goes on after
    `epoch` (<= its `schedule_fork`), from states saved by a run that differs
    only in `schedule_fork`'s keys. That run's step after `epoch` may already
    have applied its own milestone; the step is redone here with this
    config's milestones and gamma, with MultiStepLR's own arithmetic on the
    LR used during `epoch` (`epoch_lr`), so the result is bit for bit what
    this config's own run holds."""
    scheduler = dict(scheduler_state)
    scheduler["milestones"] = Counter(config.milestones)
    scheduler["gamma"] = config.gamma
    lr = epoch_lr if epoch not in scheduler["milestones"] else epoch_lr * config.gamma ** scheduler["milestones"][epoch]
    optimizer = dict(optimizer_state)
    optimizer["param_groups"] = [{**g, "lr": lr} for g in optimizer_state["param_groups"]]
    scheduler["_last_lr"] = [lr for _ in optimizer["param_groups"]]
    return optimizer, scheduler
