"""Progress output: rich on a terminal, plain lines otherwise or with --quiet.

Everything a long command prints about epochs and trials goes through here,
so the CLI and the search loop never format progress themselves.
"""

from __future__ import annotations

import sys

from rich.console import Console


class Reporter:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        stream = stream or sys.stderr
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.fancy = self.console.is_terminal and not quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def always(self, message: str) -> None:
        self.console.print(message, markup=False)

    def epoch(self, record, total_epochs: int, prefix: str = "") -> None:
        if self.quiet:
            return
        r = record
        self.console.print(
            f"{prefix}epoch {r.epoch:>3}/{total_epochs}  loss {r.train_loss:.4f}  acc {r.train_acc:.4f}  "
            f"val_loss {r.val_loss:.4f}  val_acc {r.val_acc:.4f}  lr {r.lr:.3g}  {r.seconds:.1f}s",
            markup=False,
        )


class EpochPrinter:
    """A training callback that prints each epoch."""

    def __init__(self, reporter: Reporter, total_epochs: int, prefix: str = ""):
        self.reporter, self.total, self.prefix = reporter, total_epochs, prefix

    def on_epoch_end(self, record, state) -> None:
        self.reporter.epoch(record, self.total, self.prefix)


class StudyProgress:
    """Trials done and left, the epoch of the trial in flight, the best so far.

    On a terminal: two rich progress bars (trials, epochs). Otherwise (CI,
    logs, --quiet): one plain line per epoch and per finished trial.
    """

    def __init__(self, reporter: Reporter, study_name: str, total: int, direction: str = "maximize"):
        self.r = reporter
        self.name = study_name
        self.total = total
        self.done = 0
        self.best: tuple[float, int] | None = None
        self.maximize = direction == "maximize"
        self._progress = None
        if reporter.fancy:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=reporter.console, transient=False,
            )
            self._trials = self._progress.add_task(self._trial_text(), total=total)
            self._epochs = self._progress.add_task("epoch", total=1, visible=False)
            self._progress.start()

    def _best_text(self) -> str:
        return f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"

    def _trial_text(self) -> str:
        return f"{self.name}: trials ({self._best_text()})"

    def set_best(self, value: float | None, number: int | None) -> None:
        if value is not None:
            self.best = (value, number)

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False)
        else:
            self.r.info(message)

    def epoch_callback(self, trial_number: int, epochs: int) -> TrialEpochs:
        if self._progress is not None:
            self._progress.update(self._epochs, description=f"trial {trial_number} epoch", total=epochs,
                                  completed=0, visible=True)
        return TrialEpochs(self, trial_number, epochs)

    def epoch(self, trial_number: int, record, epochs: int) -> None:
        if self._progress is not None:
            self._progress.update(self._epochs, completed=record.epoch)
            return
        left = self.total - self.done
        self.r.info(
            f"trial {trial_number} epoch {record.epoch}/{epochs}  val_acc {record.val_acc:.4f}  "
            f"train_loss {record.train_loss:.4f}  {record.seconds:.1f}s  | {self.done} done, {left} left, "
            f"{self._best_text()}"
        )

    def trial_finished(self, number: int, state: str, value: float | None, detail: str = "") -> None:
        self.done += 1
        if value is not None and (self.best is None or (value > self.best[0]) == self.maximize):
            self.best = (value, number)
        shown = f" {value:.4f}" if value is not None else ""
        self.note(f"trial {number} {state}{shown}{(' - ' + detail) if detail else ''} "
                  f"[{self.done}/{self.total}, {self._best_text()}]")
        if self._progress is not None:
            self._progress.update(self._trials, completed=self.done, description=self._trial_text())

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class TrialEpochs:
    """Training callback: shows each epoch of one trial on a `StudyProgress`."""

    def __init__(self, progress: StudyProgress, trial_number: int, epochs: int):
        self.progress, self.trial_number, self.epochs = progress, trial_number, epochs

    def on_epoch_end(self, record, state) -> None:
        self.progress.epoch(self.trial_number, record, self.epochs)
