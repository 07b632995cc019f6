"""Faults that must not corrupt or lose work: foreign and torn checkpoints,
gc and queued retries, unusable folders, study names, empty grids, bad
submission files. Each through the CLI, with real stores and files."""

import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from processes import finish, hpsearch
from studyfiles import study_toml, study_trials

from hpsearch.data.testing import write_kaggle_file


def stores(cwd):
    """(Optuna storage URL, MLflow client); only once the run that makes them has ended:
    opening the MLflow store while another process creates it races its migrations."""
    return optuna_url(cwd), MlflowClient(f"sqlite:///{cwd}/mlruns/mlflow.db")


def optuna_url(cwd):
    return f"sqlite:///{cwd}/mlruns/optuna.db"


def one_cell(lr=0.1, epochs=4, size=600):
    return study_toml(train={"synthetic_size": size, "epochs": epochs, "batch_size": 32}, space={"lr": [lr]})


def stop_after_first_epoch(cwd, spec, name, *args, **extra_env):
    """Start a run, SIGTERM it once its trial has reported an epoch (the trial
    is then FAIL 'interrupted' with a WAITING retry and its last.pt on disk)."""
    proc = hpsearch(cwd, "run", "--study", spec, "--quiet", *args, **extra_env)
    storage = optuna_url(cwd)
    end = time.time() + 300
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()[0]
        running = [t for t in study_trials(storage, name) if t.state.name == "RUNNING"]
        if running and running[0].intermediate_values:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no epoch reported in 300 s")
    os.killpg(proc.pid, signal.SIGTERM)
    code, out = finish(proc, timeout=120)
    assert code == 130, out


def last_checkpoints(root: Path):
    return sorted(root.glob("*/trial-*/last.pt"))


def assert_one_line(out):
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


# 1 -----------------------------------------------------------------------------
def test_an_epoch_checkpoint_of_another_study_of_the_same_name_is_never_resumed(tmp_path):
    """Study `xstore` at lr 0.01 leaves an epoch checkpoint; a new `xstore`
    at lr 0.3 on another storage but the same checkpoint folder trains from
    scratch under its own values."""
    shared = tmp_path / "ckpt"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "xstore.toml").write_text(one_cell(lr=0.01))
    stop_after_first_epoch(a, "xstore.toml", "xstore", HPSEARCH_CHECKPOINT_DIR=str(shared))
    assert len(last_checkpoints(shared)) == 1
    (b / "xstore.toml").write_text(one_cell(lr=0.3))
    code, out = finish(hpsearch(b, "run", "--study", "xstore.toml", HPSEARCH_CHECKPOINT_DIR=str(shared)))
    assert code == 0, out
    assert "resuming" not in out
    (trial,) = optuna.load_study(study_name="xstore", storage=stores(b)[0]).get_trials()
    assert trial.state.name == "COMPLETE" and "resumed_from_epoch" not in trial.user_attrs
    assert trial.user_attrs["config"]["lr"] == 0.3
    history = stores(b)[1].get_metric_history(trial.user_attrs["mlflow_run_id"], "val_acc")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert len(last_checkpoints(shared)) == 1  # study a's checkpoint is still there for its own retry


def test_a_checkpoint_whose_owner_is_not_the_trial_is_refused_in_one_line(tmp_path):
    """The owner check itself (the folder key alone could be defeated by a
    copied file): a checkpoint of lr 0.01 copied over the retry's own."""
    (tmp_path / "own.toml").write_text(one_cell(lr=0.01))
    stop_after_first_epoch(tmp_path, "own.toml", "own")
    (last,) = last_checkpoints(tmp_path / "mlruns" / "checkpoints")
    ckpt = torch.load(last, weights_only=True)
    ckpt["owner"]["config"]["lr"] = 0.3
    torch.save(ckpt, last)
    code, out = finish(hpsearch(tmp_path, "run", "--study", "own.toml"))
    assert code == 0, out
    assert "not resuming" in out and "other values (lr)" in out and "training from epoch 0" in out


# 2 -----------------------------------------------------------------------------
def test_gc_never_deletes_the_checkpoint_a_queued_retry_resumes_from(tmp_path):
    (tmp_path / "keep.toml").write_text(one_cell())
    stop_after_first_epoch(tmp_path, "keep.toml", "keep")
    (last,) = last_checkpoints(tmp_path / "mlruns" / "checkpoints")
    code, out = finish(hpsearch(tmp_path, "gc", "--study", "keep", "--keep", 5))
    assert code == 0, out
    assert last.exists()
    assert "deleted the checkpoints of 0 trial(s), freed 0.0 MiB" in out
    code, out = finish(hpsearch(tmp_path, "run", "--study", "keep.toml"))
    assert code == 0 and "resuming from epoch" in out, out


# 3 -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_checkpoint_that_cannot_be_resumed_restarts_from_epoch_0_each_epoch_logged_once(tmp_path, damage):
    (tmp_path / "torn.toml").write_text(one_cell())
    stop_after_first_epoch(tmp_path, "torn.toml", "torn")
    (last,) = last_checkpoints(tmp_path / "mlruns" / "checkpoints")
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        torch.save({"epoch": 1}, last)
    code, out = finish(hpsearch(tmp_path, "run", "--study", "torn.toml"))
    assert code == 0, out
    assert "not resuming" in out and "training from epoch 0" in out
    storage, client = stores(tmp_path)
    trials = optuna.load_study(study_name="torn", storage=storage).get_trials()
    (done,) = [t for t in trials if t.state.name == "COMPLETE"]
    assert "resumed_from_epoch" not in done.user_attrs
    steps = [m.step for m in client.get_metric_history(done.user_attrs["mlflow_run_id"], "val_acc")]
    assert sorted(steps) == [1, 2, 3, 4]
    runs = client.search_runs([client.get_experiment_by_name("torn").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    (old,) = [r for r in runs if r.data.tags.get("hpsearch.superseded_by")]
    assert old.data.tags["hpsearch.superseded_by"] == done.user_attrs["mlflow_run_id"]
    assert not last_checkpoints(tmp_path / "mlruns" / "checkpoints")


# 4 -----------------------------------------------------------------------------
def test_an_unusable_checkpoint_folder_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "g.toml").write_text(study_toml(space={"lr": [0.1, 0.2]}))
    code, out = finish(hpsearch(tmp_path, "run", "--study", "g.toml",
                                HPSEARCH_CHECKPOINT_DIR=str(tmp_path / "a-file" / "ckpt")))
    assert code == 2, out
    line = assert_one_line(out)
    assert "checkpoint folder" in line and "a-file" in line and "HPSEARCH_CHECKPOINT_DIR" in line
    assert not (tmp_path / "mlruns").exists()


# 5 -----------------------------------------------------------------------------
def test_an_empty_space_with_the_grid_sampler_is_refused(tmp_path):
    (tmp_path / "empty.toml").write_text(study_toml(space={}))
    code, out = finish(hpsearch(tmp_path, "run", "--study", "empty.toml"), timeout=120)
    assert code == 2, out
    assert "[space] is empty" in assert_one_line(out)
    assert not (tmp_path / "mlruns").exists()


# 6 -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/abs/path", "x/../../y z", "..", ".hidden", "a b"])
def test_a_study_name_that_is_not_one_safe_path_segment_is_refused(tmp_path, name):
    (tmp_path / "s.toml").write_text(study_toml())
    code, out = finish(hpsearch(tmp_path, "run", "--study", "s.toml", "--study-name", name), timeout=120)
    assert code == 2, out
    line = assert_one_line(out)
    assert "study name" in line and "allowed" in line
    assert not (tmp_path / "mlruns").exists()


# 7 -----------------------------------------------------------------------------
def _kaggle(path, ids, n=None):
    images = np.zeros((len(ids) if n is None else n, 3072), dtype=np.uint8)
    with open(path, "wb") as f:
        pickle.dump({b"data": images, b"ids": list(ids)}, f)
    return path


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("promoted")
    (cwd / "sub.toml").write_text(study_toml(train={"epochs": 1}))
    code, out = finish(hpsearch(cwd, "run", "--study", "sub.toml", "--quiet"))
    assert code == 0, out
    return cwd


@pytest.mark.parametrize("case, needle", [
    ("duplicate ids", "repeats ids"),
    ("no images", "0 images"),
    ("negative ids", "negative ids"),
])
def test_a_bad_kaggle_file_is_refused_before_anything_is_registered(promoted, case, needle):
    bad = promoted / f"{case.replace(' ', '-')}.pkl"
    _kaggle(bad, {"duplicate ids": [0, 0, 0], "no images": [], "negative ids": [3, -1, 2]}[case])
    code, out = finish(hpsearch(promoted, "promote", "--study", "sub", "--kaggle-test", bad,
                                "--out", promoted / "s.csv"), timeout=300)
    assert code == 2, out
    assert needle in out.strip().splitlines()[-1]
    assert not (promoted / "s.csv").exists()
    client = stores(promoted)[1]
    assert client.search_model_versions("name='hpsearch-sub'") == []
    good = write_kaggle_file(promoted / "good.pkl", 5)
    code, out = finish(hpsearch(promoted, "promote", "--study", "sub", "--kaggle-test", good,
                                "--out", promoted / "ok.csv"), timeout=300)
    assert code == 0, out
    code, out = finish(hpsearch(promoted, "predict", "--model", "models:/hpsearch-sub@champion",
                                "--kaggle-test", bad, "--out", promoted / "p.csv"), timeout=300)
    assert code == 2 and needle in out, out
    assert not (promoted / "p.csv").exists()
    for version in client.search_model_versions("name='hpsearch-sub'"):
        client.delete_model_version("hpsearch-sub", version.version)


# smaller points ------------------------------------------------------------------
def test_report_into_a_path_under_a_file_is_one_line_and_exit_2(promoted):
    (promoted / "afile").write_text("")
    code, out = finish(hpsearch(promoted, "report", "--study", "sub", "--out", promoted / "afile" / "r.html"),
                       timeout=300)
    assert code == 2, out
    assert "--out" in assert_one_line(out)


def test_studies_lists_the_good_files_and_marks_a_bad_one(tmp_path):
    (tmp_path / "good.toml").write_text(study_toml())
    (tmp_path / "bad.toml").write_text("[study\n")
    code, out = finish(hpsearch(tmp_path, "studies", "--dir", tmp_path), timeout=120)
    assert code == 0, out
    assert "good" in out and "INVALID" in out and "not valid TOML" in out


def test_sigterm_during_promote_leaves_no_half_made_model(tmp_path):
    (tmp_path / "p.toml").write_text(study_toml(train={"epochs": 1}))
    code, out = finish(hpsearch(tmp_path, "run", "--study", "p.toml", "--quiet"))
    assert code == 0, out
    proc = hpsearch(tmp_path, "promote", "--study", "p")
    lines = []
    for line in proc.stdout:  # "trial N: test accuracy ..." comes right before the model is logged
        lines.append(line)
        if "test accuracy" in line:
            os.killpg(proc.pid, signal.SIGTERM)
            break
    code, rest = finish(proc, timeout=120)
    out = "".join(lines) + rest
    assert code == 130, out
    assert "interrupted" in out
    client = stores(tmp_path)[1]
    assert not client.search_model_versions("name='hpsearch-p'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert [m for m in client.search_logged_models(experiment_ids=experiments)] == []
