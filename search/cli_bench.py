"""Click commands of the bench part of hpsearch, registered on `hpsearch` by search/cli.py."""

from __future__ import annotations

COMMANDS: list = []
