"""The batch worker is killed with SIGKILL during its uploads, then run again: no reference gets two scans.

Both the emulator and the worker are separate processes. The emulator answers the first three submissions at
once and holds the next two for a minute (after creating their scans), so with two uploads at a time the kill
lands, every time, while exactly two uploads are in flight: their outcome is unknown to the worker.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import pytest
from _support import stop_process

from netverify_async import JournalState, SqliteJournal

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
    pytest.mark.slow,
]

WORKER = Path(__file__).with_name("_batch_worker.py")
COUNT = 10
REFS = [f"crash-{i:04d}" for i in range(COUNT)]
STEP_TIMEOUT_S = 60.0


class LineReader:
    """Lines of a child's stdout, read by a thread so that waiting for one can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = STEP_TIMEOUT_S) -> str | None:
        return self._lines.get(timeout=timeout)


@pytest.fixture
def emulator() -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netverify_async.emulator",
            "--port",
            "0",
            "--processing-delay",
            "0",
            "--fault-sequence",
            "ok,ok,ok,slow,slow",
            "--slow-seconds",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = LineReader(process.stdout).next()
        assert first is not None and first.startswith("listening on "), first
        yield first.split()[-1].strip()
    finally:
        stop_process(process, timeout=10)


def admin(base_url: str, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
    answer = httpx.request(method, f"{base_url}/__emulator/{name}", json=body, timeout=10, trust_env=False)
    answer.raise_for_status()
    return answer.json()


def start_worker(base_url: str, journal: Path, backend: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            "--base-url",
            base_url,
            "--journal",
            str(journal),
            "--count",
            str(COUNT),
            "--concurrency",
            "2",
            "--backend",
            backend,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_worker(base_url: str, journal: Path, backend: str) -> tuple[dict[str, str], dict[str, Any]]:
    process = start_worker(base_url, journal, backend)
    out, _ = process.communicate(timeout=STEP_TIMEOUT_S)
    assert process.returncode == 0
    outcomes: dict[str, str] = {}
    summary: dict[str, Any] = {}
    for line in out.splitlines():
        record = json.loads(line)
        if "summary" in record:
            summary = record["summary"]
        else:
            assert record["ref"] not in outcomes, "two outcomes for one reference"
            outcomes[record["ref"]] = record["status"]
    return outcomes, summary


def scans_by_reference(base_url: str) -> dict[str, list[str]]:
    return dict(admin(base_url, "GET", "stats")["scansByMerchantReference"])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigkill_during_uploads_then_rerun(emulator: str, tmp_path: Path, backend: str) -> None:
    journal = tmp_path / "crash.journal"

    # run 1: killed while two uploads hang
    worker = start_worker(emulator, journal, backend)
    assert worker.stdout is not None
    lines = LineReader(worker.stdout)
    receipts_before_kill: set[str] = set()
    while len(receipts_before_kill) < 3:
        line = lines.next()
        assert line is not None, "the worker ended early"
        record = json.loads(line)
        assert record["status"] == "receipt"
        receipts_before_kill.add(record["ref"])
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while admin(emulator, "GET", "stats")["faultsInjected"].get("slow", 0) < 2:
        assert time.monotonic() < deadline, "the two slow uploads never reached the emulator"
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=STEP_TIMEOUT_S) == -signal.SIGKILL

    scans = scans_by_reference(emulator)
    in_flight_at_kill = set(scans) - receipts_before_kill
    assert len(in_flight_at_kill) == 2
    assert all(len(v) == 1 for v in scans.values())

    async def journal_view() -> tuple[dict[str, JournalState], list[str]]:
        async with SqliteJournal(journal) as j:
            return await j.states(), await j.unknown()

    states, unknown = anyio.run(journal_view)
    assert set(unknown) == in_flight_at_kill  # written as "sent" before the upload, never finished
    assert all(states[ref] is JournalState.RECEIPT for ref in receipts_before_kill)

    # run 2: the server behaves again; only what has no receipt and no unknown outcome is sent
    admin(emulator, "DELETE", "faults")
    outcomes, summary = run_worker(emulator, journal, backend)
    assert set(outcomes) == set(REFS)
    assert {r for r, s in outcomes.items() if s == "skipped_already_done"} == receipts_before_kill
    assert {r for r, s in outcomes.items() if s == "skipped_unknown"} == in_flight_at_kill
    assert {r for r, s in outcomes.items() if s == "receipt"} == set(
        REFS
    ) - receipts_before_kill - in_flight_at_kill
    assert summary["status"] == "completed"
    scans = scans_by_reference(emulator)
    assert {ref: len(v) for ref, v in scans.items()} == dict.fromkeys(REFS, 1)

    # reconcile from the server's records; run 3 then has nothing to send
    async def reconcile() -> list[str]:
        async with SqliteJournal(journal) as j:
            for ref in await j.unknown():
                await j.mark_reconciled(ref, scans[ref][0] if ref in scans else None)
            return await j.unknown()

    assert anyio.run(reconcile) == []
    requests_before = admin(emulator, "GET", "stats")["requests"]
    outcomes, _ = run_worker(emulator, journal, backend)
    assert set(outcomes.values()) == {"skipped_already_done"}
    assert admin(emulator, "GET", "stats")["requests"] == requests_before
