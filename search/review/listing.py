"""Tables the CLI prints: presets, study files, trials."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hpsearch.models import PRESETS, fits_budget, model_config, param_count
from hpsearch.search.keys import TrialAttr
from hpsearch.search.study.compute import describe, spent


def model_rows() -> list[dict]:
    rows = []
    for name, preset in PRESETS.items():
        n = param_count(model_config(name))
        n_se = param_count(model_config(name, se=True))
        rows.append({
            "name": name,
            "params": n,
            "fits": fits_budget(n),
            "params_se": n_se,
            "fits_se": fits_budget(n_se),
            "description": preset.description,
        })
    return rows


def print_table(title: str, columns: list[str], rows: list[list], stream=None) -> None:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[Text(str(v)) for v in r])  # Text: no rich markup in values like [80, 120]
    Console(file=stream or sys.stdout, width=220 if not sys.stdout.isatty() else None).print(table)


def study_rows(studies_dir) -> tuple[list[list], list[list]]:
    """(a row per study file, a row per grid study with its compute before it
    is spent: epochs full / with shared prefixes / with halving, and the time
    at the bench's measured speed)."""
    from hpsearch.search.study.spec import SpecError, load_spec

    rows, compute = [], []
    for path in sorted(studies_dir.glob("*.toml")):
        try:
            spec = load_spec(path)
            if spec.sampler == "grid":
                compute.append([spec.name, *describe(spec.resolve())])
        except SpecError as e:  # one bad file is shown with its reason; the others are still listed
            rows.append([path.stem, "-", "-", "-", "-", "-", "-", "-", f"INVALID: {e}"])
            continue
        t = spec.train
        model = t.get("model") or (spec.space["model"].describe() if "model" in spec.space else "resnet-seed")
        rows.append([spec.name, spec.sampler, spec.pruner, spec.size_text(), f"{spec.budget:,}",
                     t.get("dataset", "synthetic"), model, spec.nominal_epochs, spec.description])
    return rows, compute


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number,
            "state": "DUPLICATE" if t.user_attrs.get(TrialAttr.DUPLICATE) else t.state.name,
            "value": t.value,
            "params": t.params,
            "param_count": t.user_attrs.get(TrialAttr.PARAM_COUNT),
            "best_val_acc": t.user_attrs.get(TrialAttr.BEST_VAL_ACC),
            "epochs": t.user_attrs.get(TrialAttr.EPOCHS_RUN, len(t.intermediate_values)),
            "seconds": seconds,
            "reason": t.user_attrs.get(TrialAttr.PRUNE_REASON) or t.user_attrs.get(TrialAttr.FAIL_REASON),
            "mlflow_run_id": t.user_attrs.get(TrialAttr.MLFLOW_RUN_ID),
        })
    return rows


def print_status(study_name: str, storage: str | None, as_json: bool = False) -> None:
    import json

    from hpsearch.search.study.stores import load_existing_study

    study = load_existing_study(study_name, storage)
    rows = trial_rows(study)
    represented, trained = spent(study.get_trials(deepcopy=False))
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if as_json:
        print(json.dumps({"study": study_name, "trials": rows, "best": best.number if best else None,
                          "epochs_represented": represented, "epochs_trained": trained}, indent=2, default=str))
        return

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print_table(
        f"Study {study_name}: {len(rows)} trials",
        ["#", "state", "params", "param count", "best val acc", "epochs", "time (s)", "note"],
        [[r["number"], r["state"], ", ".join(f"{k}={v}" for k, v in r["params"].items()),
          fmt(r["param_count"], ","), fmt(r["best_val_acc"], ".4f"), r["epochs"], fmt(r["seconds"], ".1f"),
          (r["reason"] or "")[:60]] for r in rows],
    )
    print(f"epochs: {trained:,} trained for {represented:,} represented in the trials' curves")
    if best is not None:
        print(f"best trial {best.number}: {study.directions[0].name.lower()} value {best.value:.4f}, "
              f"{best.user_attrs.get('param_count', 0):,} parameters, params {best.params}, "
              f"MLflow run {best.user_attrs.get('mlflow_run_id')}")
    else:
        print("no completed trial yet")
