"""Opening a study in both stores: the Optuna study (created or resumed) with
its resolved fixed configuration, and its one MLflow parent run.

What a study was created with is kept in its user attributes, so every later
command (another worker, `status`, `plots`, `promote`) needs only the storage
URL and the study name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import optuna

from hpsearch.search.errors import UserError
from hpsearch.search.keys import StudyAttr, Tag
from hpsearch.search.study.spec import Resolved, make_pruner, make_sampler
from hpsearch.search.study.storage import open_storage, resolve_storage_url
from hpsearch.search.study.tracking import Tracker


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


def open_study(resolved: Resolved, study_name: str, storage_url: str | None, tracker: Tracker) -> OpenStudy:
    spec = resolved.spec
    url = resolve_storage_url(storage_url)
    storage = open_storage(url)
    identity = json.loads(json.dumps({**resolved.identity(), "seed": spec.seed, "sampler": spec.sampler,
                                      "pruner": spec.pruner, "metric": spec.metric}))
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=make_sampler(spec),
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
    experiment_id = tracker.experiment_id(study_name)
    parent = study.user_attrs.get(StudyAttr.PARENT_RUN)
    if parent is None:
        parent = tracker.create_run(
            experiment_id, f"study:{study_name}",
            {Tag.STUDY: study_name, Tag.ROLE: "study", Tag.STORAGE: _safe_url(url)},
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
