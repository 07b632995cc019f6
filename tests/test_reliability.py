"""Workers, crash safety and disk: real processes, real signals, real stores."""

import os
import signal
import subprocess
import sys
import time

import optuna
import processes
import pytest
from mlflow.tracking import MlflowClient
from processes import env, finish, wait_for_epoch
from studyfiles import study_toml


def write_grid(workdir, name, lrs, epochs=1, size=300):
    path = workdir / f"{name}.toml"
    path.write_text(study_toml(train={"synthetic_size": size, "epochs": epochs, "batch_size": 32,
                                      "scheduler": "cosine"}, space={"lr": list(lrs)}))
    return path


def hpsearch(workdir, *args):
    return processes.hpsearch(workdir, *args, HPSEARCH_HEARTBEAT=1)  # a 1 s heartbeat: stale trials in seconds


def local_stores(workdir):
    return f"sqlite:///{workdir}/mlruns/optuna.db", MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")


def runs_of(client, study):
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], max_results=1000)


def assert_each_cell_once(study, client, cells):
    trials = [t for t in study.get_trials() if not t.user_attrs.get("duplicate")]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["lr"] for t in complete) == sorted(cells)
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.get_trials())
    children = [r for r in runs_of(client, study.study_name) if r.data.tags.get("hpsearch.role") == "trial"]
    assert len(children) == len(cells)
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in complete}


def test_sigkill_mid_trial_resumes_from_the_last_epoch(workdir):
    spec = write_grid(workdir, "crash", [0.1], epochs=6, size=600)
    storage, client = local_stores(workdir)
    proc = hpsearch(workdir, "run", "--study", spec, "--quiet")
    victim = wait_for_epoch(storage, "crash", proc, n=2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # past the heartbeat grace period (2 x 1 s)
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--quiet"))
    assert code == 0, out
    study = optuna.load_study(study_name="crash", storage=storage)
    trials = study.get_trials()
    assert trials[victim.number].state.name == "FAIL"
    (retry,) = [t for t in trials if t.state.name == "COMPLETE"]
    assert retry.user_attrs["origin"] == victim.number
    assert retry.user_attrs["resumed_from_epoch"] >= 2
    run_id = retry.user_attrs["mlflow_run_id"]
    assert run_id == victim.user_attrs["mlflow_run_id"]  # the same MLflow run continues
    steps = [m.step for m in client.get_metric_history(run_id, "val_acc")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert {r.info.status for r in runs_of(client, "crash")} == {"FINISHED"}
    assert not list((workdir / "mlruns" / "checkpoints").glob("crash-*/*/last.pt"))


def test_sigterm_records_the_trial_as_interrupted_and_a_rerun_continues(workdir):
    spec = write_grid(workdir, "stop", [0.1], epochs=5, size=600)
    storage, client = local_stores(workdir)
    proc = hpsearch(workdir, "run", "--study", spec, "--quiet")
    victim = wait_for_epoch(storage, "stop", proc, n=1)
    os.killpg(proc.pid, signal.SIGTERM)
    code, out = finish(proc, timeout=120)
    assert code == 130, out
    assert "interrupted" in out
    trials = optuna.load_study(study_name="stop", storage=storage).get_trials()
    assert trials[victim.number].state.name == "FAIL"
    assert trials[victim.number].user_attrs["fail_reason"] == "interrupted"
    assert [t.state.name for t in trials[victim.number + 1:]] == ["WAITING"]
    run = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["optuna.trial_state"] == "INTERRUPTED"
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--quiet"))
    assert code == 0, out
    done = [t for t in optuna.load_study(study_name="stop", storage=storage).get_trials()
            if t.state.name == "COMPLETE"]
    assert len(done) == 1 and done[0].user_attrs["resumed_from_epoch"] >= 1
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(steps) == [1, 2, 3, 4, 5]


def test_four_workers_on_sqlite_run_every_cell_exactly_once(workdir):
    cells = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
    spec = write_grid(workdir, "par", cells, epochs=1, size=200)
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--workers", 4, "--quiet"))
    assert code == 0, out
    assert "locked" not in out
    storage, client = local_stores(workdir)
    study = optuna.load_study(study_name="par", storage=storage)
    assert_each_cell_once(study, client, cells)
    code, out = finish(hpsearch(workdir, "run", "--study", spec, "--workers", 4))
    assert code == 0 and "nothing left" in out, out
    assert len(optuna.load_study(study_name="par", storage=storage).get_trials()) == len(study.get_trials())


def _pg_url(db=""):
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def _pg_admin(sql):
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True, connect_timeout=3) as c:
        c.execute(sql)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_dbs():
    try:
        _pg_admin("SELECT 1")
    except Exception as e:  # no server: this machine kind runs one, CI starts it
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 not reachable: {e}")
    suffix = f"{os.getpid()}_{int(time.time())}"
    names = [f"hps_optuna_{suffix}", f"hps_mlflow_{suffix}"]
    for n in names:
        _pg_admin(f"CREATE DATABASE {n}")
    yield names
    for n in names:
        _pg_admin(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")


def test_three_workers_on_postgresql_with_an_mlflow_server(workdir, postgres_dbs):
    import urllib.request

    optuna_db, mlflow_db = postgres_dbs
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", _pg_url(mlflow_db),
         "--artifacts-destination", str(workdir / "shared-artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=workdir, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "MLflow server did not start"
                time.sleep(1)
        cells = [0.01, 0.05, 0.1, 0.2, 0.3, 0.5]
        spec = write_grid(workdir, "pg", cells, epochs=1, size=200)
        tracking = f"http://127.0.0.1:{port}"
        code, out = finish(hpsearch(workdir, "run", "--study", spec, "--workers", 3, "--quiet",
                                    "--storage", _pg_url(optuna_db), "--tracking-uri", tracking))
        assert code == 0, out
        study = optuna.load_study(study_name="pg", storage=_pg_url(optuna_db))
        assert_each_cell_once(study, MlflowClient(tracking), cells)
        assert not (workdir / "mlruns" / "optuna.db").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_gc_keeps_the_top_k_and_promoted_checkpoints(workdir, cli):
    spec = write_grid(workdir, "disk", [0.01, 0.1, 0.3], epochs=1, size=200)
    cli("run", "--study", spec, "--quiet")
    storage, client = local_stores(workdir)
    study = optuna.load_study(study_name="disk", storage=storage)
    ranked = sorted(study.get_trials(), key=lambda t: t.value, reverse=True)
    promoted = ranked[-1]
    client.set_tag(promoted.user_attrs["mlflow_run_id"], "hpsearch.promoted", "true")  # as `promote` does
    out = cli("gc", "--study", "disk", "--keep", 1).output
    assert "deleted the checkpoints of 1 trial(s)" in out and "freed" in out

    def has_checkpoint(t):
        return bool(client.list_artifacts(t.user_attrs["mlflow_run_id"], "checkpoints"))

    assert has_checkpoint(ranked[0]) and has_checkpoint(promoted) and not has_checkpoint(ranked[1])
    again = cli("gc", "--study", "disk", "--keep", 1).output
    assert "deleted the checkpoints of 0 trial(s)" in again


POP_QUEUED = """
import sys, warnings, optuna
warnings.filterwarnings("ignore")
from hpsearch.search.study.storage import open_storage
study = optuna.load_study(study_name="q", storage=open_storage(sys.argv[1]))
dist = {"x": optuna.distributions.FloatDistribution(0, 1000)}
for i in range(int(sys.argv[2])):
    study.enqueue_trial({"x": float(i)})
    study.tell(study.ask(dist), 1.0)  # raises if another process ran (and told) this trial too
"""


def test_a_queued_trial_goes_to_one_worker_only_on_sqlite(tmp_path):
    # Optuna pops a queued trial with SELECT ... FOR UPDATE, which SQLite
    # ignores; without open_storage's BEGIN IMMEDIATE, 3 processes doing this
    # 150 times each ran some trial twice in every try (seen: 4-6 errors).
    url = f"sqlite:///{tmp_path}/q.db"
    optuna.create_study(study_name="q", storage=url)
    procs = [subprocess.Popen([sys.executable, "-c", POP_QUEUED, url, "150"], env=env(), stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e.strip().splitlines()[-1:] for e in errors]
    trials = optuna.load_study(study_name="q", storage=url).get_trials()
    # each tell completed a trial of its own; a queued trial another process
    # took first leaves its enqueuer a fresh one, and some queued stay WAITING
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 450 and set(states) <= {"COMPLETE", "WAITING"}
