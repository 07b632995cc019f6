"""The study-file skeleton every test starts from: a tiny grid on the
synthetic set that trains in seconds. Tests pass only what they change."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import optuna


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def study_toml(*, study: dict | None = None, train: dict | None = None, space: dict | None = None) -> str:
    """TOML text: the skeleton's [study], [train] and [space] updated with the
    given tables (a value None removes the skeleton's key)."""
    sections = {
        "study": {"sampler": "grid", "pruner": "none", **(study or {})},
        "train": {"model": "resnet-tiny", "dataset": "synthetic", "synthetic_size": 300, "val_size": 100,
                  "epochs": 2, "scheduler": "none", **(train or {})},
        "space": {"lr": [0.1]} if space is None else space,
    }
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def study_trials(storage, name):
    """The study's trials, or [] until the run has made its store and study.
    A SQLite store is first looked at read-only: opening it through Optuna
    makes the tables, which would race the run making them."""
    if storage.startswith("sqlite:///"):
        db = Path(storage.removeprefix("sqlite:///"))
        if not db.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
                if not c.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone():
                    return []
        except sqlite3.OperationalError:  # no tables yet
            return []
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:  # the study is not made yet
        return []
    except Exception as e:  # a server store whose tables the run is still making
        if storage.startswith("sqlite:///"):
            raise
        print(f"store not ready yet: {type(e).__name__}")
        return []
