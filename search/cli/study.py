"""Commands about a study: `hpsearch run`, `studies`, `status` and `gc`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hpsearch.search.cli.options import (
    data_dir_option,
    dataset_option,
    device_option,
    storage_option,
    study_name_option,
    tracking_option,
)
from hpsearch.search.errors import UserError


@click.command("run")
@click.option("--study", "study_ref", required=True, help="Study name (studies/NAME.toml) or a .toml path.")
@click.option("--n-trials", type=int, help="At most this many trials in this invocation.")
@click.option("--epochs", type=int, help="Train for N epochs; LR milestones scale by N/E.")
@storage_option
@tracking_option
@data_dir_option
@dataset_option
@device_option
@click.option("--seed", type=int, help="Study seed (trial seeds derive from it).")
@click.option("--study-name", help="Name of the study in both stores [default: the file's name].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a fixed [train] value.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--retry-failed/--no-retry-failed", default=True, show_default=True,
              help="Queue again the trials that failed with an error (a full disk, a missing folder); "
                   "diverged trials stay failed.")
@click.option("--no-wait", is_flag=True,
              help="When nothing is left to start but trials run elsewhere, exit (saying which) instead of "
                   "waiting for them to finish or go stale.")
@click.option("--fuse", default="auto", show_default=True, metavar="N|auto",
              help="Train up to N trials of one architecture and batch size together as one fused model, each "
                   "still its own Optuna trial and MLflow run; auto: what `hpsearch bench` measured fastest on "
                   "this device, else 1.")
@click.option("--quiet", is_flag=True, help="Plain, minimal output.")
def run_cmd(study_ref, n_trials, epochs, storage, tracking_uri, data_dir, dataset, device, seed,
            study_name, sets, workers, retry_failed, no_wait, fuse, quiet):
    """Run or resume a study: every trial searched, pruned or completed, all tracked."""
    from hpsearch.search.study.fusion import parse_fuse
    from hpsearch.search.study.runner import RunOptions, run_study

    if workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1")
    opts = RunOptions(study=study_ref, n_trials=n_trials, epochs=epochs, storage=storage,
                      tracking_uri=tracking_uri, data_dir=data_dir, dataset=dataset, device=device,
                      seed=seed, study_name=study_name, sets=tuple(sets), quiet=quiet,
                      retry_failed=retry_failed, no_wait=no_wait, fuse=parse_fuse(fuse))
    if workers > 1:
        from hpsearch.search.study.workers import run_workers

        sys.exit(run_workers(opts, workers))
    run_study(opts)


@click.command("studies")
@click.option("--dir", "studies_dir", type=click.Path(file_okay=False), default="studies", show_default=True)
def studies_cmd(studies_dir):
    """List the study files: sampler, pruner, size, budget, data set, and for
    grids the compute in epochs (full, with shared prefixes, with halving) and,
    once `hpsearch bench` has measured the model's speed, the time it takes."""
    from hpsearch.search.review.listing import print_table, study_rows
    from hpsearch.search.study.manifest import SHIPPED_STUDIES

    folder = Path(studies_dir)
    if not folder.is_dir() and studies_dir == "studies":
        folder = SHIPPED_STUDIES  # outside a checkout: the studies shipped with the package
    rows, compute = study_rows(folder)
    print_table(f"Studies in {folder}/", ["study", "sampler", "pruner", "size", "budget", "dataset",
                                               "model", "epochs", "description"], rows)
    if compute:
        print_table("Grid compute before it is spent (* = the study's own strategy)",
                    ["grid", "epochs: full / shared prefixes / + halving", "estimated time (bench speed)"],
                    compute)


@click.command("status")
@study_name_option
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(study_name, storage, as_json):
    """Table of a study's trials and its best trial."""
    from hpsearch.search.review.listing import print_status

    print_status(study_name, storage, as_json)


@click.command("gc")
@study_name_option
@click.option("--keep", type=int, required=True, help="Keep the checkpoints of the top K completed trials.")
@storage_option
@tracking_option
def gc_cmd(study_name, keep, storage, tracking_uri):
    """Delete the checkpoints of all but the top K trials (never a promoted one)."""
    from hpsearch.search.study.gc import collect_garbage

    out = collect_garbage(study_name, keep, storage, tracking_uri)
    click.echo(f"{study_name}: deleted the checkpoints of {len(out['deleted'])} trial(s), "
               f"freed {out['freed_bytes'] / 2**20:.1f} MiB; kept trials {out['kept']}")


COMMANDS = [run_cmd, studies_cmd, status_cmd, gc_cmd]
