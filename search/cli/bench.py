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
@click.option("--batch-sizes", "batch_sizes", metavar="B1,B2,...",
              help="Batch sizes of the step variants [default: 32,64,256,512 on CUDA, --batch-size on CPU].")
def bench_cmd(model, device, batch_size, json_path, quick, only, rounds, batch_sizes):
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
                        parts=tuple(only) or PARTS, rounds=rounds, batch_sizes=parse_batch_sizes(batch_sizes))
    result = run_bench(opts, say=lambda m: click.echo(m, err=True))
    print_result(result)
    if json_path:
        click.echo(f"figures written to {json_path}")
    failed = failures(result)
    if failed:
        raise click.ClickException("part(s) failed: " + "; ".join(failed))


def parse_batch_sizes(text: str | None) -> tuple[int, ...] | None:
    """`--batch-sizes 32,64,256` -> (32, 64, 256); one line naming what is wrong."""
    from hpsearch.search.errors import UserError

    if text is None:
        return None
    try:
        sizes = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise UserError(f"--batch-sizes {text!r}: expected integers separated by commas, e.g. 32,64,256,512") from None
    if not sizes or any(b < 2 for b in sizes):
        raise UserError(f"--batch-sizes {text!r}: give at least one batch size, each >= 2")
    return tuple(dict.fromkeys(sizes))


def _rate(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def _x(v) -> str:
    return f"{v:.1f}x" if isinstance(v, (int, float)) else "-"


def _variant_rows(r: dict, table, notes: list[str]) -> None:
    """Step variants at each batch size against the plain loop, the accuracy
    check per numerics class, and what choose_path now picks."""
    sv = r.get("step_variants")
    if sv and "error" not in sv:
        for b, row in sv["by_batch_size"].items():
            if "error" in row:
                table.add_row(f"step variants, batch {b}", "failed", "", "", "")
                notes.append(f"step variants at batch {b} failed: {row['error']}")
                continue
            table.add_row(f"step variants ({r['model']}, batch {b}), images/s", "", _rate(row["plain_images_per_s"]),
                          "", "")
            for name, v in sorted(row["variants"].items(), key=lambda kv: -kv[1]["images_per_s"]):
                extra = ""
                if v["compile"] != "off":
                    be = v.get("break_even_images")
                    extra = (f"compile {v['compile_seconds']:.1f} s, repaid after "
                             + (f"{be:,.0f} images" if be else "never"))
                table.add_row(f"  {name}", _rate(v["images_per_s"]), _rate(row["plain_images_per_s"]),
                              f"{v['vs_plain']:.2f}x", extra)
            for name, err in row.get("errors", {}).items():
                table.add_row(f"  {name}", "failed", "", "", "")
                notes.append(f"step variant {name} at batch {b} failed: {err}")
        notes.append("step variants: train()'s step on each path (no host sync) against the plain fp32 loop with "
                     "loss.item() every step (baseline column); fp32/bf16 = autocast off/on, cl = channels_last, "
                     "fused_sgd = torch SGD fused=True (else foreach), compile:MODE = torch.compile on the "
                     "fastest eager variant; compile seconds = first training step + first evaluation forward; "
                     "the last column's break-even is compile seconds / (1/eager rate - 1/compiled rate)")
        for skipped in sv.get("compile_skipped", []):
            notes.append(f"not measured: torch.compile {skipped}")
        cb = sv.get("cudnn_benchmark")
        if cb and "error" not in cb:
            table.add_row(f"  {cb['on']} + cudnn.benchmark, batch {cb['batch_size']}", _rate(cb["images_per_s"]),
                          "", _x(cb["speedup"]), "")
    p = r.get("paths")
    if p and "error" not in p:
        ref = p["classes"]["fp32"]
        for cls, row in p["classes"].items():
            table.add_row(f"val acc, {cls} (as {row['variant']})", f"{row['mean']:.2%}", f"{ref['mean']:.2%}",
                          f"{row['difference'] * 100:+.1f} pts",
                          ("keeps" if row["keeps_accuracy"] else "LOSES") + f" (+-{row['tolerance'] * 100:.1f})")
        notes.append(f"accuracy of step variants: train() on each numerics class's fastest variant, {p['epochs']} "
                     f"epoch(s) x {p['seeds']} seed(s), {p['model']} at batch {p['batch_size']} on "
                     f"{p['train_images']:,} train / {p['val_images']:,} val {p['data']}; a class keeps accuracy "
                     f"if its mean is within max(1 point, 2 x the seeds' spread) of fp32")
    for b, runs in (r.get("defaults") or {}).items():
        table.add_row(f"default path, batch {b}", "; ".join(f"{k.split('_')[0]} ep: {v['path']}"
                                                            for k, v in runs.items()), "", "", "")
    if r.get("defaults"):
        first = next(iter(r["defaults"].values()))
        notes.append("default path: what execution.choose_path picks for a CIFAR-10-sized run of that many "
                     f"epochs, e.g. {first['3_epochs']['why']}")


def _process_rows(r: dict, table, notes: list[str]) -> None:
    pr = r.get("processes")
    if pr and "error" not in pr:
        for row in pr["rows"]:
            table.add_row(f"{row['processes']} worker process(es), images/s of the device",
                          _rate(row["aggregate_images_per_s"]), _rate(pr["one_process_images_per_s"]),
                          _x(row["vs_one_process_alone"]), "")
        mps = "CUDA MPS running" if pr["mps"]["running"] else "no CUDA MPS" if r["device"] == "cuda" else "CPU"
        notes.append(f"worker processes: N separate processes, each train()'s step of {pr['model']} at batch "
                     f"{pr['batch_size']} for {pr['seconds']:g} s after warm-up, timed windows started together; "
                     f"aggregate images/s against one process alone ({mps}; "
                     f"{pr['rows'][-1]['threads_each']} torch thread(s) each at N={pr['rows'][-1]['processes']})")


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
                       ("grid_search", "grid cost"), ("fused_trials", "fused trials"),
                       ("fused_agreement", "fused agreement"),
                       ("step_variants", "step variants"), ("paths", "accuracy of step variants"),
                       ("processes", "worker processes")):
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
        path = s.get("ours_why") or ", ".join(k for k, v in s["ours_path"].items() if v not in (False, "off"))
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
    _variant_rows(r, table, notes)
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
    a = r.get("fused_agreement")
    if a and "error" not in a:
        table.add_row("fused trial vs the same trial alone: largest train-loss / val-acc difference",
                      f"{a['max_train_loss_diff']:.1e} / {a['max_val_acc_diff']:.3f}", "", "", "")
        notes.append(f"fused agreement: {a['trials']} trials x {a['epochs']} epochs on {a['train_images']:,} synthetic "
                     f"images, as one model with grouped convolutions and each alone; path: {a['execution']}")
    _process_rows(r, table, notes)
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
