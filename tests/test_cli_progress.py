"""What the ``demo`` and ``batch`` commands draw: rates and ETAs that mean something, lines that fit the
terminal (80 and 120 columns), and the demo's summary in edge cases."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Task

from netverify_async.cli._progress import (
    RATE_WARM_UP_S,
    EtaColumn,
    RateColumn,
    make_progress,
    make_table,
    task_speed,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def task(completed: float, total: float, elapsed: float, **fields: Any) -> Task:
    """A rich Task that has run ``elapsed`` seconds and done ``completed`` in one early burst."""
    clock = _Clock()
    t = Task(0, "submitting", total, completed=0, _get_time=clock, fields=fields)  # type: ignore[arg-type]
    t.start_time = 0.0
    clock.now = 0.05
    t._progress.append(type("Sample", (), {"timestamp": 0.0, "completed": 0})())  # type: ignore[arg-type]
    t._progress.append(type("Sample", (), {"timestamp": 0.05, "completed": completed})())  # type: ignore[arg-type]
    t.completed = completed
    clock.now = elapsed
    return t


def rendered(column: Any, t: Task) -> str:
    return str(column.render(t))


def test_no_rate_or_eta_before_the_warm_up() -> None:
    early = task(completed=12, total=200, elapsed=RATE_WARM_UP_S / 2, rate_cap=10.0)
    assert task_speed(early) is None
    assert rendered(RateColumn(), early).strip() == "-.-/s"
    assert rendered(EtaColumn(), early) == "ETA --:--"


def test_the_first_burst_never_shows_above_the_rate_limit() -> None:
    # 12 done at once (a sliding window admits a whole window's worth), then measured at 1.5 s
    burst = task(completed=12, total=200, elapsed=1.5, rate_cap=10.0)
    assert task_speed(burst) == 10.0
    assert rendered(RateColumn(), burst).strip() == "10.0/s"
    assert rendered(EtaColumn(), burst) == "ETA 00:19"  # 188 left at 10/s, not "00:01"


def test_without_a_known_limit_the_measured_rate_is_shown() -> None:
    t = task(completed=30, total=60, elapsed=3.0)
    assert task_speed(t) is not None and task_speed(t) > 10  # type: ignore[operator]


def test_a_finished_bar_shows_its_average_and_no_eta() -> None:
    done = task(completed=40, total=40, elapsed=4.0, rate_cap=10.0)
    done.finished_time = 4.0
    assert rendered(RateColumn(), done).strip() == "10.0/s"
    assert rendered(EtaColumn(), done) == ""


def _progress_lines(width: int) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    progress = make_progress(console)
    bar = progress.add_task("submitting", total=200, rate_cap=10.0)
    counts = "ok 36 · refused 4 · retries 2 · 429s 1"
    progress.update(bar, completed=40, counts=counts)
    console.print(progress.get_renderable())
    return [ANSI.sub("", line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("width", [80, 120])
def test_the_counts_are_shown_whole_at_80_and_120_columns(width: int) -> None:
    lines = _progress_lines(width)
    assert all(len(line) <= width for line in lines), lines
    text = "\n".join(lines)
    assert "ok 36 · refused 4 · retries 2 · 429s 1" in text
    assert "…" not in text
    if width >= 100:
        assert len(lines) == 1  # one line per task on a wide terminal
    else:
        assert lines[1].strip() == "submitting: ok 36 · refused 4 · retries 2 · 429s 1"


def test_tables_are_ascii_without_colour_off_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)  # not a terminal
    table = make_table(console, "t")
    table.add_column("a")
    table.add_row("b")
    console.print(table)
    assert out.getvalue().isascii()
    assert "+--" in out.getvalue()


# -- the demo drawn on a real terminal (a pseudo-terminal of 80 and 120 columns) ------------------------------


def demo_on_a_terminal(width: int, *args: str) -> tuple[int, str]:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES") and not k.startswith("NETVERIFY_")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "netverify_async", "demo", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=90)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("width", [80, 120])
def test_the_demo_fits_the_terminal_and_its_rates_respect_the_limit(width: int) -> None:
    status, raw = demo_on_a_terminal(width, "--size", "24", "--rate", "10/s", "--seed", "3")
    assert status == 0, raw
    segments = [ANSI.sub("", part) for part in re.split(r"[\r\n]+", raw)]
    too_long = [s for s in segments if len(s) > width]
    assert not too_long, too_long  # nothing is left for the terminal to break mid-word
    text = "\n".join(segments)
    # the footer and the header wrap between words: rejoined, each reads as written
    flat = " ".join(text.split())
    assert "repeated ones would): that is why the achieved rate stays below the limit" in flat
    assert "(4 defective), rate limit 10/s, concurrency 8, seed 3" in flat
    rates = [float(r) for s in segments if "submitting" in s for r in re.findall(r"(\d+\.\d)/s", s)]
    assert rates and max(rates) <= 10.0, rates  # the first burst does not show as 200/s
    assert "ETA 00:00" not in text  # a finished bar shows no ETA
    assert "demo OK" in text


def test_a_demo_of_defective_documents_only_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    result = subprocess.run(
        [sys.executable, "-m", "netverify_async", "demo", "--size", "4", "--bad", "10"],
        capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0.00 receipts/s" not in result.stdout
    assert re.search(r"achieved rate\s*\|\s*- \(limit 10/s\)", result.stdout)
    assert "demo OK: every defective document was refused by preflight" in result.stdout
    assert "every good document got a receipt" not in result.stdout
