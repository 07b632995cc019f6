"""Optimizers and LR schedules named by `TrainConfig`.

SGD and the schedules are torch's. Lookahead (Zhang, Lucas, Hinton and Ba
2019, arXiv:1907.08610) is not in torch or torchvision, so it is written here:
it wraps any optimizer, and every k fast steps moves slow weights a fraction
alpha towards the fast ones and restarts the fast weights from there.
"""

from __future__ import annotations

import torch
from torch import nn

from hpsearch.search.train.config import TrainConfig


class Lookahead(torch.optim.Optimizer):
    def __init__(self, inner: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        self.inner = inner
        self.k = k
        self.alpha = alpha
        self.steps = 0
        self.defaults = inner.defaults
        self.slow = [[p.detach().clone() for p in g["params"]] for g in self.param_groups]
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}

    # The inner optimizer's groups and state, always (load_state_dict replaces
    # its list), so LR schedulers that write group["lr"] drive the fast steps.
    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.inner.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            for group, slow in zip(self.param_groups, self.slow):
                for p, s in zip(group["params"], slow):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"inner": self.inner.state_dict(), "steps": self.steps, "slow": self.slow}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        self.steps = state["steps"]
        for dst, src in zip(self.slow, state["slow"]):
            for d, s in zip(dst, src):
                d.copy_(s)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    sgd = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    if config.optimizer == "lookahead":
        return Lookahead(sgd, k=config.lookahead_k, alpha=config.lookahead_alpha)
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
