"""`hpsearch bench`: the benchmark command and its printed table."""

from __future__ import annotations

import os
import sys

import click

from hpsearch.search.bench import PARTS
from hpsearch.search.cli.options import device_option


@click.command("bench")
@click.option("--model", help="Architecture preset for the training step [default: resnet-seed on CUDA, "
                               "resnet-tiny on CPU].")
@device_option(default="auto")
@click.option("--batch-size", type=int, help="Batch size of both data paths and the training step "
                                              "[default: TrainConfig's, 64].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure as JSON here.")
@click.option("--quick", is_flag=True, help="Tiny sizes (seconds; for tests): the figures are not meaningful.")
@click.option("--only", "only", multiple=True, type=click.Choice(PARTS),
              help="Run only this part (repeatable) [default: all].")
@click.option("--rounds", type=int,
              help="Interleaved rounds per comparison [default: 3 on CPU, 2 on CUDA, 1 with --quick].")
def bench_cmd(model, device, batch_size, json_path, quick, only, rounds):
    """Measure, side by side: the data path against torchvision's DataLoader, the training
    step against a plain fp32 loop, and the search overhead of a real small study."""
    # OpenMP threads that spin while they wait collapse when another process
    # shares the cores (our data path ran 5-20x slower on a loaded 2-core
    # machine), while waiting passively costs some 25% on an idle one. For
    # figures about the code rather than the neighbours the bench waits
    # passively unless OMP_WAIT_POLICY is set (the JSON records it). It only
    # takes effect before torch is loaded.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from hpsearch.search.bench import BenchOptions, failures, run_bench
    from hpsearch.search.errors import UserError

    if batch_size is not None and batch_size < 2:
        raise UserError(f"--batch-size {batch_size}: must be >= 2")
    if rounds is not None and rounds < 1:
        raise UserError(f"--rounds {rounds}: must be >= 1")
    opts = BenchOptions(model=model, device=device, batch_size=batch_size, json_path=json_path, quick=quick,
                        parts=tuple(only) or PARTS, rounds=rounds)
    result = run_bench(opts, say=lambda m: click.echo(m, err=True))
    print_result(result)
    if json_path:
        click.echo(f"figures written to {json_path}")
    failed = failures(result)
    if failed:
        raise click.ClickException("part(s) failed: " + "; ".join(failed))


def _rate(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def _x(v) -> str:
    return f"{v:.1f}x" if isinstance(v, (int, float)) else "-"


def print_result(r: dict) -> None:
    """One table of figures with ratios, then what each row measured."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    title = (f"hpsearch bench: {r['device_name']} ({r['device']}), torch {r['torch']}, {r['cores']} cores"
             + (" [--quick: sizes too small to mean much]" if r["quick"] else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("comparison")
    for col in ("ours", "baseline", "ratio", "target"):
        table.add_column(col, justify="right")
    notes = []
    for key, label in (("data_path", "data path"), ("train_step", "training step"),
                       ("search_overhead", "search overhead"), ("accuracy_parity", "accuracy parity"),
                       ("grid_search", "grid cost"), ("fused_trials", "fused trials")):
        if "error" in r.get(key, {}):
            table.add_row(label, "failed", "", "", "")
            notes.append(f"{label} failed: {r[key]['error']}")
    d = r.get("data_path")
    if d and "error" not in d:
        table.add_row("data path, images/s", _rate(d["ours_images_per_s"]), _rate(d["torchvision_images_per_s"]),
                      _x(d["ratio"]), f">= {d['target_ratio']:.0f}x")
        notes.append(f"data path: prepare_batch on {r['device']}-resident uint8 vs torchvision Compose on PIL "
                     f"images through a DataLoader with {d['num_workers']} workers ({d['torch_threads']} torch "
                     f"threads for ours, {d['augment_chunk']} images a call as in search.train); batch {d['batch_size']}, "
                     f"{d['images_per_round']:,} images a side, "
                     f"median of {len(d['rounds'])} rounds")
    s = r.get("train_step")
    if s and "error" not in s:
        path = ", ".join(k for k, v in s["ours_path"].items() if v) or "fp32, contiguous, eager"
        table.add_row(f"training step ({s['model']}), images/s", _rate(s["ours_images_per_s"]),
                      _rate(s["naive_images_per_s"]), _x(s["ratio"]), "")
        table.add_row("  ours with gather + augmentation", _rate(s["ours_with_augmentation_images_per_s"]),
                      "", "", "")
        notes.append(f"training step: search.train's step ({path}; no host sync) vs a plain fp32 loop with "
                     f"loss.item() every step; batch {s['batch_size']}, synthetic input on the device, median of "
                     f"{len(s['rounds'])} rounds of {s['steps_per_round']} steps. 'with gather + augmentation' "
                     "is search.train's epoch loop itself"
                     + (f"; host syncs per step: {s['host_syncs_per_step']}"
                        if s.get("host_syncs_per_step") is not None else ""))
        for name, v in (s.get("variants") or {}).items():
            if "error" in v:
                table.add_row(f"  ours + {name.replace('_', '.')}", "failed", "", "", "")
                notes.append(f"{name} failed: {v['error']}")
                continue
            table.add_row(f"  ours + {name.replace('_', '.')}", _rate(v["images_per_s"]),
                          _rate(s["ours_images_per_s"]), _x(v["speedup"]), "")
            if name == "compile":
                be = v.get("break_even_images")
                notes.append(f"torch.compile: first step {v['first_step_seconds']:.1f} s (compilation); pays "
                             "off after " + (f"{be:,.0f} training images" if be else "never"))
    f = r.get("fused_trials")
    if f and "error" not in f:
        for m in f["members"]:
            table.add_row(f"{m['members']} trial(s) as one model, images/s of the device", _rate(m["fused_images_per_s"]),
                          _rate(f["one_trial_images_per_s"]), _x(m["vs_one_trial_alone"]),
                          f">= {f['target']:.0f}x" if m is f["members"][-1] else "")
        notes.append(f"fused trials: B trials of {f['model']} at batch {f['batch_size']} as one model (grouped "
                     f"convolutions, fused SGD with per-trial lr, momentum, weight decay) against one trial alone "
                     f"(its own train step), {f['steps']} steps on fixed batches; the target is for resnet-seed on "
                     f"CUDA")
    o = r.get("search_overhead")
    if o and "skipped" in o:
        table.add_row("search overhead", "skipped", "", "", "")
        notes.append(f"search overhead: skipped ({o['skipped']})")
    elif o and "error" not in o:
        later = o.get("later_trials_fraction")
        table.add_row("search overhead, share of trial time", f"{o['fraction']:.2%}", "", "",
                      f"<= {o['target_fraction']:.0%}")
        if later is not None:
            table.add_row("  trials after the first", f"{later:.2%}", "", "", "")
        size = o["trial_size"]
        notes.append(f"search overhead: (trial wall time - epochs' seconds) / wall time over {size['trials']} "
                     f"real {size['sampler']} trials ({size['pruner']} pruner, {size['stores']}) of "
                     f"{size['epochs']} epochs of {size['model']} on {size['train_images']:,} train / "
                     f"{size['val_images']:,} val synthetic images, batch {size['batch_size']}: "
                     f"{o['mean_trial_seconds']:.1f} s a trial, {o['mean_overhead_seconds']:.2f} s of it "
                     f"overhead ({o['per_epoch_overhead_seconds'] * 1000:.0f} ms per epoch); the first trial "
                     f"({o['first_trial_fraction']:.2%}) also pays the process's one-time warm-ups")
    p = r.get("accuracy_parity")
    if p and "error" not in p:
        for key, label in (("no_augment", "no augmentation"), ("augment", "report's augmentation")):
            s = p[key]
            table.add_row(f"val accuracy, {label}", f"{s['ours_mean']:.2%}", f"{s['plain_mean']:.2%}",
                          f"{s['difference'] * 100:+.1f} pts", f">= -{p['target'] * 100:.0f} pts")
        notes.append(f"accuracy parity: train() vs a plain PyTorch loop (same {p['model']}, init, SGD lr {p['lr']}, "
                     f"batch {p['batch_size']}, milestones {p['milestones']}; torchvision transforms on PIL images "
                     f"for the augmentation), {p['epochs']} epoch(s), {p['seeds']} seed(s) a side, on "
                     f"{p['train_images']:,} train / {p['val_images']:,} val {p['data']}")
    g = r.get("grid_search")
    if g and "error" not in g:
        full, fast = g["full"], g["fast"]
        table.add_row("grid cost, images trained (fast / full)", f"{fast['images_trained']:,}",
                      f"{full['images_trained']:,}", f"{g['compute_ratio']:.2f}x", f"<= {g['compute_target']:.2f}x")
        table.add_row("  best cell's val acc (fast / full)", f"{fast['best_val_acc']:.2%}",
                      f"{full['best_val_acc']:.2%}", "same cell" if g["same_best_cell"] else (
                          "found" if g["found"] else "missed"), f"within {g['found_within'] * 100:.1f} pts")
        axes = "; ".join(f"{k} {', '.join(v)}" for k, v in g["axes"].items())
        notes.append(f"grid cost: Table 2 cut to {full['cells']} cells ({axes}) of {g['model']}, {g['epochs']} "
                     f"epochs, on {g['train_images']:,} train / {g['val_images']:,} val {g['data']}. Full grid: "
                     f"every cell to the end, common seeds; fast grid: shared prefixes + schedule-aware halving "
                     f"({fast['complete']} complete, {fast['pruned']} pruned), {fast['epochs_trained']} of "
                     f"{full['epochs_trained']} epochs trained. Best cell, full: {full['best_cell']}; fast: "
                     f"{fast['best_cell']} (its full-grid value {g['fast_best_in_full_grid']:.2%}). Cells the fast "
                     f"grid completed equal the full grid's exactly: {g['exact_where_complete']}")
    console.print(table)
    for note in notes:
        console.print(f"- {note}", markup=False)
    if o and "breakdown_seconds_per_trial" in o:
        parts = Table(title="search overhead: seconds per trial (mean)", title_justify="left")
        parts.add_column("where")
        parts.add_column("seconds", justify="right")
        parts.add_column("share of trial", justify="right")
        for k, v in sorted(o["breakdown_seconds_per_trial"].items(), key=lambda kv: -kv[1]):
            parts.add_row(k.replace("_", " "), f"{v:.3f}", f"{v / o['mean_trial_seconds']:.2%}")
        console.print(parts)


COMMANDS: list = [bench_cmd]

if __name__ == "__main__":  # pragma: no cover - `python -m hpsearch.search.cli.bench`, where the CLI's imports are missing
    bench_cmd()
