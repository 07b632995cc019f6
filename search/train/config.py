"""`TrainConfig`: every value one training run depends on, typed and validated.

Defaults are the report's final selection (Table 3: batch 64, gamma 0.1,
weight decay 1e-4, milestones [80, 120]; SGD momentum 0.9, lr 0.1, 200 epochs)
on the embedded synthetic data set. A config is flat so that a study's
`[train]`/`[space]` keys and `--set KEY=VALUE` name its fields directly.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hpsearch.data import DATASETS, AugmentConfig, DataBundle, load_dataset
from hpsearch.models import ResNetConfig, model_config, param_count, preset_names
from hpsearch.models.resnet import INIT_MODES


class ConfigError(ValueError):
    """A bad configuration value; the message is one line for the user."""


@dataclass(frozen=True)
class DataConfig:
    """The data half of a `TrainConfig`: which data set and which hold-out.
    It is fixed per study (every trial is compared on the same split)."""

    dataset: str
    val_size: int
    split_seed: int
    synthetic_size: int

    def load(self, data_dir=None) -> DataBundle:
        return load_dataset(self.dataset, data_dir=data_dir, val_size=self.val_size,
                            split_seed=self.split_seed, synthetic_size=self.synthetic_size)


DATA_KEYS = tuple(f.name for f in dataclasses.fields(DataConfig))


OPTIMIZERS = ("sgd", "lookahead")
SCHEDULERS = ("multistep", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda")
# How a run executes (`hpsearch.search.train.execution.choose_path`): "auto" is
# resolved per device from what `hpsearch bench` measured there.
SWITCH = ("auto", True, False)  # amp (bf16 autocast) and channels_last
COMPILE_MODES = ("auto", "off", "default", "max-autotune", "reduce-overhead")
COMPILE_ALIASES = {True: "default", False: "off", "true": "default", "false": "off"}  # compile=true|false


def _choices(*values):
    return field(default=values[0], metadata={"choices": values})


@dataclass(frozen=True)
class TrainConfig:
    # architecture: a preset and optional overrides of it (None keeps the preset's value)
    model: str = "resnet-seed"
    stem_channels: int | None = None
    channels: tuple[int, ...] | None = None  # width of each stage
    blocks: tuple[int, ...] | None = None  # BasicBlocks per stage
    se: bool | None = None  # squeeze-and-excitation in every block
    dropout: float | None = None  # before the classifier
    init: str = field(default="kaiming_fan_out", metadata={"choices": INIT_MODES})  # conv weight init
    zero_init_residual: bool | None = None  # last BN of each residual branch at 0 (Goyal et al. 2017); None = preset's
    # data
    dataset: str = field(default="synthetic", metadata={"choices": DATASETS})
    val_size: int = 5000  # stratified hold-out of the training set
    split_seed: int = 0  # seed of the hold-out
    synthetic_size: int = 20000  # training pool of the synthetic set (hold-out included)
    # schedule and optimisation
    epochs: int = 200
    batch_size: int = 64
    optimizer: str = _choices(*OPTIMIZERS)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    lookahead_k: int = 5  # Lookahead: fast steps per slow update (Zhang et al. 2019)
    lookahead_alpha: float = 0.5  # Lookahead: slow-weights step size
    scheduler: str = _choices(*SCHEDULERS)
    milestones: tuple[int, ...] = (80, 120)  # epochs at which MultiStepLR multiplies lr by gamma
    gamma: float = 0.1
    warmup_epochs: int = 0  # linear LR warm-up over the first epochs, per step (Goyal et al. 2017); 0 = off
    label_smoothing: float = 0.0
    # augmentation (report: crop with 4-pixel padding, flip, rotation, colour jitter)
    augment: bool = True
    crop_padding: int = 4
    flip: bool = True
    rotation: float = 15.0  # degrees
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    # run
    seed: int = 0
    device: str = _choices(*DEVICES)
    channels_last: bool | str = _choices(*SWITCH)  # "auto": chosen per device (execution.choose_path)
    amp: bool | str = _choices(*SWITCH)  # bf16 autocast; "auto" as channels_last
    compile: str = field(default="auto", metadata={"choices": COMPILE_MODES, "aliases": COMPILE_ALIASES})
    eval_batch_size: int = 1024

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f, getattr(self, f.name)))
        self._check()

    # -- validation -------------------------------------------------------
    def _check(self):
        def bad(key, why):
            raise ConfigError(f"{key}: {why}")

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            # `in` alone would let 1 pass for True: a choice must also have its type
            if choices and not any(value == c and type(value) is type(c) for c in choices):
                bad(f.name, f"{_show(value, repr)} is not allowed; allowed: {', '.join(map(_show, choices))}")
        if self.model not in preset_names():
            bad("model", f"unknown preset {self.model!r}; allowed: {', '.join(preset_names())}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            bad("warmup_epochs", f"{self.warmup_epochs} must be in 0..epochs ({self.epochs})")
        for key in ("epochs", "batch_size", "val_size", "synthetic_size", "eval_batch_size", "lookahead_k"):
            if getattr(self, key) < 1:
                bad(key, f"{getattr(self, key)} must be >= 1")
        if not self.lr > 0:
            bad("lr", f"{self.lr} must be > 0")
        if self.weight_decay < 0:
            bad("weight_decay", f"{self.weight_decay} must be >= 0")
        if not 0 <= self.momentum < 1:
            bad("momentum", f"{self.momentum} must be in [0, 1)")
        if not 0 < self.gamma <= 1:
            bad("gamma", f"{self.gamma} must be in (0, 1]")
        if not 0 < self.lookahead_alpha <= 1:
            bad("lookahead_alpha", f"{self.lookahead_alpha} must be in (0, 1]")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", f"{self.label_smoothing} must be in [0, 1)")
        ms = self.milestones
        if self.scheduler == "multistep":
            if not ms or any(b <= a for a, b in zip(ms, ms[1:])) or ms[0] < 1:
                bad("milestones", f"{list(ms)} must be positive and strictly increasing")
            if ms[-1] > self.epochs:
                bad("milestones", f"{list(ms)} go beyond the {self.epochs} epochs")
        try:
            self.augment_config()
            self.model_config()
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None

    # -- derived ------------------------------------------------------------
    def model_config(self) -> ResNetConfig:
        return model_config(
            self.model,
            stem_channels=self.stem_channels,
            channels=self.channels,
            blocks=self.blocks,
            se=self.se,
            dropout=self.dropout,
            init=self.init,
            zero_init_residual=self.zero_init_residual,
        )

    def data_config(self) -> DataConfig:
        return DataConfig(**{k: getattr(self, k) for k in DATA_KEYS})

    def param_count(self) -> int:
        """Trainable parameters of the architecture (`hpsearch.models.param_count`)."""
        return param_count(self.model_config())

    def augment_config(self) -> AugmentConfig | None:
        if not self.augment:
            return None
        return AugmentConfig(
            crop_padding=self.crop_padding,
            flip=self.flip,
            rotation=self.rotation,
            brightness=self.brightness,
            contrast=self.contrast,
            saturation=self.saturation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r}; allowed: {', '.join(field_names())}"
            )
        return cls(**values)

    def replace(self, **changes) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def check_type(key: str, value) -> Any:
    """The value coerced to the field's type, or ConfigError naming the key."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == key)
    return _coerce(f, value)


def _show(v, text=str) -> str:
    """A value as the user writes it (TOML and --set spell booleans lower case)."""
    return str(v).lower() if isinstance(v, bool) else text(v)


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def field_type(name: str):
    """The annotated type of a TrainConfig field, as a runtime type object."""
    return _type_hints()[name]


@functools.cache
def _type_hints() -> dict[str, Any]:
    # Evaluated once: every TrainConfig checks each field's type against these,
    # and resolving the string annotations costs ~0.6 ms a call.
    return typing.get_type_hints(TrainConfig)


def field_kind(name: str) -> tuple[type, bool]:
    """(int, float, bool, str or tuple; optional?) of a TrainConfig field."""
    members, optional = _base_types(field_type(name))
    tp = members[0]
    return (tuple if typing.get_origin(tp) is tuple else tp), optional


def _base_types(tp) -> tuple[list, bool]:
    """(non-None member types, optional?) of an annotation such as `int | None`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _coerce(f: dataclasses.Field, value):
    """Check a value's type against the field's annotation (TOML and JSON give
    native types; strings from the command line go through `parse_value`)."""
    members, optional = _base_types(field_type(f.name))
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{f.name}: a value is required")
    aliases = f.metadata.get("aliases", {})
    if isinstance(value, (bool, str)) and value in aliases:
        value = aliases[value]
    if members == [bool, str]:  # a switch with "auto": the choices check does the rest
        if not isinstance(value, (bool, str)):
            raise ConfigError(f"{f.name}: {value!r} must be auto, true or false")
        return value
    tp = members[0]
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{f.name}: {value!r} must be a list of integers, e.g. [80, 120]")
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{f.name}: {value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{f.name}: {value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{f.name}: {value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{f.name}: {value!r} must be a string")
        return value
    raise TypeError(f"unsupported field type {tp!r}")  # a programming error, not user input


def parse_value(key: str, text: str):
    """Parse a command-line string (`--set KEY=VALUE`) into the field's type."""
    if key not in field_names():
        raise ConfigError(f"unknown key {key!r}; allowed: {', '.join(field_names())}")
    members, optional = _base_types(field_type(key))
    s = text.strip()
    if optional and s.lower() in ("none", "null", ""):
        return None
    tp = members[0]
    if members == [bool, str] and s.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return s  # "auto", or a bad word the choices check names
    try:
        if typing.get_origin(tp) is tuple:
            return [int(x) for x in s.strip("[]()").replace(" ", "").split(",") if x]
        if tp is bool:
            lowered = s.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(s)
        if tp is float:
            return float(s)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}.get(tp, "a list of integers")
        raise ConfigError(f"{key}: {text!r} must be {kind}") from None
    return s


def parse_assignments(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """`["lr=0.05", "milestones=10,15"]` -> `{"lr": 0.05, "milestones": [10, 15]}`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(key.strip(), value)
    return out


def scale_milestones(milestones, nominal_epochs: int, epochs: int) -> list[int]:
    """Scale LR milestones by epochs/nominal_epochs: rounded, at least 1, strictly
    increasing, so a 200-epoch schedule keeps its shape at a tenth of the cost.
    The one policy for every command: a scaled milestone that falls past the
    run's last epoch is dropped (it could never act), and if none is left the
    run keeps one at its last epoch (where it has no effect)."""
    out: list[int] = []
    for m in milestones:
        v = max(1, int(m * epochs / nominal_epochs + 0.5))  # half up, not banker's rounding
        if out and v <= out[-1]:
            v = out[-1] + 1
        out.append(v)
    return [m for m in out if m <= epochs] or [epochs]
