"""`hpsearch ui` (the MLflow UI) and `hpsearch dashboard` (optuna-dashboard).

Both bind 127.0.0.1 unless told otherwise: optuna-dashboard can delete
studies and the MLflow server writes runs, and neither asks for a password.

`mlflow server` is a tree of processes (uvicorn and its workers, and a job
runner with its huey consumers) that a signal to the top process alone can
orphan. It is therefore started in a session (and process group) of its own
and stopped as a group: SIGTERM to every member, SIGKILL to whatever is left
after a grace period. optuna-dashboard runs in this process (its WSGI app on
a threaded server), so it leaves nothing behind. Ctrl-C and SIGTERM stop both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from hpsearch.search.errors import UserError

START_TIMEOUT = 180.0  # seconds for the MLflow server to answer; ~11 s on an idle machine
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


class ServerExited(RuntimeError):
    """The server process ended on its own."""


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Bind once before starting, so a busy port is one line, not a server
    that dies after ten seconds of start-up."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: allowed 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: cannot be resolved ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise UserError(f"port {port} on {host} cannot be used ({e.strerror}); choose another with --port") from None


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM (and SIGHUP, a closed terminal) behave like Ctrl-C while serving.
    SIGINT is set too: a shell without job control starts `hpsearch ui &`
    with SIGINT ignored, and `kill -INT` must still stop it cleanly."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def ignore_signals() -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- process groups -------------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc. A zombie
    is already dead; it only waits for its parent (or init) to reap it."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE) -> int:
    """Stop a process started with `start_new_session=True` and everything in
    its group; returns how many processes had to be killed with SIGKILL."""
    pgid = proc.pid  # a session leader's group id is its pid
    with suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap our own child so it does not linger as a zombie
        if not _group_alive(pgid):
            break
        time.sleep(0.2)
    left = group_members(pgid) if Path("/proc/self/stat").exists() else []
    if _group_alive(pgid):
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return len(left)


# The probe asks a server this process just started on host:port; a proxy
# from the user's environment (http_proxy without a no_proxy for loopback)
# would only stand between them, so the probe's opener has none.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:  # an HTTP error page still means it is serving
        return e.code < 500
    except OSError:  # not listening yet (URLError and timeouts are OSErrors)
        return False


def _wait_until_up(url: str, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerExited(f"{what} exited with code {proc.returncode} before it answered (see its output above)")
        if _answers(url):
            return
        time.sleep(0.5)
    raise ServerExited(f"{what} did not answer {url} within {timeout:.0f} s")


# -- hpsearch ui ----------------------------------------------------------------
def exposure_warning(host: str, what: str) -> str | None:
    """A warning when `host` lets other machines in (no login protects either server)."""
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return None
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to any interface
    return (f"warning: --host {host}: {what} accepts connections from other machines, with no login; "
            f"anyone who can reach this port can read the runs and change them")


def mlflow_server_command(backend_uri: str, artifacts: Path, host: str, port: int, workers: int) -> list[str]:
    # sys.executable -m mlflow: the server runs the MLflow version hpsearch
    # writes with (a different one may migrate or refuse the database).
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(artifacts), "--host", host, "--port", str(port),
            "--workers", str(workers)]


def _check_store(uri: str) -> None:
    if uri.startswith(("http://", "https://", "databricks")):
        raise UserError(f"--tracking-uri {uri} is already a tracking server; open it in a browser instead")
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise UserError(f"MLflow store {uri} does not exist (no file {path}); run a study first "
                            f"or pass the --tracking-uri it used")
        return
    from hpsearch.search.study.tracking import Tracker

    Tracker(uri)  # a database server store: connect once, one line if it cannot be reached


def serve_mlflow(host: str, port: int, tracking_uri: str | None, workers: int = 2,
                 say: Callable[[str], None] = print, jobs: bool = False) -> None:
    from hpsearch.search.study.tracking import LOCAL_ARTIFACTS, resolve_tracking_uri

    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    uri = resolve_tracking_uri(tracking_uri)
    _check_store(uri)
    check_port_free(host, port)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY=os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"))
    if not jobs:
        # The job runner and its ~7 huey consumers serve MLflow's GenAI jobs
        # (judges, trace roll-ups), which training runs never use.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Experiments of a local store keep absolute artifact locations; this is
    # where runs created through the server put theirs (as `hpsearch run` would).
    artifacts = LOCAL_ARTIFACTS.resolve()
    cmd = mlflow_server_command(uri, artifacts, host, port, workers)
    url = url_of(host, port)
    warning = exposure_warning(host, "the MLflow UI")
    if warning:
        # MLflow's own security middleware only checks the Host header: it
        # admits localhost and private-network addresses (10.*, 172.16-31.*,
        # 192.168.*) and refuses other names unless MLFLOW_SERVER_ALLOWED_HOSTS
        # lists them. So the server IS reachable from other machines on a
        # private network, whatever its log lines suggest.
        say(warning + "; MLflow's Host check admits this machine's private-network addresses "
                      "(and others listed in MLFLOW_SERVER_ALLOWED_HOSTS), so machines on your network can")
    with stop_signals():
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        try:
            say(f"MLflow UI on {uri}: starting at {url} (Ctrl-C stops it)")
            links = study_links(uri, url)  # read while the server starts: nothing slow after "ready"
            _wait_until_up(f"{url}/health", proc, START_TIMEOUT, "mlflow server")
            say(f"MLflow UI ready: {url}")
            for line in links:
                say(line)
            while proc.poll() is None:
                time.sleep(0.5)
            raise ServerExited(f"mlflow server exited with code {proc.returncode}")
        except KeyboardInterrupt:
            say("stopping the MLflow UI")
        finally:
            with ignore_signals():  # a second Ctrl-C must not cut the clean-up short
                forced = stop_group(proc)
            if forced:
                say(f"{forced} MLflow process(es) ignored SIGTERM and were killed")
    say("MLflow UI stopped")


def study_links(uri: str, url: str) -> list[str]:
    """One line per study in the store: the link that opens its runs table as
    "Model training" with the study's view (see `stores.runs_url`); MLflow
    3.17 opens a bare experiment link in the GenAI view."""
    from mlflow.tracking import MlflowClient

    from hpsearch.search.keys import Tag
    from hpsearch.search.study.stores import VIEW_KEY, runs_url

    try:
        experiments = MlflowClient(uri).search_experiments(
            filter_string=f"tags.`{Tag.SHARED_VIEW}{VIEW_KEY}` != ''")
    except Exception:  # links are a convenience: the UI is up either way
        return []
    return [f"  study {e.name}: {runs_url(url, e.experiment_id)}" for e in experiments]


# -- hpsearch dashboard ----------------------------------------------------------
def serve_dashboard(study_name: str, host: str, port: int, storage: str | None,
                    say: Callable[[str], None] = print) -> None:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard

    from hpsearch.search.study.storage import open_storage, resolve_storage_url
    from hpsearch.search.study.stores import load_existing_study

    url_storage = resolve_storage_url(storage)
    study = load_existing_study(study_name, url_storage)
    check_port_free(host, port)
    storage_obj = open_storage(url_storage, create=False)
    study_id = storage_obj.get_study_id_from_name(study.study_name)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # an open browser tab must not keep the process alive after Ctrl-C

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):
            return None  # one line per request would bury the URL

    app = optuna_dashboard.wsgi(storage_obj)
    with stop_signals():
        httpd = make_server(host, port, app, server_class=Server, handler_class=QuietHandler)
        try:
            url = url_of(host, port)
            warning = exposure_warning(host, "optuna-dashboard")
            if warning:
                say(warning)
            say(f"optuna-dashboard on {url_storage}: {url}/dashboard/studies/{study_id} "
                f"(all studies: {url}/dashboard; Ctrl-C stops it)")
            httpd.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            say("stopping optuna-dashboard")
        finally:
            httpd.server_close()
    say("optuna-dashboard stopped")
