"""`hpsearch ui` and `hpsearch dashboard` as real servers on free ports: they
serve the study, and a signal stops them with no process left behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from studyfiles import study_toml

ONE_TRIAL = study_toml(study={"seed": 0}, train={"synthetic_size": 100, "val_size": 20, "epochs": 1})
START_DEADLINE = 150  # seconds; ~15 s on an idle machine, this one is shared


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from click.testing import CliRunner

    from hpsearch.search.cli import main

    root = tmp_path_factory.mktemp("serve")
    (root / "served.toml").write_text(ONE_TRIAL)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("HPSEARCH_STORAGE", raising=False)
        result = CliRunner().invoke(main, ["run", "--study", "served.toml", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int) -> dict | None:
    """ppid, process group, session and state of a live process; None when it
    is gone or a zombie (dead, waiting to be reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return {"ppid": int(fields[1]), "pgid": int(fields[2]), "sid": int(fields[3])}


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := proc_stat(int(entry.name))):
            children.setdefault(st["ppid"], []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def in_sessions(sids: set[int]) -> set[int]:
    return {int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (st := proc_stat(int(e.name))) and st["sid"] in sids}


def get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for(url: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited {proc.returncode}:\n{log.read_text()}"
        try:
            return get_json(url)
        except OSError:  # not listening yet
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {START_DEADLINE} s:\n{log.read_text()}")


def wait_for_line(text: str, proc: subprocess.Popen, log: Path):
    """The command's own word that it is ready (it prints it once its probe
    reached the server, up to a few tenths of a second after a request of
    ours could have)."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"exited {proc.returncode} before printing {text!r}:\n{log.read_text()}"
        time.sleep(0.2)
    pytest.fail(f"{text!r} not printed in {START_DEADLINE} s:\n{log.read_text()}")


def start(root: Path, *args, **extra_env) -> tuple[subprocess.Popen, Path]:
    log = root / f"{args[0]}.log"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", **extra_env)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HPSEARCH_STORAGE", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hpsearch.search.cli", *map(str, args)], cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def stop_and_check(proc: subprocess.Popen, sig: int, seen: set[int], log: Path) -> str:
    """Send `sig` to the command alone (as Ctrl-C reaches only the terminal's
    foreground group), then check that every process it started is gone."""
    sessions = {st["sid"] for pid in seen if (st := proc_stat(pid))} - {os.getsid(0)}
    try:
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0, log.read_text()
        deadline = time.monotonic() + 5  # reparented zombies are reaped by init, not by us
        while time.monotonic() < deadline and ({p for p in seen if proc_stat(p)} or in_sessions(sessions)):
            time.sleep(0.2)
        assert not {p for p in seen if proc_stat(p)}, f"left behind: {seen}"
        assert not in_sessions(sessions), "a process of the server's session is left"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in {p for p in seen if proc_stat(p)}:
            os.kill(pid, signal.SIGKILL)
    return log.read_text()


def test_ui_serves_the_runs_and_sigint_stops_every_process(served):
    study = optuna.load_study(study_name="served", storage=f"sqlite:///{served}/mlruns/optuna.db")
    experiment_id = study.user_attrs["hpsearch.mlflow_experiment_id"]
    port = free_port()
    # A proxy in the user's environment (here one that refuses everything)
    # must not stand between `ui` and the server it started on loopback.
    dead_proxy = {v: "http://127.0.0.1:9" for v in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")}
    proc, log = start(served, "ui", "--port", port, "--tracking-uri", f"sqlite:///{served}/mlruns/mlflow.db",
                      no_proxy="", NO_PROXY="", **dead_proxy)
    seen: set[int] = set()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_line(f"MLflow UI ready: {base}", proc, log)
        runs = get_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})["runs"]
        roles = sorted(t["value"] for r in runs for t in r["data"]["tags"] if t["key"] == "hpsearch.role")
        assert roles == ["study", "trial"]
        seen = descendants(proc.pid)
        assert len(seen) >= 2  # mlflow server, uvicorn and its workers
        assert all(proc_stat(p)["sid"] != os.getsid(0) for p in seen)  # in a session of their own
    finally:
        seen |= descendants(proc.pid)
        output = stop_and_check(proc, signal.SIGINT, seen, log)
    assert "MLflow UI stopped" in output


def test_dashboard_serves_the_study_and_sigterm_stops_it(served):
    port = free_port()
    proc, log = start(served, "dashboard", "--study", "served", "--port", port)
    seen: set[int] = set()
    try:
        base = f"http://127.0.0.1:{port}"
        studies = wait_for(f"{base}/api/studies", proc, log)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["served"]
        seen = descendants(proc.pid)
    finally:
        output = stop_and_check(proc, signal.SIGTERM, seen | {proc.pid}, log)
    assert f"{base}/dashboard/studies/" in output and "optuna-dashboard stopped" in output


def test_refusals_are_one_line(cli, served, monkeypatch):
    monkeypatch.chdir(served)
    missing = served / "nothing" / "mlflow.db"
    for args, words in (
        (["ui", "--tracking-uri", f"sqlite:///{missing}"], "does not exist"),
        (["ui", "--tracking-uri", "http://127.0.0.1:1"], "already a tracking server"),
        (["dashboard", "--study", "nope"], "no study 'nope'"),
        (["dashboard", "--study", "served", "--storage", f"sqlite:///{missing}"], "does not exist"),
    ):
        result = cli(*args, ok=False)
        assert result.exit_code == 2, result.output
        assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args in (["ui"], ["dashboard", "--study", "served"]):
            result = cli(*args, "--port", port, ok=False)
            assert result.exit_code == 2 and f"port {port}" in result.output, result.output
