"""`hpsearch promote` and `hpsearch predict`: from a finished study to a
registered model and a Kaggle submission.

Promotion is where the test split is touched, once per promotion, and only
to measure: the trial is chosen on validation accuracy (or named by the
user). Its best checkpoint is rebuilt from MLflow, evaluated on the test
split of the exact data it was trained on (the split digest recorded in its
manifest is checked), logged as a pickled PyTorch model with a signature,
registered, and the `champion` alias moved to it. Choosing on test accuracy,
as the seed report did, is possible only with `select_on_test`, which
measures every completed trial on the test split and marks the result leaky
wherever it is recorded.

The registered model takes the normalised float batch (N, 3, 32, 32) and
returns logits; `predict` needs only the registry and the Kaggle file.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpsearch.data import DataError
from hpsearch.search.errors import UserError
from hpsearch.search.interrupts import sigterm_as_interrupt
from hpsearch.search.keys import StudyAttr, Tag, TrialAttr
from hpsearch.search.review.model import Review, load_review

ALIAS = "champion"
BY_VALIDATION = "validation"
BY_TEST = "test (leaky)"


def default_model_name(study_name: str) -> str:
    return f"hpsearch-{study_name}"


@dataclass
class Promotion:
    study: str
    trial: int
    run_id: str
    params: dict[str, Any]
    param_count: int
    val_acc: float
    test_acc: float
    test_acc_tta: float | None
    n_test: int
    model_name: str
    version: str
    model_uri: str
    submission: Path | None
    n_predicted: int
    selection: str = BY_VALIDATION
    n_measured: int = 1  # trials whose test accuracy this promotion measured

    def lines(self) -> list[str]:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items()) or "(none searched)"
        if self.selection == BY_TEST:
            val_note = "(hold-out; NOT what the trial was selected on)"
            test_note = (f"({self.n_test:,} test images; LEAKY: the best of {self.n_measured} trials measured "
                         f"on the test split, so an optimistic estimate)")
        else:
            val_note = "(hold-out; what the trial was selected on)"
            test_note = f"({self.n_test:,} test images, measured once here)"
        rows = [
            ("trial", f"{self.trial} of study {self.study} (MLflow run {self.run_id})"),
            ("parameters", params),
            ("param count", f"{self.param_count:,}"),
            ("val accuracy", f"{self.val_acc:.4f}  {val_note}"),
            ("test accuracy", f"{self.test_acc:.4f}  {test_note}"),
        ]
        if self.test_acc_tta is not None:
            rows.append(("test acc, flip TTA", f"{self.test_acc_tta:.4f}"))
        rows.append(("registered", f"{self.model_name} version {self.version}, alias @{ALIAS} "
                                   f"(models:/{self.model_name}@{ALIAS})"))
        if self.submission is not None:
            rows.append(("submission", f"{self.submission} ({self.n_predicted:,} rows"
                                       f"{', flip TTA' if self.test_acc_tta is not None else ''}), "
                                       f"logged to the run"))
        width = max(len(k) for k, _ in rows)
        return [f"{k:<{width}}  {v}" for k, v in rows]


def choose_trial(review: Review, number: int | None) -> FrozenTrial:
    """The best completed trial on the study's own metric, or the one named;
    a trial that did not complete has no selected checkpoint to promote."""
    if number is None:
        best = review.best()
        if best is None:
            states = sorted({t.state.name for t in review.trials}) or ["no trials"]
            raise UserError(f"study {review.name} has no COMPLETE trial to promote (trials: {', '.join(states)})")
        return best
    by_number = {t.number: t for t in review.study.get_trials(deepcopy=False)}
    if number not in by_number:
        raise UserError(f"study {review.name} has no trial {number}; trials are numbered 0 to "
                        f"{len(by_number) - 1}" if by_number else f"study {review.name} has no trials")
    t = by_number[number]
    if t.state != TrialState.COMPLETE or t.user_attrs.get(TrialAttr.DUPLICATE):
        done = [x.number for x in review.complete()]
        reason = t.user_attrs.get(TrialAttr.PRUNE_REASON) or t.user_attrs.get(TrialAttr.FAIL_REASON) or ""
        raise UserError(f"trial {number} of study {review.name} is {t.state.name}"
                        f"{f' ({reason})' if reason else ''}; only a COMPLETE trial can be promoted "
                        f"(complete: {', '.join(map(str, done)) or 'none'})")
    return t


def _download_checkpoint(review: Review, trial: FrozenTrial, tmp: Path) -> Path:
    run_id = trial.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
    if not run_id:
        raise UserError(f"trial {trial.number} of study {review.name} has no MLflow run recorded")
    client = review.tracker.client
    names = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    if "checkpoints/best.pt" not in names:
        why = (" (deleted by `hpsearch gc`)"
               if client.get_run(run_id).data.tags.get(Tag.CHECKPOINT_DELETED) == "true" else "")
        raise UserError(f"trial {trial.number} of study {review.name} has no checkpoint in MLflow run "
                        f"{run_id}{why}; promote another trial with --trial")
    return review.tracker.download(run_id, "checkpoints/best.pt", tmp)


def _recorded_digest(review: Review, run_id: str, tmp: Path) -> str | None:
    names = {a.path for a in review.tracker.client.list_artifacts(run_id)}
    if "manifest.json" not in names:
        return None
    manifest = json.loads(review.tracker.download(run_id, "manifest.json", tmp).read_text())
    return (manifest.get("data") or {}).get("digest")


def _rebuild_data(config, data_dir, recorded_digest: str | None, trial: int, loaded: dict | None = None,
                  recorded_dir: str | None = None):
    """The data bundle the trial was trained on; its test split is then the
    one a promotion may read. `loaded` keeps bundles already built in this
    promotion: the trials of a study share their data."""
    key = config.data_config()
    loaded = {} if loaded is None else loaded
    if key not in loaded:
        try:
            loaded[key] = key.load(data_dir)
        except DataError as e:
            if recorded_dir is None or data_dir != recorded_dir:
                raise
            raise UserError(f"the data folder {recorded_dir} that the study was run on no longer holds its data "
                            f"({e}); pass --data-dir with the folder that holds cifar-10-batches-py") from None
    data = loaded[key]
    if recorded_digest and data.digest != recorded_digest:
        raise UserError(f"the {config.dataset} data found here is not what trial {trial} was trained on "
                        f"(split digest {data.digest} != recorded {recorded_digest}); pass the --data-dir it used")
    return data


def _log_model(model, run_id: str, example, client):
    """Log in the trial's own run: the pickle format, because the default
    `pt2` (torch.export) loads back as a GraphModule whose `.eval()` raises
    (checked with MLflow 3.17). The `hpsearch.models` package travels with it as code
    (as `code/hpsearch/models/`, which MLflow puts on the path when loading),
    so the registered model loads wherever torch and mlflow do.

    The LoggedModel is created first, in the run's own experiment: given
    only `run_id`, MLflow 3.17's `log_model` files it under the active
    experiment (Default, id 0, artifacts outside the study's store) rather
    than the run's, and the study's Models tab stays empty."""
    import shutil
    import tempfile

    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    from hpsearch import models

    with torch.inference_mode():
        logits = model(example).float().numpy()
    example_np = example.numpy().astype(np.float32)
    signature = infer_signature(example_np, logits)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    # MLflow warns on every pickle save; the choice is deliberate (above), so
    # the warning would only tell the user something false.
    log = logging.getLogger("mlflow.pytorch")
    level = log.level
    log.setLevel(logging.ERROR)
    code = Path(tempfile.mkdtemp(prefix="hpsearch-code-")) / "hpsearch"
    shutil.copytree(Path(models.__file__).parent, code / "models", ignore=shutil.ignore_patterns("__pycache__"))
    run = client.get_run(run_id)
    try:
        logged = mlflow.initialize_logged_model(
            name="model", source_run_id=run_id, experiment_id=run.info.experiment_id,
            params=dict(run.data.params),  # as log_model copies them when it creates the model itself
        )
        return mlflow.pytorch.log_model(
            model, name="model", serialization_format="pickle", signature=signature, input_example=example_np,
            code_paths=[str(code)],
            # Explicit requirements: inferring them loads the model in a subprocess (slow, and noisy).
            pip_requirements=requirements, run_id=run_id, model_id=logged.model_id,
        )
    finally:
        log.setLevel(level)
        shutil.rmtree(code.parent, ignore_errors=True)


def _undo_promotion(tracker, run_id: str, name: str, version: str | None, started_ms: int) -> None:
    """Delete the model version and the logged models this promotion made."""
    client = tracker.client
    if version is not None:
        client.delete_model_version(name, version)
    experiments = sorted({client.get_run(run_id).info.experiment_id, "0"})
    for model in client.search_logged_models(experiment_ids=experiments):
        if model.source_run_id == run_id and model.creation_timestamp >= started_ms:
            client.delete_logged_model(model.model_id)


@dataclass
class _Measured:
    """One trial's best checkpoint, rebuilt and measured on its test split."""

    trial: FrozenTrial
    run_id: str
    model: Any
    ckpt: dict
    config: Any
    test_x: Any
    test_y: Any
    test_acc: float


def _measure(review: Review, trial: FrozenTrial, data_dir, device, loaded: dict | None = None) -> _Measured:
    from hpsearch.search.train.checkpoint import load_model
    from hpsearch.search.train.config import TrainConfig
    from hpsearch.search.train.loop import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt = load_model(_download_checkpoint(review, trial, Path(tmp)))
        run_id = trial.user_attrs[TrialAttr.MLFLOW_RUN_ID]
        config = TrainConfig.from_dict(ckpt["train_config"])
        recorded_dir = review.study.user_attrs.get(StudyAttr.DATA_DIR)
        data = _rebuild_data(config, data_dir or recorded_dir, _recorded_digest(review, run_id, Path(tmp)),
                             trial.number, loaded, recorded_dir)
    model = model.to(device)
    test_x, test_y = data.load_test()
    _, test_acc = evaluate(model, test_x.to(device), test_y.to(device), config.eval_batch_size)
    return _Measured(trial, run_id, model, ckpt, config, test_x, test_y, test_acc)


def _best_on_test(review: Review, data_dir, device, say) -> tuple[_Measured, int]:
    """The report's protocol, kept only behind an explicit option: measure
    every completed trial that still has its checkpoint on the test split and
    keep the best (ties go to the better validation score). Each measured run
    gets its `test_acc` and a leaky tag, so the MLflow UI shows what was seen."""
    candidates = [t for t in review.ranked() if not t.user_attrs.get(TrialAttr.DUPLICATE)]
    if not candidates:
        choose_trial(review, None)  # raises the one-line "no COMPLETE trial" error
    best, n, loaded = None, 0, {}
    for trial in candidates:
        try:
            m = _measure(review, trial, data_dir, device, loaded)
        except UserError as e:  # a checkpoint removed by gc: skip it, say so
            say(f"trial {trial.number}: skipped ({e})")
            continue
        n += 1
        say(f"trial {trial.number}: test accuracy {m.test_acc:.4f} (val {trial.value:.4f})")
        review.tracker.log_metrics(m.run_id, {"test_acc": m.test_acc})
        review.tracker.set_tags(m.run_id, {Tag.LEAKY: "true"})
        if best is None or m.test_acc > best.test_acc:
            best = m
        else:
            m.model = None  # free it: only the winner is kept
    if best is None:
        raise UserError(f"study {review.name}: no completed trial has a checkpoint left to measure")
    return best, n


def promote(study_name: str, *, trial_number: int | None = None, model_name: str | None = None,
            kaggle_test: str | None = None, out: str | None = None, tta: bool = False,
            storage: str | None = None, tracking_uri: str | None = None, data_dir: str | None = None,
            select_on_test: bool = False, say=print) -> Promotion:
    import mlflow

    from hpsearch.data import prepare_batch, read_kaggle_test, write_submission
    from hpsearch.search.train.loop import predict, resolve_device

    if out is not None and kaggle_test is None:
        raise UserError("--out names the submission file; it needs --kaggle-test PATH")
    if select_on_test and trial_number is not None:
        raise UserError("--select-on-test chooses the trial itself; it cannot be combined with --trial")
    review = load_review(study_name, storage, tracking_uri)
    trial = None if select_on_test else choose_trial(review, trial_number)
    # Bad input fails before anything is logged: the Kaggle file is read first.
    kaggle = read_kaggle_test(kaggle_test) if kaggle_test else None
    name = model_name or default_model_name(study_name)
    tracker = review.tracker
    device = resolve_device("auto")
    if select_on_test:
        m, n_measured = _best_on_test(review, data_dir, device, say)
        selection = BY_TEST
        say(f"LEAKY selection: trial {m.trial.number} has the best test accuracy of {n_measured} trials; "
            f"its test accuracy is not an unbiased estimate")
    else:
        m, n_measured, selection = _measure(review, trial, data_dir, device), 1, BY_VALIDATION
        say(f"trial {m.trial.number}: test accuracy {m.test_acc:.4f} on {len(m.test_y):,} test images")
    trial, run_id, model, ckpt, config = m.trial, m.run_id, m.model, m.ckpt, m.config
    test_x, test_y, test_acc = m.test_x, m.test_y, m.test_acc
    test_acc_tta = None
    if tta:
        hits = predict(model, test_x, config.eval_batch_size, tta=True) == test_y
        test_acc_tta = hits.float().mean().item() if len(hits) else 0.0
    # The submission is written before the registry changes, so an unwritable
    # --out leaves no half-done promotion behind.
    submission, n_predicted = None, 0
    if kaggle is not None:
        images, ids = kaggle
        labels = predict(model, images, config.eval_batch_size, tta=tta)
        submission, n_predicted = write_submission(Path(out or "submission.csv"), ids, labels), len(ids)

    # A SIGTERM (or Ctrl-C) while the model is logged and registered undoes what
    # this promotion made, so no half-made model or version is left behind.
    started_ms, version = int(time.time() * 1000), None
    with sigterm_as_interrupt():
        try:
            model = model.cpu().eval()
            info = _log_model(model, run_id, prepare_batch(test_x[:2], None, None), tracker.client)
            val_acc = float(trial.user_attrs.get(TrialAttr.BEST_VAL_ACC, trial.value))
            param_count = int(trial.user_attrs.get(TrialAttr.PARAM_COUNT, ckpt["metrics"].get("param_count", 0)))
            lineage = {Tag.LINEAGE_STUDY: study_name, Tag.LINEAGE_TRIAL: trial.number, Tag.LINEAGE_RUN_ID: run_id,
                       Tag.LINEAGE_PARAM_COUNT: param_count, Tag.LINEAGE_VAL_ACC: f"{val_acc:.6f}",
                       Tag.LINEAGE_TEST_ACC: f"{test_acc:.6f}", Tag.LINEAGE_DATASET: config.dataset,
                       Tag.LINEAGE_TRACKING_URI: tracker.uri, Tag.SELECTION: selection}
            registered = mlflow.register_model(info.model_uri, name, tags={k: str(v) for k, v in lineage.items()})
            version = str(registered.version)  # a str from register_model, an int from some stores' getters
            client = tracker.client
            leaky = (" LEAKY: chosen by test accuracy, so the test figure is optimistic."
                     if selection == BY_TEST else "")
            client.update_model_version(name, version, description=(
                f"Trial {trial.number} of study {study_name}: {param_count:,} parameters, val acc {val_acc:.4f}, "
                f"test acc {test_acc:.4f}.{leaky} Input: float32 (N, 3, 32, 32) images scaled to [0, 1] and "
                f"normalised with the CIFAR-10 mean and std (data.prepare_batch); output: logits of the 10 classes."))
            client.set_registered_model_alias(name, ALIAS, version)
        except KeyboardInterrupt:
            _undo_promotion(tracker, run_id, name, version, started_ms)
            say(f"promote interrupted: nothing was registered (trial {trial.number}, model {name})")
            raise

    metrics = {} if selection == BY_TEST else {"test_acc": test_acc}  # the leaky pass logged it already
    if test_acc_tta is not None:
        metrics["test_acc_tta"] = test_acc_tta
    if metrics:
        tracker.log_metrics(run_id, metrics)
    tracker.set_tags(run_id, {Tag.PROMOTED: "true", Tag.REGISTERED_MODEL: f"{name}/{version}",
                              Tag.SELECTION: selection})
    _record_in_study(review, trial.number, {"model": name, "version": version, "test_acc": test_acc,
                                            "selection": selection})

    if submission is not None:
        tracker.log_file(run_id, submission, "submission")
    return Promotion(study_name, trial.number, run_id, dict(trial.params), param_count, val_acc, test_acc,
                     test_acc_tta, len(test_y), name, version, f"models:/{name}@{ALIAS}",
                     submission, n_predicted, selection, n_measured)


def _record_in_study(review: Review, number: int, entry: dict) -> None:
    """Optuna refuses user attributes on a finished trial
    (UpdateFinishedTrialError), so promotions are kept on the study:
    `hpsearch.promoted` maps a trial number to its promotions."""
    promoted = dict(review.study.user_attrs.get(StudyAttr.PROMOTED) or {})
    promoted.setdefault(str(number), []).append(entry)
    review.study.set_user_attr(StudyAttr.PROMOTED, promoted)


def predict_from_registry(model_uri: str, kaggle_test: str, out: str, tta: bool = False,
                          tracking_uri: str | None = None) -> tuple[Path, int]:
    """Labels for every image of a Kaggle file from a registered model alone."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from hpsearch.data import read_kaggle_test, write_submission
    from hpsearch.search.review.model import existing_tracker
    from hpsearch.search.train.loop import predict

    images, ids = read_kaggle_test(kaggle_test)
    # The registry is the tracking store's unless MLFLOW_REGISTRY_URI says
    # otherwise, as when `promote` registered the model.
    tracker = existing_tracker(tracking_uri)
    try:
        model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except MlflowException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"model {model_uri} cannot be loaded from {tracker.uri}: {first}") from None
    labels = predict(model, images, tta=tta)
    return write_submission(Path(out), ids, labels), len(ids)
