"""Ctrl-C and a closed output pipe (``| head``) stop ``batch`` and ``demo`` cleanly, with the run summary.

Real subprocesses: SIGINT is sent to the command itself (as a terminal sends it on Ctrl-C), and the pipe is
closed by the test reading stdout, as ``head -1`` would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROWS = 30


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from netverify_async.emulator._synthetic import generate_documents_sync

    folder = tmp_path_factory.mktemp("img")
    paths = []
    for doc in generate_documents_sync(4, seed=21, bad=0):
        path = folder / doc.front.name
        path.write_bytes(doc.front.data)
        paths.append(path)
    return paths


def manifest(folder: Path, images: list[Path], rows: int = ROWS) -> Path:
    lines = ["reference,front,country,id_type"]
    lines += [f"int-{i},{images[i % len(images)]},AUT,PASSPORT" for i in range(rows)]
    path = folder / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal_states(path: Path) -> dict[str, int]:
    with sqlite3.connect(str(path) + ".journal.sqlite3") as con:
        return dict(con.execute("select state, count(*) from items group by state").fetchall())


def start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.Popen(
        [sys.executable, "-m", "netverify_async", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def slow_emulator() -> Iterator[Any]:
    """Every submission takes 0.6 s to answer, so that some are in flight when the batch is stopped."""
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0, latency=0.6) as emu:
        yield emu


def test_ctrl_c_stops_a_batch_with_its_summary_and_a_rerun_resumes(
    slow_emulator: Any, images: list[Path], tmp_path: Path
) -> None:
    path = manifest(tmp_path, images)
    proc = start("batch", str(path), "--emulator", slow_emulator.base_url, "--rate-limit", "4/s")
    wait_for(lambda: slow_emulator.stats.scans_created >= 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert "Batch " in out and "receipt (sent now)" in out  # the summary table, not just "interrupted"
    assert "not reached" in out or "not sent" in out
    assert "stopping the batch" in err
    [note] = [line for line in err.splitlines() if line.startswith("interrupted: ")]
    assert "run the same command to resume" in note
    states = journal_states(path)
    assert states.get("receipt", 0) >= 3
    assert sum(states.values()) < ROWS  # stopped early: the rest was never read

    rerun = subprocess.run(
        [sys.executable, "-m", "netverify_async", "batch", str(path), "--emulator", slow_emulator.base_url,
         "--rate-limit", "none", "--json", "--resend-unknown"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    *_, summary_line = rerun.stdout.strip().splitlines()
    summary = json.loads(summary_line)
    assert summary["complete"] is True and summary["interrupted"] is None
    assert summary["counts"]["skipped_already_done"] == states["receipt"]
    assert journal_states(path).get("receipt") == ROWS


def test_a_closed_output_pipe_stops_the_batch_and_the_summary_goes_to_stderr(
    images: list[Path], tmp_path: Path
) -> None:
    from netverify_async.emulator import run_emulator_in_thread

    path = manifest(tmp_path, images)
    with run_emulator_in_thread(processing_delay=0.0) as emu:
        proc = start("batch", str(path), "--emulator", emu.base_url, "--rate-limit", "5/s", "--json")
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # like `| head -1`
        proc.stdout.close()
        err = proc.stderr.read() if proc.stderr is not None else ""
        proc.wait(timeout=60)
    assert first["type"] == "item" and first["status"] == "receipt"
    assert proc.returncode == 141
    assert "Traceback" not in err and "Broken pipe" not in err
    assert "Batch " in err  # the summary table, on stderr
    assert any(line.startswith("the output was closed: ") for line in err.splitlines())
    states = journal_states(path)
    assert states.get("receipt", 0) >= 1
    assert states.get("unknown", 0) <= 8  # at most the uploads in flight (--concurrency) when it stopped
    assert sum(states.values()) < ROWS


def test_ctrl_c_stops_the_demo_with_its_summary() -> None:
    proc = start("demo", "--size", "40", "--rate", "4/s")
    assert proc.stdout is not None
    lines: list[str] = []
    while not any("submitting" in line for line in lines):  # not a terminal: one line per phase
        line = proc.stdout.readline()
        assert line, "the demo ended early"
        lines.append(line)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = "".join(lines) + out
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert "stopping the demo" in err
    assert "Verification outcomes (from callbacks)" in out
    assert "interrupted while submitting" in out
    assert "problem: interrupted while submitting: the demo did not finish" in out


def test_a_closed_output_pipe_stops_the_demo_and_the_summary_goes_to_stderr() -> None:
    proc = start("demo", "--size", "40", "--rate", "4/s")
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("netverify-async demo")
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 141
    assert "Traceback" not in err and "Broken pipe" not in err
    assert "output closed while" in err  # the run table says where it stopped
