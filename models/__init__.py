"""Architectures: the ResNet family of the report, SE blocks, presets, parameter counting."""

from hpsearch.models.registry import (
    PARAM_BUDGET,
    PRESETS,
    UnknownPreset,
    build_model,
    fits_budget,
    model_config,
    param_count,
    preset_names,
)
from hpsearch.models.resnet import BasicBlock, ResNet, ResNetConfig, SEBlock, count_parameters

__all__ = [
    "PARAM_BUDGET",
    "PRESETS",
    "BasicBlock",
    "ResNet",
    "ResNetConfig",
    "SEBlock",
    "UnknownPreset",
    "build_model",
    "fits_budget",
    "count_parameters",
    "model_config",
    "param_count",
    "preset_names",
]
