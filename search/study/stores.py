"""Opening a study in both stores: the Optuna study (created or resumed) with
its resolved fixed configuration, and its one MLflow parent run.

What a study was created with is kept in its user attributes, so every later
command (another worker, `status`, `plots`, `promote`) needs only the storage
URL and the study name.
"""

from __future__ import annotations

import json
import uuid
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from hpsearch.search.errors import UserError
from hpsearch.search.keys import StudyAttr, Tag
from hpsearch.search.study.compute import spent
from hpsearch.search.study.spec import Resolved, make_pruner, make_sampler
from hpsearch.search.study.storage import open_storage, resolve_storage_url
from hpsearch.search.study.tracking import EXPERIMENT_KIND, Tracker

# The runs-table view of a study's experiment, kept as one of MLflow's shared
# views (an experiment tag the UI reads when the URL says
# `?viewStateShareKey=hpsearch`): best trials first, with the metric, the
# outcome and the searched values as columns. MLflow 3.17 keeps expanded
# parents out of shared views (its `hN` list), so the parent run still opens
# collapsed: its children are one click on its "+" away.
VIEW_KEY = "hpsearch"
# MLflow 3.17 files every experiment under the workflow picked in the UI's
# header (stored in the browser, GenAI by default), not under the experiment's
# kind tag; this URL parameter picks "Model training".
WORKFLOW_QUERY = "workflowType=machine_learning"


@dataclass
class OpenStudy:
    study: optuna.Study
    resolved: Resolved
    tracker: Tracker
    experiment_id: str
    parent_run_id: str
    storage_url: str

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def uid(self) -> str:
        return self.study.user_attrs[StudyAttr.UID]


def _differences(stored: dict, now: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {json.dumps(a)} -> {json.dumps(b)}")
    return out


def open_study(resolved: Resolved, study_name: str, storage_url: str | None, tracker: Tracker,
               picks_cells: bool = False) -> OpenStudy:
    spec = resolved.spec
    url = resolve_storage_url(storage_url)
    storage = open_storage(url)
    schedule = {"share_prefix": spec.share_prefix, "common_seeds": spec.common_seeds}
    identity = json.loads(json.dumps({**resolved.identity(), "seed": spec.seed, "sampler": spec.sampler,
                                      "pruner": spec.pruner, "metric": spec.metric,
                                      **(schedule if any(schedule.values()) else {})}))
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=make_sampler(spec, picks_cells=picks_cells),
            pruner=make_pruner(spec),
            direction=spec.direction,
            load_if_exists=True,
        )
    except Exception as e:  # storage errors surface here for lazily connecting URLs
        raise UserError(f"Optuna storage {url} cannot be opened: {str(e).splitlines()[0]}") from None
    stored = study.user_attrs.get(StudyAttr.IDENTITY)
    if stored is None:
        study.set_user_attr(StudyAttr.IDENTITY, identity)
        study.set_user_attr(StudyAttr.SPEC, {"path": str(spec.path), "grid_size": spec.grid_size(),
                                   "n_trials": spec.n_trials, "budget": spec.budget,
                                   "space": {k: p.describe() for k, p in spec.space.items()},
                                   "sampler": spec.sampler, "pruner": spec.pruner,
                                   "direction": spec.direction, "metric": spec.metric})
    if StudyAttr.UID not in study.user_attrs:  # new, or made before studies had one
        study.set_user_attr(StudyAttr.UID, uuid.uuid4().hex)
    if stored is not None and stored != identity:
        diff = "; ".join(_differences(stored, identity)[:4])
        raise UserError(
            f"study {study_name!r} in {url} was created with other fixed values ({diff}); "
            f"resume it unchanged, or start a separate study with --study-name"
        )
    _name_metric(study, spec.metric)
    experiment_id = tracker.experiment_id(study_name)
    describe_experiment(tracker, experiment_id, spec.metric, list(spec.space))
    parent = study.user_attrs.get(StudyAttr.PARENT_RUN)
    if parent is None:
        parent = tracker.create_run(
            experiment_id, f"study:{study_name}",
            {Tag.STUDY: study_name, Tag.ROLE: "study", Tag.STORAGE: _safe_url(url),
             Tag.DESCRIPTION: f"Study **{study_name}**: {spec.sampler} sampler, {spec.pruner} pruner, "
                              f"{spec.direction} {spec.metric}. Running; its summary is written when it ends."},
        )
        tracker.log_params(parent, {"sampler": spec.sampler, "pruner": spec.pruner, "metric": spec.metric,
                                    "budget": spec.budget, "study_seed": spec.seed,
                                    "space": json.dumps({k: p.describe() for k, p in spec.space.items()}),
                                    **{f"fixed.{k}": v for k, v in resolved.fixed.items()}})
        study.set_user_attr(StudyAttr.PARENT_RUN, parent)
        study.set_user_attr(StudyAttr.EXPERIMENT, experiment_id)
        study.set_user_attr(StudyAttr.TRACKING_URI, tracker.uri)
    elif tracker.run_status(parent) != "RUNNING":
        tracker.reopen(parent)
    return OpenStudy(study, resolved, tracker, experiment_id, parent, url)


def _name_metric(study: optuna.Study, metric: str) -> None:
    """The study's objective is called by its name (optuna-dashboard and
    Optuna's plots read it) instead of "Objective 0"."""
    if study.metric_names != [metric]:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])


def searched_columns(space_keys: list[str]) -> list[str]:
    """The params that hold a study's searched values (stage widths are
    searched one stage at a time and logged together as `channels`)."""
    from hpsearch.search.study.spec import STAGE_KEY

    out: list[str] = []
    for key in space_keys:
        name = "channels" if STAGE_KEY.match(key) else key
        if name not in out:
            out.append(name)
    return out


def shared_view(metric: str, space_keys: list[str]) -> dict:
    """The runs-table state MLflow's UI loads from a shared view: columns as
    "kind.`name`" (MLflow's canonical column keys), sorted best first."""
    best = "best_val_loss" if metric == "val_loss" else "best_val_acc"
    columns = [f"metrics.`{best}`", f"metrics.`{metric}`", f"tags.`{Tag.OUTCOME}`",
               *[f"params.`{k}`" for k in searched_columns(space_keys)],
               "metrics.`param_count`", "attributes.`Models`"]
    return {"orderByKey": f"metrics.`{best}`", "orderByAsc": metric == "val_loss",
            "selectedColumns": columns}


def runs_url(base: str, experiment_id: str) -> str:
    """The study's runs table in the MLflow UI at `base`: "Model training",
    the study's view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}&viewStateShareKey={VIEW_KEY}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW_QUERY}"


def describe_experiment(tracker: Tracker, experiment_id: str, metric: str, space_keys: list[str]) -> None:
    """Experiment tags MLflow's UI reads: its kind (model training) and the
    study's runs-table view. Set on every open: idempotent, and it brings
    experiments made by older versions up to date."""
    for key, value in ((Tag.EXPERIMENT_KIND, EXPERIMENT_KIND),
                       (Tag.SHARED_VIEW + VIEW_KEY, json.dumps(shared_view(metric, space_keys)))):
        tracker.client.set_experiment_tag(experiment_id, key, value)


def record_study_summary(study: optuna.Study, tracker: Tracker, parent_run_id: str, experiment_id: str,
                         metric: str, direction: str) -> dict:
    """The parent run's summary: the study's best value, trial counts by state
    and compute spent as metrics, and a description (markdown, with a link to
    the best trial's run inside the MLflow UI). Written when a study ends and
    again by `hpsearch plots` and `report`; returns the metrics."""
    from hpsearch.search.keys import TrialAttr

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(TrialAttr.DUPLICATE)]
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                              TrialState.FAIL, TrialState.RUNNING)}
    compute = sum(t.duration.total_seconds() for t in trials if t.duration)
    words = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.RUNNING: "running"}
    metrics = {f"trials_{words[s]}": n for s, n in counts.items()}
    metrics["trials"] = len(trials)
    metrics["compute_seconds"] = round(compute, 1)
    represented, trained = spent(trials)
    metrics["epochs_represented"] = represented
    metrics["epochs_trained"] = trained
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = (max if direction == "maximize" else min)(complete, key=lambda t: t.value) if complete else None
    best_key = "best_val_loss" if metric == "val_loss" else "best_val_acc"
    state_words = ", ".join(f"{n} {words[s]}" for s, n in counts.items() if n) or "no trials"
    text = (f"Study **{study.study_name}**: {len(trials)} trials ({state_words}); "
            f"compute spent {compute / 60:.1f} min (sum of trial durations); {trained:,} epochs trained for "
            f"{represented:,} epochs of curves (shared prefixes and resumes train an epoch once).")
    if best is not None:
        metrics[best_key] = best.value
        metrics["best_trial"] = best.number
        run_id = best.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
        values = ", ".join(f"{k}={v}" for k, v in best.params.items())
        link = f"[trial {best.number}](#/experiments/{experiment_id}/runs/{run_id})" if run_id else f"trial {best.number}"
        text += f"\n\nBest: {link} with {metric} **{best.value:.4f}** ({values})."
    else:
        text += "\n\nNo trial has completed yet."
    tracker.log_metrics(parent_run_id, metrics)
    tracker.set_tags(parent_run_id, {Tag.DESCRIPTION: text})
    return metrics


def summarize(opened: OpenStudy) -> dict:
    spec = opened.resolved.spec
    return record_study_summary(opened.study, opened.tracker, opened.parent_run_id, opened.experiment_id,
                                spec.metric, spec.direction)


def load_existing_study(study_name: str, storage_url: str | None) -> optuna.Study:
    """For read-only commands: the study must exist; one line if it does not."""
    url = resolve_storage_url(storage_url)
    storage = open_storage(url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        known = ", ".join(names) or "none"
        raise UserError(f"no study {study_name!r} in {url}; studies there: {known}")
    return optuna.load_study(study_name=study_name, storage=storage)


def _safe_url(url: str) -> str:
    """A storage URL without its password, for tags."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: nothing to hide
        return url
