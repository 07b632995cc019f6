"""The per-step linear warm-up composes with the epoch schedule (torch's LinearLR + MultiStepLR)."""

import pytest
import torch

from hpsearch.models import build_model
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.optim import build_optimizer, build_scheduler, build_warmup


def test_warmup_ramps_per_step_then_milestones_apply():
    cfg = TrainConfig(model="resnet-tiny", epochs=3, milestones=(1, 2), warmup_epochs=1)
    opt = build_optimizer(cfg, build_model("resnet-tiny"))
    sched, warm = build_scheduler(cfg, opt), build_warmup(cfg, opt, 5)
    lrs = []
    for _ in range(3):
        for _ in range(5):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if warm.last_epoch < warm.total_iters:
                warm.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.02, 0.036, 0.052, 0.068, 0.084])
    assert lrs[5:10] == pytest.approx([0.01] * 5) and lrs[10:] == pytest.approx([0.001] * 5)


def test_no_warmup_by_default_and_bounds():
    cfg = TrainConfig(model="resnet-tiny", epochs=3, milestones=(1, 2))
    assert build_warmup(cfg, torch.optim.SGD(build_model("resnet-tiny").parameters(), lr=0.1), 10) is None
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TrainConfig(model="resnet-tiny", epochs=3, milestones=(1, 2), warmup_epochs=4)
