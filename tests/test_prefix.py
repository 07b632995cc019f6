"""Shared prefixes (`[study] share_prefix = true`) and schedule-aware halving:
a cell continued from its trunk gives the numbers of that cell trained alone."""

import optuna
from mlflow.tracking import MlflowClient
from studyfiles import study_toml

EPOCHS = 4
# Two trunks (weight decay) x 2 gammas x 2 milestone pairs: forks at 2 and 3.
SPACE = {"weight_decay": [1e-4, 5e-4], "gamma": [0.1, 0.5], "milestones": [[2, 3], [3, 4]]}
TRAINED_WITH_PREFIXES = 2 * (3 + 2 * (EPOCHS - 2) + 2 * (EPOCHS - 3))  # 18 of 32


def grid_file(workdir, name, **study):
    path = workdir / f"{name}.toml"
    path.write_text(study_toml(study=study, train={"epochs": EPOCHS, "batch_size": 32, "scheduler": "multistep",
                                                   "synthetic_size": 300, "val_size": 100},
                               space=SPACE))
    return path


def cells(storage, name):
    study = optuna.load_study(study_name=name, storage=storage)
    return {tuple(sorted(t.params.items())): t for t in study.get_trials()
            if t.state.name == "COMPLETE"}


def test_cells_continued_from_their_trunk_equal_the_cells_trained_alone(workdir, cli):
    cli("run", "--study", grid_file(workdir, "alone", common_seeds=True))
    out = cli("run", "--study", grid_file(workdir, "shared", share_prefix=True)).output
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    alone, shared = cells(storage, "alone"), cells(storage, "shared")
    assert len(alone) == len(shared) == 8
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    for key, t in shared.items():
        a = alone[key]
        assert t.user_attrs["seed"] == a.user_attrs["seed"]
        assert t.intermediate_values == a.intermediate_values  # bit for bit, every epoch
        for metric in ("train_loss", "val_loss", "val_acc", "lr"):
            got = [(m.step, m.value) for m in client.get_metric_history(t.user_attrs["mlflow_run_id"], metric)]
            want = [(m.step, m.value) for m in client.get_metric_history(a.user_attrs["mlflow_run_id"], metric)]
            assert sorted(got) == sorted(want), metric
    trained = sum(max(t.intermediate_values) - t.user_attrs["start_epoch"] for t in shared.values())
    assert trained == TRAINED_WITH_PREFIXES
    continued = [t for t in shared.values() if t.user_attrs.get("prefix_epochs")]
    assert len(continued) >= 4  # at most one cell per (trunk, fork) trains from scratch... and later ones reuse
    for t in continued:
        tags = client.get_run(t.user_attrs["mlflow_run_id"]).data.tags
        assert tags["hpsearch.prefix_epochs"] == str(t.user_attrs["prefix_epochs"])
        assert "run " in tags["hpsearch.prefix_trained_in"]
    assert "continuing from trunk" in out
