"""`hpsearch train`: one configuration, no search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpsearch.search.keys import Tag
from hpsearch.search.progress import EpochPrinter, Reporter
from hpsearch.search.study.tracking import EpochLogger, Tracker, log_config, log_outputs
from hpsearch.search.train.checkpoint import save_model_checkpoint
from hpsearch.search.train.config import TrainConfig, parse_assignments, scale_milestones
from hpsearch.search.train.loop import resolve_device, train

TRAIN_EXPERIMENT = "hpsearch-train"


def resolve_train_config(options: dict[str, Any], sets: tuple[str, ...] | list[str]) -> TrainConfig:
    """Defaults <- named options <- --set. A new epoch count scales the default
    LR milestones (`scale_milestones`) unless milestones are set."""
    base = TrainConfig()
    overrides = {**options, **parse_assignments(sets)}
    values = {**base.to_dict(), **overrides}
    if "epochs" in overrides and "milestones" not in overrides and isinstance(values["epochs"], int):
        values["milestones"] = scale_milestones(base.milestones, base.epochs, values["epochs"])
    return TrainConfig.from_dict(values)


def train_one(options, sets, *, data_dir=None, json_path=None, save_path=None,
              tracking_uri=None, quiet=False) -> dict[str, Any]:
    config = resolve_train_config(options, sets)
    resolve_device(config.device)  # no GPU: one line before any data is read or run logged
    reporter = Reporter(quiet=quiet)
    data = config.data_config().load(data_dir)
    reporter.info(
        f"training {config.model} on {config.dataset} ({len(data.train_y)} train / {len(data.val_y)} val), "
        f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr}"
    )
    callbacks = [EpochPrinter(reporter, config.epochs)]
    tracker = run_id = None
    if tracking_uri is not None:
        tracker = Tracker(tracking_uri)
        experiment = tracker.experiment_id(TRAIN_EXPERIMENT)
        run_id = tracker.create_run(experiment, f"{config.model}-{config.dataset}", {Tag.ROLE: "train"})
        log_config(tracker, run_id, config)
        callbacks.append(EpochLogger(tracker, run_id))
    try:
        result = train(config, data, callbacks)
    except BaseException as e:
        if tracker is not None:
            tracker.finish(run_id, "INTERRUPTED" if isinstance(e, KeyboardInterrupt) else "FAIL",
                           f"{type(e).__name__}: {e}")
        raise
    if tracker is not None:
        log_outputs(tracker, run_id, config, result, data.summary(), f"{config.model} on {config.dataset}")
        state = {"completed": "COMPLETE", "stopped": "PRUNED", "diverged": "FAIL"}[result.status]
        tracker.finish(run_id, state, result.reason)
        reporter.info(f"logged to MLflow run {run_id} (experiment {TRAIN_EXPERIMENT}, {tracker.uri})")
    summary = result.summary()
    reporter.info(f"execution: {result.execution.get('why', '-')}")  # the path train() resolved, and why
    reporter.always(
        f"{result.status}: best val_acc {result.best_val_acc:.4f} at epoch {result.best_epoch}, "
        f"{result.param_count:,} parameters" + (f" ({result.reason})" if result.reason else "")
    )
    if json_path:
        Path(json_path).write_text(json.dumps(
            {k: summary[k] for k in ("best_val_acc", "best_epoch", "param_count", "epochs", "execution")}
            | {"status": result.status, "config": config.to_dict()},
            indent=2,
        ))
    if save_path and result.best_state is not None:
        save_model_checkpoint(
            save_path, result.best_state, result.model_config, config.to_dict(),
            val_acc=result.best_val_acc, epoch=result.best_epoch, param_count=result.param_count,
        )
        reporter.info(f"best checkpoint written to {save_path}")
    return summary
