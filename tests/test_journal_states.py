"""The SQLite submission journal on real files: states, durability, locking, reconciliation, threads."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from netverify_async import (
    BadRequestError,
    JournalError,
    JournalState,
    RateLimitedError,
    RequestValidationError,
    ScanReceipt,
    SqliteJournal,
    ValidationIssue,
)
from netverify_async._journal import SCHEMA_VERSION, open_journal
from netverify_async.callbacks import parse_callback

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
        await journal.begin_item("a")  # committed without its own sync...
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # ...and FULL again after it
        assert not journal._conn.in_transaction  # nothing left open for a receiver to wait on
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


# ---------------------------------------------------------------------------------------------------------
# Owner-only files

PRIVATE_FILES = ("j.sqlite", "j.sqlite-wal", "j.sqlite-shm", "j.sqlite.lock")


def file_modes(directory: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.name.startswith("j.sqlite")
    }


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
async def test_new_journal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual default, which would give 0644
    try:
        async with SqliteJournal(tmp_path / "j.sqlite") as journal:
            await journal.start_run()
            await journal.begin_item("a")
            await journal.mark_sent("a")
            modes = file_modes(tmp_path)  # while the -wal and -shm files exist
            await journal.finish_run("completed", {})
    finally:
        os.umask(old_umask)
    assert set(modes) == set(PRIVATE_FILES)
    assert modes == dict.fromkeys(PRIVATE_FILES, 0o600)


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
async def test_an_existing_journal_keeps_its_mode(tmp_path: Path) -> None:
    """A journal shared on purpose (a receiver running as another user of the group) is not changed."""
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.begin_item("a")
    path.chmod(0o640)
    async with SqliteJournal(path) as journal:
        await journal.mark_sent("a")
        modes = file_modes(tmp_path)
    assert modes["j.sqlite"] == 0o640 and modes["j.sqlite-wal"] == 0o640


# ---------------------------------------------------------------------------------------------------------
# Layout upgrades

LAYOUT_1 = """
CREATE TABLE items (
    ref TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'receipt', 'failed', 'unknown')),
    scan_reference TEXT, receipt_timestamp TEXT, error_type TEXT, error_code TEXT, safe_to_retry INTEGER,
    sends INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, reconciled_at TEXT
) WITHOUT ROWID;
CREATE INDEX items_by_state ON items (state);
CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
                   counts TEXT);
INSERT INTO items VALUES ('done', 'receipt', 'scan-1', '2024-05-01T12:00:00.123Z', NULL, NULL, NULL, 1,
                          '2024-05-01T11:59:00.000Z', '2024-05-01T12:00:01.000Z', NULL);
INSERT INTO items VALUES ('lost', 'unknown', NULL, NULL, 'ReadError', NULL, 0, 1,
                          '2024-05-01T11:59:00.000Z', '2024-05-01T12:00:02.000Z', NULL);
INSERT INTO items VALUES ('found', 'receipt', 'scan-9', NULL, NULL, NULL, NULL, 1,
                          '2024-05-01T11:59:00.000Z', '2024-05-01T12:00:03.000Z', '2024-05-01T12:00:03.000Z');
INSERT INTO items VALUES ('later', 'pending', NULL, NULL, NULL, NULL, NULL, 0,
                          '2024-05-01T11:59:00.000Z', '2024-05-01T11:59:00.000Z', NULL);
INSERT INTO runs VALUES (1, '2024-05-01T11:58:00.000Z', '2024-05-01T12:01:00.000Z', 'completed', '{"receipt": 2}');
"""


def make_layout_1(path: Path, version: int = 1) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(LAYOUT_1)
        conn.execute(f"PRAGMA user_version={version}")
    conn.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


@pytest.mark.anyio
@pytest.mark.parametrize("version", [1, 0], ids=["layout-1", "layout-1-unversioned"])
async def test_a_layout_1_journal_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite"
    make_layout_1(path, version)
    async with SqliteJournal(path) as journal:
        states = await journal.states()
        done, lost, found = [await journal.get(ref) for ref in ("done", "lost", "found")]
        runs = await journal.runs()
        # the upgraded journal learns from callbacks like a new one
        learnt = await journal.record_callback(
            parse_callback(
                "jumioIdScanReference=scan-2&merchantIdScanReference=lost&verificationStatus=NO_ID_UPLOADED"
            )
        )
    assert user_version(path) == SCHEMA_VERSION == 2
    assert states == {
        "done": JournalState.RECEIPT,
        "lost": JournalState.UNKNOWN,
        "found": JournalState.RECEIPT,
        "later": JournalState.PENDING,
    }
    assert done is not None and done.receipt == RECEIPT and done.scan_references == ("scan-1",)
    assert done.sends == 1 and not done.duplicate_scan and done.last_sent_at is None
    assert found is not None and found.scan_references == ("scan-9",) and found.reconciled_at is not None
    assert lost is not None and lost.scans == () and lost.error_type == "ReadError"
    assert runs[0]["counts"] == {"receipt": 2}
    assert learnt.effect.value == "settled"


@pytest.mark.anyio
async def test_upgrading_is_idempotent_and_safe_when_several_open_at_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_layout_1(path)
    journals = [SqliteJournal(path) for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for journal in journals:
                tg.start_soon(journal.open)  # four connections race to upgrade the same file
        entries = [await journal.entries() for journal in journals]
    finally:
        for journal in journals:
            await journal.aclose()
    async with SqliteJournal(path) as journal:  # opening an upgraded journal again changes nothing
        again = await journal.entries()
    assert all(e == entries[0] for e in entries) and again == entries[0]
    assert [e.scan_references for e in again] == [("scan-1",), ("scan-9",), (), ()]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM scans").fetchone()[0] == 2
    conn.close()


@pytest.mark.anyio
async def test_a_journal_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    journal = SqliteJournal(path)
    with pytest.raises(JournalError, match="layout version 99"):
        await journal.open()
    await journal.aclose()
    assert user_version(path) == 99


@pytest.mark.anyio
async def test_a_pending_row_that_cannot_be_written_leaves_full_sync_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """begin_item commits without a sync of its own; if that write fails, later writes must still sync."""
    import netverify_async._journal as journal_module

    monkeypatch.setattr(journal_module, "_BUSY_TIMEOUT_S", 0.1)
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.open()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(JournalError, match="locked"):
                await journal.begin_item("a")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert journal._conn is not None and not journal._conn.in_transaction
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert await journal.begin_item("a") is None  # and the journal works on
    assert raw_rows(path) == {"a": ("pending", 0)}
