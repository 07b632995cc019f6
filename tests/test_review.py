"""plots, promote, predict, report: end to end on real stores in one temp
directory, filled once per module by `hpsearch run` (training is the cost)."""

import csv
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from studyfiles import study_toml

from hpsearch.data.testing import write_kaggle_file
from hpsearch.search.review.plots import pareto_front

# Three completed trials whose two searched values both vary: every figure
# can be drawn (importances and contours need that).
REVIEW = study_toml(study={"sampler": "random", "n_trials": 3, "seed": 0},
                    space={"lr": {"low": 0.02, "high": 0.2, "log": True},
                           "weight_decay": {"low": 1e-5, "high": 1e-3, "log": True}})

# One trial of each fate: complete, failed (diverges), pruned (over budget).
ROUGH = study_toml(study={"budget": 100_000, "seed": 0}, train={"model": None},
                   space={"model": ["resnet-tiny", "resnet-seed"], "lr": [0.05, 1e30]})

N_KAGGLE = 37


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Both studies run once in a temp working directory (the default stores land there)."""
    from click.testing import CliRunner

    from hpsearch.search.cli import main

    root = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("HPSEARCH_STORAGE", raising=False)
        mp.setenv("HPSEARCH_DATA_DIR", str(root / "data"))
        for name, body in (("review", REVIEW), ("rough", ROUGH)):
            (root / f"{name}.toml").write_text(body)
            result = CliRunner().invoke(main, ["run", "--study", f"{name}.toml", "--quiet"])
            assert result.exit_code == 0, result.output
        yield root


def client(root):
    return MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")


def study(root, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/mlruns/optuna.db")


def plotly_data(text: str) -> list[list[dict]]:
    """The data argument of every `Plotly.newPlot(id, data, layout, ...)` call."""
    decoder = json.JSONDecoder()
    out = []
    for m in re.finditer(r"Plotly\.newPlot\(\s*", text):
        _, end = decoder.raw_decode(text, m.end())  # the div id
        start = re.compile(r"\s*,\s*").match(text, end).end()
        data, _ = decoder.raw_decode(text, start)
        out.append(data)
    return out


def has_points(trace: dict) -> bool:
    return any(isinstance(trace.get(k), list) and len(trace[k]) > 0 for k in ("x", "y", "z", "dimensions", "values"))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# -- plots ------------------------------------------------------------------------
def test_plots_writes_every_figure_with_data_sharing_one_plotly_js(cli, stores):
    out = stores / "figs"
    result = cli("plots", "--study", "review", "--out", out)
    assert not [line for line in result.output.splitlines() if line.startswith("skipped ")]
    files = {p.stem for p in out.glob("*.html")} - {"index", "study"}
    # Contours are named by their pair, most important parameter first.
    contour = {"contour_lr_weight_decay", "contour_weight_decay_lr"} & files
    expected = {"optimization_history", "param_importances", "parallel_coordinate", "slice",
                "intermediate_values", "timeline", "val_acc_curves", "accuracy_vs_params"} | contour
    assert len(contour) == 1 and files == expected
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    for name in expected:
        text = (out / f"{name}.html").read_text()
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in text, name
        assert "cdn.plot.ly" not in text and len(text) < 200_000, name  # plotly.js not embedded again
        (data,) = plotly_data(text)
        assert data and any(has_points(t) for t in data), name
    index = (out / "index.html").read_text()
    assert all(f'href="{name}.html"' in index for name in expected)
    trials = study(stores, "review").get_trials()
    best = max(trials, key=lambda t: t.value)
    assert f"<td>{best.value:.4f}</td>" in index and f"{best.user_attrs['param_count']:,}" in index

    curves = plotly_data((out / "val_acc_curves.html").read_text())[0]
    assert len(curves) == 3
    thick = [t for t in curves if t["line"]["width"] == 4]
    assert len(thick) == 1 and thick[0]["name"].startswith(f"trial {best.number} ")
    assert thick[0]["y"] == [best.intermediate_values[e] for e in sorted(best.intermediate_values)]

    # Every trace carries markers: a trial with a single epoch is still drawn.
    assert all("markers" in t["mode"] for t in curves)

    # One self-contained page holds every figure; it alone goes to MLflow,
    # whose artifact viewer cannot load a script beside it.
    page = (out / "study.html").read_text()
    assert page.count("plotly.js v") == 1 and not re.search(r"<script[^>]*\bsrc=", page)
    assert len(plotly_data(page)) == len(expected)
    parent = study(stores, "review").user_attrs["hpsearch.mlflow_parent_run_id"]
    logged = {Path(a.path).name for a in client(stores).list_artifacts(parent, "plots")}
    assert logged == {"study.html"}
    assert 'href="study.html"' in index


def test_plots_on_pruned_and_failed_trials_says_what_it_skipped(cli, stores):
    states = sorted(t.state.name for t in study(stores, "rough").get_trials())
    assert states == ["COMPLETE", "FAIL", "PRUNED", "PRUNED"]
    out = stores / "rough-figs"
    result = cli("plots", "--study", "rough", "--out", out)
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert "skipped param_importances: needs two completed trials" in skipped
    assert any(line.startswith("skipped contour:") for line in skipped)
    for name in ("optimization_history", "intermediate_values", "timeline", "val_acc_curves", "accuracy_vs_params"):
        (data,) = plotly_data((out / f"{name}.html").read_text())
        assert any(has_points(t) for t in data), name
    assert not (out / "param_importances.html").exists()
    assert "needs two completed trials" in (out / "index.html").read_text()


def test_pareto_front_keeps_only_undominated_trials():
    points = [
        {"number": 0, "param_count": 100, "accuracy": 0.50},
        {"number": 1, "param_count": 200, "accuracy": 0.70},
        {"number": 2, "param_count": 300, "accuracy": 0.60},  # more parameters, less accurate than 1
        {"number": 3, "param_count": 100, "accuracy": 0.40},  # same size as 0, less accurate
        {"number": 4, "param_count": 400, "accuracy": 0.90},
    ]
    assert pareto_front(points) == [0, 1, 4]


def test_figures_of_an_empty_and_a_mixed_study_skip_or_draw_without_failing():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpsearch.search.review.model import Review
    from hpsearch.search.review.plots import study_figures

    empty = optuna.create_study(direction="maximize")
    drawn = study_figures(Review(empty, {"metric": "val_acc"}, [], None, None))
    assert all(d.fig is None and d.skipped for d in drawn)

    mixed = optuna.create_study(direction="maximize")
    dist = {"lr": FloatDistribution(0.01, 0.2, log=True)}
    for lr, acc in ((0.02, 0.5), (0.1, 0.6)):
        mixed.add_trial(create_trial(params={"lr": lr}, distributions=dist, value=acc,
                                     intermediate_values={1: acc - 0.1, 2: acc},
                                     user_attrs={"param_count": 1000, "best_val_acc": acc}))
    mixed.add_trial(create_trial(params={"lr": 0.05}, distributions=dist, state=TrialState.PRUNED,
                                 intermediate_values={1: 0.1}))
    mixed.add_trial(create_trial(state=TrialState.FAIL))
    drawn = {d.key: d for d in study_figures(Review(mixed, {"metric": "val_acc"}, mixed.get_trials(), None, None))}
    assert "two parameters" in drawn["contour"].skipped
    assert {k for k, d in drawn.items() if d.fig is not None} == {
        "optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values",
        "timeline", "val_acc_curves", "accuracy_vs_params"}
    styles = {t.name: t.line.dash for t in drawn["val_acc_curves"].fig.data}
    assert styles == {"trial 0 (complete)": "solid", "trial 1 (complete) best": "solid", "trial 2 (pruned)": "dash"}
    # The trial pruned after one epoch is one point: drawn as a marker.
    (pruned,) = [t for t in drawn["val_acc_curves"].fig.data if t.name == "trial 2 (pruned)"]
    assert list(pruned.x) == [1] and "markers" in pruned.mode
    # Whole-number axes where the quantity is whole: epochs, trial numbers.
    for key in ("val_acc_curves", "intermediate_values", "optimization_history"):
        axis = drawn[key].fig.layout.xaxis
        assert (axis.tickmode, axis.dtick, axis.tickformat) == ("linear", 1, "d"), key
    # One parameter count for every trial: one tick, written in full.
    axis = drawn["accuracy_vs_params"].fig.layout.xaxis
    assert list(axis.tickvals) == [1000] and list(axis.ticktext) == ["1,000"]


# -- promote and predict --------------------------------------------------------------
@pytest.fixture(scope="module")
def kaggle_file(stores):
    return write_kaggle_file(stores / "kaggle.pkl", N_KAGGLE, layout="hwc", seed=5)


@pytest.fixture(scope="module")
def promoted(stores, kaggle_file):
    """The best trial, promoted once with a submission."""
    from click.testing import CliRunner

    from hpsearch.search.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(stores)
        result = CliRunner().invoke(main, ["promote", "--study", "review", "--kaggle-test", str(kaggle_file),
                                           "--out", "submission.csv"])
    assert result.exit_code == 0, result.output
    return result.output


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_promote_registers_the_best_trial_with_lineage_and_writes_the_submission(stores, promoted):
    best = study(stores, "review").best_trial
    c = client(stores)
    version = c.get_model_version_by_alias("hpsearch-review", "champion")
    assert str(version.version) == "1"
    tags = version.tags
    assert tags["hpsearch.study"] == "review" and tags["hpsearch.trial"] == str(best.number)
    run_id = best.user_attrs["mlflow_run_id"]
    assert tags["hpsearch.run_id"] == run_id == version.run_id
    assert tags["hpsearch.param_count"] == str(best.user_attrs["param_count"])
    assert float(tags["hpsearch.val_acc"]) == pytest.approx(best.value, abs=1e-6)
    run = c.get_run(run_id)
    assert run.data.tags["hpsearch.promoted"] == "true"
    assert float(tags["hpsearch.test_acc"]) == pytest.approx(run.data.metrics["test_acc"], abs=1e-6)
    assert run.info.status == "FINISHED"
    assert "submission" in {a.path for a in c.list_artifacts(run_id)}
    # The logged model sits in the study's experiment, beside its run, in the study's artifact store.
    experiment = c.get_experiment_by_name("review")
    (model,) = [m for m in c.search_logged_models(experiment_ids=[experiment.experiment_id])
                if version.source == f"models:/{m.model_id}"]
    assert model.source_run_id == run_id and model.experiment_id == experiment.experiment_id
    assert model.artifact_location.startswith(experiment.artifact_location)
    assert not c.search_logged_models(experiment_ids=["0"])
    assert study(stores, "review").user_attrs["hpsearch.promoted"][str(best.number)][0]["version"] == "1"
    # Side by side: parameters, count, val and test accuracy.
    assert f"{best.user_attrs['param_count']:,}" in promoted and f"{best.value:.4f}" in promoted
    assert f"{run.data.metrics['test_acc']:.4f}" in promoted

    header, rows = read_csv(stores / "submission.csv")
    assert header == ["ID", "Labels"]
    assert [int(r[0]) for r in rows] == list(range(N_KAGGLE))
    assert all(0 <= int(r[1]) < 10 for r in rows)


def test_promote_again_moves_the_alias_and_predict_reproduces_it_from_the_registry(cli, stores, kaggle_file,
                                                                                    promoted, monkeypatch):
    best = study(stores, "review").best_trial
    other = next(t for t in study(stores, "review").get_trials() if t.number != best.number)
    monkeypatch.chdir(stores)
    result = cli("promote", "--study", "review", "--trial", other.number, "--kaggle-test", kaggle_file,
                 "--out", "sub2.csv", "--tta")
    assert "test acc, flip TTA" in result.output
    c = client(stores)
    champion = c.get_model_version_by_alias("hpsearch-review", "champion")
    assert str(champion.version) == "2" and champion.tags["hpsearch.trial"] == str(other.number)
    assert "champion" not in c.get_model_version("hpsearch-review", "1").aliases

    uri = f"sqlite:///{stores}/mlruns/mlflow.db"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch.search.cli", "predict", "--model", "models:/hpsearch-review@champion",
         "--kaggle-test", str(kaggle_file), "--out", "predicted.csv", "--tta", "--tracking-uri", uri],
        cwd=stores, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (stores / "predicted.csv").read_text() == (stores / "sub2.csv").read_text()
    header, rows = read_csv(stores / "predicted.csv")
    assert len(rows) == N_KAGGLE


def test_select_on_test_measures_every_trial_promotes_the_best_there_and_says_leaky(cli, stores, promoted,
                                                                                     monkeypatch):
    monkeypatch.chdir(stores)
    line = one_line_error(cli("promote", "--study", "review", "--select-on-test", "--trial", 0, ok=False))
    assert "--select-on-test" in line and "--trial" in line
    result = cli("promote", "--study", "review", "--select-on-test", "--model-name", "leaky-review")
    assert "LEAKY" in result.output and "NOT what the trial was selected on" in result.output
    c = client(stores)
    complete = [t for t in study(stores, "review").get_trials() if t.state.name == "COMPLETE"]
    runs = {t.number: c.get_run(t.user_attrs["mlflow_run_id"]) for t in complete}
    test_accs = {n: r.data.metrics["test_acc"] for n, r in runs.items()}
    assert all(r.data.tags["hpsearch.leaky"] == "true" for r in runs.values())
    champion = c.get_model_version_by_alias("leaky-review", "champion")
    chosen = int(champion.tags["hpsearch.trial"])
    assert test_accs[chosen] == max(test_accs.values())
    assert champion.tags["hpsearch.selection"] == "test (leaky)" and "LEAKY" in champion.description
    assert runs[chosen].data.tags["hpsearch.selection"] == "test (leaky)"
    # The validation-selected promotion of the other test stays labelled as such.
    assert c.get_model_version("hpsearch-review", "1").tags["hpsearch.selection"] == "validation"
    out = stores / "leaky-report.html"
    cli("report", "--study", "review", "--out", out)
    assert "LEAKY" in out.read_text()


# -- report -------------------------------------------------------------------------------
def test_report_is_one_offline_page_with_the_best_trial(cli, stores, promoted):
    out = stores / "report.html"
    cli("report", "--study", "review", "--out", out)
    text = out.read_text()
    assert '<script src="http' not in text
    assert text.count("plotly.js v") == 1  # the library's banner: embedded exactly once
    best = study(stores, "review").best_trial
    run_id = best.user_attrs["mlflow_run_id"]
    c = client(stores)
    test_acc = c.get_run(run_id).data.metrics["test_acc"]
    assert f"{best.user_attrs['param_count']:,}" in text
    assert f"{best.value:.4f}" in text and f"{test_acc:.4f}" in text
    assert "hpsearch-review v1" in text
    figures = plotly_data(text)
    assert len(figures) >= 5
    losses = [m.value for m in c.get_metric_history(run_id, "train_loss")]
    curves = {t["name"]: t for data in figures for t in data if t.get("name") in ("train loss", "val acc")}
    assert curves["train loss"]["y"] == losses
    assert curves["val acc"]["y"] == [best.intermediate_values[e] for e in sorted(best.intermediate_values)]
    for name in ("3 COMPLETE", "Compute spent", "lr", "weight_decay"):
        assert name.lower() in text.lower()


# -- bad input --------------------------------------------------------------------------------
def test_bad_input_is_one_line_and_exit_2(cli, stores, kaggle_file, tmp_path, monkeypatch):
    monkeypatch.chdir(stores)
    assert "no study 'nope'" in one_line_error(cli("plots", "--study", "nope", ok=False))
    assert "no study 'nope'" in one_line_error(cli("promote", "--study", "nope", ok=False))
    assert "no study 'nope'" in one_line_error(cli("report", "--study", "nope", ok=False))
    assert "has no trial 99" in one_line_error(cli("promote", "--study", "review", "--trial", 99, ok=False))
    rough = {t.state.name: t.number for t in study(stores, "rough").get_trials()}
    line = one_line_error(cli("promote", "--study", "rough", "--trial", rough["FAIL"], ok=False))
    assert "is FAIL" in line and "only a COMPLETE trial" in line
    line = one_line_error(cli("promote", "--study", "rough", "--trial", rough["PRUNED"], ok=False))
    assert "is PRUNED" in line and "over budget" in line

    versions = len(client(stores).search_model_versions("name='hpsearch-review'"))
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"ids": [0, 1, 2, 3]}, f)
    line = one_line_error(cli("promote", "--study", "review", "--kaggle-test", bad, ok=False))
    assert "allowed layouts" in line
    short = tmp_path / "short.pkl"
    with open(short, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"ids": [0, 1, 2]}, f)
    assert "3 ids for 4 images" in one_line_error(
        cli("promote", "--study", "review", "--kaggle-test", short, ok=False))
    line = one_line_error(cli("predict", "--model", "models:/hpsearch-review@champion", "--kaggle-test", bad,
                              "--out", tmp_path / "x.csv", ok=False))
    assert "allowed layouts" in line
    # Refused before anything was logged or registered.
    assert len(client(stores).search_model_versions("name='hpsearch-review'")) == versions
    assert "needs --kaggle-test" in one_line_error(
        cli("promote", "--study", "review", "--out", "x.csv", ok=False))
    line = one_line_error(cli("predict", "--model", "models:/no-such-model@champion", "--kaggle-test",
                              kaggle_file, "--out", tmp_path / "y.csv", ok=False))
    assert "no-such-model" in line


# -- what the MLflow UI shows --------------------------------------------------------------
def test_runs_are_named_by_their_values_with_their_outcome_and_log_each_value_once(stores):
    c = client(stores)
    for name in ("review", "rough"):
        experiment = c.get_experiment_by_name(name)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        for t in study(stores, name).get_trials():
            run = c.get_run(t.user_attrs["mlflow_run_id"])
            words = run.info.run_name.split(" · ")[0].split()
            assert words[0] == f"t{t.number}" and len(run.info.run_name) <= 60, run.info.run_name
            short = {"weight_decay": "wd"}
            assert [w.split("=")[0] for w in words[1:]] == [short.get(k, k) for k in t.params]
            params = run.data.params
            assert "None" not in params.values(), params
            assert not [k for k in params if k.startswith("optuna.") or k in ("architecture", "param_count")]
            assert "milestones" not in params and "gamma" not in params  # the skeleton's scheduler is "none"
            assert run.data.metrics["param_count"] == t.user_attrs["param_count"]
            for k, v in t.params.items():
                assert params[k] == str(v)
            outcome, description = run.data.tags["hpsearch.outcome"], run.data.tags["mlflow.note.content"]
            assert f"Trial {t.number} of study **{name}**" in description
            if t.state.name == "COMPLETE":
                assert outcome == "complete" and " · " not in run.info.run_name and run.info.status == "FINISHED"
                assert "Completed" in description
                arts = {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
                assert arts == {"plots/learning_curves.png"}
                png = c.download_artifacts(run.info.run_id, "plots/learning_curves.png", str(stores / "dl"))
                assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(png).stat().st_size > 10_000
            elif t.state.name == "PRUNED":  # over the budget: pruned before training
                assert run.info.run_name.endswith(" · over budget") and run.info.status == "KILLED"
                assert outcome.startswith("pruned: over budget") and "Pruned before training" in description
            else:
                assert run.info.run_name.endswith(" · failed") and run.info.status == "FAILED"
                assert outcome.startswith("failed: ") and "**Failed**" in description


def test_a_trial_pruned_at_an_epoch_says_so_in_its_name_column_and_description(tmp_path):
    from hpsearch.search.study.tracking import Tracker, trial_run_name

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = tracker.experiment_id("pruning")
    name = trial_run_name(3, {"lr": 0.2, "batch_size": 128})
    assert name == "t3 lr=0.2 bs=128"
    run_id = tracker.create_run(experiment, name, {"optuna.study": "pruning", "optuna.trial_number": 3})
    tracker.finish(run_id, "PRUNED", "pruned at epoch 1 (val_acc 0.1000)", **{"hpsearch.pruned_epoch": 1})
    run = tracker.client.get_run(run_id)
    assert run.info.run_name == "t3 lr=0.2 bs=128 · pruned@1" and run.info.status == "KILLED"
    assert run.data.tags["hpsearch.outcome"] == "pruned at epoch 1"
    assert run.data.tags["mlflow.note.content"].startswith(
        "Trial 3 of study **pruning**. **Pruned at epoch 1** by the study's pruner (val_acc 0.1000)")
    tracker.reopen(run_id)  # a resumed trial that then completes loses the old outcome
    tracker.finish(run_id, "COMPLETE")
    assert tracker.client.get_run(run_id).info.run_name == "t3 lr=0.2 bs=128"
    long = trial_run_name(12, {f"parameter_{i}": 0.123456 for i in range(8)})
    assert len(long) == 60 and long.endswith("…")


def test_parent_run_summary_experiment_view_and_metric_name(cli, stores):
    c = client(stores)
    s = study(stores, "review")
    assert s.metric_names == ["val_acc"]  # optuna-dashboard and Optuna's plots say val_acc, not "Objective 0"
    experiment = c.get_experiment_by_name("review")
    view = json.loads(experiment.tags["mlflow.sharedViewState.hpsearch"])
    assert view["orderByKey"] == "metrics.`best_val_acc`" and view["orderByAsc"] is False
    assert {"metrics.`best_val_acc`", "metrics.`val_acc`", "params.`lr`", "params.`weight_decay`",
            "tags.`hpsearch.outcome`"} <= set(view["selectedColumns"])
    parent = c.get_run(s.user_attrs["hpsearch.mlflow_parent_run_id"])
    m = parent.data.metrics
    assert m["best_val_acc"] == pytest.approx(s.best_value) and m["best_trial"] == s.best_trial.number
    assert (m["trials"], m["trials_complete"], m["trials_pruned"], m["trials_failed"]) == (3, 3, 0, 0)
    assert m["compute_seconds"] == pytest.approx(sum(t.duration.total_seconds() for t in s.trials), abs=0.1)
    best_run = s.best_trial.user_attrs["mlflow_run_id"]
    description = parent.data.tags["mlflow.note.content"]
    assert f"(#/experiments/{experiment.experiment_id}/runs/{best_run})" in description
    assert "3 trials (3 complete)" in description
    rough = c.get_run(study(stores, "rough").user_attrs["hpsearch.mlflow_parent_run_id"]).data.metrics
    assert (rough["trials_complete"], rough["trials_pruned"], rough["trials_failed"]) == (1, 2, 1)


def test_run_ids_are_links_where_the_mlflow_ui_is_known(cli, stores, monkeypatch):
    monkeypatch.chdir(stores)
    monkeypatch.delenv("HPSEARCH_MLFLOW_URL", raising=False)
    s = study(stores, "review")
    experiment, best_run = s.user_attrs["hpsearch.mlflow_experiment_id"], s.best_trial.user_attrs["mlflow_run_id"]
    href = f'href="http://127.0.0.1:5000/#/experiments/{experiment}/runs/{best_run}?workflowType=machine_learning"'
    cli("report", "--study", "review", "--out", "linked.html", "--mlflow-url", "http://127.0.0.1:5000/")
    assert href in (stores / "linked.html").read_text()
    cli("plots", "--study", "review", "--out", "linked-figs", "--mlflow-url", "http://127.0.0.1:5000")
    assert href in (stores / "linked-figs" / "index.html").read_text()
    cli("plots", "--study", "review", "--out", "plain-figs")  # a local store: the address is not known
    index = (stores / "plain-figs" / "index.html").read_text()
    assert f"<td>{best_run}</td>" in index and "href=\"http" not in index


def test_predict_help_describes_the_kaggle_pickle(cli):
    text = " ".join(cli("predict", "--help").output.split())
    for words in ("b'data'", "uint8", "(N, 3072) CHW-flat", "(N, 3, 32, 32)", "(N, 32, 32, 3)", "b'ids'",
                  "list of N integers"):
        assert words in text, words
