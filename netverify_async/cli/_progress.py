"""Progress bars and tables shared by the ``demo`` and ``batch`` subcommands (needs ``rich``, the cli extra).

Live bars are drawn only on a terminal. When the output is a file or a pipe they are switched off, and tables
are drawn with plain ASCII characters and no colour, so the output stays readable in logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .._batch import BatchProgress

__all__ = [
    "BatchProgressHook",
    "RateColumn",
    "describe_counts",
    "make_console",
    "make_progress",
    "make_table",
]


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr); no syntax highlighting of numbers and paths in our own text."""
    return Console(stderr=stderr, highlight=False)


class RateColumn(ProgressColumn):
    """Items per second: rich's moving estimate while running, the overall average once finished."""

    def render(self, task: Task) -> Text:
        if task.finished and task.finished_time:
            speed: float | None = task.completed / task.finished_time
        else:
            speed = task.speed
        if speed is None:
            return Text("  -.-/s", style="progress.data.speed")
        return Text(f"{speed:5.1f}/s", style="progress.data.speed")


class _FieldColumn(ProgressColumn):
    """The task's ``counts`` field (free text set by the caller)."""

    def render(self, task: Task) -> Text:
        text = Text(str(task.fields.get("counts", "")), style="progress.description")
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text


def make_progress(console: Console) -> Progress:
    """A progress display with counts, rate, elapsed time and ETA; disabled when ``console`` is no terminal."""
    return Progress(
        SpinnerColumn(finished_text="[green]✓[/]" if console.is_terminal else "+"),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(compact=True),
        _FieldColumn(),
        console=console,
        disable=not console.is_terminal,
        refresh_per_second=8,
        speed_estimate_period=10.0,
    )


def make_table(console: Console, title: str | None = None, **options: Any) -> Table:
    """A table that looks good on a terminal and stays plain ASCII without colour in a file or a pipe."""
    if console.is_terminal:
        return Table(title=title, title_justify="left", box=box.ROUNDED, **options)
    return Table(title=title, title_justify="left", box=box.ASCII, safe_box=True, **options)


def describe_counts(progress: BatchProgress, *, invalid: int = 0) -> str:
    """A short line of what happened so far: receipts, problems, retries and 429s (only non-zero ones)."""
    parts = [f"ok {progress.receipts}"]
    for label, value in (
        ("done before", progress.skipped),
        ("refused", progress.preflight_rejected),
        ("invalid", progress.invalid + invalid),
        ("failed", progress.failed),
        ("unknown", progress.unknown),
        ("retries", progress.retries),
        ("429s", progress.throttled),
    ):
        if value:
            parts.append(f"{label} {value}")
    return " · ".join(parts)


class BatchProgressHook:
    """An ``on_progress`` hook for ``submit_many`` that moves one task of a :class:`Progress`.

    ``extra`` returns outcomes produced outside the batch (manifest rows refused before submission), which
    count towards the total too.
    """

    def __init__(self, progress: Progress, task: TaskID, *, extra: Callable[[], int] | None = None) -> None:
        self.progress = progress
        self.task = task
        self._extra = extra or (lambda: 0)
        self.last: BatchProgress | None = None

    def __call__(self, snapshot: BatchProgress) -> None:
        self.last = snapshot
        self.refresh()

    def refresh(self) -> None:
        """Redraw from the last snapshot (e.g. after an outcome produced outside the batch)."""
        extra = self._extra()
        if self.last is None:
            self.progress.update(self.task, completed=extra)
            return
        self.progress.update(
            self.task,
            completed=self.last.completed + extra,
            counts=describe_counts(self.last, invalid=extra),
        )
