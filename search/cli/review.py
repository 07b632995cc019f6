"""Commands that read a study: plots, report, promote, predict, ui, dashboard."""

from __future__ import annotations

import os

import click

from hpsearch.search.cli.options import (
    DASHBOARD_PORT,
    MLFLOW_PORT,
    storage_option,
    study_name_option,
    tracking_option,
)


def mlflow_url_option(f):
    return click.option(
        "--mlflow-url", envvar="HPSEARCH_MLFLOW_URL", metavar="URL",
        help="Address of the MLflow UI (e.g. http://127.0.0.1:5000 from `hpsearch ui`): run ids become "
             "links to their runs [default: the tracking URI when it is a server; else plain text].")(f)


def _quiet_downloads() -> None:
    # MLflow draws a progress bar for every artifact it downloads (checkpoint, manifest).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@click.command("plots")
@study_name_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Directory for the HTML files [default: mlruns/plots/STUDY/].")
@storage_option
@tracking_option(recorded=True)
@mlflow_url_option
def plots_cmd(study_name, out_dir, storage, tracking_uri, mlflow_url):
    """Write the study's figures as HTML (Optuna's and ours) with an index and one page of them all
    (study.html, logged to the parent run)."""
    from hpsearch.search.review.plots import STUDY_PAGE, write_plots

    result = write_plots(study_name, out_dir, storage, tracking_uri, say=click.echo, mlflow_url=mlflow_url)
    n = sum(1 for p in result["written"] if p.suffix == ".html" and p.name not in ("index.html", STUDY_PAGE))
    logged = (f"; {STUDY_PAGE} logged to MLflow run {result['parent_run_id']} under plots/"
              if result["parent_run_id"] else "")
    click.echo(f"{study_name}: {n} figure(s), {len(result['skipped'])} skipped, in {result['dir']}/ "
               f"(open {result['dir'] / 'index.html'}){logged}")


@click.command("report")
@study_name_option
@click.option("--out", type=click.Path(dir_okay=False), help="The HTML file [default: mlruns/reports/STUDY.html].")
@storage_option
@tracking_option(recorded=True)
@mlflow_url_option
def report_cmd(study_name, out, storage, tracking_uri, mlflow_url):
    """Write one self-contained HTML page: summary, best configuration, curves, accuracies, top 10, figures."""
    from hpsearch.search.review.report import write_report

    path = write_report(study_name, out, storage, tracking_uri, say=click.echo, mlflow_url=mlflow_url)
    size = path.stat().st_size / 2**20
    click.echo(f"{study_name}: report written to {path} ({size:.1f} MiB, opens offline)")


@click.command("promote")
@study_name_option
@click.option("--trial", "trial_number", type=int, help="Promote this trial [default: the best completed one].")
@click.option("--model-name", help="Registered model name [default: hpsearch-STUDY].")
@click.option("--kaggle-test", type=click.Path(dir_okay=False),
              help="Kaggle test pickle to predict (dict with b'data' and b'ids'; see `hpsearch predict --help`).")
@click.option("--out", type=click.Path(dir_okay=False), help="Submission CSV [default: submission.csv].")
@click.option("--tta", is_flag=True, help="Average predictions with the mirrored image.")
@click.option("--select-on-test", is_flag=True,
              help="LEAKY: measure every completed trial on the test split and promote the best there "
                   "(the seed report's protocol); tagged leaky in MLflow.")
@storage_option
@tracking_option(recorded=True)
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where cifar-10-batches-py lives (for the test split) [default: the folder the study "
                   "was run on, which the study recorded].")
def promote_cmd(study_name, trial_number, model_name, kaggle_test, out, tta, select_on_test, storage,
                tracking_uri, data_dir):
    """Measure the chosen trial once on the test split, register it with alias champion, write a submission."""
    from hpsearch.search.interrupts import sigterm_as_interrupt
    from hpsearch.search.review.promote import promote

    _quiet_downloads()
    with sigterm_as_interrupt():  # `kill` says "interrupted" and exits 130, like Ctrl-C
        result = promote(study_name, trial_number=trial_number, model_name=model_name, kaggle_test=kaggle_test,
                         out=out, tta=tta, storage=storage, tracking_uri=tracking_uri, data_dir=data_dir,
                         select_on_test=select_on_test, say=click.echo)
    for line in result.lines():
        click.echo(line)


@click.command("predict")
@click.option("--model", "model_uri", required=True, help="Model URI, e.g. models:/hpsearch-STUDY@champion.")
@click.option("--kaggle-test", required=True, type=click.Path(dir_okay=False),
              help="Kaggle test pickle: dict with b'data' (uint8 images, (N, 3072), (N, 3, 32, 32) or "
                   "(N, 32, 32, 3)) and b'ids' (N integers).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write.")
@click.option("--tta", is_flag=True, help="Average predictions with the mirrored image.")
@tracking_option(recorded=True)
def predict_cmd(model_uri, kaggle_test, out, tta, tracking_uri):
    """Predict a Kaggle test file with a registered model (no study needed).

    \b
    The test file is a pickle of a dict:
      b'data'  numpy uint8 array of N images, in one of three layouts:
               (N, 3072)        CHW-flat, as in the CIFAR-10 batches
               (N, 3, 32, 32)   channels first
               (N, 32, 32, 3)   channels last
      b'ids'   list of N integers, one per image (the CSV's ID column)
    The output is a CSV with the header ID,Labels and one row per id, in file order.
    """
    from hpsearch.search.review.promote import predict_from_registry

    _quiet_downloads()
    path, n = predict_from_registry(model_uri, kaggle_test, out, tta=tta, tracking_uri=tracking_uri)
    click.echo(f"{n:,} predictions from {model_uri} written to {path}")


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=MLFLOW_PORT, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Server worker processes.")
@tracking_option(recorded=True)
def ui_cmd(host, port, workers, tracking_uri):
    """Serve the MLflow UI on the tracking store until Ctrl-C."""
    from hpsearch.search.review.serve import serve_mlflow

    serve_mlflow(host, port, tracking_uri, workers=workers, say=click.echo)


@click.command("dashboard")
@study_name_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=DASHBOARD_PORT, show_default=True)
@storage_option
def dashboard_cmd(study_name, host, port, storage):
    """Serve optuna-dashboard on the study's storage until Ctrl-C."""
    from hpsearch.search.review.serve import serve_dashboard

    serve_dashboard(study_name, host, port, storage, say=click.echo)


COMMANDS: list = [plots_cmd, report_cmd, promote_cmd, predict_cmd, ui_cmd, dashboard_cmd]
