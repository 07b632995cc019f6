"""Study files (`studies/*.toml`): parsing, validation as a whole, and the
mapping from an Optuna trial to a `TrainConfig`.

A file has `[study]` (how to search), `[train]` (fixed `TrainConfig` values)
and `[space]` (searched values: a list is a categorical/grid axis, a table
`{low, high, log, step}` a range). Lists inside lists (LR milestones) are
encoded for Optuna as strings such as "100,150". A per-stage width is searched
as `channels_1`, `channels_2`, ... and combined into `channels`.
Every error names the file, the key and what is allowed; nothing is touched
in any store before the whole file has passed.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsearch.models import PARAM_BUDGET
from hpsearch.search.errors import UserError
from hpsearch.search.study.manifest import SHIPPED_STUDIES
from hpsearch.search.train.config import (
    DATA_KEYS,
    ConfigError,
    TrainConfig,
    check_type,
    field_kind,
    field_names,
    scale_milestones,
)

SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "schedule_halving")
METRICS = {"val_acc": "maximize", "val_loss": "minimize"}
STUDY_KEYS = {
    "name": str, "description": str, "direction": str, "metric": str, "sampler": str,
    "pruner": str, "pruner_options": dict, "n_trials": int, "budget": int, "seed": int,
    "share_prefix": bool, "common_seeds": bool,
}
# Where a trial runs, not what it computes: may differ between workers and resumes.
RUN_ONLY_KEYS = ("device",)
STAGE_KEY = re.compile(r"^channels_(\d+)$")


class SpecError(UserError):
    pass


@dataclass(frozen=True)
class Param:
    """One searched axis."""

    name: str  # Optuna's parameter name
    choices: tuple | None = None  # categorical (grid) values, native types
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    @property
    def bundle(self) -> bool:
        """A choice among tables of several fields (e.g. optimizer + schedule)."""
        return self.categorical and isinstance(self.choices[0], dict)

    def values_of(self, raw) -> dict[str, Any]:
        """TrainConfig values for an Optuna parameter value."""
        if self.bundle:
            return dict(next(c for c in self.choices if encode(c) == raw))
        return {self.name: decode(self.name, raw)}

    def encoded_choices(self) -> list:
        return [encode(v) for v in self.choices]

    def describe(self) -> str:
        if self.categorical:
            return "[" + ", ".join(str(encode(v)) for v in self.choices) + "]"
        return f"{self.low}..{self.high}" + (" log" if self.log else "") + (f" step {self.step}" if self.step else "")


def encode(value):
    """Optuna's categorical choices must be scalars: lists travel as "a,b",
    bundles (tables of several fields) as "key=value;key=value"."""
    if isinstance(value, dict):
        return ";".join(f"{k}={encode(v)}" for k, v in value.items())
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value


def decode(name: str, value):
    if isinstance(value, str) and _is_tuple_field(name):
        return [int(v) for v in value.split(",") if v]
    return value


def _is_tuple_field(name: str) -> bool:
    return name in field_names() and field_kind(name)[0] is tuple


@dataclass(frozen=True)
class StudySpec:
    path: Path
    name: str
    sampler: str
    pruner: str
    n_trials: int | None
    budget: int
    seed: int
    train: dict[str, Any]  # fixed TrainConfig values as written
    space: dict[str, Param]
    direction: str = "maximize"
    metric: str = "val_acc"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    share_prefix: bool = False  # grid cells that differ only from their first milestone train one trunk
    common_seeds: bool = False  # the cells of one trunk share a seed (implied by share_prefix)

    @property
    def nominal_epochs(self) -> int:
        return int(self.train.get("epochs", TrainConfig().epochs))

    def grid_size(self) -> int | None:
        if self.sampler != "grid":
            return None
        return math.prod(len(p.choices) for p in self.space.values()) if self.space else 1

    def search_space(self) -> dict[str, list]:
        """GridSampler's search space (encoded choices)."""
        return {name: p.encoded_choices() for name, p in self.space.items()}

    def size_text(self) -> str:
        if self.sampler == "grid":
            return f"{self.grid_size()} cells"
        return f"{self.n_trials} trials"

    def _searches(self, key: str) -> bool:
        return key in self.space or any(p.bundle and any(key in t for t in p.choices) for p in self.space.values())

    def _may_be_multistep(self, fixed: dict[str, Any]) -> bool:
        return fixed.get("scheduler", TrainConfig().scheduler) == "multistep" or self._searches("scheduler")

    # -- resolution ---------------------------------------------------------
    def resolve(self, overrides: dict[str, Any] | None = None, epochs: int | None = None) -> Resolved:
        """Fixed values after `--set` and `--epochs`; raises SpecError if they clash."""
        overrides = dict(overrides or {})
        where = f"{self.path}"
        bad = sorted(set(overrides) & set(self.space))
        if bad:
            raise SpecError(f"{where}: --set {bad[0]} is a searched key in [space]; only fixed [train] keys can be set")
        if "seed" in overrides:
            raise SpecError("--set seed: each trial's seed derives from the study's; use --seed")
        fixed = {**self.train, **overrides}
        nominal = self.nominal_epochs
        if epochs is not None:
            if epochs < 1:
                raise SpecError(f"--epochs {epochs}: must be >= 1")
            fixed["epochs"] = epochs
        target = int(fixed.get("epochs", nominal))
        defaults: dict[str, Any] = {}
        if "milestones" in fixed and "milestones" not in overrides and target != nominal:
            fixed["milestones"] = scale_milestones(fixed["milestones"], nominal, target)
        elif "milestones" not in fixed and not self._searches("milestones") and self._may_be_multistep(fixed):
            # The default milestones are written for TrainConfig's 200 epochs: a study
            # of another length (in [train] or by --epochs) scales them as --epochs does.
            base = TrainConfig()
            if target != base.epochs:
                defaults["milestones"] = list(base.milestones)
                fixed["milestones"] = scale_milestones(base.milestones, base.epochs, target)
        resolved = Resolved(self, fixed, nominal, target, defaults)
        resolved.validate()
        return resolved


@dataclass(frozen=True)
class Resolved:
    """A study spec with its fixed values settled for one invocation."""

    spec: StudySpec
    fixed: dict[str, Any]
    nominal_epochs: int
    epochs: int
    scaled_defaults: dict[str, Any] = field(default_factory=dict)  # nominal values of defaults scaled here

    @property
    def scale(self) -> bool:
        return self.epochs != self.nominal_epochs

    def identity(self) -> dict[str, Any]:
        """What must not change when a study is resumed (stored with the study)."""
        return {
            "fixed": {k: self.fixed[k] for k in sorted(self.fixed) if k not in RUN_ONLY_KEYS},
            "space": {k: p.describe() for k, p in sorted(self.spec.space.items())},
            "nominal_epochs": self.nominal_epochs,
            "budget": self.spec.budget,
        }

    def config_values(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(TrainConfig values, nominal values of scaled keys) for decoded trial params."""
        values = dict(self.fixed)
        nominal: dict[str, Any] = {}
        stages: dict[int, int] = {}
        searched: dict[str, Any] = {}
        for name, raw in params.items():
            m = STAGE_KEY.match(name)
            if m:
                stages[int(m.group(1))] = int(raw)
            else:
                searched.update(self.spec.space[name].values_of(raw))
        if stages:
            # Stages not searched keep the architecture's own widths.
            from hpsearch.models import model_config

            model = searched.get("model", values.get("model", TrainConfig().model))
            widths = list(values.get("channels") or model_config(model).channels)
            beyond = [i for i in stages if i > len(widths)]
            if beyond:
                raise ConfigError(f"channels_{beyond[0]}: {model} has {len(widths)} stages; "
                                  f"allowed: channels_1..channels_{len(widths)}")
            for i, width in stages.items():
                widths[i - 1] = width
            searched["channels"] = widths
        if "milestones" in searched and self.scale:
            nominal["milestones"] = list(searched["milestones"])
            searched["milestones"] = scale_milestones(searched["milestones"], self.nominal_epochs, self.epochs)
        elif "milestones" in self.fixed and self.scale:
            nominal["milestones"] = self.spec.train.get("milestones", list(TrainConfig().milestones))
        if self.scale:
            nominal["epochs"] = self.nominal_epochs
        nominal.update(self.scaled_defaults)
        values.update(searched)
        return values, nominal

    def data_config(self):
        """The study's data set and split (its `[train]` data keys; fixed per study)."""
        return TrainConfig.from_dict({k: v for k, v in self.fixed.items() if k in DATA_KEYS}).data_config()

    def config(self, params: dict[str, Any]) -> TrainConfig:
        return TrainConfig.from_dict(self.config_values(params)[0])

    def validate(self) -> None:
        """The fixed values with every single searched value (each choice, each
        range's ends; the other searched keys at their first value) must make a
        valid TrainConfig. Stage widths are also probed all-low and all-high."""
        where = str(self.spec.path)
        space = self.spec.space

        def first(p: Param, pick: int = 0):
            return encode(p.choices[pick]) if p.categorical else (p.low, p.high)[pick]

        baseline = {n: first(p) for n, p in space.items()}
        probes: list[dict[str, Any]] = [{}]
        for name, p in space.items():
            values = [encode(v) for v in p.choices] if p.categorical else [p.low, p.high]
            probes += [{name: v} for v in values]
        stages = [n for n in space if STAGE_KEY.match(n)]
        for pick in (0, -1):
            probes.append({n: first(space[n], pick) for n in stages})
        for probe in probes:
            try:
                self.config({**baseline, **probe})
            except ConfigError as e:
                raise SpecError(f"{where}: {self._section_of(str(e))}: {e}" + self._scaled_note(e)) from None

    def _section_of(self, message: str) -> str:
        """Where a bad value came from, by the key a ConfigError names first."""
        key = message.split(":")[0].strip()
        space = self.spec.space
        if key in space:
            return f"[space].{key}"
        if key == "channels" and any(STAGE_KEY.match(n) for n in space):
            return "[space].channels_*"
        for name, p in space.items():
            if p.bundle and any(key in t for t in p.choices):
                return f"[space].{name}"
        return "[train]"

    def _scaled_note(self, e) -> str:
        if self.scale and "milestones" in str(e):
            return f" (after scaling {self.nominal_epochs} -> {self.epochs} epochs)"
        return ""


# -- loading ------------------------------------------------------------------
def find_study_file(name_or_path: str, studies_dir: Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if not p.is_file():
            raise SpecError(f"study file {p} does not exist")
        return p
    candidate = studies_dir / f"{name_or_path}.toml"
    if not candidate.is_file() and not studies_dir.is_absolute():
        # Outside the project directory, fall back to the studies shipped with
        # the package (the checkout's studies/, or the installed wheel's).
        shipped = SHIPPED_STUDIES / f"{name_or_path}.toml"
        candidate = shipped if shipped.is_file() else candidate
    if not candidate.is_file():
        dirs = [studies_dir] + ([SHIPPED_STUDIES] if not studies_dir.is_absolute() else [])
        known = ", ".join(sorted({f.stem for d in dirs for f in d.glob("*.toml")})) or "none"
        raise SpecError(f"unknown study {name_or_path!r}: no {candidate}; known studies: {known}")
    return candidate


def load_spec(path: Path) -> StudySpec:
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML: {e}") from None
    except OSError as e:
        raise SpecError(f"{where}: cannot be read: {e.strerror}") from None
    unknown = sorted(set(doc) - {"study", "train", "space"})
    if unknown:
        raise SpecError(f"{where}: unknown section [{unknown[0]}]; allowed: [study], [train], [space]")
    for section in ("study", "train", "space"):
        if section in doc and not isinstance(doc[section], dict):
            raise SpecError(f"{where}: [{section}] must be a table")
    study = doc.get("study", {})
    for key, value in study.items():
        if key not in STUDY_KEYS:
            raise SpecError(f"{where}: unknown key [study].{key}; allowed: {', '.join(STUDY_KEYS)}")
        want = STUDY_KEYS[key]
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise SpecError(f"{where}: [study].{key} = {value!r} must be "
                            + ("true or false" if want is bool else want.__name__))

    def choice(key, allowed, default):
        v = study.get(key, default)
        if v not in allowed:
            raise SpecError(f"{where}: [study].{key} = {v!r} is not allowed; allowed: {', '.join(allowed)}")
        return v

    metric = choice("metric", tuple(METRICS), "val_acc")
    direction = choice("direction", ("maximize", "minimize"), METRICS[metric])
    if direction != METRICS[metric]:
        raise SpecError(f"{where}: [study].direction {direction!r} does not fit metric {metric!r}; use {METRICS[metric]!r}")
    sampler = choice("sampler", SAMPLERS, "tpe")
    pruner = choice("pruner", PRUNERS, "median")
    for key in ("n_trials", "budget"):
        if key in study and study[key] < 1:
            raise SpecError(f"{where}: [study].{key} = {study[key]} must be >= 1")
    if sampler != "grid" and "n_trials" not in study:
        raise SpecError(f"{where}: [study].n_trials is required for sampler {sampler!r}")

    train = doc.get("train", {})
    for key, value in train.items():
        if key == "seed":
            raise SpecError(f"{where}: [train].seed: each trial's seed derives from [study].seed (or --seed); "
                            f"set that instead, or search seeds in [space]")
        if key not in field_names():
            raise SpecError(f"{where}: unknown key [train].{key}; allowed: {', '.join(field_names())}")
        try:
            check_type(key, value)
        except ConfigError as e:
            raise SpecError(f"{where}: [train].{e}") from None
    space = {name: _param(where, name, value, sampler) for name, value in doc.get("space", {}).items()}
    bundled = {k for p in space.values() if p.bundle for t in p.choices for k in t}
    both = sorted((set(train) | set(space)) & bundled) or sorted(set(train) & set(space))
    if both:
        raise SpecError(f"{where}: {both[0]} is in both [train] and [space]; keep it in one")
    if sampler == "grid" and not space:
        raise SpecError(f"{where}: [space] is empty; the grid sampler needs at least one searched key with a "
                        f"list of values (e.g. lr = [0.1])")
    stages = sorted(int(STAGE_KEY.match(n).group(1)) for n in space if STAGE_KEY.match(n))
    if stages and stages[0] < 1:
        raise SpecError(f"{where}: [space].channels_0: stages are numbered from 1 (channels_1)")
    if stages and "channels" in train:
        raise SpecError(f"{where}: [train].channels and [space].channels_N both set the stage widths; keep one")

    spec = StudySpec(
        path=path,
        name=study.get("name", path.stem),
        sampler=sampler,
        pruner=pruner,
        pruner_options=study.get("pruner_options", {}),
        n_trials=study.get("n_trials"),
        budget=study.get("budget", PARAM_BUDGET),
        seed=study.get("seed", 0),
        train=train,
        space=space,
        direction=direction,
        metric=metric,
        description=study.get("description", ""),
        share_prefix=study.get("share_prefix", False),
        common_seeds=study.get("common_seeds", study.get("share_prefix", False)),
    )
    _check_schedule_options(where, spec)
    try:
        make_pruner(spec)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{where}: [study].pruner_options: {e}") from None
    return spec


def _check_schedule_options(where: str, spec: StudySpec) -> None:
    """Shared prefixes need a grid with common seeds; schedule-aware halving
    needs a multistep schedule in every cell (its rungs follow the milestones)."""
    if spec.share_prefix and spec.sampler != "grid":
        raise SpecError(f"{where}: [study].share_prefix needs sampler = \"grid\" (its cells form the trunks)")
    if spec.share_prefix and not spec.common_seeds:
        raise SpecError(f"{where}: [study].share_prefix needs common_seeds: the cells of a trunk train it "
                        f"once, so they share its seed")
    if spec.common_seeds and spec.sampler != "grid":
        raise SpecError(f"{where}: [study].common_seeds needs sampler = \"grid\"")
    if spec.pruner == "schedule_halving":
        scheduler = spec.train.get("scheduler", TrainConfig().scheduler)
        if scheduler != "multistep" or spec._searches("scheduler"):
            raise SpecError(f"{where}: [study].pruner = \"schedule_halving\" places its rungs after each "
                            f"cell's LR milestones; it needs [train].scheduler = \"multistep\" "
                            f"(found {scheduler!r}{', searched' if spec._searches('scheduler') else ''})")


def _param(where: str, name: str, value, sampler: str) -> Param:
    at = f"{where}: [space].{name}"
    stage = STAGE_KEY.match(name)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _bundle(at, name, value)
    if not stage and name not in field_names():
        raise SpecError(f"{at}: unknown key; allowed: {', '.join(field_names())}, channels_1..channels_K, "
                        f"or a list of tables (a bundle of fields chosen together)")
    if name in DATA_KEYS:
        raise SpecError(f"{at}: the data set and split are fixed per study; move it to [train]")
    base = int if stage else field_kind(name)[0]
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{at}: empty choice list; give at least one value")
        if len({repr(encode(v)) for v in value}) != len(value):
            raise SpecError(f"{at}: repeated choice in {value}")
        return Param(name, choices=tuple(tuple(v) if isinstance(v, list) else v for v in value))
    if isinstance(value, dict):
        if sampler == "grid":
            raise SpecError(f"{at}: the grid sampler needs a list of values, not a range")
        allowed = {"low", "high", "log", "step"}
        extra = sorted(set(value) - allowed)
        if extra:
            raise SpecError(f"{at}: unknown range key {extra[0]!r}; allowed: low, high, log, step")
        if base not in (int, float):
            raise SpecError(f"{at}: a range needs a numeric key; give a list of values instead")
        if "low" not in value or "high" not in value:
            raise SpecError(f"{at}: a range needs low and high")
        low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
        for k, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SpecError(f"{at}: {k} = {v!r} must be a number")
            if base is int and not float(v).is_integer():
                raise SpecError(f"{at}: {k} = {v!r} must be an integer")
        if not isinstance(log, bool):
            raise SpecError(f"{at}: log = {log!r} must be true or false")
        if not low < high:
            raise SpecError(f"{at}: low {low} must be < high {high}")
        if log and low <= 0:
            raise SpecError(f"{at}: a log range needs low > 0 (got {low})")
        if log and step is not None:
            raise SpecError(f"{at}: log and step cannot be combined")
        if step is not None and step <= 0:
            raise SpecError(f"{at}: step {step} must be > 0")
        return Param(name, low=low, high=high, log=log, step=step, integer=base is int)
    raise SpecError(f"{at}: {value!r} must be a list of values or a table {{low, high, log}}")


def _bundle(at: str, name: str, tables: list[dict]) -> Param:
    if name in field_names():
        raise SpecError(f"{at}: a list of tables needs a name that is not a [train] key (e.g. recipe)")
    for table in tables:
        for key, v in table.items():
            if key not in field_names() or key in DATA_KEYS:
                raise SpecError(f"{at}: unknown key {key!r} in a table; allowed: {', '.join(field_names())}")
            if isinstance(v, dict):
                raise SpecError(f"{at}.{key}: a bundle holds plain values, not ranges")
    if len({encode(t) for t in tables}) != len(tables):
        raise SpecError(f"{at}: repeated table")
    return Param(name, choices=tuple(tables))


def cell_key(params: dict[str, Any]) -> tuple:
    """A grid cell's identity: its Optuna params (encoded, so hashable)."""
    return tuple(sorted(params.items()))


def suggest(trial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for every searched value (Optuna's encoding)."""
    params = {}
    for name, p in spec.space.items():
        if p.categorical:
            params[name] = trial.suggest_categorical(name, p.encoded_choices())
        elif p.integer:
            params[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            params[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
    return params


def make_sampler(spec: StudySpec, seed: int | None = None, picks_cells: bool = False):
    """The study's sampler; `picks_cells`: this process enqueues the grid's
    cells itself (`run --fuse`), as it always does with shared prefixes."""
    import optuna

    seed = spec.seed if seed is None else seed
    if spec.share_prefix or (picks_cells and spec.sampler == "grid"):
        # Cells are chosen by `prefix.SharedPrefixes.next_cell` (or
        # `fusion.pick_cells`) and enqueued with their values, so no sampler
        # picks them; GridSampler's after_trial expects grid ids of its own on
        # every trial, which enqueued ones lack.
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(spec.search_space(), seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(spec: StudySpec):
    import optuna

    o = dict(spec.pruner_options)
    p = optuna.pruners
    if spec.pruner == "none":
        if o:
            raise ValueError("pruner 'none' takes no options")
        return p.NopPruner()
    if spec.pruner == "median":
        return p.MedianPruner(**o)
    if spec.pruner == "percentile":
        return p.PercentilePruner(**{"percentile": 25.0, **o})
    if spec.pruner == "successive_halving":
        return p.SuccessiveHalvingPruner(**o)
    if spec.pruner == "schedule_halving":
        from hpsearch.search.study.halving import ScheduleHalvingPruner

        return ScheduleHalvingPruner(**o)
    return p.HyperbandPruner(**{"min_resource": 1, "max_resource": "auto", **o})
