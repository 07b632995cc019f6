"""`hpsearch run --fuse B`: up to B trials of one architecture and batch size
trained together as one fused model (`hpsearch.search.train.fused`), each
still its own Optuna trial and MLflow run, with its own epoch checkpoint.

Optuna's ask-and-tell interface lets this process own several trials at once:
a round asks up to B trials, prepares each as a single trial is prepared
(`Objective.prepare`: values, seed, resume point, MLflow run, callbacks), trains
those that can share a model as one group (`Objective.train_group`) and the
others alone, and tells each its own end. A member that is pruned or diverges
leaves the group; the others go on. A trial's epoch checkpoint is in
`train()`'s format, so after a crash each trial resumes alone.

On a grid this process picks the cells (as `share_prefix` does): up to B
untouched cells that fuse together (same architecture, batch size and
execution path), enqueued with their values, so that a round is one group
rather than whatever mix GridSampler would hand out. The study then runs
with a stand-in sampler (`spec.make_sampler(picks_cells=True)`).

Heartbeats: `study.optimize` starts Optuna's heartbeat thread for its one
trial; asked trials get the same thread (`get_heartbeat_thread`, from
optuna.storages._heartbeat: Optuna has no public ask-and-tell heartbeat),
one per trial, so a killed process's trials go stale and are retried as any
other's.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.errors import UserError
from hpsearch.search.keys import TrialAttr
from hpsearch.search.study.objective import GridDuplicate, Objective, PreparedTrial, TrialFailed
from hpsearch.search.study.prefix import grid_cells
from hpsearch.search.study.spec import cell_key
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.fused import SHARED_KEYS, check_fusable
from hpsearch.search.train.loop import TrainResult


def fuse_key(config: TrainConfig) -> str | None:
    """Trials with equal keys can train as one fused model; None for a config
    that cannot be fused at all (`check_fusable`'s reason)."""
    try:
        check_fusable([config])
    except ConfigError:
        return None
    shared = {k: getattr(config, k) for k in SHARED_KEYS}
    return repr((sorted(vars(config.model_config()).items()), sorted(shared.items()),
                 config.optimizer == "lookahead"))


@dataclass(frozen=True)
class Fusion:
    """How many trials one process trains as one fused model, and why."""

    size: int
    why: str
    picks_cells: bool  # on a grid, this process picks the cells and enqueues them (`pick_cells`)


def resolve_fuse(value: str | int, resolved) -> Fusion:
    """`--fuse`: a number as given, or `auto`: what `hpsearch bench`
    measured fastest on this device for the study's model and batch sizes,
    else 1."""
    size, why = _fuse_size(value, resolved)
    return Fusion(size, why, size > 1 and resolved.spec.sampler == "grid")


def _fuse_size(value: str | int, resolved) -> tuple[int, str]:
    spec = resolved.spec
    if value != "auto":
        n = int(value)
        if n < 1:
            raise UserError(f"--fuse {n}: must be >= 1 (or auto)")
        if n > 1 and spec.share_prefix:
            raise UserError(f"--fuse {n}: not with share_prefix = true in {spec.path} (a trunk is trained once, "
                            f"by one trial; fusing the cells of a grid with shared prefixes is not built); "
                            f"use --fuse 1")
        return n, f"--fuse {n}"
    if spec.share_prefix:
        return 1, "fuse auto: 1 (share_prefix)"
    if "model" in spec.space:
        return 1, "fuse auto: 1 (the model is searched)"
    from hpsearch.search.train.loop import resolve_device

    d = TrainConfig()
    device = resolve_device(resolved.fixed.get("device", d.device))
    batches = ([int(v) for v in spec.space["batch_size"].choices] if "batch_size" in spec.space
               else [int(resolved.fixed.get("batch_size", d.batch_size))])
    return measured_fuse(device, resolved.fixed.get("model", d.model), batches)


FUSE_MARGIN = 1.2  # a fused model must beat one trial alone by this much: above the bench's noise


def measured_fuse(device, model: str, batch_sizes: list[int]) -> tuple[int, str]:
    """`--fuse auto`: the number of trials per fused model that `hpsearch
    bench --only fused` measured fastest (aggregate training images/s of the
    device) on this device for this model, at the measured batch size nearest
    the study's median one; 1 where no fused model beat one trial alone by
    FUSE_MARGIN, or nothing was measured (on 2 CPU cores fusion measured
    0.86-1.1x: the convolutions are compute-bound there)."""
    from hpsearch.search.train import figures as figs

    name = figs.device_key(device)
    rows = [v for k, v in figs.load()["devices"].get(name, {}).get("fused", {}).items()
            if k.startswith(f"{model}@") and v.get("members")]
    row = figs.nearest(rows, batch_sizes)
    if row is None:
        return 1, f"fuse auto: 1 (nothing measured for {model} on {name}: hpsearch bench --only fused)"
    best = max(row["members"], key=lambda m: m["fused_images_per_s"])
    gain = best.get("vs_one_trial_alone") or 0.0
    where = f"{model} at batch {row['batch_size']} on {name}"
    if best["members"] > 1 and gain >= FUSE_MARGIN:
        return best["members"], f"fuse auto: {best['members']} trials, measured {gain:.1f}x one trial alone ({where})"
    return 1, f"fuse auto: 1 (no fused model measured >= {FUSE_MARGIN}x one trial alone, {where})"


def parse_fuse(text: str) -> str | int:
    """The `--fuse` option's value: a whole number or `auto`."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--fuse {text!r}: allowed: a whole number >= 1, or auto") from None


def fusable_cells(resolved) -> list[tuple[dict[str, Any], str | None]]:
    """Every grid cell with its `fuse_key` (None for an invalid cell: it
    fails alone, as a trial, with its reason)."""
    return [(params, None if config is None else fuse_key(config)) for params, config in grid_cells(resolved)]


def pick_cells(cells: list[tuple[dict[str, Any], str | None]], trials: list[FrozenTrial], size: int,
               rng: random.Random) -> list[dict[str, Any]]:
    """Up to `size` of `cells` (`fusable_cells`) that nobody has touched or
    queued and that train as one fused model: a random free cell and others
    of its key."""
    taken = set()
    for t in trials:
        if t.user_attrs.get(TrialAttr.DUPLICATE):
            continue
        if t.params:
            taken.add(cell_key(t.params))
        elif t.state == TrialState.WAITING and "fixed_params" in t.system_attrs:
            taken.add(cell_key(t.system_attrs["fixed_params"]))
    free = [(p, key) for p, key in cells if cell_key(p) not in taken]
    if not free:
        return []
    rng.shuffle(free)
    first, key = free[0]
    if key is None:
        return [first]
    return [p for p, k in free if k == key][:size]


class FusedRounds:
    """Asks, trains and tells the trials of one process, B at a time."""

    def __init__(self, study: optuna.Study, objective: Objective, fusion: Fusion, rng: random.Random | None = None):
        self.study, self.objective, self.fuse = study, objective, fusion.size
        self.cells = fusable_cells(objective.opened.resolved) if fusion.picks_cells else None
        self.rng = rng or random.Random()

    def run(self, limit: int) -> list[FrozenTrial]:
        """One round of at most min(B, limit) trials; the trials as told."""
        study = self.study
        optuna.storages.fail_stale_trials(study)
        n = min(self.fuse, limit)
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if self.cells is not None:
            if waiting:
                n = min(n, waiting)  # queued work (retries, cells) first
            else:
                cells = pick_cells(self.cells, trials, n, self.rng)
                for params in cells:
                    study.enqueue_trial(params)
                n = len(cells)
        if n == 0:
            return []
        with warnings.catch_warnings():
            # "Heartbeat of storage is supposed to be used with Study.optimize":
            # the heartbeats are started below, as optimize starts them.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            asked = [study.ask() for _ in range(n)]
        told: dict[int, FrozenTrial] = {}
        with contextlib.ExitStack() as beats:
            for trial in asked:
                beats.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
            try:
                self._round(asked, told)
            except (KeyboardInterrupt, SystemExit):
                for trial in asked:
                    if trial.number not in told:
                        study.tell(trial, state=TrialState.FAIL)
                raise
        return [told[t.number] for t in asked]

    def _round(self, asked: list[optuna.Trial], told: dict[int, FrozenTrial]) -> None:
        objective = self.objective
        ready: list[PreparedTrial] = []
        try:
            for trial in asked:
                try:
                    ready.append(objective.guarded(trial, lambda trial=trial: objective.prepare(trial)))
                except Exception as e:  # pruned over budget, invalid, a duplicate cell, a store's error
                    self._tell(trial, e, told)
            groups: dict[str, list[PreparedTrial]] = {}
            alone = []
            for p in ready:
                key = fuse_key(p.config) if p.resume is None else None
                (groups.setdefault(key, []) if key is not None else alone).append(p)
            for key in list(groups):
                if len(groups[key]) == 1:
                    alone.append(groups.pop(key)[0])
            for members in groups.values():
                self._note(f"trials {', '.join(str(p.trial.number) for p in members)}: trained together as one "
                           f"fused model")
                ready = [p for p in ready if p not in members]
                outcomes = objective.train_group(members)
                for p, outcome in zip(members, outcomes):
                    self._finish(p, outcome, told)
            for p in alone:
                ready.remove(p)
                try:
                    outcome: TrainResult | BaseException = objective.guarded(p.trial, lambda p=p: objective.train_one(p))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as e:
                    outcome = e
                self._finish(p, outcome, told)
        except (KeyboardInterrupt, SystemExit):
            for p in ready:  # prepared, never trained: recorded as interrupted and queued again
                objective.interrupted(p)
            raise

    def _finish(self, p: PreparedTrial, outcome: TrainResult | BaseException, told: dict) -> None:
        if isinstance(outcome, TrainResult):
            try:
                value = self.objective.guarded(p.trial, lambda: self.objective.finish(p, outcome))
            except Exception as e:
                self._tell(p.trial, e, told)
                return
            self.study.tell(p.trial, value)
            told[p.trial.number] = self.study.get_trials(deepcopy=False)[p.trial.number]
        else:
            self._tell(p.trial, outcome, told)

    def _tell(self, trial: optuna.Trial, e: BaseException, told: dict) -> None:
        if isinstance(e, optuna.TrialPruned):
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            if not isinstance(e, (TrialFailed, GridDuplicate)):
                reason = f"{type(e).__name__}: {e}".splitlines()[0]
                trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
            self.study.tell(trial, state=TrialState.FAIL)
        told[trial.number] = self.study.get_trials(deepcopy=False)[trial.number]

    def _note(self, message: str) -> None:
        if self.objective.progress is not None:
            self.objective.progress.note(message)
