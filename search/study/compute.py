"""What a grid costs, before and after: epochs planned (full, with shared
prefixes, with schedule-aware halving), epochs represented and trained, and
a time estimate from the training speed `hpsearch bench` last measured.

An epoch is the unit: one pass over a cell's training images. A planned
halving figure is the synchronous plan (at each rung exactly ceil(n / eta^k)
of a group's n cells go on); the asynchronous rule the pruner applies
promotes somewhat more, since the first cells at a rung meet few rivals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna.trial import TrialState

from hpsearch.search.keys import TrialAttr
from hpsearch.search.train.figures import measured_speed, record_speed, speeds_file  # noqa: F401 - kept here too


@dataclass(frozen=True)
class GridCompute:
    full: int  # every cell trained alone to its last epoch
    shared: int  # with shared prefixes
    halving: int  # with shared prefixes and schedule-aware halving (synchronous plan)
    halving_alone: int  # halving without shared prefixes


def plan(resolved) -> GridCompute:
    """Epochs a grid study needs under each strategy."""
    from hpsearch.search.study.halving import phase_group, rungs
    from hpsearch.search.study.prefix import grid_cells, trunk_of

    spec = resolved.spec
    options = spec.pruner_options if spec.pruner == "schedule_halving" else {}
    eta, settle = int(options.get("reduction_factor", 3)), float(options.get("settle", 0.05))
    cells = [config for _, config in grid_cells(resolved) if config is not None]
    full = sum(c.epochs for c in cells)
    trunk_epochs: dict[str, int] = {}
    after_fork = 0
    groups: dict[tuple, list] = {}
    for c in cells:
        trunk = trunk_of(c)
        if trunk.shares:
            trunk_epochs[trunk.key] = max(trunk_epochs.get(trunk.key, 0), trunk.fork)
        after_fork += c.epochs - trunk.fork
        d = c.to_dict()
        groups.setdefault(phase_group(d), []).append((trunk.fork, rungs(d, settle), c.epochs))
    shared = sum(trunk_epochs.values()) + after_fork

    def halved(from_fork: bool) -> int:
        total = 0
        for members in groups.values():
            n = len(members)
            fork, points, epochs = members[0]  # one schedule per group: the same rungs and epochs
            edges = [fork if from_fork else 0, *points, epochs]
            total += sum(math.ceil(n / eta**k) * (edges[k + 1] - edges[k]) for k in range(len(edges) - 1))
        return total

    return GridCompute(full, shared, sum(trunk_epochs.values()) + halved(True), halved(False))


def spent(trials) -> tuple[int, int]:
    """(epochs represented, epochs trained) by a study's trials: every
    logical trial's curve counted once, and every attempt's own epochs (a
    cell continued from a trunk did not train the trunk's)."""
    represented: dict[int, int] = {}
    trained = 0
    for t in trials:
        if t.user_attrs.get(TrialAttr.DUPLICATE) or t.state == TrialState.WAITING or not t.intermediate_values:
            continue
        last = max(t.intermediate_values)
        origin = t.user_attrs.get(TrialAttr.ORIGIN, t.number)
        represented[origin] = max(represented.get(origin, 0), last)
        trained += max(0, last - int(t.user_attrs.get(TrialAttr.START_EPOCH, 0)))
    return sum(represented.values()), trained


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


CIFAR10_TRAIN_IMAGES = 50_000


def images_per_epoch(fixed: dict) -> int:
    """Training images a cell sees per epoch: the training pool less the hold-out."""
    from hpsearch.search.train.config import TrainConfig

    d = TrainConfig()
    pool = CIFAR10_TRAIN_IMAGES if fixed.get("dataset", d.dataset) == "cifar10" else fixed.get(
        "synthetic_size", d.synthetic_size)
    return pool - fixed.get("val_size", d.val_size)


def describe(resolved) -> tuple[str, str]:
    """("full / shared / halving" epochs, the same as estimated hours or "")
    for a grid study; the strategy the study uses is marked with *."""
    spec = resolved.spec
    c = plan(resolved)
    halving = spec.pruner == "schedule_halving"
    figures = [(c.full, not spec.share_prefix and not halving), (c.shared, spec.share_prefix and not halving),
               (c.halving, spec.share_prefix and halving)]
    epochs = " / ".join(f"{n:,}" + ("*" if mine else "") for n, mine in figures)
    if halving and not spec.share_prefix:
        epochs += f" (halving alone: {c.halving_alone:,}*)"
        figures.append((c.halving_alone, True))
    if "model" in spec.space:  # a speed is measured per model
        return epochs, "- (the model is searched)"
    model = resolved.fixed.get("model", "resnet-seed")
    batches = [int(v) for v in spec.space["batch_size"].choices] if "batch_size" in spec.space else [
        int(resolved.fixed.get("batch_size", 64))]
    speed = measured_speed(model, batches)
    if speed is None:
        return epochs, f"- (no speed measured: hpsearch bench --model {model} --only step)"
    per_epoch = images_per_epoch(resolved.fixed)
    time = " / ".join(_duration(n * per_epoch / speed["images_per_s"]) for n, _ in figures)
    return epochs, f"{time} at {speed['images_per_s']:,.0f} img/s ({speed['device']}, batch {speed['batch_size']})"
