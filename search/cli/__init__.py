"""The `hpsearch` command line: parses options and delegates; no logic of its own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from hpsearch.search.errors import UserError, user_error_types


class HpsearchGroup(click.Group):
    """Turns every error into one line and an exit code (2 for bad input,
    1 for an internal failure); `--debug` shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, user_error_types()):
                click.echo(f"error: {_one_line(e)}", err=True)
                sys.exit(2)
            click.echo(f"error: {type(e).__name__}: {_one_line(e)} (run with --debug for the traceback)", err=True)
            sys.exit(1)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())


@click.group(cls=HpsearchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """hpsearch: hyperparameter search and experiment tracking for image classifiers."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read by MLflow when it is imported
    quiet_libraries()
    ctx.obj = {"debug": debug}


def quiet_libraries() -> None:
    """Our own progress lines replace the libraries' INFO logs; Optuna's
    heartbeat and retry APIs are marked experimental but are what we rely on."""
    import logging
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------
@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json):
    """List the architecture presets with exact trainable-parameter counts."""
    from hpsearch.search.review.listing import model_rows, print_table

    rows = model_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(
            "Architecture presets (budget 5,000,000 trainable parameters)",
            ["name", "params", "fits 5M", "params with SE", "SE fits", "description"],
            [
                [r["name"], f"{r['params']:,}", "yes" if r["fits"] else "NO",
                 f"{r['params_se']:,}", "yes" if r["fits_se"] else "NO", r["description"]]
                for r in rows
            ],
        )


# ---------------------------------------------------------------------------
@main.command("train")
@click.option("--model", help="Architecture preset (see `hpsearch models`).")
@click.option("--dataset", type=click.Choice(["cifar10", "synthetic"]), help="Data set.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where cifar-10-batches-py lives.")
@click.option("--epochs", type=int, help="Epochs; LR milestones scale with them unless set.")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other TrainConfig field (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write per-epoch metrics as JSON.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), help="Write the best checkpoint here.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
@click.option("--no-track", is_flag=True, help="Do not log the run to MLflow.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
def train_cmd(model, dataset, data_dir, epochs, batch_size, lr, device, seed, sets, json_path,
              save_path, tracking_uri, no_track, quiet):
    """Train one configuration without search, and log it to MLflow."""
    from hpsearch.search.train.command import train_one

    options = {"model": model, "dataset": dataset, "epochs": epochs, "batch_size": batch_size,
               "lr": lr, "device": device, "seed": seed}
    train_one(
        {k: v for k, v in options.items() if v is not None},
        sets,
        data_dir=data_dir,
        json_path=json_path,
        save_path=save_path,
        tracking_uri=None if no_track else (tracking_uri or "default"),
        quiet=quiet,
    )


# ---------------------------------------------------------------------------
def storage_option(f):
    return click.option("--storage", envvar="HPSEARCH_STORAGE",
                        help="Optuna storage URL [default: sqlite:///mlruns/optuna.db].")(f)


def tracking_option(f):
    return click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                        help="MLflow tracking URI [default: sqlite:///mlruns/mlflow.db].")(f)


@main.command("run")
@click.option("--study", "study_ref", required=True, help="Study name (studies/NAME.toml) or a .toml path.")
@click.option("--n-trials", type=int, help="At most this many trials in this invocation.")
@click.option("--epochs", type=int, help="Train for N epochs; LR milestones scale by N/E.")
@storage_option
@tracking_option
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="HPSEARCH_DATA_DIR")
@click.option("--dataset", type=click.Choice(["cifar10", "synthetic"]), help="Override the study's data set.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Training device.")
@click.option("--seed", type=int, help="Study seed (trial seeds derive from it).")
@click.option("--study-name", help="Name of the study in both stores [default: the file's name].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a fixed [train] value.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--quiet", is_flag=True, help="Plain, minimal output.")
def run_cmd(study_ref, n_trials, epochs, storage, tracking_uri, data_dir, dataset, device, seed,
            study_name, sets, workers, quiet):
    """Run or resume a study: every trial searched, pruned or completed, all tracked."""
    from hpsearch.search.study.runner import RunOptions, run_study

    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    opts = RunOptions(study=study_ref, n_trials=n_trials, epochs=epochs, storage=storage,
                      tracking_uri=tracking_uri, data_dir=data_dir, dataset=dataset, device=device,
                      seed=seed, study_name=study_name, sets=tuple(sets), quiet=quiet)
    if workers > 1:
        from hpsearch.search.study.workers import run_workers

        sys.exit(run_workers(opts, workers))
    run_study(opts)


@main.command("studies")
@click.option("--dir", "studies_dir", type=click.Path(file_okay=False), default="studies", show_default=True)
def studies_cmd(studies_dir):
    """List the study files: sampler, pruner, size of the space, budget, data set."""
    from hpsearch.search.review.listing import print_table, study_rows

    from hpsearch.search.study.manifest import SHIPPED_STUDIES

    folder = Path(studies_dir)
    if not folder.is_dir() and studies_dir == "studies":
        folder = SHIPPED_STUDIES  # outside a checkout: the studies shipped with the package
    rows = study_rows(folder)
    print_table(f"Studies in {folder}/", ["study", "sampler", "pruner", "size", "budget", "dataset",
                                               "model", "epochs", "description"], rows)


@main.command("status")
@click.option("--study", "study_name", required=True, help="Study name in the storage.")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(study_name, storage, as_json):
    """Table of a study's trials and its best trial."""
    from hpsearch.search.review.listing import print_status

    print_status(study_name, storage, as_json)


@main.command("gc")
@click.option("--study", "study_name", required=True, help="Study name in the storage.")
@click.option("--keep", type=int, required=True, help="Keep the checkpoints of the top K completed trials.")
@storage_option
@tracking_option
def gc_cmd(study_name, keep, storage, tracking_uri):
    """Delete the checkpoints of all but the top K trials (never a promoted one)."""
    from hpsearch.search.study.gc import collect_garbage

    out = collect_garbage(study_name, keep, storage, tracking_uri)
    click.echo(f"{study_name}: deleted the checkpoints of {len(out['deleted'])} trial(s), "
               f"freed {out['freed_bytes'] / 2**20:.1f} MiB; kept trials {out['kept']}")


def _register(modules) -> None:
    for module in modules:
        for command in module.COMMANDS:
            main.add_command(command)


def _register_all() -> None:
    from hpsearch.search.cli import bench, review

    _register([review, bench])


_register_all()

