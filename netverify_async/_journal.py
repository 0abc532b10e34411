"""The submission journal: a crash-safe record of what a batch sent, so that a re-run never sends twice.

Each ``merchantIdScanReference`` of a batch has one row and moves through these states:

============  ==========================================================================  ===================
state         meaning                                                                     on a re-run
============  ==========================================================================  ===================
``pending``   read from the input, not sent yet (or reconciled as "no scan was created")  sent
``sent``      the upload was about to start; written and synced *before* the first byte   skipped (unknown)
              leaves, so after a crash it means "may have created a scan"
``receipt``   Jumio answered with a scan reference (kept, with Jumio's timestamp)          skipped (done)
``failed``    definitely no scan was created: refused before sending (preflight), or      sent again
              answered with an error that proves the request was not processed
``unknown``   sent, but the answer was lost (timeout, dropped connection, 5xx, or the     skipped (unknown)
              batch was cancelled while it was in flight)
============  ==========================================================================  ===================

Every ``failed`` item is resent on a re-run, permanent errors included: the batch records ``failed`` only for
failures that cannot have created a scan (ambiguous failures are ``unknown``), so resending never makes a
duplicate; a request that Jumio refused for good (a 400 or 403) fails again at the cost of one request.
``sent`` and ``unknown`` items are resent only with ``resend_unknown=True``; otherwise they are reported as
``SKIPPED_UNKNOWN`` and listed by :meth:`SqliteJournal.unknown`, for you to reconcile (the Customer Portal,
the callbacks, your own records) and record with :meth:`SqliteJournal.mark_reconciled`.

The journal stores only references, states, Jumio scan references, error type names and codes, counts and
timestamps: never request bodies, images, names, numbers or addresses.

:class:`SqliteJournal` keeps it in a SQLite file (WAL mode, ``synchronous=FULL``). Every sqlite call runs in a
worker thread on one connection guarded by a lock, so the event loop never waits on the disk. ``FULL`` makes
each commit reach the disk before the call returns: a ``sent`` row survives a power cut, not only a killed
process (with ``NORMAL`` in WAL mode the last commits can be lost in a power cut, and a lost ``sent`` row
would let a re-run create a duplicate, billed scan). The cost is one fsync per upload, small beside it.
Rows of new ``pending`` items are not synced on their own: a lost ``pending`` row means the same as no row.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
import attrs

from ._convert import format_timestamp, parse_timestamp
from ._errors import FailureKind, JournalError, PreflightError, RequestValidationError, failure_kind
from ._models import ScanReceipt

__all__ = ["Journal", "JournalEntry", "JournalState", "SqliteJournal", "open_journal"]

_T = TypeVar("_T")

#: Version of the table layout, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1
#: Seconds a connection waits for a lock held by another connection before failing.
_BUSY_TIMEOUT_S = 10.0


class JournalState(str, enum.Enum):
    """Where one merchant reference stands (see the module docstring)."""

    PENDING = "pending"
    SENT = "sent"
    RECEIPT = "receipt"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def outcome_unknown(self) -> bool:
        """True for ``sent`` and ``unknown``: a scan may or may not exist."""
        return self in (JournalState.SENT, JournalState.UNKNOWN)


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def _parse_iso(text: str | None) -> _dt.datetime | None:
    return None if text is None else parse_timestamp(text)


@attrs.frozen
class JournalEntry:
    """The journal's row for one merchant reference. Holds no personal data."""

    merchant_id_scan_reference: str
    state: JournalState
    #: Jumio's scan reference, once known (from a receipt or from reconciliation).
    scan_reference: str | None = None
    #: Jumio's timestamp from the receipt (None when the scan reference came from reconciliation).
    receipt_timestamp: _dt.datetime | None = None
    #: Class name of the error of a ``failed`` or ``unknown`` item, e.g. ``BadRequestError``.
    error_type: str | None = None
    #: A short machine code for that error: the HTTP status, or the broken rules (``too_small``).
    error_code: str | None = None
    #: Whether the error proves that nothing was processed (for ``failed`` items).
    safe_to_retry: bool | None = None
    #: How many times the item was handed to the API over all runs.
    sends: int = 0
    updated_at: _dt.datetime | None = None
    #: When :meth:`SqliteJournal.mark_reconciled` settled an unknown outcome.
    reconciled_at: _dt.datetime | None = None

    @property
    def receipt(self) -> ScanReceipt | None:
        """The receipt, when the journal has both Jumio's scan reference and its timestamp."""
        if self.scan_reference is None or self.receipt_timestamp is None:
            return None
        return ScanReceipt(scan_reference=self.scan_reference, timestamp=self.receipt_timestamp)


def error_code_of(error: BaseException) -> str | None:
    """A short, non-personal code for an error: HTTP status, or the codes of the broken rules."""
    if isinstance(error, PreflightError):
        report = getattr(error, "report", None)
        issues = getattr(report, "errors", ()) or ()
        codes = sorted({str(getattr(issue, "code", "")) for issue in issues} - {""})
        return ",".join(codes) or None
    if isinstance(error, RequestValidationError):
        return ",".join(sorted(error.codes)) or None
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return str(status)
    return None


def _safe_to_retry(error: BaseException) -> bool:
    return failure_kind(error) is not FailureKind.AMBIGUOUS


@runtime_checkable
class Journal(Protocol):
    """What a batch needs from a journal. :class:`SqliteJournal` is the implementation shipped with the
    library; another store (a database table, say) can be used by implementing these coroutines."""

    async def start_run(self) -> None:
        """Called once when a batch starts; may refuse (:class:`~netverify_async.JournalError`) when another
        batch is using the journal."""

    async def finish_run(self, status: str, counts: Mapping[str, int]) -> None:
        """Called once when the batch ends (completed, cancelled or failed), with its counts."""

    async def begin_item(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry from earlier runs (None if none); records the reference as ``pending`` when it is new."""

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        """Durably record that the upload is about to start. Must not return before the record is safe."""

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: ScanReceipt) -> None:
        """Record Jumio's receipt."""

    async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        """Record a failure that certainly created no scan."""

    async def mark_unknown(self, merchant_id_scan_references: Iterable[str], error_type: str) -> None:
        """Record that these uploads may or may not have created a scan."""


def _row_to_entry(row: tuple[Any, ...]) -> JournalEntry:
    ref, state, scan_ref, receipt_ts, error_type, error_code, safe, sends, updated, reconciled = row
    return JournalEntry(
        merchant_id_scan_reference=ref,
        state=JournalState(state),
        scan_reference=scan_ref,
        receipt_timestamp=_parse_iso(receipt_ts),
        error_type=error_type,
        error_code=error_code,
        safe_to_retry=None if safe is None else bool(safe),
        sends=sends,
        updated_at=_parse_iso(updated),
        reconciled_at=_parse_iso(reconciled),
    )


_SELECT_ENTRIES = (
    "SELECT ref, state, scan_reference, receipt_timestamp, error_type, error_code, safe_to_retry, sends, "
    "updated_at, reconciled_at FROM items"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    ref TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s.value) for s in JournalState)})),
    scan_reference TEXT,
    receipt_timestamp TEXT,
    error_type TEXT,
    error_code TEXT,
    safe_to_retry INTEGER,
    sends INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    reconciled_at TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_state ON items (state);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    counts TEXT
);
"""


class _FileLock:
    """An exclusive, non-blocking advisory lock on ``path`` that the OS drops when the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self) -> bool:
        fh = open(self.path, "a+b")  # kept open while the lock is held
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()


class SqliteJournal:
    """A journal in a SQLite file; see the module docstring for the states and the durability choice.

    Use one journal file per batch of references; only one batch at a time may use it (a second one gets
    :class:`~netverify_async.JournalError`; the lock is an OS file lock on ``<path>.lock``, released even when
    the process is killed). Close it with :meth:`aclose` or ``async with``; a batch that opened the journal
    from a path closes it itself::

        async with SqliteJournal("batch.journal") as journal:
            async with client.submit_many(requests, journal=journal) as batch:
                async for outcome in batch:
                    ...
            print(await journal.counts())
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._file_lock = _FileLock(self.path + ".lock")
        self._run_id: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteJournal(path={self.path!r})"

    # -- plumbing --------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise JournalError("the journal is closed")
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {self.path!r}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"the journal {self.path!r} cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise JournalError(
                    f"the journal {self.path!r} has layout version {version}; "
                    f"this library reads {SCHEMA_VERSION}"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"{self.path!r} is not a usable journal: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _locked(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            conn = self._connect()
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise JournalError(f"journal {self.path!r}: {type(exc).__name__}: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        # Not abandoned on cancellation: a write that started always finishes before the caller moves on.
        return await anyio.to_thread.run_sync(self._locked, fn)

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    @staticmethod
    def _ensure_transaction(conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> SqliteJournal:
        """Open (and create if needed) the file now instead of at the first use."""
        await self._run(lambda conn: None)
        return self

    async def __aenter__(self) -> SqliteJournal:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _close_sync(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._closed = True
            try:
                if conn is not None:
                    try:
                        self._commit(conn)
                    finally:
                        conn.close()
            finally:
                self._file_lock.release()

    async def aclose(self) -> None:
        """Commit what is left and close the file (and the batch lock, if held). Idempotent."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_sync)

    # -- the batch's side ------------------------------------------------------------------------------------

    async def start_run(self) -> None:
        """Take the journal's lock and record the start of a batch."""

        def start(conn: sqlite3.Connection) -> None:
            if self._run_id is not None:
                raise JournalError("this journal is already used by a running batch")
            if not self._file_lock.acquire():
                raise JournalError(
                    f"the journal {self.path!r} is used by another running batch "
                    "(one batch at a time per journal)"
                )
            try:
                cursor = conn.execute(
                    "INSERT INTO runs (started_at, status) VALUES (?, 'running')", (_iso(_utcnow()),)
                )
                self._run_id = cursor.lastrowid
            except BaseException:
                self._file_lock.release()
                raise

        await self._run(start)

    async def finish_run(self, status: str, counts: Mapping[str, int]) -> None:
        """Record how the batch ended, commit everything and release the lock."""
        payload = json.dumps({str(k): int(v) for k, v in counts.items()}, sort_keys=True)

        def finish(conn: sqlite3.Connection) -> None:
            try:
                self._ensure_transaction(conn)
                if self._run_id is not None:
                    conn.execute(
                        "UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                        (_iso(_utcnow()), status, payload, self._run_id),
                    )
                self._commit(conn)
            finally:
                self._run_id = None
                self._file_lock.release()

        await self._run(finish)

    async def begin_item(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry left by earlier runs, or None; a new reference is recorded as ``pending``.

        The insert of a new reference joins an open transaction that the next durable write commits: losing
        it in a crash loses nothing (no row and ``pending`` mean the same).
        """
        ref = merchant_id_scan_reference

        def begin(conn: sqlite3.Connection) -> JournalEntry | None:
            row = conn.execute(_SELECT_ENTRIES + " WHERE ref = ?", (ref,)).fetchone()
            if row is not None:
                return _row_to_entry(row)
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.execute(
                "INSERT INTO items (ref, state, created_at, updated_at) VALUES (?, 'pending', ?, ?)",
                (ref, now, now),
            )
            return None

        return await self._run(begin)

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        """Record, durably, that the upload is about to start (committed and synced before returning)."""
        ref = merchant_id_scan_reference

        def sent(conn: sqlite3.Connection) -> None:
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.execute(
                "INSERT INTO items (ref, state, sends, created_at, updated_at) VALUES (?, 'sent', 1, ?, ?) "
                "ON CONFLICT (ref) DO UPDATE SET state = 'sent', sends = sends + 1, "
                "updated_at = excluded.updated_at, error_type = NULL, error_code = NULL, "
                "safe_to_retry = NULL",
                (ref, now, now),
            )
            self._commit(conn)

        await self._run(sent)

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: ScanReceipt) -> None:
        """Record Jumio's receipt (scan reference and timestamp)."""
        ref = merchant_id_scan_reference
        scan_ref, timestamp = receipt.scan_reference, _iso(receipt.timestamp)

        def done(conn: sqlite3.Connection) -> None:
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.execute(
                "INSERT INTO items (ref, state, scan_reference, receipt_timestamp, created_at, updated_at) "
                "VALUES (?, 'receipt', ?, ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET state = 'receipt', "
                "scan_reference = excluded.scan_reference, receipt_timestamp = excluded.receipt_timestamp, "
                "error_type = NULL, error_code = NULL, safe_to_retry = NULL, "
                "updated_at = excluded.updated_at",
                (ref, scan_ref, timestamp, now, now),
            )
            self._commit(conn)

        await self._run(done)

    async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        """Record a failure that created no scan: the error's class name, code and ``safe_to_retry``."""
        ref = merchant_id_scan_reference
        values = (type(error).__name__, error_code_of(error), int(_safe_to_retry(error)))

        def failed(conn: sqlite3.Connection) -> None:
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.execute(
                "INSERT INTO items "
                "(ref, state, error_type, error_code, safe_to_retry, created_at, updated_at) "
                "VALUES (?, 'failed', ?, ?, ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET state = 'failed', "
                "error_type = excluded.error_type, error_code = excluded.error_code, "
                "safe_to_retry = excluded.safe_to_retry, updated_at = excluded.updated_at",
                (ref, *values, now, now),
            )
            self._commit(conn)

        await self._run(failed)

    async def mark_unknown(self, merchant_id_scan_references: Iterable[str], error_type: str) -> None:
        """Record that these uploads may have created a scan (one transaction for all of them)."""
        refs = list(merchant_id_scan_references)
        if not refs:
            return

        def unknown(conn: sqlite3.Connection) -> None:
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.executemany(
                "INSERT INTO items (ref, state, error_type, created_at, updated_at) "
                "VALUES (?, 'unknown', ?, ?, ?) "
                "ON CONFLICT (ref) DO UPDATE SET state = 'unknown', error_type = excluded.error_type, "
                "error_code = NULL, safe_to_retry = 0, updated_at = excluded.updated_at",
                [(ref, error_type, now, now) for ref in refs],
            )
            self._commit(conn)

        await self._run(unknown)

    # -- inspection and reconciliation -----------------------------------------------------------------------

    async def get(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry of one reference, or None."""
        ref = merchant_id_scan_reference
        row = await self._run(
            lambda conn: conn.execute(_SELECT_ENTRIES + " WHERE ref = ?", (ref,)).fetchone()
        )
        return None if row is None else _row_to_entry(row)

    async def entries(self, state: JournalState | str | None = None) -> list[JournalEntry]:
        """Every entry (or those in ``state``), ordered by reference."""
        args: tuple[str, ...]
        if state is None:
            query, args = _SELECT_ENTRIES + " ORDER BY ref", ()
        else:
            query = _SELECT_ENTRIES + " WHERE state = ? ORDER BY ref"
            args = (JournalState(state).value,)
        rows = await self._run(lambda conn: conn.execute(query, args).fetchall())
        return [_row_to_entry(row) for row in rows]

    async def states(self) -> dict[str, JournalState]:
        """``{merchant reference: state}`` for every reference in the journal."""
        rows = await self._run(lambda conn: conn.execute("SELECT ref, state FROM items").fetchall())
        return {ref: JournalState(state) for ref, state in rows}

    async def counts(self) -> dict[JournalState, int]:
        """How many references are in each state (every state present, zeros included)."""
        rows = await self._run(
            lambda conn: conn.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall()
        )
        found = {JournalState(state): count for state, count in rows}
        return {state: found.get(state, 0) for state in JournalState}

    async def unknown(self) -> list[str]:
        """References whose outcome is unknown (``sent`` or ``unknown``): reconcile them before resending."""
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT ref FROM items WHERE state IN ('sent', 'unknown') ORDER BY ref"
            ).fetchall()
        )
        return [ref for (ref,) in rows]

    async def runs(self) -> list[dict[str, Any]]:
        """The batches recorded so far, oldest first: ``started_at``, ``finished_at``, ``status``, ``counts``.

        A run whose status is still ``running`` was killed (or is running now).
        """
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT id, started_at, finished_at, status, counts FROM runs ORDER BY id"
            ).fetchall()
        )
        return [
            {
                "id": run_id,
                "started_at": _parse_iso(started),
                "finished_at": _parse_iso(finished),
                "status": status,
                "counts": json.loads(counts) if counts else None,
            }
            for run_id, started, finished, status, counts in rows
        ]

    async def mark_reconciled(
        self,
        merchant_id_scan_reference: str,
        scan_reference: str | None,
        *,
        timestamp: _dt.datetime | None = None,
    ) -> JournalEntry:
        """Settle an unknown outcome once you know what happened at Jumio.

        ``scan_reference`` is the scan that the lost request created: the item becomes ``receipt`` and is
        never sent again (pass Jumio's ``timestamp`` too if you have it). ``None`` says that no scan was
        created: the item goes back to ``pending`` and the next run sends it. Only ``sent`` and ``unknown``
        items can be reconciled (:class:`~netverify_async.JournalError` otherwise).
        """
        ref = merchant_id_scan_reference
        if scan_reference is not None and (not isinstance(scan_reference, str) or not scan_reference.strip()):
            raise JournalError("mark_reconciled: scan_reference must be a non-empty string or None")
        if timestamp is not None and timestamp.tzinfo is None:
            raise JournalError("mark_reconciled: timestamp must be timezone-aware")

        def reconcile(conn: sqlite3.Connection) -> JournalEntry:
            row = conn.execute("SELECT state FROM items WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise JournalError("mark_reconciled: the journal has no such merchant reference")
            if not JournalState(row[0]).outcome_unknown:
                raise JournalError(
                    "mark_reconciled: only 'sent' or 'unknown' items can be reconciled, "
                    f"this one is {row[0]!r}"
                )
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            if scan_reference is None:
                conn.execute(
                    "UPDATE items SET state = 'pending', scan_reference = NULL, receipt_timestamp = NULL, "
                    "error_type = NULL, error_code = NULL, safe_to_retry = NULL, "
                    "updated_at = ?, reconciled_at = ? "
                    "WHERE ref = ?",
                    (now, now, ref),
                )
            else:
                conn.execute(
                    "UPDATE items SET state = 'receipt', scan_reference = ?, receipt_timestamp = ?, "
                    "error_type = NULL, error_code = NULL, safe_to_retry = NULL, "
                    "updated_at = ?, reconciled_at = ? "
                    "WHERE ref = ?",
                    (scan_reference, _iso(timestamp), now, now, ref),
                )
            self._commit(conn)
            row = conn.execute(_SELECT_ENTRIES + " WHERE ref = ?", (ref,)).fetchone()
            return _row_to_entry(row)

        return await self._run(reconcile)


def open_journal(journal: Journal | str | os.PathLike[str] | None) -> tuple[Journal | None, bool]:
    """The journal object for a batch's ``journal`` argument, and whether the batch owns (and closes) it."""
    if journal is None:
        return None, False
    if isinstance(journal, (str, os.PathLike)):
        return SqliteJournal(journal), True
    if isinstance(journal, Journal):
        return journal, False
    raise JournalError(
        f"journal: expected a path, a Journal (e.g. SqliteJournal) or None, not {type(journal).__name__}"
    )
