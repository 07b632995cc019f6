"""Shared prefixes (`[study] share_prefix = true`) and schedule-aware halving:
a cell continued from its trunk gives the numbers of that cell trained alone."""

import os
import signal

import optuna
import pytest
from mlflow.tracking import MlflowClient
from processes import finish, hpsearch, wait_for_epoch
from studyfiles import study_toml

from hpsearch.search.study.compute import record_speed
from hpsearch.search.study.halving import ScheduleHalvingPruner, promotable, rungs

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


def curves(storage, name):
    return {key: t.intermediate_values for key, t in cells(storage, name).items()}


def test_two_workers_train_each_trunk_once_and_lose_no_cell(workdir, cli):
    spec = grid_file(workdir, "two", share_prefix=True)
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--workers", 2))
    assert code == 0, out
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    study = optuna.load_study(study_name="two", storage=storage)
    done = cells(storage, "two")
    assert len(done) == 8
    assert all(len(t.intermediate_values) == EPOCHS for t in done.values())
    assert not [t for t in study.get_trials() if t.state.name in ("RUNNING", "WAITING", "FAIL")
                and not t.user_attrs.get("duplicate")]
    trained = sum(max(t.intermediate_values) - t.user_attrs["start_epoch"] for t in study.get_trials()
                  if t.intermediate_values and not t.user_attrs.get("duplicate"))
    assert trained == TRAINED_WITH_PREFIXES  # no trunk epoch trained twice
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    parent = client.get_run(study.user_attrs["hpsearch.mlflow_parent_run_id"]).data.metrics
    assert parent["epochs_trained"] == TRAINED_WITH_PREFIXES and parent["epochs_represented"] == 8 * EPOCHS
    assert not list((workdir / "mlruns" / "checkpoints").glob("two-*/trunk-*"))  # removed once the grid is done
    status = cli("status", "--study", "two").output
    assert f"{TRAINED_WITH_PREFIXES} trained for {8 * EPOCHS} represented" in status


def test_kill_9_while_a_trunk_trains_then_a_rerun_gives_the_numbers_of_cells_trained_alone(workdir, cli):
    cli("run", "--study", grid_file(workdir, "alone", common_seeds=True))
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    spec = grid_file(workdir, "crash", share_prefix=True)
    proc = hpsearch(workdir, "run", "--study", spec)
    victim = wait_for_epoch(storage, "crash", proc, n=1,
                            where=lambda t: max(t.intermediate_values) < t.user_attrs.get("fork_epoch", 0))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    code, out = finish(hpsearch(workdir, "run", "--study", spec))
    assert code == 0, out
    assert f"trial(s) {victim.number} belonged to a process on this host that is gone" in out
    assert curves(storage, "crash") == curves(storage, "alone")
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    for t in cells(storage, "crash").values():
        steps = [m.step for m in client.get_metric_history(t.user_attrs["mlflow_run_id"], "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1))  # every epoch logged once, trunk epochs included


def test_schedule_halving_compares_a_cell_only_with_cells_of_its_milestones_after_each_drop():
    direction = optuna.study.StudyDirection.MAXIMIZE

    def frozen(number, milestones, values, state="COMPLETE"):
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], value=values[max(values)] if state == "COMPLETE" else None,
            intermediate_values=values,
            user_attrs={"config": {"epochs": 20, "milestones": milestones}})

    pruner = ScheduleHalvingPruner(reduction_factor=2, settle=0.1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    # Early-decay cells: at their rungs (epochs 7 and 12) they look far better.
    for i in range(4):
        study.add_trial(frozen(i, [5, 10], {7: 0.8 + i / 100, 12: 0.9 + i / 100}))
    late = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values={7: 0.4},
                                     user_attrs={"config": {"epochs": 20, "milestones": [15, 18]}})
    assert rungs(late.user_attrs["config"], 0.1) == [17]
    assert not pruner.prune(study, late)  # epoch 7 is no rung of a [15, 18] cell
    study.add_trial(frozen(10, [15, 18], {17: 0.70}))
    study.add_trial(frozen(11, [15, 18], {17: 0.60}))
    worse = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values={17: 0.65},
                                      user_attrs={"config": {"epochs": 20, "milestones": [15, 18]}})
    better = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values={17: 0.75},
                                       user_attrs={"config": {"epochs": 20, "milestones": [15, 18]}})
    # Compared with its own group only (0.70, 0.60 and itself), never with the 0.9s at epoch 12.
    assert pruner.prune(study, worse) and not pruner.prune(study, better)
    # Nor with cells of another gamma: their learning rate differs from the drop on.
    other_gamma = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, intermediate_values={17: 0.5},
        user_attrs={"config": {"epochs": 20, "milestones": [15, 18], "gamma": 0.5}})
    assert not pruner.prune(study, other_gamma)
    assert promotable(0.5, [0.5], 2, direction)


def test_a_fast_grid_prunes_only_at_rungs_after_a_cells_own_milestones(workdir, cli):
    spec = grid_file(workdir, "fast", share_prefix=True, pruner="schedule_halving",
                     pruner_options={"reduction_factor": 2, "settle": 0.0})
    cli("run", "--study", spec)
    study = optuna.load_study(study_name="fast", storage=f"sqlite:///{workdir}/mlruns/optuna.db")
    trials = [t for t in study.get_trials() if not t.user_attrs.get("duplicate")]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and len([t for t in trials if t.state.name == "COMPLETE"]) >= 2
    for t in pruned:
        assert max(t.intermediate_values) in rungs(t.user_attrs["config"], 0.0), t.user_attrs["config"]


def test_studies_shows_a_grids_compute_before_it_is_spent_and_the_time_once_a_speed_is_measured(cli, workdir,
                                                                                                 monkeypatch):
    monkeypatch.setenv("HPSEARCH_SPEEDS", str(workdir / "speeds.json"))
    out = cli("studies").output
    assert "51,200* / 30,800 / 11,040" in out  # grid.toml: every cell to the end
    assert "51,200 / 30,800 / 8,600*" in out  # grid-fast.toml: shared prefixes + halving (eta 4)
    assert " h " not in out
    record_speed("cuda: test GPU", "resnet-seed", 64, 3700.0)
    out = cli("studies").output
    assert "173.0 h / 104.1 h / 29.1 h" in " ".join(out.split())  # 45,000 images an epoch at 3,700 images/s


@pytest.mark.parametrize("study, needle", [
    ({"sampler": "tpe", "n_trials": 2, "share_prefix": True}, 'share_prefix needs sampler = "grid"'),
    ({"share_prefix": True, "common_seeds": False}, "share_prefix needs common_seeds"),
    ({"share_prefix": "yes"}, "share_prefix = 'yes' must be true or false"),
    ({"pruner": "schedule_halving", "pruner_options": {"reduction_factor": 1}}, "reduction_factor 1 must be"),
])
def test_bad_schedule_options_are_one_line_and_nothing_is_written(workdir, cli, study, needle):
    (workdir / "bad.toml").write_text(study_toml(study=study, train={"scheduler": "multistep"}))
    result = cli("run", "--study", "bad.toml", ok=False)
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (workdir / "mlruns").exists()


def test_schedule_halving_without_a_multistep_schedule_is_refused(workdir, cli):
    (workdir / "cos.toml").write_text(study_toml(study={"pruner": "schedule_halving"}, train={"scheduler": "cosine"}))
    result = cli("run", "--study", "cos.toml", ok=False)
    assert result.exit_code == 2 and 'needs [train].scheduler = "multistep"' in result.output
