"""The names hpsearch writes into Optuna and MLflow, each in one place.

Trial user attributes (Optuna), study user attributes (Optuna) and run tags
(MLflow) are read by other commands and other processes (`status`, `gc`,
`promote`, a second worker), so a name is never spelled twice.
"""

from __future__ import annotations


class TrialAttr:
    """Optuna trial user attributes."""

    MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's MLflow run (a retry continues it)
    ORIGIN = "origin"  # number of the first trial of this logical trial (retries share it)
    SEED = "seed"
    CONFIG = "config"  # the resolved TrainConfig as a dict
    PARAM_COUNT = "param_count"
    DUPLICATE = "duplicate"  # a grid cell handed out twice: not trained
    PRUNE_REASON = "prune_reason"
    FAIL_REASON = "fail_reason"
    OWNER = "owner"  # host, pid, process start time, boot id of the worker running it
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    RESUME_REFUSED = "resume_refused"  # why an epoch checkpoint found was not resumed
    FAIL_KIND = "fail_kind"  # "diverged" (a training outcome) or "error" (retried by the next run)
    EPOCHS_RUN = "epochs_run"
    BEST_EPOCH = "best_epoch"
    BEST_VAL_ACC = "best_val_acc"
    START_EPOCH = "start_epoch"  # the epoch this attempt resumed after (0: from scratch)
    TRUNK = "trunk"  # shared prefixes: the key of the cell's trunk
    FORK_EPOCH = "fork_epoch"  # shared prefixes: the epoch the cell leaves its trunk
    PREFIX_EPOCHS = "prefix_epochs"  # shared prefixes: epochs taken from trunk snapshots, trained elsewhere
    PREFIX_SEGMENTS = "prefix_segments"  # shared prefixes: [first, last, MLflow run, trial] of those epochs
    FUSED_WITH = "fused_with"  # `--fuse`: the trials (numbers) trained together as one fused model
    EXECUTION = "execution"  # how the trial ran on its device: precision, memory format, compile, and why


class StudyAttr:
    """Optuna study user attributes: what the study was created with."""

    IDENTITY = "hpsearch.identity"  # fixed values that must not change on resume
    UID = "hpsearch.uid"  # made once when the study is created: names its checkpoint folder
    SPEC = "hpsearch.spec"  # the study file's shape, for read-only commands
    PARENT_RUN = "hpsearch.mlflow_parent_run_id"
    EXPERIMENT = "hpsearch.mlflow_experiment_id"
    TRACKING_URI = "hpsearch.tracking_uri"
    DATA_DIR = "hpsearch.data_dir"  # where a cifar10 study's images were read from (absolute)
    PROMOTED = "hpsearch.promoted"  # {trial number: [promotions]}


class Tag:
    """MLflow run tags."""

    STUDY = "optuna.study"
    TRIAL_NUMBER = "optuna.trial_number"
    TRIAL_STATE = "optuna.trial_state"
    ROLE = "hpsearch.role"  # study, trial or train
    STORAGE = "hpsearch.storage"
    ORIGIN_TRIAL = "hpsearch.origin_trial"
    REASON = "hpsearch.reason"
    TRACEBACK = "hpsearch.traceback"
    OVER_BUDGET = "hpsearch.over_budget"
    PRUNED_EPOCH = "hpsearch.pruned_epoch"
    CHECKPOINT_DELETED = "hpsearch.checkpoint_deleted"
    SUPERSEDED_BY = "hpsearch.superseded_by"  # restarted from epoch 0 in that run
    PROMOTED = "hpsearch.promoted"
    LEAKY = "hpsearch.leaky"
    SELECTION = "hpsearch.selection"
    # lineage of a registered model version
    LINEAGE_STUDY = "hpsearch.study"
    LINEAGE_TRIAL = "hpsearch.trial"
    LINEAGE_RUN_ID = "hpsearch.run_id"
    LINEAGE_PARAM_COUNT = "hpsearch.param_count"
    LINEAGE_VAL_ACC = "hpsearch.val_acc"
    LINEAGE_TEST_ACC = "hpsearch.test_acc"
    LINEAGE_DATASET = "hpsearch.dataset"
    LINEAGE_TRACKING_URI = "hpsearch.tracking_uri"
    REGISTERED_MODEL = "hpsearch.registered_model"
    PREFIX_EPOCHS = "hpsearch.prefix_epochs"  # epochs logged here that were trained in other runs
    PREFIX_TRAINED_IN = "hpsearch.prefix_trained_in"  # "1-50: run <id> (trial 3); ..."
    TRUNK = "hpsearch.trunk"
    EXECUTION = "hpsearch.execution"  # the execution path the trial trained on, and why (train.execution)
    FUSED_WITH = "hpsearch.fused_with"  # `--fuse`: the trials trained together with this one as one fused model
    OUTCOME = "hpsearch.outcome"  # a trial's fate in words: "complete", "pruned at epoch 2", ...
    # tags MLflow's own UI reads (checked in MLflow 3.17's server/js bundle)
    DESCRIPTION = "mlflow.note.content"  # a run's (or experiment's) description, markdown
    EXPERIMENT_KIND = "mlflow.experimentKind"  # "custom_model_development": a training experiment
    SHARED_VIEW = "mlflow.sharedViewState."  # + key: a runs-table view that `?viewStateShareKey=key` opens
