"""Successive halving that respects each cell's LR schedule
(`[study] pruner = "schedule_halving"`).

A cell with milestones [125, 175] looks worse at epoch 60 than one that
decayed at 50, so comparing every cell at one epoch (Optuna's
SuccessiveHalvingPruner and HyperbandPruner, whose rungs sit at
min_resource * eta^k epochs for every trial alike) prunes late-milestone
cells for the wrong reason. The same holds for gamma: right after a drop a
cell that decays to 0.1x looks better than one at 0.5x, which may well end
higher (the short-horizon bias of greedy comparisons, Wu et al. 2018; a
2 x 4 x 2 x 2 Table 2 on real digits lost its best cell, a gamma 0.5 one,
when cells of all gammas were compared). So a cell is only compared with
cells whose learning rate is the same at every epoch (same milestones,
gamma, lr, warm-up and length: the same phase at the same epoch), at rungs
placed `settle` of the run after each of its LR drops, where the drop has
shown its effect; what halving chooses among is the rest (batch size,
weight decay, ...), and every schedule's best cell runs to the end. Within a group the rule is Optuna's asynchronous
successive halving (ASHA, Li et al. 2020), the one SuccessiveHalvingPruner
applies: at a rung a cell goes on if it is in the top 1/eta of the values
its group has reported there (the first cells at a rung are compared with
the few there are). Optuna's pruners cannot be pointed at a subset of
trials or at per-trial rungs, hence this class.
"""

from __future__ import annotations

import math

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.keys import TrialAttr


def rungs(config: dict, settle: float) -> list[int]:
    """The epochs at which a cell of this config is compared: `settle` of its
    epochs (at least 1) after each LR milestone, before its last epoch."""
    epochs = int(config["epochs"])
    delay = max(1, round(settle * epochs))
    return sorted({m + delay for m in config.get("milestones") or () if m + delay < epochs})


# The config values that fix a cell's learning rate at every epoch.
SCHEDULE_KEYS = ("lr", "scheduler", "gamma", "warmup_epochs")


def phase_group(config: dict) -> tuple:
    """Cells compared with each other: the same learning rate at every epoch
    (same milestones, gamma, lr, warm-up and length)."""
    return (tuple(config.get("milestones") or ()), int(config["epochs"]),
            *(config.get(k) for k in SCHEDULE_KEYS))


class ScheduleHalvingPruner(BasePruner):
    def __init__(self, reduction_factor: int = 3, settle: float = 0.05):
        if not isinstance(reduction_factor, int) or isinstance(reduction_factor, bool) or reduction_factor < 2:
            raise ValueError(f"reduction_factor {reduction_factor!r} must be an integer >= 2")
        if not isinstance(settle, (int, float)) or isinstance(settle, bool) or not 0 <= settle < 1:
            raise ValueError(f"settle {settle!r} must be a fraction of the epochs in [0, 1)")
        self.reduction_factor = reduction_factor
        self.settle = float(settle)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        config = trial.user_attrs.get(TrialAttr.CONFIG)
        step = trial.last_step
        if config is None or step is None or step not in rungs(config, self.settle):
            return False
        group = phase_group(config)
        value = trial.intermediate_values[step]
        competing = [value]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                          TrialState.RUNNING)):
            other = t.user_attrs.get(TrialAttr.CONFIG)
            if (t.number == trial.number or other is None or t.user_attrs.get(TrialAttr.DUPLICATE)
                    or step not in t.intermediate_values or phase_group(other) != group):
                continue
            competing.append(t.intermediate_values[step])
        return not promotable(value, competing, self.reduction_factor, study.direction)


def promotable(value: float, competing: list[float], eta: int, direction: StudyDirection) -> bool:
    """In the top 1/eta of `competing` (which holds `value`); with fewer than
    eta values, only the best goes on (Optuna's rule)."""
    if math.isnan(value):
        return False
    ordered = sorted(v for v in competing if not math.isnan(v))
    keep = max(1, len(ordered) // eta)
    if direction == StudyDirection.MAXIMIZE:
        return value >= ordered[-keep]
    return value <= ordered[keep - 1]
