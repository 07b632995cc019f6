"""Benchmark part 3, the search overhead: a real small study through
`run_study` with the default SQLite stores in a temporary directory; per trial,
(wall time - the epochs' `seconds`) / wall time, broken down by the objective's
stopwatch (`hpsearch.search.study.timing`)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpsearch.search.bench.environment import Sizes, ratio

OVERHEAD_TARGET = 0.02  # search overhead <= 2% of a trial's wall time


STUDY_TOML = """\
# hpsearch bench: a small TPE study with a median pruner that never prunes
# (n_startup_trials = n_trials) but is consulted every epoch, as in real studies.
[study]
sampler = "tpe"
pruner = "median"
pruner_options = {{ n_startup_trials = {trials}, n_warmup_steps = 0 }}
n_trials = {trials}
seed = 0

[train]
model = "resnet-tiny"
dataset = "synthetic"
synthetic_size = {synthetic_size}
val_size = {val_size}
epochs = {epochs}
batch_size = 64
scheduler = "cosine"
weight_decay = 5e-4

[space]
lr = {{ low = 0.02, high = 0.2, log = true }}
"""

# Categories whose time grows with the epochs (the rest is per trial): the
# epoch checkpoint, epoch metrics (written off the training thread, so 0
# unless a resumed trial backfills), and Optuna's report + prune.
_PER_EPOCH = ("mlflow_epoch_metrics", "epoch_checkpoint", "optuna_report_prune")


@contextlib.contextmanager
def _study_directory():
    """A temporary working directory with no store settings from outside, so
    the default stores (mlruns/ under it) are the ones used; afterwards the
    process's settings are as they were (`mlflow.set_tracking_uri`, which the
    study calls, also exports MLFLOW_TRACKING_URI)."""
    keys = ("MLFLOW_TRACKING_URI", "HPSEARCH_STORAGE", "HPSEARCH_CHECKPOINT_DIR")
    saved = {k: os.environ.pop(k, None) for k in keys}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)
            import mlflow

            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None: unset
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def bench_overhead(device, sizes: Sizes) -> dict[str, Any]:
    try:
        import mlflow  # noqa: F401
        import optuna
        import plotly  # noqa: F401
    except ImportError as e:
        return {"skipped": f"{e.name} is not installed"}
    from mlflow.tracking import MlflowClient

    from hpsearch.search.study.runner import RunOptions, run_study
    from hpsearch.search.study.timing import Stopwatch

    size = {"model": "resnet-tiny", "trials": sizes.trials, "epochs": sizes.epochs,
            "train_images": sizes.synthetic_size - sizes.val_size, "val_images": sizes.val_size,
            "batch_size": 64, "sampler": "tpe", "pruner": "median", "stores": "default SQLite (mlruns/)"}
    with _study_directory() as tmp:
        spec = tmp / "bench.toml"
        spec.write_text(STUDY_TOML.format(**asdict(sizes)))
        stopwatch = Stopwatch()
        opts = RunOptions(study=str(spec), device=device.type, quiet=True, stopwatch=stopwatch)
        with contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            run_study(opts)
            total = time.perf_counter() - started
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{tmp}/mlruns/optuna.db")
        client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        trials = []
        for t in study.get_trials(deepcopy=False):
            if t.datetime_complete is None or t.datetime_start is None:
                continue
            wall = (t.datetime_complete - t.datetime_start).total_seconds()
            epochs = [m.value for m in client.get_metric_history(t.user_attrs["mlflow_run_id"], "epoch_seconds")]
            overhead = wall - sum(epochs)
            parts = dict(stopwatch.by_trial.get(t.number, {}))
            parts["train_outside_epochs"] = max(0.0, parts.get("train_outside_epochs", 0.0) - sum(epochs))
            parts["other"] = overhead - sum(parts.values())
            trials.append({"number": t.number, "state": t.state.name, "wall_seconds": wall,
                           "epoch_seconds": sum(epochs), "epochs": len(epochs), "overhead_seconds": overhead,
                           "overhead_fraction": ratio(overhead, wall),
                           "breakdown_seconds": {k: round(v, 4) for k, v in sorted(parts.items())}})
    if not trials:
        return {"skipped": "no trial finished", "trial_size": size}
    wall = sum(t["wall_seconds"] for t in trials)
    over = sum(t["overhead_seconds"] for t in trials)
    later = trials[1:]
    breakdown: dict[str, float] = defaultdict(float)
    for t in trials:
        for k, v in t["breakdown_seconds"].items():
            breakdown[k] += v / len(trials)
    n_epochs = sum(t["epochs"] for t in trials)
    per_epoch = sum(breakdown[k] for k in _PER_EPOCH) * len(trials) / max(1, n_epochs)
    return {
        "fraction": ratio(over, wall),
        "first_trial_fraction": trials[0]["overhead_fraction"],
        "later_trials_fraction": (ratio(sum(t["overhead_seconds"] for t in later),
                                         sum(t["wall_seconds"] for t in later)) if later else None),
        "mean_trial_seconds": wall / len(trials),
        "mean_overhead_seconds": over / len(trials),
        "per_epoch_overhead_seconds": per_epoch,  # epoch checkpoint, epoch metrics, report + prune
        "per_trial_fixed_seconds": over / len(trials) - per_epoch * n_epochs / len(trials),
        "mean_epoch_seconds": sum(t["epoch_seconds"] for t in trials) / max(1, n_epochs),
        "breakdown_seconds_per_trial": {k: round(v, 4) for k, v in sorted(breakdown.items())},
        "trials": trials,
        "study_seconds": total,
        "trial_size": size,
        "target_fraction": OVERHEAD_TARGET,
    }
