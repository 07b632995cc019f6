"""`hpsearch run --fuse B`: several trials trained as one fused model, each
still its own Optuna trial and MLflow run, with the numbers of its trial alone."""

import json
import os
import signal

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from processes import finish, hpsearch, wait_for_epoch
from studyfiles import study_toml

from hpsearch.search.study.fusion import resolve_fuse
from hpsearch.search.train import figures

EPOCHS = 3
# 2 x 2 cells of one architecture and batch size: one fused group of 4.
SPACE = {"lr": [0.05, 0.1], "weight_decay": [1e-4, 5e-4]}


@pytest.fixture
def one_thread():
    """Bit-exactness is checked on one CPU thread (see tests/test_fused.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grid_file(workdir, name, space=SPACE, **study):
    path = workdir / f"{name}.toml"
    # common seeds: a cell's seed derives from its values, not from its trial
    # number, so the two runs' cells are comparable whatever order they ran in.
    path.write_text(study_toml(study={"common_seeds": True, **study},
                               train={"epochs": EPOCHS, "batch_size": 32, "synthetic_size": 300, "val_size": 100},
                               space=space))
    return path


def by_cell(storage, name, states=("COMPLETE",)):
    study = optuna.load_study(study_name=name, storage=storage)
    return {tuple(sorted(t.params.items())): t for t in study.get_trials() if t.state.name in states}


def history(client, run_id, metric):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


def test_fused_trials_equal_their_trials_alone_in_both_stores(workdir, cli, one_thread):
    cli("run", "--study", grid_file(workdir, "alone"), "--fuse", "1")
    out = cli("run", "--study", grid_file(workdir, "fused"), "--fuse", "4").output
    assert "up to 4 at a time as one fused model (--fuse 4)" in out
    assert "trained together as one fused model" in out
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    alone, fused = by_cell(storage, "alone"), by_cell(storage, "fused")
    assert len(alone) == len(fused) == 4
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    numbers = sorted(t.number for t in fused.values())
    for key, t in fused.items():
        a = alone[key]
        assert t.user_attrs["fused_with"] == numbers  # all four in one model
        assert "fused_with" not in a.user_attrs
        assert t.user_attrs["seed"] == a.user_attrs["seed"]
        assert t.value == a.value
        assert t.intermediate_values == a.intermediate_values  # bit for bit, every epoch
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["hpsearch.fused_with"] == ", ".join(map(str, numbers))
        assert json.loads(run.data.tags["hpsearch.execution"])["fused_members"] == 4
        assert t.user_attrs["execution"]["precision"] == a.user_attrs["execution"]["precision"] == "fp32"
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert history(client, run.info.run_id, metric) == history(client, a.user_attrs["mlflow_run_id"], metric)
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert artifacts == {f.path for f in client.list_artifacts(a.user_attrs["mlflow_run_id"])}
    assert list((workdir / "mlruns" / "checkpoints").glob("fused-*"))  # the study's folder ...
    assert not list((workdir / "mlruns" / "checkpoints").glob("fused-*/trial-*"))  # ... with no trial left in it


def test_a_pruned_member_leaves_the_group_and_the_others_finish(workdir, cli, one_thread):
    # Optuna's median pruner compares with completed trials: one cell first
    # (GridSampler's seeded order), then the other three as one fused model,
    # each pruned at the first epoch it falls below that trial's curve.
    spec = grid_file(workdir, "pruned", space={"lr": [0.01, 0.05, 0.1, 0.2]}, pruner="median",
                     pruner_options={"n_startup_trials": 1, "n_warmup_steps": 0})
    cli("run", "--study", spec, "--fuse", "1", "--n-trials", "1")
    cli("run", "--study", spec, "--fuse", "3")
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    trials = optuna.load_study(study_name="pruned", storage=storage).get_trials()
    assert len(trials) == 4 and all(t.user_attrs["fused_with"] == [1, 2, 3] for t in trials[1:])
    states = sorted(t.state.name for t in trials[1:])
    assert "COMPLETE" in states and "PRUNED" in states, states
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        epochs = [s for s, _ in history(client, run.info.run_id, "val_acc")]
        assert epochs == sorted(t.intermediate_values) == list(range(1, len(epochs) + 1))
        if t.state.name == "PRUNED":
            assert len(epochs) < EPOCHS and run.data.tags["hpsearch.outcome"].startswith("pruned")
        else:
            assert len(epochs) == EPOCHS and run.info.status == "FINISHED"


def test_killed_fused_run_resumes_each_trial_alone_with_the_same_curves(workdir, cli, one_thread):
    cli("run", "--study", grid_file(workdir, "alone"), "--fuse", "1")
    spec = grid_file(workdir, "killed")
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    proc = hpsearch(workdir, "run", "--study", spec, "--fuse", "4", OMP_NUM_THREADS=1)
    wait_for_epoch(storage, "killed", proc, n=1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--fuse", "4", OMP_NUM_THREADS=1))
    assert code == 0, out
    assert "resuming from epoch" in out
    alone, killed = by_cell(storage, "alone"), by_cell(storage, "killed")
    assert len(killed) == 4
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    for key, t in killed.items():
        assert t.intermediate_values == alone[key].intermediate_values
        run_id = t.user_attrs["mlflow_run_id"]
        assert [s for s, _ in history(client, run_id, "val_acc")] == list(range(1, EPOCHS + 1))  # each epoch once
        assert history(client, run_id, "val_acc") == history(client, alone[key].user_attrs["mlflow_run_id"], "val_acc")


@pytest.mark.parametrize("value, message", [
    ("0", "--fuse 0: must be >= 1"),
    ("many", "--fuse 'many': allowed: a whole number >= 1, or auto"),
])
def test_bad_fuse_is_one_line_and_writes_nothing(workdir, cli, value, message):
    result = cli("run", "--study", grid_file(workdir, "bad"), "--fuse", value, ok=False)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (workdir / "mlruns" / "optuna.db").exists()


def test_fuse_with_shared_prefixes_is_refused(workdir, cli):
    spec = grid_file(workdir, "prefix", space={"gamma": [0.1, 0.5]}, share_prefix=True)
    text = spec.read_text().replace('scheduler = "none"', 'scheduler = "multistep"\nmilestones = [2, 3]')
    spec.write_text(text)
    result = cli("run", "--study", spec, "--fuse", "2", ok=False)
    assert result.exit_code == 2 and "not with share_prefix = true" in result.output
    assert not (workdir / "mlruns" / "optuna.db").exists()


def test_fuse_auto_is_one_where_nothing_was_measured(workdir, cli):
    out = cli("run", "--study", grid_file(workdir, "auto", space={"lr": [0.05, 0.1]})).output
    assert "fused model" not in out
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    assert all("fused_with" not in t.user_attrs for t in by_cell(storage, "auto").values())


def fused_figures(device, rows):
    """What `hpsearch bench --only fused` keeps for resnet-tiny at batch 32 on `device`."""
    figures.record(figures.device_key(device), "fused", "resnet-tiny@32", {
        "model": "resnet-tiny", "batch_size": 32,
        "members": [{"members": b, "fused_images_per_s": rate, "vs_one_trial_alone": rate / rows[0][1]}
                    for b, rate in rows]})


def test_fuse_auto_follows_the_fused_figures_measured_on_this_device(workdir, cli):
    cpu = torch.device("cpu")
    fused_figures(cpu, [(1, 1000.0), (2, 1500.0), (4, 1400.0)])  # 2 trials measured fastest, 1.5x
    out = cli("run", "--study", grid_file(workdir, "auto2", space={"lr": [0.05, 0.1]}), "--n-trials", "2").output
    assert "up to 2 at a time as one fused model (fuse auto: 2 trials, measured 1.5x one trial alone" in out
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    assert [t.user_attrs["fused_with"] for t in by_cell(storage, "auto2").values()] == [[0, 1], [0, 1]]
    fused_figures(cpu, [(1, 1000.0), (2, 1100.0)])  # within the bench's noise: not worth fusing
    assert resolve_fuse("auto", _resolved(workdir)).size == 1


def _resolved(workdir):
    from hpsearch.search.study.runner import RunOptions, prepare

    return prepare(RunOptions(study=str(grid_file(workdir, "r", space={"lr": [0.05, 0.1]}))))[1]


def test_two_fusing_workers_train_every_cell_once(workdir):
    spec = grid_file(workdir, "two", space={"lr": [0.02, 0.05, 0.1, 0.2], "weight_decay": [1e-4, 5e-4]})
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--workers", 2, "--fuse", 4))
    assert code == 0, out
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    trials = [t for t in optuna.load_study(study_name="two", storage=storage).get_trials()
              if not t.user_attrs.get("duplicate")]
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 8, [(t.number, t.state.name) for t in trials]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # every cell once
    assert all(len(t.intermediate_values) == EPOCHS for t in trials)
    assert any(len(t.user_attrs.get("fused_with", [])) > 1 for t in trials)
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    parent = [r for r in client.search_runs([client.get_experiment_by_name("two").experiment_id])
              if r.data.tags.get("hpsearch.role") == "study"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
