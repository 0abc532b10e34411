"""Progress bars and tables shared by the ``demo`` and ``batch`` subcommands (needs ``rich``, the cli extra).

Live bars are drawn only on a terminal. When the output is a file or a pipe they are switched off, and tables
are drawn with plain ASCII characters and no colour, so the output stays readable in logs: every command that
draws a table should get it from :func:`make_table` and its console from :func:`make_console`.

On a terminal, text is wrapped between words at its width (``soft_wrap=not console.is_terminal``): nothing is
left for the terminal to break mid-word; in a file or a pipe each message stays on one line. Rates and ETAs
are shown once they mean something (:func:`task_speed`), and below :data:`WIDE_LAYOUT_COLUMNS` columns the
counts of a task go on a line of their own.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, RenderableType
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
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .._batch import BatchProgress

__all__ = [
    "BatchProgressHook",
    "EtaColumn",
    "RateColumn",
    "ResultsProgress",
    "describe_counts",
    "make_console",
    "make_progress",
    "make_table",
    "task_speed",
]


class _Console(Console):
    """A rich console that reports a closed output pipe as ``BrokenPipeError``, for the command to stop cleanly
    and print its summary elsewhere (rich's own handling exits the process with status 1)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr); no syntax highlighting of numbers and paths in our own text."""
    return _Console(stderr=stderr, highlight=False)


#: Seconds a task runs before a rate and an ETA are shown: the first burst (a sliding window admits a whole
#: window's worth at once, preflight refusals are instant) says nothing about the pace that follows.
RATE_WARM_UP_S = 1.0
#: Below this terminal width the counts of a task go on a line of their own under the bars.
WIDE_LAYOUT_COLUMNS = 100


def task_speed(task: Task) -> float | None:
    """Items per second: the overall average once finished; while running, rich's moving estimate after a
    warm-up second. Never above the task's ``rate_cap`` field (the rate limit, when the caller knows it), also
    once finished: items that need no request (refused by preflight, answered at once) would otherwise lift
    the average of a short run above the limit the requests kept."""
    cap = task.fields.get("rate_cap")
    if task.finished:
        elapsed = task.finished_time or task.elapsed
        if not elapsed:
            return None
        speed = task.completed / elapsed
    else:
        elapsed = task.elapsed
        if elapsed is None or elapsed < RATE_WARM_UP_S or not task.completed:
            return None
        speed = task.speed or task.completed / elapsed
    if isinstance(cap, (int, float)) and cap > 0:
        speed = min(speed, float(cap))
    return speed


class RateColumn(ProgressColumn):
    """Items per second (see :func:`task_speed`); ``-.-/s`` until it means something."""

    def render(self, task: Task) -> Text:
        speed = task_speed(task)
        if speed is None:
            return Text("  -.-/s", style="progress.data.speed")
        return Text(f"{speed:5.1f}/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """``ETA mm:ss`` from :func:`task_speed` and what is left; ``ETA --:--`` until known, nothing once done."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        if task.finished or task.total is None:
            return Text("")
        speed = task_speed(task)
        if not speed:
            return Text("ETA --:--", style="progress.remaining")
        seconds = math.ceil(max(0.0, task.total - task.completed) / speed)  # 00:00 only once done
        minutes, secs = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
        return Text(f"ETA {clock}", style="progress.remaining")


class _FieldColumn(ProgressColumn):
    """The task's ``counts`` field (free text set by the caller), on wide terminals only."""

    def __init__(self, wide: Callable[[], bool]) -> None:
        super().__init__()
        self._wide = wide

    def render(self, task: Task) -> Text:
        if not self._wide():
            return Text("")
        text = Text(str(task.fields.get("counts", "")), style="progress.description")
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text


class _Progress(Progress):
    """On a narrow terminal, each task's counts go on a line of their own under the bars."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        live = getattr(self, "live", None)  # not there yet while Progress.__init__ runs
        if live is None or live.console.width >= WIDE_LAYOUT_COLUMNS:
            return
        for task in self.tasks:
            counts = str(task.fields.get("counts", ""))
            if counts and task.visible:
                line = Text(f"  {task.description}: {counts}", style="progress.description")
                line.no_wrap = True
                line.overflow = "ellipsis"
                yield line


def make_progress(console: Console) -> Progress:
    """A progress display with counts, rate, elapsed time and ETA; disabled when ``console`` is no terminal."""
    return _Progress(
        SpinnerColumn(finished_text="[green]✓[/]" if console.is_terminal else "+"),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        EtaColumn(),
        _FieldColumn(lambda: console.width >= WIDE_LAYOUT_COLUMNS),
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


class ResultsProgress:
    """A spinner with a count while verification results are awaited (``batch --wait``): ``results 12/40``,
    the rate and the elapsed time; nothing is drawn off a terminal (or without a console)::

        with ResultsProgress(console) as shown:
            async for result in results:
                shown.update(done, total)   # total: None while not known yet
    """

    def __init__(self, console: Console | None, description: str = "results") -> None:
        self._progress = make_progress(console) if console is not None else None
        self._description = description
        self._task: TaskID | None = None

    def __enter__(self) -> ResultsProgress:
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description, total=None)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def update(self, done: int, total: int | None) -> None:
        """``done`` results so far, of ``total`` (None: not known yet, the bar pulses)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)

    @property
    def task(self) -> Task | None:
        """The rich task (for tests and callers that draw it elsewhere); None without a console."""
        if self._progress is None or self._task is None:
            return None
        return self._progress.tasks[0]
