"""The Optuna objective: a trial in, a `TrainConfig` trained, both stores filled.

Thin glue (the optuna-examples pattern): suggest -> config -> budget check ->
`train(config, data, callbacks)`; the callbacks report to Optuna (and prune),
log each epoch to MLflow and write the epoch checkpoint a retry resumes from.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpsearch.data import DataBundle
from hpsearch.models import fits_budget
from hpsearch.search.keys import Tag, TrialAttr
from hpsearch.search.study import timing
from hpsearch.search.study.checkpoints import owner as checkpoint_owner
from hpsearch.search.study.checkpoints import read_resume, trial_checkpoint_dir
from hpsearch.search.study.manifest import trial_seed
from hpsearch.search.study.owners import this_process
from hpsearch.search.study.prefix import SharedPrefixes, cell_resume, common_seed, describe_segments, trunk_of
from hpsearch.search.study.spec import suggest
from hpsearch.search.study.storage import retry_callback
from hpsearch.search.study.stores import OpenStudy
from hpsearch.search.study.tracking import EpochLogger, log_config, log_outputs, trial_run_name
from hpsearch.search.train.checkpoint import atomic_save
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.loop import StopTraining, TrainResult, TrainState, train


class TrialFailed(Exception):
    """The trial failed for a reason already recorded in both stores."""


class GridDuplicate(Exception):
    """GridSampler handed out a cell that is already done or in flight."""


class OptunaReporter:
    """Reports the study metric every epoch and prunes when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, record, state: TrainState) -> None:
        value = getattr(record, self.metric)
        self.trial.report(value, record.epoch)
        if self.trial.should_prune():
            raise StopTraining(f"pruned at epoch {record.epoch} ({self.metric} {value:.4f})")


class EpochCheckpoint:
    """Writes `last.pt` (atomically) every epoch so a retry resumes from it,
    without stalling training: the snapshot is a CPU copy taken at once, the
    write overlaps the next epoch, and at most one write is in flight.

    `then(record, state)` runs after an epoch's checkpoint is on disk; the
    objective logs the epoch to MLflow there, so MLflow never holds an epoch
    that a resumed trial would train again (`_backfill` covers the other
    order). Written by hand: torch has no asynchronous save for a plain
    state dict on disk (torch.distributed.checkpoint's async save needs a
    process group and writes a directory format)."""

    def __init__(self, path: Path, owner: dict[str, Any], then: Callable[[Any, TrainState], None]):
        self.path, self.owner, self.then = path, owner, then
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsearch-checkpoint")
        self._pending: Future | None = None

    def on_epoch_end(self, record, state: TrainState) -> None:
        self._wait()  # a failed earlier write raises here, inside train()
        snapshot = {**state.checkpoint(), "owner": self.owner}
        self._pending = self._pool.submit(self._write, snapshot, record, state)

    def _write(self, snapshot: dict, record, state: TrainState) -> None:
        atomic_save(snapshot, self.path)
        self.then(record, state)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> Exception | None:
        """Wait for the last write. Its failure is returned, not raised, so it
        cannot replace an interrupt that is being handled."""
        try:
            self._wait()
            return None
        except Exception as e:
            return e
        finally:
            self._pool.shutdown(wait=True)


@dataclass(eq=False)
class PreparedTrial:
    """A trial ready to train (`Objective.prepare`): what `train()` (or a
    fused group) needs, and what `Objective.finish` records afterwards."""

    trial: optuna.Trial
    config: TrainConfig
    resume: dict[str, Any] | None
    run_id: str
    tracker: Any  # the study's Tracker (wrapped by the stopwatch when the bench times it)
    callbacks: list
    epoch_checkpoint: EpochCheckpoint
    ckpt_dir: Path
    origin: int
    nominal: dict[str, Any]
    params: dict[str, Any]


class Objective:
    """Called by Optuna once per trial. `stopwatch` (see `timing`) times the
    work outside the epochs when `hpsearch bench` asks; by default it is off."""

    def __init__(self, opened: OpenStudy, data: DataBundle, progress=None, cells: int | None = None, stopwatch=timing.OFF,
                 prefixes: SharedPrefixes | None = None, picks_cells: bool = False):
        self.opened = opened
        self.prefixes = prefixes
        self.picks_cells = picks_cells or prefixes is not None  # cells are enqueued by the runner
        self.data = data
        self.progress = progress
        self.cells = cells
        self.stopwatch = stopwatch

    # -- helpers --------------------------------------------------------------
    def _check_grid(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        """GridSampler alone re-runs cells near the end of a grid and across
        workers (seen with Optuna 5.0: 4 processes ran 15-16 trials for 12 cells). A fresh trial runs only on a cell no other trial
        has touched; a heartbeat retry runs unless its cell was completed, pruned
        or is running under another trial. Duplicates fail at once, untrained."""
        if self.cells is None:
            return
        frozen = trial.study.get_trials(deepcopy=False)[trial.number]
        retry = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen) is not None
        if self.picks_cells and not retry and "fixed_params" not in frozen.system_attrs:
            # Shared prefixes or fusion: cells are queued by the runner; a fresh trial made
            # because another process took the queued one has no cell of its own.
            trial.set_user_attr(TrialAttr.DUPLICATE, True)
            raise GridDuplicate("no cell queued for this trial (another worker took it)")
        origin = trial.user_attrs.get(TrialAttr.ORIGIN)
        blocking = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for t in trial.study.get_trials(deepcopy=False):
            if t.number == trial.number or t.params != params or t.user_attrs.get(TrialAttr.DUPLICATE):
                continue
            if retry and (t.user_attrs.get(TrialAttr.ORIGIN) == origin or t.state not in blocking):
                continue
            trial.set_user_attr(TrialAttr.DUPLICATE, True)
            raise GridDuplicate(f"grid cell already taken by trial {t.number}")

    # -- the objective --------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> float:
        return self.guarded(trial, lambda: self._run(trial))

    def guarded(self, trial: optuna.Trial, step: Callable[[], Any]):
        """`step()`, with a failure outside training (a store, a folder)
        recorded in both stores as an error, which the next run retries, and
        raised as TrialFailed."""
        try:
            return step()
        except (optuna.TrialPruned, TrialFailed, GridDuplicate, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
            trial.set_user_attr(TrialAttr.FAIL_KIND, "error")
            run_id = trial.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
            if run_id and self.opened.tracker.run_status(run_id) == "RUNNING":
                self.opened.tracker.finish(run_id, "FAIL", reason)
            raise TrialFailed(reason) from e

    def _run(self, trial: optuna.Trial) -> float:
        prepared = self.prepare(trial)
        return self.finish(prepared, self.train_one(prepared))

    def prepare(self, trial: optuna.Trial) -> PreparedTrial:
        """Everything before training: the trial's values, config and seed, its
        checkpoint or trunk snapshot to resume from, its MLflow run and the
        epoch callbacks. Raises TrialPruned (over budget), TrialFailed (invalid)
        or GridDuplicate before anything is trained."""
        o, spec, sw = self.opened, self.opened.resolved.spec, self.stopwatch
        sw.start_trial(trial.number)
        trial.set_user_attr(TrialAttr.OWNER, this_process())
        reporter = OptunaReporter(trial, spec.metric)
        trial = sw.wrap(trial, "optuna_suggest_and_attrs")
        with sw.section("optuna_suggest_and_attrs"):
            params = suggest(trial, spec)
            self._check_grid(trial, params)
        origin = trial.user_attrs.get(TrialAttr.ORIGIN, trial.number)
        trial.set_user_attr(TrialAttr.ORIGIN, origin)
        values, nominal = o.resolved.config_values(params)
        try:
            config = TrainConfig.from_dict(values)
        except ConfigError as e:
            self._fail_before_run(trial, f"invalid configuration: {e}")
        trunk = trunk_of(config)
        # A searched seed (seed variance as a grid axis) is honoured; with common
        # seeds the cells of a trunk share one; otherwise each trial's seed
        # derives from the study's ([study].seed or --seed) and its number.
        if "seed" in spec.space:
            seed = values["seed"]
        elif spec.common_seeds:
            seed = common_seed(spec.seed, trunk)
        else:
            seed = trial_seed(spec.seed, origin)
        config = dataclasses.replace(config, seed=seed)
        count = config.param_count()
        trial.set_user_attr(TrialAttr.PARAM_COUNT, count)
        trial.set_user_attr(TrialAttr.SEED, seed)
        trial.set_user_attr(TrialAttr.CONFIG, config.to_dict())

        ckpt_dir = trial_checkpoint_dir(o.name, o.uid, origin)
        last = ckpt_dir / "last.pt"
        expected = checkpoint_owner(o.uid, origin, config.to_dict())
        resume, refused = read_resume(last, expected)
        shared = self.prefixes is not None and trunk.shares
        snapshot = None
        if shared:
            trial.set_user_attr(TrialAttr.TRUNK, trunk.key)
            trial.set_user_attr(TrialAttr.FORK_EPOCH, trunk.fork)
            snapshot, unusable = self.prefixes.latest(trunk, up_to=trunk.fork)
            for why in unusable:
                self._say(trial, f"trunk snapshot not used: {why}")
            if (snapshot is None or snapshot["epoch"] < trunk.fork) and (resume is None or resume["epoch"] < trunk.fork):
                rival = self.prefixes.rival(trial.study.get_trials(deepcopy=False), trunk, trial.number)
                if rival is not None:  # never a trunk trained twice: the cell goes back to the grid
                    reason = f"trunk {trunk.key} is being trained by trial {rival}: cell left for later"
                    trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
                    trial.set_user_attr(TrialAttr.DUPLICATE, True)
                    raise GridDuplicate(reason)
            if snapshot is not None and (resume is None or snapshot["epoch"] > resume["epoch"]):
                resume, refused = cell_resume(snapshot, config), None
            else:
                snapshot = None

        tracker = sw.wrap(o.tracker, "mlflow_run_setup_and_end")
        run_id = trial.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
        resumed = run_id is not None
        if resumed:
            tracker.reopen(run_id)
        else:
            with sw.section("mlflow_run_setup_and_end"):
                run_id = self._new_run(trial, config, nominal, params)
        tracker.set_tags(run_id, {Tag.TRIAL_NUMBER: trial.number, Tag.ORIGIN_TRIAL: origin})

        if not fits_budget(count, spec.budget):
            reason = f"over budget: {count:,} parameters > {spec.budget:,}"
            trial.set_user_attr(TrialAttr.PRUNE_REASON, reason)
            tracker.finish(run_id, "PRUNED", reason, **{Tag.OVER_BUDGET: "true"})
            self._say(trial, f"pruned before training: {reason}")
            raise optuna.TrialPruned(reason)

        if refused is not None:
            trial.set_user_attr(TrialAttr.RESUME_REFUSED, refused)
            self._say(trial, f"not resuming: {refused}; training from epoch {resume['epoch'] if resume else 0}")
        logged = [m.step for m in o.tracker.client.get_metric_history(run_id, "val_acc")] if resumed else []
        start = resume["epoch"] if resume is not None else 0
        if max(logged, default=0) > start:
            # Epochs in MLflow past the point training goes on from (a refused or
            # deleted checkpoint): MLflow cannot delete a run's metrics, so the
            # restart gets a run of its own and every run holds each epoch once.
            run_id = self._restart_run(trial, run_id, config, nominal, params,
                                       refused or f"no epoch checkpoint past epoch {start} at {last}")
        trial.set_user_attr(TrialAttr.START_EPOCH, start)
        if snapshot is not None:
            trial.set_user_attr(TrialAttr.PREFIX_EPOCHS, snapshot["epoch"])
            trial.set_user_attr(TrialAttr.PREFIX_SEGMENTS, snapshot["segments"])
            tracker.set_tags(run_id, {Tag.TRUNK: trunk.key, Tag.PREFIX_EPOCHS: snapshot["epoch"],
                                      Tag.PREFIX_TRAINED_IN: describe_segments(snapshot["segments"])})
            self._say(trial, f"continuing from trunk {trunk.key} at epoch {snapshot['epoch']} "
                             f"(trained in {describe_segments(snapshot['segments'])})")
        elif resume is not None:
            trial.set_user_attr(TrialAttr.RESUMED_FROM_EPOCH, start)
            self._say(trial, f"resuming from epoch {start} checkpoint")
        if resume is not None:
            self._backfill(run_id, resume)
            for r in resume["history"]:  # retries start without values: the pruner sees these again
                trial.report(r[spec.metric], r["epoch"])
        epoch_checkpoint = sw.wrap(EpochCheckpoint(last, expected,
                                                   then=EpochLogger(o.tracker, run_id).on_epoch_end),
                                   "epoch_checkpoint")
        callbacks = [epoch_checkpoint, sw.wrap(reporter, "optuna_report_prune")]
        if shared:  # first: a trunk snapshot is on disk before its epoch is reported
            callbacks.insert(0, self.prefixes.writer(
                trunk, after=start,
                prefix=trial.user_attrs.get(TrialAttr.PREFIX_EPOCHS, 0),
                segments=trial.user_attrs.get(TrialAttr.PREFIX_SEGMENTS, []), run_id=run_id, origin=origin))
        if self.progress is not None:
            callbacks.append(self.progress.epoch_callback(trial.number, config.epochs))
        return PreparedTrial(trial, config, resume, run_id, tracker, callbacks, epoch_checkpoint, ckpt_dir, origin,
                             nominal, params)

    def train_one(self, p: PreparedTrial) -> TrainResult:
        """Train a prepared trial alone (`train()`)."""
        try:
            try:
                with self.stopwatch.section("train_outside_epochs"):
                    result = train(p.config, self.data, p.callbacks, resume=p.resume,
                                   select=self.opened.resolved.spec.metric)
            finally:
                write_error = p.epoch_checkpoint.close()  # the last epoch's write and MLflow record land first
            if write_error is not None:
                raise write_error
        except (KeyboardInterrupt, SystemExit):
            self.interrupted(p)
            raise
        except Exception as e:
            raise self.errored(p, e) from e
        return result

    def train_group(self, members: list[PreparedTrial]) -> list[TrainResult | TrialFailed]:
        """Train prepared trials (none resuming) together as one fused model
        (`train_fused`): per member its result, or TrialFailed when training
        failed (recorded in both stores). Each member's callbacks are its own:
        it reports to its Optuna trial, is pruned alone, logs to its MLflow run
        and writes its epoch checkpoint in `train()`'s format."""
        from hpsearch.search.train.fused import train_fused
        from hpsearch.search.train.loop import resolve_device

        numbers = [p.trial.number for p in members]
        for p in members:
            p.trial.set_user_attr(TrialAttr.FUSED_WITH, numbers)
            p.tracker.set_tags(p.run_id, {Tag.FUSED_WITH: ", ".join(map(str, numbers))})
        # Grouped convolutions are the fusion on a GPU; on a CPU oneDNN's grouped
        # kernels are slower than its plain ones, and one convolution call per
        # member keeps every member bit-identical to its trial alone there.
        grouped = resolve_device(members[0].config.device).type == "cuda"
        try:
            try:
                with self.stopwatch.section("train_outside_epochs"):
                    results = train_fused([p.config for p in members], self.data, [p.callbacks for p in members],
                                          select=self.opened.resolved.spec.metric, grouped=grouped)
            finally:
                write_errors = [p.epoch_checkpoint.close() for p in members]
        except (KeyboardInterrupt, SystemExit):
            for p in members:
                self.interrupted(p)
            raise
        except Exception as e:
            return [self.errored(p, e) for p in members]
        return [result if error is None else self.errored(p, error)
                for p, result, error in zip(members, results, write_errors)]

    def interrupted(self, p: PreparedTrial) -> None:
        """Record an interrupt in both stores and queue the trial again with
        the same parameters (Optuna's retry callback, as for a dead worker),
        so the next `hpsearch run` resumes it from its epoch checkpoint."""
        p.tracker.finish(p.run_id, "INTERRUPTED", "interrupted by signal")
        frozen = p.trial.study.get_trials(deepcopy=False)[p.trial.number]
        retry_callback()(p.trial.study, frozen)
        p.trial.set_user_attr(TrialAttr.FAIL_REASON, "interrupted")

    def errored(self, p: PreparedTrial, e: BaseException) -> TrialFailed:
        """Record a failure during training in both stores; the TrialFailed to raise."""
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        p.trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
        p.trial.set_user_attr(TrialAttr.FAIL_KIND, "error")
        p.tracker.set_tags(p.run_id, {Tag.TRACEBACK: "".join(traceback.format_exception(e))[-4000:]})
        p.tracker.finish(p.run_id, "FAIL", reason)
        failed = TrialFailed(reason)
        failed.__cause__ = e
        return failed

    def finish(self, p: PreparedTrial, result: TrainResult) -> float:
        """Record a trained trial's outcome in both stores: its value, or
        TrialPruned / TrialFailed raised for Optuna."""
        trial, config, run_id, tracker = p.trial, p.config, p.run_id, p.tracker
        spec = self.opened.resolved.spec
        trial.set_user_attr(TrialAttr.EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(TrialAttr.BEST_EPOCH, result.best_epoch)
        trial.set_user_attr(TrialAttr.BEST_VAL_ACC, result.best_val_acc)
        trial.set_user_attr(TrialAttr.EXECUTION, result.execution)
        tracker.set_tags(run_id, {Tag.EXECUTION: json.dumps(result.execution)})
        with self.stopwatch.section("mlflow_outputs_and_best_checkpoint"):
            self._log_outputs(trial, run_id, config, result, p.origin, p.nominal, p.params)
        if result.status == "diverged":
            trial.set_user_attr(TrialAttr.FAIL_REASON, result.reason)
            trial.set_user_attr(TrialAttr.FAIL_KIND, "diverged")
            tracker.finish(run_id, "FAIL", result.reason)
            shutil.rmtree(p.ckpt_dir, ignore_errors=True)
            raise TrialFailed(result.reason)
        shutil.rmtree(p.ckpt_dir, ignore_errors=True)
        if result.status == "stopped":
            trial.set_user_attr(TrialAttr.PRUNE_REASON, result.reason)
            tracker.finish(run_id, "PRUNED", result.reason, **{Tag.PRUNED_EPOCH: result.epochs_run})
            raise optuna.TrialPruned(result.reason)
        tracker.finish(run_id, "COMPLETE")
        best = result.history[result.best_epoch - 1]
        return best.val_loss if spec.metric == "val_loss" else best.val_acc

    def _log_outputs(self, trial, run_id, config, result, origin, nominal, params) -> None:
        o = self.opened
        log_outputs(o.tracker, run_id, config, result, self.data.summary(), f"{o.name} trial {trial.number}",
                    extra_config={"nominal": nominal, "params": params},
                    extra_manifest={"trial_number": trial.number, "origin_trial": origin, "study": o.name})

    def _fail_before_run(self, trial, reason: str):
        trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
        trial.set_user_attr(TrialAttr.FAIL_KIND, "invalid")
        raise TrialFailed(reason)

    def _new_run(self, trial, config, nominal, params) -> str:
        o = self.opened
        run_id = o.tracker.create_run(
            o.experiment_id, trial_run_name(trial.number, params),
            {Tag.STUDY: o.name, Tag.TRIAL_NUMBER: trial.number, Tag.ROLE: "trial"},
            parent_id=o.parent_run_id,
        )
        trial.set_user_attr(TrialAttr.MLFLOW_RUN_ID, run_id)
        # Searched values are config fields, logged once under their own names.
        log_config(o.tracker, run_id, config, {f"{k}_nominal": v for k, v in nominal.items()})
        return run_id

    def _restart_run(self, trial, old_run_id: str, config, nominal, params, why: str) -> str:
        run_id = self._new_run(trial, config, nominal, params)
        self.opened.tracker.finish(old_run_id, "INTERRUPTED", f"restarted from epoch 0 in run {run_id}: {why}",
                                   **{Tag.SUPERSEDED_BY: run_id})
        self.opened.tracker.set_tags(run_id, {Tag.ORIGIN_TRIAL: trial.user_attrs.get(TrialAttr.ORIGIN)})
        return run_id

    def _backfill(self, run_id: str, resume: dict) -> None:
        """Log checkpointed epochs that MLflow lacks (a kill between checkpoint
        and log), so every epoch appears exactly once."""
        from hpsearch.search.train.loop import EpochRecord

        have = {m.step for m in self.opened.tracker.client.get_metric_history(run_id, "val_acc")}
        for r in resume["history"]:
            if r["epoch"] not in have:
                self.opened.tracker.log_epoch(run_id, EpochRecord(**r))

    def _say(self, trial, message: str) -> None:
        if self.progress is not None:
            self.progress.note(f"trial {trial.number}: {message}")
