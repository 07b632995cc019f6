"""The `hpsearch` command line: parses options and delegates; no logic of its own."""

from __future__ import annotations

import os
import sys

# `hpsearch bench` lets OpenMP threads wait passively (see cli/bench.py). That
# only takes effect before torch is loaded, and the commands' option lists
# (data sets, devices) load it when this package is imported, so it is set here.
if "bench" in sys.argv[1:3]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from hpsearch.search.errors import user_error_types


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


def _register(modules) -> None:
    for module in modules:
        for command in module.COMMANDS:
            main.add_command(command)


def _register_all() -> None:
    from hpsearch.search.cli import bench, review, study, train

    _register([train, study, review, bench])


_register_all()

