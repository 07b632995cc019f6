"""Options shared by several commands, written once. Choices come from the
registries they name (data sets, devices, presets, benchmark parts), so a new
entry there reaches every command."""

from __future__ import annotations

import click

from hpsearch.data import DATASETS
from hpsearch.search.study.storage import DEFAULT_STORAGE
from hpsearch.search.study.tracking import DEFAULT_TRACKING_URI
from hpsearch.search.train.config import DEVICES

MLFLOW_PORT = 5000
DASHBOARD_PORT = 8080


def storage_option(f):
    return click.option("--storage", envvar="HPSEARCH_STORAGE",
                        help=f"Optuna storage URL [default: {DEFAULT_STORAGE}].")(f)


def tracking_option(f=None, *, recorded: bool = False):
    """`--tracking-uri`; with `recorded`, a study's own URI comes before the default."""
    default = ("the one the study recorded, else " if recorded else "") + DEFAULT_TRACKING_URI

    def decorate(f):
        return click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                            help=f"MLflow tracking URI [default: {default}].")(f)

    return decorate(f) if f is not None else decorate


def study_name_option(f):
    return click.option("--study", "study_name", required=True, help="Study name in the storage.")(f)


def dataset_option(f):
    return click.option("--dataset", type=click.Choice(DATASETS), help="Data set.")(f)


def device_option(f=None, *, default: str | None = None):
    def decorate(f):
        return click.option("--device", type=click.Choice(DEVICES), default=default,
                            show_default=default is not None, help="Training device.")(f)

    return decorate(f) if f is not None else decorate


def data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), envvar="HPSEARCH_DATA_DIR",
                        help="Folder holding cifar-10-batches-py.")(f)
