"""Architecture presets by name, with exact trainable-parameter counts.

Presets are tiny functions that only state their arguments (the timm
registry pattern); `build_model(name, **overrides)` builds any of them with
fields of `ResNetConfig` replaced.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hpsearch.models.resnet import ResNet, ResNetConfig, count_parameters

PARAM_BUDGET = 5_000_000  # the project's constraint: under 5M trainable parameters


def fits_budget(count: int, budget: int = PARAM_BUDGET) -> bool:
    """The one budget rule: a study's `budget` is the largest trainable-parameter
    count allowed (the report's 4,985,390 fits 5,000,000; 5,021,251 does not)."""
    return count <= budget


class UnknownPreset(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[], ResNetConfig]


PRESETS: dict[str, Preset] = {}


def register(name: str, description: str):
    def deco(fn: Callable[[], ResNetConfig]):
        PRESETS[name] = Preset(name, description, fn)
        return fn

    return deco


@register("resnet-seed", "report's final network: stem 32, 3x7 BasicBlocks of 32/64/190 (4,985,390 params)")
def _resnet_seed() -> ResNetConfig:
    return ResNetConfig(stem_channels=32, channels=(32, 64, 190), blocks=(7, 7, 7))


@register("resnet-seed-2.6m", "report's first experiment: stem 32, 3x7 blocks of 32/64/128")
def _resnet_seed_small() -> ResNetConfig:
    return ResNetConfig(stem_channels=32, channels=(32, 64, 128), blocks=(7, 7, 7))


@register(
    "resnet-443",
    "report's second experiment (Thakur et al. 2023): stem 64 + SE, 4/4/3 blocks of 64/128/256; "
    "the report says ~4.99M, the true count is 4,697,742",
)
def _resnet_443() -> ResNetConfig:
    return ResNetConfig(stem_channels=64, channels=(64, 128, 256), blocks=(4, 4, 3), stem_se=True)


@register("resnet-443-se", "resnet-443 with an SE block (reduction 16) in every BasicBlock")
def _resnet_443_se() -> ResNetConfig:
    return dataclasses.replace(_resnet_443(), se=True)


@register("resnet-tiny", "stem 16, one block each of 16/32/64: for tests and smoke runs")
def _resnet_tiny() -> ResNetConfig:
    # No zero-init of the residual branches: on real digits (MNIST fixture, 3
    # epochs) it cost resnet-tiny 35 points of val accuracy (RESULTS-issue9.md).
    return ResNetConfig(stem_channels=16, channels=(16, 32, 64), blocks=(1, 1, 1), zero_init_residual=False)


def preset_names() -> list[str]:
    return list(PRESETS)


def model_config(name: str, **overrides) -> ResNetConfig:
    """The `ResNetConfig` of a preset with some fields replaced (None = keep)."""
    if name not in PRESETS:
        raise UnknownPreset(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS)}")
    allowed = {f.name for f in dataclasses.fields(ResNetConfig)}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown model override(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return dataclasses.replace(
        PRESETS[name].make(), **{k: v for k, v in overrides.items() if v is not None}
    )


def build_model(name_or_config: str | ResNetConfig, **overrides) -> ResNet:
    if isinstance(name_or_config, ResNetConfig):
        return ResNet(dataclasses.replace(name_or_config, **overrides))
    return ResNet(model_config(name_or_config, **overrides))


@functools.lru_cache(maxsize=256)
def param_count(config: ResNetConfig) -> int:
    """Exact trainable-parameter count without allocating weights (meta device);
    the one count every command reports. Trials of a study mostly share an
    architecture, so each is counted once per process."""
    with torch.device("meta"):
        return count_parameters(ResNet(config))
