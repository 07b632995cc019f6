"""Where a trial's time goes outside its epochs.

The objective carries a stopwatch and times its own sections with it, or
hands it objects (the tracker, the trial, its callbacks) to wrap. By default
the stopwatch is `OFF` and measures nothing; `hpsearch bench --only overhead`
passes a real one. Time is exclusive: a timed call inside another counts
once, in its own category. Only the training thread is timed: the epoch
checkpoint write and its MLflow record run on a background thread.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import defaultdict
from typing import Any


class Stopwatch:
    def __init__(self):
        self.by_trial: dict[int, dict[str, float]] = {}
        self._current: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []

    def start_trial(self, number: int) -> None:
        self._current = self.by_trial.setdefault(number, defaultdict(float))

    @contextlib.contextmanager
    def section(self, category: str):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        start = time.perf_counter()
        self._stack.append(0.0)
        try:
            yield
        finally:
            total = time.perf_counter() - start
            nested = self._stack.pop()
            self._current[category] += total - nested
            if self._stack:
                self._stack[-1] += total

    def wrap(self, obj: Any, category: str) -> Any:
        """`obj` with every method call timed under `category`."""
        return _Timed(obj, self, category)


class _Timed:
    """A proxy whose method calls run inside `stopwatch.section(category)`."""

    def __init__(self, obj: Any, stopwatch: Stopwatch, category: str):
        self._obj, self._stopwatch, self._category = obj, stopwatch, category

    def __getattr__(self, name: str):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def timed(*args, **kwargs):
            with self._stopwatch.section(self._category):
                return attr(*args, **kwargs)

        return timed


class _Off:
    """The default: sections cost nothing and objects pass through unwrapped."""

    def start_trial(self, number: int) -> None:
        return None

    def section(self, category: str):
        return contextlib.nullcontext()

    def wrap(self, obj: Any, category: str) -> Any:
        return obj


OFF = _Off()
