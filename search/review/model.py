"""A study as the review commands (plots, report, promote, gc) read it:
`load_review` opens the study and its MLflow store, both of which must exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.errors import UserError
from hpsearch.search.keys import StudyAttr, TrialAttr
from hpsearch.search.study.stores import load_existing_study
from hpsearch.search.study.tracking import Tracker, resolve_tracking_uri


@dataclass
class Review:
    """A study as the review commands see it: its trials without grid
    duplicates (a duplicate is bookkeeping, not an experiment), its spec, and
    its MLflow store."""

    study: optuna.Study
    spec: dict[str, Any]
    trials: list[FrozenTrial]
    tracker: Tracker
    parent_run_id: str | None

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def maximize(self) -> bool:
        return self.study.direction == optuna.study.StudyDirection.MAXIMIZE

    @property
    def metric(self) -> str:
        return self.spec.get("metric", "val_acc")

    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE]

    def ranked(self) -> list[FrozenTrial]:
        """Completed trials, best first."""
        return sorted(self.complete(), key=lambda t: t.value, reverse=self.maximize)

    def best(self) -> FrozenTrial | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None


def existing_tracker(uri: str | None) -> Tracker:
    """A Tracker on a store that must already exist: opening a missing SQLite
    file would silently create an empty store and then report "no runs"."""
    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise UserError(f"MLflow store {uri} does not exist (no file {path}); run a study first "
                            f"or pass the --tracking-uri it used")
    return Tracker(uri)


def load_review(study_name: str, storage: str | None, tracking_uri: str | None) -> Review:
    study = load_existing_study(study_name, storage)
    tracker = existing_tracker(tracking_uri or study.user_attrs.get(StudyAttr.TRACKING_URI))
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(TrialAttr.DUPLICATE)]
    return Review(study, study.user_attrs.get(StudyAttr.SPEC, {}), trials, tracker, study.user_attrs.get(StudyAttr.PARENT_RUN))
