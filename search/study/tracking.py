"""The MLflow schema of hpsearch, in one place.

One experiment per study (or `hpsearch-train` for single runs), one parent run
per study, one nested child run per trial. Per-epoch metrics go in a single
`log_batch` call per epoch, written by one background thread so that the next
epoch does not wait for the store's commit (about 7 ms on an idle SQLite
store, 20-40 ms on a busy one); `finish` waits for everything queued before it
ends the run, so a finished run holds all of its metrics. A worker killed in
between loses at most those epochs' points, which the resumed trial backfills
from its epoch checkpoint. (MLflow's own `synchronous=False` is not used: its
queue polls once a second, and ending a run waits for that poll, so it added
up to a second per trial.) The client API is used rather than the fluent one,
so no global "active run" state leaks between trials of one process.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hpsearch.search.errors import UserError
from hpsearch.search.keys import Tag

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
LOCAL_ARTIFACTS = Path("mlruns/artifacts")
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
# MLflow has no "pruned" status: a pruned trial was stopped on purpose, which
# is what KILLED says; the run's name, description and `hpsearch.outcome`
# say why (see `Tracker.finish`).
STATUS_OF_STATE = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "INTERRUPTED": "KILLED"}
# The kind MLflow's UI files a training experiment under ("Model training"
# rather than GenAI apps & agents).
EXPERIMENT_KIND = "custom_model_development"
NAME_SEPARATOR = " · "  # between a trial run's name and its outcome ("t3 lr=0.2 · pruned@2")
MAX_NAME = 60
# Short names of searched values in run names; other keys keep their own.
SHORT_NAMES = {"batch_size": "bs", "weight_decay": "wd", "momentum": "mom", "label_smoothing": "ls",
               "optimizer": "opt", "scheduler": "sched", "milestones": "ms", "dropout": "drop",
               "lookahead_k": "la_k", "lookahead_alpha": "la_a", "channels": "ch", "blocks": "blk"}


def resolve_tracking_uri(uri: str | None) -> str:
    from hpsearch.search.study.storage import absolute_sqlite

    if uri in (None, "", "default"):
        uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    return absolute_sqlite(uri)


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


class Tracker:
    """A thin wrapper over `MlflowClient` that speaks hpsearch's schema."""

    def __init__(self, tracking_uri: str | None = None, check: bool = True):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.uri = resolve_tracking_uri(tracking_uri)
        if self.uri.startswith("sqlite:////"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        self._pending: list[Future] = []  # background writes not yet waited for
        self._writer: ThreadPoolExecutor | None = None
        if check:
            self.check()

    def check(self) -> None:
        """Fail fast, in one line, when the tracking store cannot be reached."""
        if not _is_local(self.uri):
            # Without this MLflow retries with back-off for minutes.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # MLflow raises many types: connection, SQL, REST
            raise UserError(
                f"MLflow tracking store {self.uri} cannot be opened: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}"
            ) from None

    # -- experiments and runs ------------------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        location = None
        if _is_local(self.uri):
            location = (LOCAL_ARTIFACTS / name).resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={Tag.EXPERIMENT_KIND: EXPERIMENT_KIND})
        except Exception:
            # Another worker created it between our lookup and create.
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def create_run(self, experiment_id: str, name: str, tags: dict[str, Any], parent_id: str | None = None) -> str:
        tags = {k: str(v) for k, v in tags.items()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def reopen(self, run_id: str) -> None:
        """Continue a run (a resumed trial or study): mark it RUNNING again."""
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, run_id: str, params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Params (and optionally step-0 metrics) in as few round trips as MLflow allows."""
        from mlflow.entities import Metric, Param

        items = [Param(k, _param_text(v)) for k, v in params.items()]
        now = int(time.time() * 1000)
        extra = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        if not items and not extra:
            return
        for i in range(0, max(1, len(items)), 100):  # MLflow's batch limit for params
            self.client.log_batch(run_id, params=items[i : i + 100], metrics=extra if i == 0 else ())

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, wait: bool = True) -> None:
        """One `log_batch`; with `wait=False` it is queued (see the module
        docstring) and `flush`/`finish` wait for it."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if wait:
            self.client.log_batch(run_id, metrics=items)
            return
        if self._writer is None:  # one thread: writes stay in order
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsearch-mlflow")
        self._pending.append(self._writer.submit(self.client.log_batch, run_id, metrics=items))

    def flush(self) -> None:
        """Wait for every queued metric; raises the first failure, if any."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_epoch(self, run_id: str, record) -> None:
        r = record.to_dict()
        metrics = {k: r[k] for k in EPOCH_METRICS}
        metrics["epoch_seconds"] = r["seconds"]
        self.log_metrics(run_id, metrics, step=r["epoch"], wait=False)

    def log_dict(self, run_id: str, obj: dict, artifact_file: str) -> None:
        self.client.log_dict(run_id, obj, artifact_file)

    def log_figure(self, run_id: str, fig, artifact_file: str) -> None:
        self.client.log_figure(run_id, fig, artifact_file)

    def log_file(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_checkpoint(self, run_id: str, writer, name: str = "best.pt") -> None:
        """`writer(path)` writes the file; it lands under `checkpoints/` of the run."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            writer(path)
            self.client.log_artifact(run_id, str(path), "checkpoints")

    def finish(self, run_id: str, state: str, reason: str | None = None, **tags) -> None:
        """End a run with the status matching the Optuna trial state, once its
        queued metrics are stored (the run is ended even if that failed).

        MLflow's status stays what MLflow means by it (a pruned trial is
        KILLED); what happened is written where the runs table shows it: the
        outcome in the run's name ("t3 lr=0.2 · pruned@2"), in the
        `hpsearch.outcome` tag (a column) and in the run's description."""
        try:
            self.flush()
        finally:
            run = self.client.get_run(run_id)
            extra = {Tag.TRIAL_STATE: state, **tags}
            if reason:
                extra[Tag.REASON] = reason[:4000]
            extra[Tag.OUTCOME] = outcome_text(state, reason, extra)
            extra[Tag.DESCRIPTION] = run_description(state, reason, extra, run.data.tags, run.data.metrics)
            self.set_tags(run_id, extra)
            name = run.info.run_name or ""
            renamed = with_outcome(name, short_outcome(state, extra))
            if renamed != name:
                self.client.update_run(run_id, name=renamed)
            self.client.set_terminated(run_id, status=STATUS_OF_STATE[state])

    def download(self, run_id: str, artifact_path: str, dst: str | Path) -> Path:
        return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))


def _param_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value_text(x) for x in v)
    return str(v)


def trial_run_name(number: int, params: dict[str, Any], limit: int = MAX_NAME) -> str:
    """`t3 lr=0.2 bs=128`: the trial and its searched values, short enough
    for the runs table's name column (cut with an ellipsis past `limit`)."""
    words = [f"t{number}"] + [f"{SHORT_NAMES.get(k, k)}={_value_text(v)}" for k, v in params.items()]
    name = " ".join(words)
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def short_outcome(state: str, tags: dict[str, Any]) -> str | None:
    """What a run's name says after its values, or None for a completed run."""
    if state == "PRUNED":
        if tags.get(Tag.PRUNED_EPOCH) is not None:
            return f"pruned@{tags[Tag.PRUNED_EPOCH]}"
        return "over budget" if str(tags.get(Tag.OVER_BUDGET)) == "true" else "pruned"
    return {"FAIL": "failed", "INTERRUPTED": "interrupted"}.get(state)


def with_outcome(name: str, outcome: str | None) -> str:
    """A run name with its outcome replaced (a resumed trial ends once more)."""
    base = name.split(NAME_SEPARATOR)[0]
    return base + (NAME_SEPARATOR + outcome if outcome else "")


def outcome_text(state: str, reason: str | None, tags: dict[str, Any]) -> str:
    """The `hpsearch.outcome` column: one short phrase."""
    if state == "COMPLETE":
        return "complete"
    if state == "PRUNED":
        if tags.get(Tag.PRUNED_EPOCH) is not None:
            return f"pruned at epoch {tags[Tag.PRUNED_EPOCH]}"
        return f"pruned: {reason}" if reason else "pruned"
    if state == "INTERRUPTED":
        return "interrupted (queued again)"
    return f"failed: {reason}"[:250] if reason else "failed"


def run_description(state: str, reason: str | None, tags: dict[str, Any], run_tags: dict[str, str],
                    metrics: dict[str, float]) -> str:
    """The run's description (MLflow's `mlflow.note.content`, markdown), shown
    on the run page: which trial it is and how it ended."""
    who = ""
    if run_tags.get(Tag.TRIAL_NUMBER) is not None and run_tags.get(Tag.STUDY):
        who = f"Trial {run_tags[Tag.TRIAL_NUMBER]} of study **{run_tags[Tag.STUDY]}**. "
    best = ""
    if "best_val_acc" in metrics:
        best = (f" Best val_acc {metrics['best_val_acc']:.4f} at epoch {int(metrics.get('best_epoch', 0))} "
                f"of {int(metrics.get('epochs_run', 0))} run.")
    if state == "COMPLETE":
        return f"{who}**Completed.**{best}"
    if state == "PRUNED" and tags.get(Tag.PRUNED_EPOCH) is not None:
        # The pruner's reason reads "pruned at epoch N (val_acc X)": keep what it adds.
        detail = re.sub(r"^pruned at epoch \d+\s*", "", reason or "").strip("() ")
        return (f"{who}**Pruned at epoch {tags[Tag.PRUNED_EPOCH]}** by the study's pruner"
                f"{f' ({detail})' if detail else ''}. MLflow shows it as KILLED: stopped on purpose, "
                f"not failed.{best}")
    if state == "PRUNED":
        return f"{who}**Pruned before training**{f': {reason}' if reason else ''}. MLflow shows it as KILLED."
    if state == "INTERRUPTED":
        return (f"{who}**Interrupted**; the trial is queued again and resumes from its epoch checkpoint "
                f"on the next `hpsearch run`.")
    return f"{who}**Failed**{f': {reason}' if reason else ''}."


# Fields that apply only with some settings: logged only then.
ONLY_WHEN = {
    "milestones": lambda c: c.scheduler == "multistep",
    "gamma": lambda c: c.scheduler == "multistep",
    "lookahead_k": lambda c: c.optimizer == "lookahead",
    "lookahead_alpha": lambda c: c.optimizer == "lookahead",
    "synthetic_size": lambda c: c.dataset == "synthetic",
    **{k: (lambda c: c.augment) for k in ("crop_padding", "flip", "rotation", "brightness", "contrast",
                                          "saturation")},
}
ARCHITECTURE_FIELDS = ("stem_channels", "channels", "blocks", "se", "dropout")


def config_params(config) -> dict[str, Any]:
    """A TrainConfig as MLflow params: each value once and only what applies.
    Architecture fields left to the preset (None in the config) are logged
    with the preset's value, so the params say what was trained."""
    values = config.to_dict()
    arch = config.model_config()
    for key in ARCHITECTURE_FIELDS:
        if values.get(key) is None and hasattr(arch, key):
            v = getattr(arch, key)
            values[key] = list(v) if isinstance(v, tuple) else v
    return {k: v for k, v in values.items()
            if v is not None and (k not in ONLY_WHEN or ONLY_WHEN[k](config))}


class EpochLogger:
    """Training callback: one batched MLflow call per epoch."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id

    def on_epoch_end(self, record, state) -> None:
        self.tracker.log_epoch(self.run_id, record)


def log_config(tracker: Tracker, run_id: str, config, extra: dict[str, Any] | None = None) -> None:
    """The configuration as params (`config_params`: each value once, only
    what applies) and the parameter count as a metric, in one round trip.
    An `X_nominal` extra (the study file's value before scaling) is kept only
    where it differs from X."""
    params = config_params(config)
    for key, value in (extra or {}).items():
        base = key.removesuffix("_nominal")
        if key.endswith("_nominal") and _param_text(params.get(base, config.to_dict().get(base))) == _param_text(value):
            continue
        if key.endswith("_nominal") and base not in params:
            continue  # the nominal value of a field that does not apply
        params[key] = value
    tracker.log_params(run_id, params, metrics={"param_count": config.param_count()})


def log_outputs(tracker: Tracker, run_id: str, config, result, data_summary: dict, title: str,
                extra_config: dict[str, Any] | None = None, extra_manifest: dict[str, Any] | None = None) -> None:
    """What every finished training leaves in its run: summary metrics, the
    learning-curve figure, the resolved config, the manifest, the history and
    (if it completed) the best checkpoint."""
    from hpsearch.search.review.figures import learning_curves_image
    from hpsearch.search.study.manifest import manifest
    from hpsearch.search.train.checkpoint import save_model_checkpoint

    history = [r.to_dict() for r in result.history]
    tracker.log_metrics(run_id, {"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch,
                                 "epochs_run": result.epochs_run}, wait=False)
    # A PNG: MLflow's artifact viewer shows it as it is, offline (an HTML
    # plotly page needs plotly.js, which is 4.8 MB a trial or a network).
    tracker.log_figure(run_id, learning_curves_image(history, title), "plots/learning_curves.png")
    tracker.log_dict(run_id, {"config": config.to_dict(), "model_config": result.model_config,
                              **(extra_config or {})}, "config.json")
    tracker.log_dict(run_id, manifest(config.seed, data_summary, result.device, **(extra_manifest or {})),
                     "manifest.json")
    tracker.log_dict(run_id, {"history": history}, "history.json")
    if result.best_state is not None and result.status == "completed":
        tracker.log_checkpoint(run_id, lambda p: save_model_checkpoint(
            p, result.best_state, result.model_config, config.to_dict(),
            val_acc=result.best_val_acc, epoch=result.best_epoch, param_count=result.param_count,
        ))
