"""The SQLite submission journal on real files: states, durability, locking, reconciliation, threads."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from netverify_async import (
    BadRequestError,
    JournalError,
    RateLimitedError,
    RequestValidationError,
    ScanReceipt,
    ValidationIssue,
)
from netverify_async._journal import JournalState, SqliteJournal, open_journal

RECEIPT = ScanReceipt(
    scan_reference="scan-1", timestamp=dt.datetime(2024, 5, 1, 12, 0, 0, 123000, dt.timezone.utc)
)


def raw_rows(path: Path) -> dict[str, tuple[str, int]]:
    """What another process sees in the file right now (a separate connection)."""
    with sqlite3.connect(path) as conn:
        return {
            ref: (state, sends) for ref, state, sends in conn.execute("SELECT ref, state, sends FROM items")
        }


@pytest.mark.anyio
async def test_an_item_moves_through_the_states(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        assert await journal.begin_item("ref-1") is None
        assert (await journal.get("ref-1")).state is JournalState.PENDING  # type: ignore[union-attr]
        await journal.mark_sent("ref-1")
        entry = await journal.get("ref-1")
        assert entry is not None and entry.state is JournalState.SENT and entry.sends == 1
        await journal.mark_receipt("ref-1", RECEIPT)
        entry = await journal.begin_item("ref-1")
        assert entry is not None and entry.state is JournalState.RECEIPT
        assert entry.receipt == RECEIPT
        assert entry.sends == 1


@pytest.mark.anyio
async def test_failures_keep_only_the_error_type_code_and_retry_flag(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_sent("bad")
        await journal.mark_failed("bad", BadRequestError("performNetverify: Bad Request", status_code=400))
        await journal.mark_failed("limited", RateLimitedError("rate limited", status_code=429, retry_after=3))
        invalid = RequestValidationError([ValidationIssue("country", "invalid_country", "not ISO 3166")])
        await journal.mark_failed("invalid", invalid)
        bad, limited, inv = [await journal.get(ref) for ref in ("bad", "limited", "invalid")]
    assert bad is not None and (bad.state, bad.error_type, bad.error_code) == (
        JournalState.FAILED,
        "BadRequestError",
        "400",
    )
    assert limited is not None and limited.safe_to_retry is True and limited.error_code == "429"
    assert inv is not None and inv.error_code == "invalid_country" and inv.safe_to_retry is True


@pytest.mark.anyio
async def test_sent_is_on_disk_before_mark_sent_returns(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.begin_item("a")
        await journal.begin_item("b")
        await journal.mark_sent("a")
        # another connection (another process, after a crash) already sees it, before the journal is closed
        assert raw_rows(path)["a"] == ("sent", 1)


@pytest.mark.anyio
async def test_counts_states_and_unknown(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        for ref in ("p", "s", "r", "f", "u1", "u2"):
            await journal.begin_item(ref)
        await journal.mark_sent("s")
        await journal.mark_receipt("r", RECEIPT)
        await journal.mark_failed("f", BadRequestError("x", status_code=400))
        await journal.mark_unknown(["u1", "u2"], "ReadError")
        counts = await journal.counts()
        states = await journal.states()
        unknown = await journal.unknown()
        unknown_entries = await journal.entries(JournalState.UNKNOWN)
    assert counts == {
        JournalState.PENDING: 1,
        JournalState.SENT: 1,
        JournalState.RECEIPT: 1,
        JournalState.FAILED: 1,
        JournalState.UNKNOWN: 2,
    }
    assert states["p"] is JournalState.PENDING and states["u2"] is JournalState.UNKNOWN
    assert unknown == ["s", "u1", "u2"]  # "sent" after a crash is just as unknown
    assert [e.error_type for e in unknown_entries] == ["ReadError", "ReadError"]


@pytest.mark.anyio
async def test_reconciling_unknown_outcomes(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_sent("created")
        await journal.mark_unknown(["created", "lost"], "ReadError")
        found = await journal.mark_reconciled("created", "scan-77")
        assert found.state is JournalState.RECEIPT and found.scan_reference == "scan-77"
        assert found.reconciled_at is not None and found.receipt is None  # no Jumio timestamp given
        not_created = await journal.mark_reconciled("lost", None)
        assert not_created.state is JournalState.PENDING
        assert await journal.unknown() == []
        with pytest.raises(JournalError, match="only 'sent' or 'unknown'"):
            await journal.mark_reconciled("created", "scan-78")  # would hide a receipt
        with pytest.raises(JournalError, match="no such"):
            await journal.mark_reconciled("never-seen", None)
        with pytest.raises(JournalError, match="timezone-aware"):
            await journal.mark_reconciled("lost", "s", timestamp=dt.datetime(2024, 1, 1))


@pytest.mark.anyio
async def test_states_survive_reopening_and_pending_rows_are_committed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.begin_item("only-pending")
        await journal.mark_receipt("done", RECEIPT)
    async with SqliteJournal(path) as journal:
        assert await journal.states() == {"only-pending": JournalState.PENDING, "done": JournalState.RECEIPT}


@pytest.mark.anyio
async def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        assert journal._conn is not None
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file


@pytest.mark.anyio
async def test_sqlite_never_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    threads: set[int] = set()
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        assert journal._conn is not None
        journal._conn.set_trace_callback(lambda statement: threads.add(threading.get_ident()))
        await journal.begin_item("a")
        await journal.mark_sent("a")
        await journal.mark_receipt("a", RECEIPT)
        await journal.states()
    assert threads and threading.get_ident() not in threads


@pytest.mark.anyio
async def test_one_batch_at_a_time_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as first, SqliteJournal(path) as second:
        await first.start_run()
        with pytest.raises(JournalError, match="another running batch"):
            await second.start_run()
        await first.finish_run("completed", {"receipt": 0})
        await second.start_run()
        await second.finish_run("completed", {"receipt": 0})
        runs = await first.runs()
    assert [run["status"] for run in runs] == ["completed", "completed"]
    assert runs[0]["counts"] == {"receipt": 0}


@pytest.mark.anyio
async def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-journal"
    path.write_bytes(b"this is not sqlite at all, just text" * 100)
    journal = SqliteJournal(path)
    with pytest.raises(JournalError, match="not a usable journal"):
        await journal.open()
    await journal.aclose()


def test_open_journal_accepts_paths_objects_and_none(tmp_path: Path) -> None:
    from_path, owned = open_journal(tmp_path / "x.sqlite")
    assert isinstance(from_path, SqliteJournal) and owned
    given = SqliteJournal(tmp_path / "y.sqlite")
    assert open_journal(given) == (given, False)
    assert open_journal(None) == (None, False)
    with pytest.raises(JournalError, match="expected a path"):
        open_journal(42)  # type: ignore[arg-type]


CRASHING_WRITER = """
import os, signal, sys, anyio
from netverify_async._journal import SqliteJournal

async def main():
    journal = SqliteJournal(sys.argv[1])
    await journal.start_run()
    await journal.begin_item("in-flight")
    await journal.begin_item("never-sent")
    await journal.mark_sent("in-flight")
    os.kill(os.getpid(), signal.SIGKILL)  # dies with the journal open and the run unfinished

anyio.run(main)
"""


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_killed_writer_leaves_sent_rows_and_releases_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    result = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], timeout=60, check=False)
    assert result.returncode == -signal.SIGKILL
    async with SqliteJournal(path) as journal:
        assert await journal.unknown() == ["in-flight"]
        never_sent = await journal.get("never-sent")  # its pending row was committed with the "sent" one
        assert never_sent is not None and never_sent.state is JournalState.PENDING
        runs = await journal.runs()
        assert runs[-1]["status"] == "running" and runs[-1]["finished_at"] is None
        await journal.start_run()  # the OS dropped the dead process's lock
        await journal.finish_run("completed", {})
    assert os.path.exists(str(path) + ".lock")
