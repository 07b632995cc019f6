"""User-facing errors: one line, a non-zero exit, no traceback (unless --debug).

Each package raises its own ValueError subclass with a one-line message; the
CLI maps all of them (and click's usage errors) to exit code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input discovered by the search layer (study files, stores, options)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from hpsearch.data import DataError
    from hpsearch.models import UnknownPreset
    from hpsearch.search.train.checkpoint import CheckpointError
    from hpsearch.search.train.config import ConfigError

    return (UserError, ConfigError, DataError, UnknownPreset, CheckpointError)
