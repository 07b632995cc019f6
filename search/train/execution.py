"""How a run executes on its device, chosen from measurements.

`ExecutionPath` is the precision (fp32, or bf16 autocast), the memory format,
the `torch.compile` mode and the SGD implementation (foreach or fused) one
run uses; `choose_path` resolves a config's "auto" values from what `hpsearch
bench` measured on this device (`figures`):

- measured (this device's name, the model, the batch size or the nearest
  measured one): the fastest step variant whose accuracy the bench checked
  (a variant in the fp32 eager class needs no check); a compiled variant only
  when the run repays its compilation twice over: images to train >
  2 x break-even, break-even = compile seconds / (1/eager rate - 1/compiled rate),
  against the fastest eligible eager variant.
- not measured: fp32, contiguous, eager, foreach SGD. On an H200 at batch 64
  channels_last + bf16 ran 0.90x a plain fp32 loop (resnet-tiny 0.86x), so
  the plain path is the only one known never to be slower.

A value set in the config (amp, channels_last, compile other than "auto")
always wins; "auto" values around it are chosen among the measured
variants that match it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from hpsearch.search.train import figures as figs


@dataclass(frozen=True)
class ExecutionPath:
    """How a model runs on a device, in one place (`setup()` builds from it,
    `hpsearch bench` times it); `why` says what chose it."""

    memory_format: torch.memory_format
    amp: bool  # bf16 autocast
    compile: str  # "off", or a torch.compile mode: "default", "max-autotune", "reduce-overhead"
    fused_sgd: bool = False  # torch.optim.SGD(fused=True) instead of foreach
    why: str = ""
    device_type: str = "cpu"

    @classmethod
    def of(cls, config, device: torch.device, images_to_train: int | None = None) -> ExecutionPath:
        return choose_path(config, device, images_to_train)

    @classmethod
    def of_variant(cls, variant: dict[str, Any], device: torch.device, why: str = "") -> ExecutionPath:
        """The path of one measured step variant (see `variant`)."""
        return cls(torch.channels_last if variant["channels_last"] else torch.contiguous_format,
                   variant["amp"], variant["compile"], variant.get("fused_sgd", False), why, device.type)

    @property
    def channels_last(self) -> bool:
        return self.memory_format == torch.channels_last

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def compiled(self, model: nn.Module) -> nn.Module:
        """The module the loop calls: the model itself, or its compiled version
        ("reduce-overhead" is CUDA graphs through torch.compile)."""
        if self.compile == "off":
            return model
        compiled = torch.compile(model, mode=None if self.compile == "default" else self.compile)
        return _GraphSteps(compiled) if self.compile == "reduce-overhead" else compiled

    def uncompiled(self, reason: str) -> ExecutionPath:
        return self if self.compile == "off" else replace(self, compile="off", why=f"{self.why}; uncompiled: {reason}")

    def variant(self) -> dict[str, Any]:
        return variant(self.amp, self.channels_last, self.compile, self.fused_sgd)

    def describe(self) -> dict[str, Any]:
        return {"precision": "bf16 autocast" if self.amp else "fp32", "channels_last": self.channels_last,
                "compile": self.compile, "sgd": "fused" if self.fused_sgd else "foreach", "why": self.why}


class _GraphSteps(nn.Module):
    """A model compiled with mode="reduce-overhead": each call starts a new
    CUDA-graph step (`torch.compiler.cudagraph_mark_step_begin`). A replayed
    graph writes its outputs into the same memory, and the loop runs
    evaluation between training steps; torch asks such loops to mark where
    each step begins. Every call's outputs are consumed before the next."""

    def __init__(self, compiled: nn.Module):
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def variant(amp: bool, channels_last: bool, compile: str = "off", fused_sgd: bool = False) -> dict[str, Any]:
    return {"amp": amp, "channels_last": channels_last, "compile": compile, "fused_sgd": fused_sgd}


def variant_key(v: dict[str, Any]) -> str:
    """'fp32', 'bf16+cl', 'fp32+fused_sgd+compile:default', ..."""
    parts = ["bf16" if v["amp"] else "fp32"]
    if v["channels_last"]:
        parts.append("cl")
    if v.get("fused_sgd"):
        parts.append("fused_sgd")
    if v["compile"] != "off":
        parts.append(f"compile:{v['compile']}")
    return "+".join(parts)


def numerics_class(v: dict[str, Any]) -> str:
    """What the accuracy check is kept per: precision and compiled or not.
    The memory format, the SGD implementation (same arithmetic) and the
    compile mode choose kernels, not the precision of the arithmetic."""
    return ("bf16" if v["amp"] else "fp32") + ("+compiled" if v["compile"] != "off" else "")


REFERENCE_CLASS = "fp32"
PLAIN = variant(False, False)
_KEYS = ("amp", "channels_last", "compile")


def break_even_images(compile_seconds: float, eager_rate: float, compiled_rate: float) -> float | None:
    """Images after which compilation has paid for itself, None if never."""
    gain = 1 / eager_rate - 1 / compiled_rate  # seconds saved per image
    return compile_seconds / gain if gain > 0 else None


def repaid(break_even: float | None, images: int | None) -> bool:
    """A compiled run is chosen only if it repays its compilation twice over."""
    return break_even is not None and images is not None and images > 2 * break_even


def choose_path(config, device: torch.device, images_to_train: int | None = None,
                figures: dict[str, Any] | None = None) -> ExecutionPath:
    """Every "auto" of `config` resolved for `device` (see the module's doc);
    `images_to_train` (epochs x training images) decides whether compilation
    pays; `figures` defaults to the figures file."""
    explicit = {k: getattr(config, k) for k in _KEYS if getattr(config, k) != "auto"}
    figures = figs.load() if figures is None else figures
    dkey = figs.device_key(device)
    steps = figs.nearest_steps(figures, dkey, config.model, config.batch_size)
    if steps is not None:
        path = _measured(config, device, images_to_train, figures, dkey, steps, explicit)
        if path is not None:
            return path
        why = f"no variant measured on {dkey} matches {_spell(explicit)}"
    elif device.type == "cuda":
        why = (f"nothing measured for {config.model} on {dkey}: the plain path, the only one measured never "
               f"slower than a plain fp32 loop (H200, batch 64: channels_last + bf16 0.90x)")
    else:
        why = f"nothing measured for {config.model} on {dkey}: the CPU default"
    chosen = {**PLAIN, **explicit}
    if explicit:
        why += f"; set in the config: {_spell(explicit)}"
    return ExecutionPath.of_variant(chosen, device, f"{variant_key(chosen)}: {why}")


def _spell(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items())


def _measured(config, device, images, figures, dkey, steps, explicit) -> ExecutionPath | None:
    accuracy = figures["devices"][dkey].get("accuracy", {}).get(config.model, {}).get("classes", {})
    asked = set()  # what the config asks for needs no accuracy check: explicit values win
    if explicit.get("amp") is True:
        asked.add("bf16")
    if explicit.get("compile", "off") != "off":
        asked.add("compiled")
    notes = []

    def features(v) -> set[str]:
        return ({"bf16"} if v["amp"] else set()) | ({"compiled"} if v["compile"] != "off" else set())

    def accurate(v) -> bool:
        return features(v) <= asked or accuracy.get(numerics_class(v), {}).get("keeps_accuracy") is True

    measured = [v for v in steps["variants"].values() if v.get("images_per_s")]
    matching = [v for v in measured if all(v[k] == val for k, val in explicit.items())]
    unchecked = sorted({numerics_class(v) for v in matching if not accurate(v)})
    if unchecked:
        notes.append(f"not considered, accuracy not kept or not checked: {', '.join(unchecked)}")
    candidates = [v for v in matching if accurate(v)]
    eager = [v for v in candidates if v["compile"] == "off"]
    best_eager = max(eager, key=lambda v: v["images_per_s"], default=None)
    compiled = [v for v in candidates if v["compile"] != "off"]
    if "compile" not in explicit:  # auto: only a run long enough to repay it twice
        kept = []
        for v in compiled:
            if best_eager is None:
                continue
            be = break_even_images(v.get("compile_seconds") or 0.0, best_eager["images_per_s"], v["images_per_s"])
            if repaid(be, images):
                kept.append(v)
            elif be is not None:
                notes.append(f"{variant_key(v)} not repaid: break-even {be:,.0f} images x 2 "
                             f"{'>' if images is not None else 'vs a run of unknown length'}"
                             + (f" {images:,} to train" if images is not None else ""))
        compiled = kept
    pool = eager + compiled
    if not pool:
        return None
    best = max(pool, key=lambda v: v["images_per_s"])
    at = f"batch {steps['batch_size']}" + (f" (nearest measured to {config.batch_size})"
                                           if steps["batch_size"] != config.batch_size else "")
    why = (f"{variant_key(best)}: {best['images_per_s']:,.0f} images/s, the fastest of {len(measured)} variants "
           f"measured on {dkey} for {config.model} at {at}")
    if best["compile"] != "off" and best_eager is not None and "compile" not in explicit:
        be = break_even_images(best.get("compile_seconds") or 0.0, best_eager["images_per_s"], best["images_per_s"])
        why += f"; compilation repaid: {images:,} images to train > 2 x break-even {be:,.0f}"
    if explicit:
        why += f"; set in the config: {_spell(explicit)}"
    if notes:
        why += "; " + "; ".join(notes)
    return ExecutionPath.of_variant(best, device, why)
