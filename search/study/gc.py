"""`hpsearch gc`: free the disk held by checkpoints of trials nobody will promote.

Keeps the best checkpoints of the top K completed trials and of every promoted
trial; deletes the `checkpoints/` artifacts of the other trials' MLflow runs
(through MLflow's artifact repository, so local and server stores alike) and
any leftover epoch checkpoints of finished trials.
"""

from __future__ import annotations

import shutil

from optuna.trial import TrialState

from hpsearch.search.errors import UserError
from hpsearch.search.keys import StudyAttr, Tag, TrialAttr
from hpsearch.search.study.checkpoints import trial_checkpoint_dir
from hpsearch.search.study.stores import load_existing_study
from hpsearch.search.study.tracking import Tracker


def _size(tracker: Tracker, run_id: str, path: str) -> int:
    total = 0
    for info in tracker.client.list_artifacts(run_id, path):
        total += _size(tracker, run_id, info.path) if info.is_dir else (info.file_size or 0)
    return total


def collect_garbage(study_name: str, keep: int, storage: str | None, tracking_uri: str | None) -> dict:
    # Finished Optuna trials are read-only, so promotion is recorded as the
    # MLflow run tag `hpsearch.promoted`, which is what protects a checkpoint.
    if keep < 0:
        raise UserError(f"--keep {keep}: must be >= 0")
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    study = load_existing_study(study_name, storage)
    tracker = Tracker(tracking_uri or study.user_attrs.get(StudyAttr.TRACKING_URI))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    complete.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    kept = {t.number for t in complete[:keep]}
    # A queued retry (WAITING) or a trial in flight (RUNNING) resumes from its
    # origin's epoch checkpoint: that folder is never touched.
    live = {_origin(t) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    uid = study.user_attrs.get(StudyAttr.UID)
    freed, deleted = 0, set()
    for t in trials:
        if t.number in kept or not t.state.is_finished():
            continue
        if uid is not None and _origin(t) not in live:
            leftover = trial_checkpoint_dir(study_name, uid, _origin(t))
            if leftover.exists():
                freed += sum(p.stat().st_size for p in leftover.rglob("*") if p.is_file())
                shutil.rmtree(leftover, ignore_errors=True)
                deleted.add(t.number)
        run_id = t.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
        if not run_id:
            continue
        size = _size(tracker, run_id, "checkpoints")
        if size == 0:
            continue
        run = tracker.client.get_run(run_id)
        if run.data.tags.get(Tag.PROMOTED) == "true":
            kept.add(t.number)  # a promoted model's checkpoint is never deleted
            continue
        get_artifact_repository(run.info.artifact_uri).delete_artifacts("checkpoints")
        tracker.set_tags(run_id, {Tag.CHECKPOINT_DELETED: "true"})
        freed += size
        deleted.add(t.number)
    return {"kept": sorted(kept), "deleted": sorted(deleted), "freed_bytes": freed}


def _origin(t) -> int:
    return t.user_attrs.get(TrialAttr.ORIGIN, t.number)
