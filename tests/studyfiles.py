"""The study-file skeleton every test starts from: a tiny grid on the
synthetic set that trains in seconds. Tests pass only what they change."""

from __future__ import annotations

import json


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
