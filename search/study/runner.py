"""`hpsearch run`: validate everything, open both stores, run what is left.

Order matters for "nothing half-written on bad input": the study file, the
options and the data are checked first, then the tracking store and the Optuna
storage are probed, and only then is anything created in either.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpsearch.search.errors import UserError
from hpsearch.search.interrupts import sigterm_as_interrupt
from hpsearch.search.keys import StudyAttr, TrialAttr
from hpsearch.search.progress import Reporter, StudyProgress
from hpsearch.search.study import timing
from hpsearch.search.study.checkpoints import check_checkpoint_root, check_study_name
from hpsearch.search.study.fusion import FusedRounds, resolve_fuse
from hpsearch.search.study.objective import Objective
from hpsearch.search.study.owners import describe_running, retry_dead_local_trials
from hpsearch.search.study.prefix import SharedPrefixes, remove_trunk_snapshots
from hpsearch.search.study.spec import StudySpec, cell_key, find_study_file, load_spec
from hpsearch.search.study.storage import resolve_storage_url, retry_callback
from hpsearch.search.study.stores import OpenStudy, open_study, summarize
from hpsearch.search.study.tracking import Tracker
from hpsearch.search.train.config import TrainConfig, parse_assignments
from hpsearch.search.train.loop import resolve_device

STUDIES_DIR = Path("studies")
WAIT_POLL_SECONDS = 5.0  # how often a waiting run looks at trials running elsewhere


@dataclass
class RunOptions:
    study: str
    n_trials: int | None = None
    epochs: int | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    data_dir: str | None = None
    dataset: str | None = None
    device: str | None = None
    seed: int | None = None
    study_name: str | None = None
    sets: tuple[str, ...] = ()
    quiet: bool = False
    studies_dir: Path = STUDIES_DIR
    stopwatch: Any = timing.OFF  # `hpsearch bench` times the work outside the epochs
    retry_failed: bool = True  # queue again the trials that failed with an error (not diverged ones)
    no_wait: bool = False  # exit instead of waiting for trials that run elsewhere
    fuse: str | int = "auto"  # trials per fused model (`fusion.resolve_fuse`)


def prepare(opts: RunOptions):
    """Everything that can be checked without touching a store."""
    spec = load_spec(find_study_file(opts.study, opts.studies_dir))
    if opts.seed is not None:
        spec = dataclasses.replace(spec, seed=opts.seed)
    if opts.n_trials is not None and opts.n_trials < 1:
        raise UserError(f"--n-trials {opts.n_trials}: must be >= 1")
    overrides = parse_assignments(opts.sets)
    for key, value in (("dataset", opts.dataset), ("device", opts.device)):
        if value:
            overrides[key] = value
    resolved = spec.resolve(overrides, opts.epochs)
    resolve_device(resolved.fixed.get("device", TrainConfig().device))  # no GPU: one line, nothing written
    check_study_name(opts.study_name or spec.name)
    check_checkpoint_root()
    fusion = resolve_fuse(opts.fuse, resolved)  # a bad --fuse: one line, nothing written
    return spec, resolved, fusion


def work_left(study: optuna.Study, spec: StudySpec) -> tuple[int, int]:
    """(trials this study still needs started, trials running elsewhere).

    A logical trial is identified by its origin (a heartbeat retry carries its
    original trial's number); grid duplicates do not count."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(TrialAttr.DUPLICATE)]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if spec.sampler == "grid":
        touched = {cell_key(t.params) for t in trials if t.params}
        fresh = spec.grid_size() - len(touched)
    else:
        origins = {t.user_attrs.get(TrialAttr.ORIGIN, t.number) for t in trials}
        fresh = spec.n_trials - len(origins)
    return max(0, fresh) + waiting, running


def requeue_failed(study: optuna.Study) -> list[int]:
    """Queue again, once, every trial that failed with an error (an environment
    fault such as a full disk or a missing folder, not a diverged run, which
    would fail the same way): Optuna's retry callback makes a WAITING copy with
    the same parameters and origin, as for a dead worker, so it resumes from its
    epoch checkpoint. Returns the numbers of the trials queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    queued = []
    for t in trials:
        if (t.state == TrialState.FAIL and t.user_attrs.get(TrialAttr.FAIL_KIND) == "error"
                and not t.user_attrs.get(TrialAttr.DUPLICATE) and t.number not in retried):
            retry_callback()(study, t)
            queued.append(t.number)
    return queued


def counts(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(TrialAttr.DUPLICATE):
            continue
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def prepare_stores(opts: RunOptions):
    """Validate the study file, the options and the data, then open (or
    create) the study in both stores: (opened study, spec, data, fusion)."""
    spec, resolved, fusion = prepare(opts)
    data = resolved.data_config().load(opts.data_dir)
    probe_storage(opts.storage)
    tracker = Tracker(opts.tracking_uri)
    opened = open_study(resolved, opts.study_name or spec.name, opts.storage, tracker,
                        picks_cells=fusion.picks_cells)
    if data.name == "cifar10":  # `promote` reads the test split from the same folder
        from hpsearch.data import default_data_dir

        folder = Path(opts.data_dir).expanduser() if opts.data_dir else default_data_dir()
        opened.study.set_user_attr(StudyAttr.DATA_DIR, str(folder.resolve()))
    return opened, spec, data, fusion


def recover(study: optuna.Study, reporter: Reporter) -> None:
    """Queue again the trials whose worker is gone: at once for a dead process
    on this host, after the heartbeat grace period for any other."""
    retried = retry_dead_local_trials(study)
    if retried:
        reporter.info(f"{study.study_name}: trial(s) {', '.join(map(str, retried))} belonged to a process on this "
                      f"host that is gone: queued again, to resume from the last epoch")
    optuna.storages.fail_stale_trials(study)


def run_study(opts: RunOptions) -> OpenStudy:
    opened, spec, data, fusion = prepare_stores(opts)
    study, name = opened.study, opened.name
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print one line per trial ourselves
    reporter = Reporter(quiet=opts.quiet)
    recover(study, reporter)
    if opts.retry_failed:
        queued = requeue_failed(study)
        if queued:
            reporter.info(f"{name}: trial(s) {', '.join(map(str, queued))} failed with an error: queued again "
                          f"(--no-retry-failed keeps them failed)")
    left, running = work_left(study, spec)
    if left == 0 and (running == 0 or opts.no_wait):
        _say_nothing_to_start(opened, spec, reporter, running)
        return opened

    planned = max(1, left if opts.n_trials is None else min(left, opts.n_trials))
    fuse = fusion.size
    reporter.info(
        f"study {name}: {spec.sampler} sampler, {spec.pruner} pruner, {spec.size_text()}; "
        f"{left} left, running {planned} here"
        + (f", up to {fuse} at a time as one fused model ({fusion.why})" if fuse > 1 else "")
        + f"; storage {resolve_storage_url(opts.storage)}, tracking {opened.tracker.uri}"
    )
    progress = StudyProgress(reporter, name, planned, spec.direction)
    try:
        progress.set_best(*_best(study))
    except ValueError:
        pass  # no completed trial yet: nothing to show as best
    prefixes = SharedPrefixes(opened) if spec.share_prefix else None
    objective = Objective(opened, data, progress=progress, cells=spec.grid_size(),
                          stopwatch=opts.stopwatch, prefixes=prefixes, picks_cells=fusion.picks_cells)
    rng = random.Random()  # which ready cell this process takes: workers spread over the cells
    rounds = FusedRounds(study, objective, fusion, rng) if fuse > 1 else None
    ran, last_wait = 0, None
    with sigterm_as_interrupt():
        try:
            while opts.n_trials is None or ran < opts.n_trials:
                left, running = work_left(study, spec)
                blocked = None
                if left and prefixes is not None:
                    blocked = _enqueue_next_cell(study, prefixes, rng)
                if left == 0 or blocked:
                    if running == 0 or opts.no_wait:
                        break
                    # Nothing to start, but trials still run elsewhere (another host,
                    # a live process): wait until they finish or go stale and are retried.
                    line = f"{name}: waiting for " + "; ".join(describe_running(study))
                    if blocked:
                        line += f" ({blocked})"
                    if line != last_wait:
                        progress.note(line + " (--no-wait exits instead)")
                        last_wait = line
                    time.sleep(WAIT_POLL_SECONDS)
                    recover(study, reporter)
                    continue
                if rounds is not None:
                    ours = rounds.run(min(left, fuse if opts.n_trials is None else opts.n_trials - ran))
                    if not ours:
                        break  # nothing could be asked (cannot happen while work is left; never spin)
                else:
                    ours = []  # the trial this process ran, not the study's newest (other workers add theirs)
                    study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[_Collect(ours)])
                    ran += not ours
                for last in ours:
                    _report_trial(progress, last)
                    # a duplicate is not a trial of ours: GridSampler handed out a taken cell
                    ran += not last.user_attrs.get(TrialAttr.DUPLICATE)
        except KeyboardInterrupt:
            progress.close()
            if work_left(study, spec)[1] == 0:
                opened.tracker.client.set_terminated(opened.parent_run_id, "KILLED")
            reporter.always(f"{name}: interrupted; the trial in flight is queued again: rerun the same command to continue")
            raise
        finally:
            progress.close()
    left, running = work_left(study, spec)
    c = counts(study)
    still = f"; still running: {'; '.join(describe_running(study))}" if running else ""
    reporter.always(
        f"{name}: ran {ran} trial(s) here; " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(c.items()))
        + (f"; {left} left" if left else "" if running else "; nothing left") + still + _best_line(study)
    )
    if left == 0 and running == 0:
        _close_parent(opened)
    return opened


def _say_nothing_to_start(opened: OpenStudy, spec: StudySpec, reporter: Reporter, running: int) -> None:
    name, study = opened.name, opened.study
    c = counts(study)
    what = "grid complete" if spec.sampler == "grid" else "study complete"
    detail = ", ".join(f"{v} {k.lower()}" for k, v in sorted(c.items()))
    if running:
        reporter.always(f"{name}: nothing left to start ({detail}); still running: "
                        + "; ".join(describe_running(study)))
    else:
        reporter.always(f"{name}: {what}: {spec.size_text()} done ({detail}); nothing left")
        _close_parent(opened)


def _enqueue_next_cell(study: optuna.Study, prefixes: SharedPrefixes, rng: random.Random) -> str | None:
    """With shared prefixes this process picks the next cell itself and
    queues it (a queued retry goes first); returns why none can start, or None."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    params, attrs = prefixes.next_cell(trials, rng)
    if params is None:
        return attrs
    study.enqueue_trial(params, user_attrs=attrs)
    return None


class _Collect:
    """Optuna callback: keeps the trials this process finished."""

    def __init__(self, into: list):
        self.into = into

    def __call__(self, study, frozen) -> None:
        self.into.append(frozen)


def _best(study):
    b = study.best_trial
    return b.value, b.number


def _best_line(study) -> str:
    try:
        b = study.best_trial
    except ValueError:
        return ""
    return f"; best trial {b.number}: {b.value:.4f} ({b.user_attrs.get('param_count', 0):,} params)"


def _report_trial(progress: StudyProgress, t) -> None:
    if t.user_attrs.get(TrialAttr.DUPLICATE):
        progress.note(f"trial {t.number}: {t.user_attrs.get(TrialAttr.FAIL_REASON) or 'grid cell already taken'}, "
                      f"skipped")
        return
    detail = t.user_attrs.get(TrialAttr.PRUNE_REASON) or t.user_attrs.get(TrialAttr.FAIL_REASON) or ""
    progress.trial_finished(t.number, t.state.name.lower(), t.value, detail)


def _close_parent(opened: OpenStudy) -> None:
    if opened.resolved.spec.share_prefix:  # nothing is left to continue from them
        remove_trunk_snapshots(opened.name, opened.uid)
    summarize(opened)  # the parent run's metrics and description (stores.record_study_summary)
    if opened.tracker.run_status(opened.parent_run_id) == "RUNNING":
        opened.tracker.client.set_terminated(opened.parent_run_id, "FINISHED")


def probe_storage(url: str | None) -> None:
    """Connect to a server storage before anything is created anywhere."""
    url = resolve_storage_url(url)
    if url.startswith("sqlite"):
        return
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # bad driver name, refused connection, unknown database...
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"Optuna storage {url} cannot be opened: {detail}") from None
