"""`hpsearch run` end to end, against real SQLite stores in a temp directory."""

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from studyfiles import study_toml

from hpsearch.data import load_dataset
from hpsearch.data.testing import write_cifar_batches
from hpsearch.search.train.checkpoint import load_model
from hpsearch.search.train.loop import evaluate


def mlflow_client():
    return MlflowClient(f"sqlite:///{Path.cwd()}/mlruns/mlflow.db")


def optuna_url():
    return f"sqlite:///{Path.cwd()}/mlruns/optuna.db"


def write_study(path, body):
    path.write_text(body)
    return path


def load(name):
    return optuna.load_study(study_name=name, storage=optuna_url())


def child_runs(client, name):
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("hpsearch.role") == "study"]
    children = [r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]
    return parents, children


TINY_GRID = study_toml(train={"synthetic_size": 400, "scheduler": "cosine"},
                       space={"lr": [0.05, 0.2], "batch_size": [32, 64]})


def test_smoke_study_fills_both_stores(cli, workdir):
    cli("run", "--study", "smoke", "--quiet")
    study = load("smoke")
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    client = mlflow_client()
    parents, children = child_runs(client, "smoke")
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0].info.run_id
    assert study.user_attrs["hpsearch.mlflow_parent_run_id"] == parent
    by_id = {c.info.run_id: c for c in children}
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["optuna.study"] == "smoke"
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.data.tags["optuna.trial_state"] == t.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[t.state.name]
        assert "param_count" not in run.data.params  # a metric (sortable), logged once
        assert run.data.metrics["param_count"] == 78042 == t.user_attrs["param_count"]
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "manifest.json", "plots"} <= arts
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == sorted(set(steps)) and steps[0] == 1
        for key in ("train_loss", "train_acc", "val_loss", "lr", "epoch_seconds"):
            assert len(client.get_metric_history(run.info.run_id, key)) == len(steps)
        assert list(t.intermediate_values) == steps
        if t.state.name == "COMPLETE":
            assert len(steps) >= 2
            assert run.data.metrics["best_val_acc"] == pytest.approx(t.value)
    best = study.best_trial
    run_id = best.user_attrs["mlflow_run_id"]
    path = client.download_artifacts(run_id, "checkpoints/best.pt", str(workdir))
    model, ckpt = load_model(path)
    cfg = ckpt["train_config"]
    data = load_dataset(cfg["dataset"], val_size=cfg["val_size"], split_seed=cfg["split_seed"],
                        synthetic_size=cfg["synthetic_size"])
    _, acc = evaluate(model, data.val_x, data.val_y)
    assert acc == pytest.approx(best.value, abs=1e-9)
    manifest = json.loads((workdir / client.download_artifacts(run_id, "manifest.json", str(workdir))).read_text())
    assert manifest["seed"] == best.user_attrs["seed"]
    assert {"python", "torch", "optuna", "mlflow"} <= set(manifest["versions"])
    assert manifest["data"]["digest"]
    fig = client.download_artifacts(run_id, "plots/learning_curves.png", str(workdir))
    assert open(fig, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_grid_runs_each_cell_once_and_a_second_run_adds_nothing(cli, workdir):
    spec = write_study(workdir / "g.toml", TINY_GRID)
    cli("run", "--study", spec, "--quiet")
    second = cli("run", "--study", spec)
    assert "grid complete" in second.output
    trials = load("g").get_trials()
    assert len(trials) == 4
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    _, children = child_runs(mlflow_client(), "g")
    assert len(children) == 4


def test_over_budget_model_is_pruned_without_training(cli, workdir):
    spec = write_study(workdir / "b.toml", TINY_GRID.replace("lr = [0.05, 0.2]", "lr = [0.1]").replace(
        "batch_size = [32, 64]", 'model = ["resnet-tiny", "resnet-seed"]').replace(
        "[study]", "[study]\nbudget = 100_000").replace('model = "resnet-tiny"\n', "", 1))
    cli("run", "--study", spec, "--quiet")
    trials = {t.params["model"]: t for t in load("b").get_trials()}
    big = trials["resnet-seed"]
    assert big.state.name == "PRUNED"
    assert big.user_attrs["param_count"] == 4_985_390
    assert "over budget" in big.user_attrs["prune_reason"]
    assert big.intermediate_values == {}
    client = mlflow_client()
    run = client.get_run(big.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["hpsearch.over_budget"] == "true"
    assert "val_acc" not in run.data.metrics
    assert trials["resnet-tiny"].state.name == "COMPLETE"


def test_grid_epochs_are_scaled_recorded_and_fixed_per_study(cli, workdir):
    root = workdir / "cifar"
    write_cifar_batches(root, n_per_batch=30, n_test=10, seed=1, with_test=False)
    args = ["run", "--study", "grid", "--data-dir", root, "--n-trials", 1, "--quiet",
            "--set", "model=resnet-tiny", "--set", "val_size=50", "--set", "augment=false"]
    cli(*args, "--epochs", 20)
    (t,) = load("grid").get_trials()
    assert t.state.name == "COMPLETE"  # and the test split, absent here, was never needed
    nominal = [int(v) for v in t.params["milestones"].split(",")]
    assert t.user_attrs["config"]["milestones"] == [int(m * 20 / 200 + 0.5) for m in nominal]
    assert t.user_attrs["config"]["epochs"] == 20
    run = mlflow_client().get_run(t.user_attrs["mlflow_run_id"])
    assert run.data.params["milestones_nominal"] == "[" + ", ".join(map(str, nominal)) + "]"
    assert run.data.params["epochs_nominal"] == "200" and run.data.params["epochs"] == "20"
    refused = cli(*args, "--epochs", 30, ok=False)
    assert refused.exit_code == 2
    assert "epochs 20 -> 30" in refused.output and "--study-name" in refused.output
    assert len(load("grid").get_trials()) == 1


def test_run_never_reads_the_test_split(cli, workdir):
    root = workdir / "cifar"
    write_cifar_batches(root, n_per_batch=20, n_test=10, seed=2, with_test=False)
    test_batch = root / "cifar-10-batches-py" / "test_batch"
    spec = write_study(workdir / "c.toml", TINY_GRID.replace('"synthetic"', '"cifar10"').replace(
        "lr = [0.05, 0.2]", "lr = [0.1]").replace("batch_size = [32, 64]", "batch_size = [32]").replace(
        "val_size = 100", "val_size = 20"))
    cli("run", "--study", spec, "--data-dir", root, "--quiet")
    assert load("c").get_trials()[0].state.name == "COMPLETE"
    # Reading the test split would have failed here, or fetched it: neither happened.
    assert not test_batch.exists()
    assert not (root / "cifar-10-python.tar.gz").exists()


def test_studies_lists_the_report_grid_with_256_cells(cli):
    studies, _, compute = cli("studies").output.partition("Grid compute")
    rows = {line.split()[1]: line for line in studies.splitlines() if line.startswith("│")}
    assert "256 cells" in rows["grid"] and "resnet-seed" in rows["grid"]
    assert "8 cells" in rows["arch"] and "resnet-443-se" in rows["arch"]
    assert "60 trials" in rows["tpe"] and "hyperband" in rows["tpe"]
    grids = {line.split()[1] for line in compute.splitlines() if line.startswith("│")}
    assert grids == {"grid", "grid-fast", "arch", "smoke"}  # the tpe study is no grid


def test_status_shows_trials_and_the_best(cli, workdir):
    spec = write_study(workdir / "s.toml", TINY_GRID.replace("batch_size = [32, 64]", "batch_size = [64]"))
    cli("run", "--study", spec, "--quiet")
    out = cli("status", "--study", "s").output
    assert "COMPLETE" in out and "78,042" in out and "best trial" in out


def test_a_failing_trial_does_not_stop_the_study(cli, workdir):
    spec = write_study(workdir / "f.toml", TINY_GRID.replace("lr = [0.05, 0.2]", "lr = [0.1, 1e30]").replace(
        "batch_size = [32, 64]", "batch_size = [64]").replace('scheduler = "cosine"', 'scheduler = "none"'))
    cli("run", "--study", spec, "--quiet")
    trials = {t.params["lr"]: t for t in load("f").get_trials()}
    assert trials[0.1].state.name == "COMPLETE"
    failed = trials[1e30]
    assert failed.state.name == "FAIL" and "non-finite loss" in failed.user_attrs["fail_reason"]
    run = mlflow_client().get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "non-finite" in run.data.tags["hpsearch.reason"]


def test_an_epoch_checkpoint_that_cannot_be_written_fails_its_trial_and_the_next_run_retries_it(cli, workdir):
    # The epoch checkpoint is written off the training thread; its failure
    # still reaches the trial, with the reason, in both stores. Such a failure
    # (an environment fault, not a training outcome) does not make its grid
    # cell "done": the next run queues it again.
    spec = write_study(workdir / "w.toml", TINY_GRID.replace("batch_size = [32, 64]", "batch_size = [64]"))
    cli("run", "--study", spec, "--quiet", "--n-trials", 1)
    (folder,) = (workdir / "mlruns" / "checkpoints").iterdir()  # the study's: w-<uid>
    folder.rmdir()
    folder.write_text("")  # now the trial's folder cannot be made
    cli("run", "--study", spec, "--quiet", "--n-trials", 1)
    failed = [t for t in load("w").get_trials() if t.state.name == "FAIL"]
    assert len(failed) == 1
    (t,) = failed
    assert "NotADirectoryError" in t.user_attrs["fail_reason"] and t.user_attrs["fail_kind"] == "error"
    run = mlflow_client().get_run(t.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "NotADirectoryError" in run.data.tags["hpsearch.reason"]
    # No epoch reached MLflow: each is logged only once its checkpoint is on disk.
    assert mlflow_client().get_metric_history(run.info.run_id, "val_acc") == []
    folder.unlink()
    out = cli("run", "--study", spec).output
    assert f"trial(s) {t.number} failed with an error: queued again" in out
    assert "nothing left" in out
    trials = load("w").get_trials()
    assert sorted(t.params["lr"] for t in trials if t.state.name == "COMPLETE") == [0.05, 0.2]
