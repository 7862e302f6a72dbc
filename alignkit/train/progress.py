"""Progress bar for the training loop: steps, loss, tokens/s and ETA (rich).

Shown only on the main process, only when stderr is an interactive terminal and only when the
config asks for it; otherwise every method is a no-op, so the loop calls it unconditionally.

    >>> bar = TrainProgress(total_steps=10, enabled=False)   # non-TTY / disabled: does nothing
    >>> with bar:
    ...     bar.update(1, loss=2.5, tokens_per_s=1000.0)
    >>> bar.active
    False
"""
from __future__ import annotations

import sys
from typing import IO


def should_show(enabled: bool, is_main: bool, stream: IO | None = None) -> bool:
    """True only for the main process writing to an interactive terminal with progress on."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(enabled and is_main and callable(isatty) and isatty())


class TrainProgress:
    """A single rich progress bar over optimizer steps (context manager)."""

    def __init__(self, total_steps: int, *, enabled: bool = True, is_main: bool = True,
                 initial_step: int = 0, stream: IO | None = None):
        self.total_steps = total_steps
        self.initial_step = initial_step
        self.active = should_show(enabled, is_main, stream)
        self._stream = sys.stderr if stream is None else stream
        self._progress = None
        self._task = None

    def __enter__(self) -> "TrainProgress":
        if self.active:
            # Imported lazily: rich is only needed when a bar is actually drawn.
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(file=self._stream), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total_steps,
                                                 completed=self.initial_step, loss="-", tps="-")
        return self

    def update(self, step: int, *, loss: float | None = None,
               tokens_per_s: float | None = None) -> None:
        """Move the bar to ``step`` (1-based count of finished optimizer steps)."""
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tokens_per_s is not None:
            fields["tps"] = f"{tokens_per_s:,.0f}"
        self._progress.update(self._task, completed=step, **fields)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
