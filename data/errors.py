"""The one exception type for user-facing data problems."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem the user can fix: one line saying what is wrong, where
    (the path) and what is allowed or expected. The CLI prints ``str(e)`` and
    exits non-zero, so messages must never span lines."""

    def __init__(self, message: str):
        # Messages may embed text from outside (exception reasons, file names):
        # fold them onto one line so the CLI contract holds.
        super().__init__(" ".join(str(message).split()))
