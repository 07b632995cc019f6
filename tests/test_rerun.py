"""Rerun at once after a crash (the default 30 s heartbeat, nothing shortened),
waiting for trials that run elsewhere, and a study that remembers its data
folder and reads its study file as users mean it."""

import os
import signal
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from processes import finish, hpsearch, wait_for_epoch
from studyfiles import study_toml

from hpsearch.data.testing import write_cifar_batches


def grid(lrs, epochs=4, size=600):
    return study_toml(train={"synthetic_size": size, "epochs": epochs, "batch_size": 32, "scheduler": "cosine"},
                      space={"lr": list(lrs)})


def test_kill_9_then_the_same_command_at_once_resumes_the_trial(tmp_path):
    (tmp_path / "k.toml").write_text(grid([0.05, 0.1], epochs=5))
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    proc = hpsearch(tmp_path, "run", "--study", "k.toml")
    victim = wait_for_epoch(storage, "k", proc, n=2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    code, out = finish(hpsearch(tmp_path, "run", "--study", "k.toml"))  # no sleep: at once
    assert code == 0, out
    assert f"trial(s) {victim.number} belonged to a process on this host that is gone" in out
    assert "nothing left" in out
    trials = optuna.load_study(study_name="k", storage=storage).get_trials()
    assert {t.state.name for t in trials} == {"COMPLETE", "FAIL"}
    (retry,) = [t for t in trials if t.user_attrs.get("origin") == victim.number and t.state.name == "COMPLETE"]
    assert retry.user_attrs["resumed_from_epoch"] >= 2
    assert retry.user_attrs["mlflow_run_id"] == victim.user_attrs["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    steps = [m.step for m in client.get_metric_history(retry.user_attrs["mlflow_run_id"], "val_acc")]
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert sorted(t.params["lr"] for t in trials if t.state.name == "COMPLETE") == [0.05, 0.1]


def test_a_run_waits_for_a_live_trial_elsewhere_or_with_no_wait_says_which_and_exits(tmp_path):
    (tmp_path / "w.toml").write_text(grid([0.1], epochs=6))
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    first = hpsearch(tmp_path, "run", "--study", "w.toml")
    running = wait_for_epoch(storage, "w", first)
    code, out = finish(hpsearch(tmp_path, "run", "--study", "w.toml", "--no-wait"), timeout=300)
    assert code == 0, out
    assert "nothing left to start" in out and f"trial {running.number} on" in out and "heartbeat" in out
    assert "nothing left\n" not in out and "grid complete" not in out
    code, out = finish(hpsearch(tmp_path, "run", "--study", "w.toml"))  # waits for the first to finish
    assert code == 0, out
    assert f"waiting for trial {running.number} on" in out
    assert first.wait(timeout=600) == 0
    assert "nothing left" in out
    (trial,) = optuna.load_study(study_name="w", storage=storage).get_trials()
    assert trial.state.name == "COMPLETE" and "resumed_from_epoch" not in trial.user_attrs


def test_kill_9_of_one_of_two_workers_on_postgresql_the_other_finishes_the_study(tmp_path):
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
            c.execute("SELECT 1")
    except Exception as e:  # no server: this machine kind runs one, CI starts it
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 not reachable: {e}")
    db = f"hps_rerun_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    storage = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    try:
        (tmp_path / "pg.toml").write_text(grid([0.05, 0.1, 0.2], epochs=4))
        victim_proc = hpsearch(tmp_path, "run", "--study", "pg.toml", "--storage", storage)
        victim = wait_for_epoch(storage, "pg", victim_proc)
        other = hpsearch(tmp_path, "run", "--study", "pg.toml", "--storage", storage)
        os.killpg(victim_proc.pid, signal.SIGKILL)
        victim_proc.wait()
        code, out = finish(other)
        assert code == 0, out
        assert "nothing left" in out
        trials = optuna.load_study(study_name="pg", storage=storage).get_trials()
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        assert sorted(t.params["lr"] for t in complete) == [0.05, 0.1, 0.2]
        (retry,) = [t for t in complete if t.user_attrs.get("origin") == victim.number]
        assert retry.user_attrs["resumed_from_epoch"] >= 1
        assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_promote_reads_the_data_folder_the_study_was_run_on(tmp_path):
    data = tmp_path / "cifar"
    write_cifar_batches(data, n_per_batch=60, n_test=50, seed=1)
    (tmp_path / "c.toml").write_text(study_toml(train={"dataset": "cifar10", "val_size": 50, "epochs": 1,
                                                       "synthetic_size": None}))
    code, out = finish(hpsearch(tmp_path, "run", "--study", "c.toml", "--data-dir", data, "--quiet"))
    assert code == 0, out
    code, out = finish(hpsearch(tmp_path, "promote", "--study", "c"), timeout=300)
    assert code == 0, out
    assert "test accuracy" in out
    moved = tmp_path / "moved"
    data.rename(moved)
    code, out = finish(hpsearch(tmp_path, "promote", "--study", "c"), timeout=300)
    assert code == 2, out
    last = out.strip().splitlines()[-1]
    assert str(data) in last and "--data-dir" in last
    code, out = finish(hpsearch(tmp_path, "promote", "--study", "c", "--data-dir", moved), timeout=300)
    assert code == 0, out


def test_epochs_in_a_study_file_scale_the_default_milestones_and_one_stage_width_can_be_searched(tmp_path):
    (tmp_path / "s.toml").write_text(study_toml(
        train={"epochs": 2, "scheduler": "multistep", "synthetic_size": 200, "val_size": 50},
        space={"channels_3": [32, 64]}))
    code, out = finish(hpsearch(tmp_path, "run", "--study", "s.toml", "--quiet"))
    assert code == 0, out
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").get_trials()
    assert {t.state.name for t in trials} == {"COMPLETE"}
    configs = sorted((t.user_attrs["config"] for t in trials), key=lambda c: c["channels"][2])
    assert [c["channels"] for c in configs] == [[16, 32, 32], [16, 32, 64]]  # resnet-tiny's first two kept
    assert all(c["milestones"] == [1, 2] and c["epochs"] == 2 for c in configs)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    run = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    assert run.data.params["milestones_nominal"] == "[80, 120]"
