"""Who runs a trial, and whether that process is still alive.

Optuna's heartbeats find a dead worker only after the grace period (a minute
by default). A worker also records its owner in the trial: host, pid, and what
tells a live process from a reused pid (the process's start time and the
machine's boot id, from Linux's /proc). A run on the same host can then tell
at once that the owner of a RUNNING trial is gone, and retry it through the
same path as a stale heartbeat. A trial owned by another host, or by a live
process, is never touched.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpsearch.search.keys import TrialAttr
from hpsearch.search.study.storage import retry_callback


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of
    /proc/PID/stat; the command name before it may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": _start_ticks(pid), "boot_id": _boot_id()}


def is_dead(owner: dict) -> bool:
    """True only when the owner was on this host and is certainly gone."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
        return True  # the machine restarted since
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("start_ticks") is not None and Path("/proc").is_dir():
        return _start_ticks(pid) != owner["start_ticks"]  # gone, or the pid now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False


def retry_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail and queue again every RUNNING trial whose owner process on this
    host is gone; returns their numbers."""
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead(t.user_attrs.get(TrialAttr.OWNER)):
            continue
        # As optuna.storages.fail_stale_trials does it: through the storage.
        # Study.tell would run the sampler's after_trial hook, and GridSampler's
        # calls study.stop(), which raises outside optimize() once the grid is full.
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process on this host got there first
        frozen = study.get_trials(deepcopy=False)[t.number]
        retry_callback()(study, frozen)
        retried.append(t.number)
    return retried


def heartbeat_ages(study: optuna.Study) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat. Optuna keeps the
    heartbeats in its own table and has no public reader for them, so this
    reads that table (RDB storages only; empty otherwise)."""
    storage = study._storage
    engine = getattr(storage, "engine", None)
    if engine is None:
        return {}
    import sqlalchemy

    running = {t._trial_id: t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT trial_id, heartbeat FROM trial_heartbeats")).fetchall()
        now = conn.execute(sqlalchemy.text("SELECT CURRENT_TIMESTAMP")).scalar()
    now = _naive(now)
    return {running[trial_id]: max(0.0, (now - _naive(beat)).total_seconds())
            for trial_id, beat in rows if trial_id in running and beat is not None}


def _naive(stamp: datetime | str) -> datetime:
    """A database timestamp without its zone (SQLite answers with text)."""
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    return stamp.replace(tzinfo=None)


def describe_running(study: optuna.Study) -> list[str]:
    """One phrase per RUNNING trial: number, host and heartbeat age."""
    ages = heartbeat_ages(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(TrialAttr.OWNER) or {}
        where = f"{owner.get('host', '?')} pid {owner.get('pid', '?')}"
        age = ages.get(t.number)
        beat = f"heartbeat {age:.0f}s ago" if age is not None else "no heartbeat yet"
        out.append(f"trial {t.number} on {where}, {beat}")
    return out
