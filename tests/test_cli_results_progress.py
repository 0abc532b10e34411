"""The progress shown while results are awaited, and the rate of a finished bar."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.progress import Task

from netverify_async.cli._progress import ResultsProgress, task_speed

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_results_progress_counts_up_to_a_total_learnt_late() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    with ResultsProgress(console, "waiting for results") as shown:
        task = shown.task
        assert task is not None and task.total is None  # not known yet: the bar pulses
        shown.update(2, None)
        console.print(shown._progress.get_renderable())  # type: ignore[union-attr]
        shown.update(5, 7)
        now = shown.task
        assert now is not None and (now.completed, now.total) == (5, 7)
        console.print(shown._progress.get_renderable())  # type: ignore[union-attr]
    text = ANSI.sub("", out.getvalue())
    assert "waiting for results" in text and "2/?" in text and "5/7" in text


def test_results_progress_without_a_console_or_off_a_terminal_draws_nothing() -> None:
    with ResultsProgress(None) as shown:
        shown.update(1, 1)
        assert shown.task is None
    out = io.StringIO()
    with ResultsProgress(Console(file=out, width=80)) as shown:  # a file, not a terminal
        shown.update(3, 3)
    assert out.getvalue() == ""


def test_a_finished_bar_never_shows_more_than_the_rate_limit() -> None:
    # 24 items in 2.3 s, four of them refused at once by preflight: the average is above the limit of 10/s
    clock = _Clock()
    t = Task(0, "submitting", 24, completed=24, _get_time=clock, fields={"rate_cap": 10.0})  # type: ignore[arg-type]
    t.start_time, t.finished_time = 0.0, 2.3
    assert task_speed(t) == 10.0
    uncapped = Task(1, "results", 24, completed=24, _get_time=clock, fields={})  # type: ignore[arg-type]
    uncapped.start_time, uncapped.finished_time = 0.0, 2.0
    assert task_speed(uncapped) == 12.0
