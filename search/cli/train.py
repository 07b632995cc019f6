"""Commands about one configuration: `hpsearch models` and `hpsearch train`."""

from __future__ import annotations

import json

import click

from hpsearch.search.cli.options import data_dir_option, dataset_option, device_option, tracking_option


@click.command("models")
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


@click.command("train")
@click.option("--model", help="Architecture preset (see `hpsearch models`).")
@dataset_option
@data_dir_option
@click.option("--epochs", type=int, help="Epochs; LR milestones scale with them unless set.")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@device_option
@click.option("--seed", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other TrainConfig field (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write per-epoch metrics as JSON.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), help="Write the best checkpoint here.")
@tracking_option
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


COMMANDS = [models_cmd, train_cmd]
