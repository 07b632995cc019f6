import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def isolated_mlflow_env(monkeypatch):
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI for subprocesses;
    in-process CLI tests must not hand one test's URI to the next."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def offline(monkeypatch):
    """Offline on any machine: every HTTP(S) request meets a proxy on the
    discard port, which refuses at once. urllib builds its global opener, with
    the proxies of that moment, on the first `urlopen`; dropping it before and
    after keeps this proxy from leaking into later tests' loopback requests."""
    import urllib.request

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    urllib.request.install_opener(None)
    yield
    urllib.request.install_opener(None)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory: the default stores (mlruns/) land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def cli():
    """Run `hpsearch ...` in-process; returns click's Result."""
    from click.testing import CliRunner

    from hpsearch.search.cli import main

    def invoke(*args, ok=True):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"hpsearch {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}")
        return result

    return invoke

