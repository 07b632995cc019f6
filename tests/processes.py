"""`hpsearch` as users run it: a process of its own in a folder of its own,
with the default stores and checkpoint folder unless a test says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from studyfiles import study_trials

# Settings a developer's shell may carry that would point a run elsewhere
# than the defaults users get.
USER_SETTINGS = ("MLFLOW_TRACKING_URI", "HPSEARCH_STORAGE", "HPSEARCH_CHECKPOINT_DIR", "HPSEARCH_HEARTBEAT")


def env(**extra) -> dict[str, str]:
    e = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    for k in USER_SETTINGS:
        e.pop(k, None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def hpsearch(cwd, *args, **extra_env) -> subprocess.Popen:
    """`hpsearch ARGS` started in `cwd`, output captured; its own session, so
    a test can kill it and its children at once (os.killpg)."""
    return subprocess.Popen([sys.executable, "-m", "hpsearch.search.cli", *map(str, args)], cwd=cwd,
                            env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc, timeout=900) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_for_epoch(storage, name, proc, n=1, deadline=300, where=lambda trial: True):
    """The first running trial (that `where` accepts) to have reported `n` epochs."""
    end = time.time() + deadline
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()[0]
        running = [t for t in study_trials(storage, name)
                   if t.state.name == "RUNNING" and len(t.intermediate_values) >= n and where(t)]
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError(f"no trial reached epoch {n} in {deadline}s")
