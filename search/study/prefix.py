"""Exact shared prefixes (`[study] share_prefix = true`): a grid's cells that
differ only in values acting from their first LR milestone train one trunk.

Until its first milestone a multistep cell trains the same whatever its gamma
and later milestones (`schedule_fork`), given the same seed; so the cells of
one trunk (equal in every other value) get one common seed ("common random
numbers", a fairer comparison too), the trunk is trained once, and each cell
continues from the trunk's epoch snapshot at its own first milestone.

There is no separate trunk job: a cell trains its own configuration (which
*is* the trunk until its fork) from the latest snapshot before its fork,
writes a snapshot at every fork epoch of its trunk on the way, and goes on as
itself. A trunk is extended by one trial at a time: a cell whose trunk is
being trained by a running trial that has not passed its fork yet is not
started (`next_cell` picks other work, or the run waits). The snapshots live
next to the trials' epoch checkpoints and carry their owner (study uid, trunk
key, the trunk's values), as those do; a cell's MLflow run gets the trunk's
epochs logged into it, tagged with the runs that trained them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpsearch.search.keys import TrialAttr
from hpsearch.search.study.checkpoints import read_resume, study_checkpoint_dir
from hpsearch.search.study.spec import cell_key
from hpsearch.search.train.checkpoint import atomic_save
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.optim import continue_schedule, schedule_fork

# Values that never make two cells train differently before their fork, or
# that a trunk's seed is derived from (so never part of it).
NOT_TRUNK_KEYS = ("device", "seed")


@dataclass(frozen=True)
class Trunk:
    key: str  # 12 hex digits of the values below
    fork: int  # epochs a cell of this trunk shares (0: nothing to share)
    values: dict[str, Any]  # the config values that act before the fork

    @property
    def shares(self) -> bool:
        return self.fork > 0


def trunk_of(config: TrainConfig) -> Trunk:
    fork, late = schedule_fork(config)
    values = {k: v for k, v in config.to_dict().items() if k not in late and k not in NOT_TRUNK_KEYS}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Trunk(digest, fork, values)


def common_seed(study_seed: int, trunk: Trunk) -> int:
    """Every cell of a trunk gets this seed: it depends on the study seed and
    the trunk's values only."""
    return (study_seed * 1_000_003 + int(trunk.key, 16)) % (2**31 - 1)


def grid_cells(resolved) -> list[tuple[dict[str, Any], TrainConfig | None]]:
    """Every cell of a grid study: (Optuna params, its TrainConfig without
    seed, or None for a combination that is no valid config: it fails as a
    trial, with its reason)."""
    space = resolved.spec.search_space()
    out = []
    for combo in itertools.product(*space.values()):
        params = dict(zip(space, combo))
        try:
            out.append((params, resolved.config(params)))
        except ConfigError:
            out.append((params, None))
    return out


def trunk_owner(study_uid: str, trunk: Trunk) -> dict[str, Any]:
    return {"study_uid": study_uid, "origin": f"trunk-{trunk.key}", "config": trunk.values}


class SharedPrefixes:
    """One study's trunks: where their snapshots are, which epochs they fork
    at, which cell to start next."""

    def __init__(self, opened):
        self.opened = opened
        self.cells = grid_cells(opened.resolved)
        self.forks: dict[str, set[int]] = {}
        self.trunk_by_cell: dict[str, Trunk] = {}
        for params, config in self.cells:
            if config is None:
                continue
            trunk = trunk_of(config)
            self.trunk_by_cell[cell_key(params)] = trunk
            if trunk.shares:
                self.forks.setdefault(trunk.key, set()).add(trunk.fork)

    def folder(self, trunk: Trunk) -> Path:
        return study_checkpoint_dir(self.opened.name, self.opened.uid) / f"trunk-{trunk.key}"

    def snapshot_path(self, trunk: Trunk, epoch: int) -> Path:
        return self.folder(trunk) / f"epoch-{epoch:05d}.pt"

    def snapshot_epochs(self, trunk: Trunk) -> list[int]:
        """Fork epochs of this trunk whose snapshot is on disk, in order."""
        return [e for e in sorted(self.forks.get(trunk.key, ())) if self.snapshot_path(trunk, e).exists()]

    def latest(self, trunk: Trunk, up_to: int) -> tuple[dict | None, list[str]]:
        """The latest readable snapshot at or before epoch `up_to`, and why
        any later one was not used."""
        refused = []
        for epoch in reversed([e for e in self.snapshot_epochs(trunk) if e <= up_to]):
            ckpt, why = read_resume(self.snapshot_path(trunk, epoch), trunk_owner(self.opened.uid, trunk))
            if ckpt is not None:
                return ckpt, refused
            refused.append(why)
        return None, refused

    def writer(self, trunk: Trunk, after: int, prefix: int, segments: list, run_id: str,
               origin: int) -> TrunkSnapshots:
        """The callback that writes this trunk's snapshots at its fork epochs
        after epoch `after` (where training resumes) up to the cell's own
        fork; the cell took epochs 1..`prefix` from earlier snapshots, which
        `segments` say who trained."""
        epochs = {e for e in self.forks.get(trunk.key, ()) if after < e <= trunk.fork}
        return TrunkSnapshots(self, trunk, epochs, segments, run_id, origin, prefix + 1)

    # -- choosing the next cell ----------------------------------------------
    def busy_trunks(self, trials) -> dict[str, int]:
        """Trunks being trained now: {trunk key: trial number}. A queued or
        running trial that may train its trunk (`TRUNK` is set when such a
        cell is queued, and by every cell as it starts) and has not reported
        its fork epoch yet."""
        busy = {}
        for t in trials:
            if _extends(t):
                busy.setdefault(t.user_attrs[TrialAttr.TRUNK], t.number)
        return busy

    def rival(self, trials, trunk: Trunk, number: int) -> int | None:
        """Another trial, started before trial `number`, that trains `trunk`
        now. Two processes that queued cells of one trunk at the same moment
        both see each other here (each has set its `TRUNK` first); the later
        trial gives its cell back."""
        for t in trials:
            if t.number < number and t.user_attrs.get(TrialAttr.TRUNK) == trunk.key and _extends(t):
                return t.number
        return None

    def next_cell(self, trials, rng: random.Random) -> tuple[dict | None, dict | str]:
        """(params of the cell to start, the user attributes to queue it with),
        or (None, why nothing can start). First a cell whose trunk snapshot at
        its fork exists (or that shares nothing), then one that extends a
        trunk nobody is training (queued with its trunk, which is busy from
        then on), the shortest extension first."""
        touched = {cell_key(t.params) for t in trials if t.params and not t.user_attrs.get(TrialAttr.DUPLICATE)}
        busy = self.busy_trunks(trials)
        have: dict[str, list[int]] = {}  # snapshots on disk, listed once per trunk
        ready, extend, blocked = [], [], {}
        for params, _ in self.cells:
            key = cell_key(params)
            if key in touched:
                continue
            trunk = self.trunk_by_cell.get(key)
            if trunk is None or not trunk.shares:
                ready.append(params)
                continue
            if trunk.key not in have:
                have[trunk.key] = self.snapshot_epochs(trunk)
            if trunk.fork in have[trunk.key]:
                ready.append(params)
            elif trunk.key in busy:
                blocked[trunk.key] = busy[trunk.key]
            else:
                done = max([e for e in have[trunk.key] if e <= trunk.fork], default=0)
                extend.append((trunk.fork - done, params, trunk))
        if ready:
            return rng.choice(ready), {}
        if extend:
            shortest = min(n for n, _, _ in extend)
            _, params, trunk = rng.choice([e for e in extend if e[0] == shortest])
            return params, {TrialAttr.TRUNK: trunk.key, TrialAttr.FORK_EPOCH: trunk.fork}
        if blocked:
            return None, "the cells left wait for trunks being trained by trial(s) " + ", ".join(
                str(n) for n in sorted(set(blocked.values())))
        return None, "no cell left"


def remove_trunk_snapshots(study_name: str, study_uid: str) -> int:
    """Delete a finished study's trunk snapshots (each as large as an epoch
    checkpoint); returns how many folders went."""
    folders = list(study_checkpoint_dir(study_name, study_uid).glob("trunk-*"))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return len(folders)


def cell_resume(snapshot: dict, config: TrainConfig) -> dict:
    """A trunk snapshot as a resume point of one cell: its own schedule from
    the snapshot's epoch on (`continue_schedule`), everything else as saved."""
    epoch = snapshot["epoch"]
    optimizer, scheduler = continue_schedule(config, snapshot["optimizer"], snapshot["scheduler"], epoch,
                                             snapshot["history"][-1]["lr"])
    return {**snapshot, "optimizer": optimizer, "scheduler": scheduler}


class TrunkSnapshots:
    """Writes the trunk snapshot at each of `epochs` (synchronously, before
    the epoch is reported to Optuna: a cell that waits for this trunk sees the
    fork epoch reported only once its snapshot is on disk)."""

    def __init__(self, shared: SharedPrefixes, trunk: Trunk, epochs: set[int], segments: list, run_id: str,
                 origin: int, first: int):
        self.shared, self.trunk, self.epochs = shared, trunk, epochs
        self.segments, self.run_id, self.origin, self.first = segments, run_id, origin, first

    def on_epoch_end(self, record, state) -> None:
        if state.epoch not in self.epochs:
            return
        segments = [*self.segments, [self.first, state.epoch, self.run_id, self.origin]]
        atomic_save({**state.checkpoint(), "owner": trunk_owner(self.shared.opened.uid, self.trunk),
                     "segments": segments}, self.shared.snapshot_path(self.trunk, state.epoch))


def describe_segments(segments: list) -> str:
    """"1-50: run <id> (trial 3); 51-75: run <id> (trial 7)"."""
    return "; ".join(f"{a}-{b}: run {run} (trial {origin})" for a, b, run, origin in segments)


def _extends(t) -> bool:
    """Is this trial (queued or running) training its trunk?"""
    key, fork = t.user_attrs.get(TrialAttr.TRUNK), t.user_attrs.get(TrialAttr.FORK_EPOCH) or 0
    if key is None or t.user_attrs.get(TrialAttr.DUPLICATE):
        return False
    return t.state == TrialState.WAITING or (
        t.state == TrialState.RUNNING and max(t.intermediate_values, default=0) < fork)

