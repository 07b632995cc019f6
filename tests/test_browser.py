"""The MLflow UI in a real headless browser (Debian's chromium and
chromium-driver, driven by selenium), on a finished, plotted and promoted
study, with no network: the study link that `hpsearch ui` prints opens the
runs table as model training with the study's columns, a trial's run page
says what the trial was, its learning-curve image and the parent run's
figures page are drawn in MLflow's own artifact viewer, and the promoted
model is in the study's experiment."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from studyfiles import study_toml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None or selenium is None,
    reason="needs chromium, chromedriver (apt-get install chromium chromium-driver) and selenium",
)

TWO_TRIALS = study_toml(study={"seed": 0}, train={"synthetic_size": 60, "val_size": 20, "epochs": 2},
                        space={"lr": [0.1, 0.05]})
START_DEADLINE = 150  # seconds for `hpsearch ui` to say it is ready
PAGE_DEADLINE = 60  # seconds for a page (a 4.7 MB figures page included) to draw


def _env():
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HPSEARCH_STORAGE", None)
    return env


def hpsearch(root, *args):
    """`hpsearch ARGS` in this process (no second start-up of torch and MLflow), in `root`."""
    from click.testing import CliRunner

    from hpsearch.search.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("HPSEARCH_STORAGE", raising=False)
        result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A finished two-trial study, plotted and promoted, served by `hpsearch ui`;
    yields (base URL, the study's runs link as printed, the stores' root)."""
    root = tmp_path_factory.mktemp("browser")
    (root / "seen.toml").write_text(TWO_TRIALS)
    hpsearch(root, "run", "--study", "seen.toml", "--quiet")
    hpsearch(root, "plots", "--study", "seen")
    hpsearch(root, "promote", "--study", "seen")
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = root / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hpsearch.search.cli", "ui", "--port", str(port)], cwd=root,
                                env=_env(), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while f"MLflow UI ready: {base}" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready in {START_DEADLINE} s:\n{log.read_text()}"
            time.sleep(0.3)
        # The study links follow the ready line, once the store has been read.
        while not (links := re.findall(r"study seen: (\S+)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no study link in {START_DEADLINE} s:\n{log.read_text()}"
            time.sleep(0.3)
        yield base, links[0], root
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1000", "--proxy-server=http://127.0.0.1:9",  # nothing outside loopback
                "--proxy-bypass-list=127.0.0.1"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver, check, what: str, deadline: float = PAGE_DEADLINE):
    """Poll `check(driver)` until it returns something truthy."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = check(driver)
        except Exception as e:  # the page is still being built
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    body = driver.find_element("tag name", "body").text[:800].replace("\n", " | ")
    pytest.fail(f"{what}: not seen in {deadline} s (last: {last!r}); page: {body}")


def open_page(driver, url: str) -> None:
    """A fresh load of `url`: MLflow's single-page app, moved from one run's
    artifacts to another's by a hash change alone, keeps the first run's
    artifact list (seen with 3.17: "No Artifacts Recorded")."""
    driver.get("about:blank")
    driver.get(url)


def body_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def text_with(*words):
    """A check for `wait_until`: the page's text once every word is on it."""
    def check(driver):
        text = body_text(driver)
        return text if all(w in text for w in words) else None
    return check


def open_artifact(driver, ui, is_run, path: str) -> None:
    """The MLflow UI's artifact viewer on `path` of the study's run that `is_run` picks."""
    base, _, root = ui
    _, experiment, runs = runs_of(root)
    run = next(r for r in runs if is_run(r))
    open_page(driver, f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
                      f"/artifacts/{path}?workflowType=machine_learning")


def runs_of(root):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("seen")
    runs = client.search_runs([experiment.experiment_id])
    return client, experiment, runs


# Non-blank: the image has loaded and its pixels are not all one colour.
IMAGE_DRAWN = """
const img = [...document.querySelectorAll('img')].find(i => (i.src || '').length && i.naturalWidth > 200);
if (!img || !img.complete) return null;
const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
const px = ctx.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
for (let i = 0; i < px.length; i += 4 * 97) seen.add(px[i] + ',' + px[i + 1] + ',' + px[i + 2]);
return {width: img.naturalWidth, colours: seen.size};
"""

# Every plotly figure of the page drawn: plotly.js ran, each div became a plot
# with an SVG and marks on it (points, lines, bars, contour fills or the
# parallel-coordinates lines).
FIGURES_DRAWN = """
const divs = [...document.querySelectorAll('.plotly-graph-div')];
if (!divs.length || typeof Plotly === 'undefined') return null;
return divs.map(d => ({
  id: d.id, plotted: d.classList.contains('js-plotly-plot'),
  marks: d.querySelectorAll('.point, path.js-line, .bars path, .contour path, .parcoords .lines, '
                            + '.parcoords canvas, .cartesianlayer .trace path').length,
}));
"""


def test_study_link_opens_the_runs_table_as_model_training_with_the_study_columns(ui, browser):
    base, link, root = ui
    open_page(browser, link)
    text = wait_until(browser, text_with("study:seen", "best_val_acc", "complete"),
                      "the runs table with the study's columns")
    assert "Token Usage" not in text and "Traces" in text  # not the GenAI overview
    # Every trial's run is listed by its name (the view sorts by best_val_acc,
    # which MLflow shows flat), with val_acc, the outcome and the searched lr.
    assert re.search(r"\bt0 lr=0\.(1|05)\b", text) and re.search(r"\bt1 lr=0\.(1|05)\b", text), text
    assert "val_acc" in text and text.count("complete") >= 2


def test_trial_run_page_says_what_the_trial_was(ui, browser):
    base, _, root = ui
    _, experiment, runs = runs_of(root)
    trial = next(r for r in runs if r.data.tags.get("optuna.trial_number") == "0")
    open_page(browser, f"{base}/#/experiments/{experiment.experiment_id}/runs/{trial.info.run_id}?workflowType=machine_learning")
    text = wait_until(browser, text_with("Trial 0 of study", "Completed"), "the trial's description")
    assert trial.info.run_name.startswith("t0 lr=") and trial.info.run_name in text


def test_trial_learning_curves_render_in_the_artifact_viewer(ui, browser):
    open_artifact(browser, ui, lambda r: r.data.tags.get("optuna.trial_number") == "1", "plots/learning_curves.png")
    drawn = wait_until(browser, lambda d: d.execute_script(IMAGE_DRAWN), "the learning-curve image")
    assert drawn["width"] >= 600 and drawn["colours"] >= 4, drawn


def test_parent_figures_page_renders_in_the_artifact_viewer(ui, browser):
    open_artifact(browser, ui, lambda r: r.data.tags.get("hpsearch.role") == "study", "plots/study.html")
    root = ui[2]
    expected = (root / "mlruns" / "plots" / "seen" / "study.html").read_text().count("Plotly.newPlot(")
    assert expected >= 4

    def figures(d):
        """Every figure of the page once it has all been parsed (4.7 MB: the
        figures appear one by one) and plotted; None until then."""
        d.switch_to.default_content()
        frames = d.find_elements("css selector", "iframe")
        if not frames:
            return None
        d.switch_to.frame(frames[0])
        try:
            found = d.execute_script(FIGURES_DRAWN)
            return found if found and len(found) == expected and all(f["plotted"] for f in found) else None
        finally:
            d.switch_to.default_content()

    found = wait_until(browser, figures, f"the {expected} figures of plots/study.html in the viewer's frame")
    blank = [f["id"] for f in found if not f["marks"]]
    assert not blank, found


def test_promoted_model_is_in_the_study_experiment_models_tab(ui, browser):
    base, _, root = ui
    client, experiment, runs = runs_of(root)
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert len(models) == 1 and models[0].source_run_id in {r.info.run_id for r in runs}
    assert not client.search_logged_models(experiment_ids=["0"])  # nothing under Default
    assert str(root / "mlruns" / "artifacts" / "seen") in models[0].artifact_location
    source = next(r for r in runs if r.info.run_id == models[0].source_run_id)
    open_page(browser, f"{base}/#/experiments/{experiment.experiment_id}/models?workflowType=machine_learning")
    wait_until(browser, text_with("Ready", source.info.run_name), "the Models tab's model and its source run")
