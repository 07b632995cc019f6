"""SIGTERM handled like Ctrl-C, so that `kill`, a scheduler's stop or a
container shutdown leaves the stores as tidy as an interrupt does."""

from __future__ import annotations

import contextlib
import signal


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
