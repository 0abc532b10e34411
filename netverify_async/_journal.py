"""The submission journal: a crash-safe record of what a batch sent, so that a re-run never sends twice, and
of what Jumio's callbacks said about it, so that lost answers settle themselves.

Each ``merchantIdScanReference`` of a batch has one row and moves through these states:

============  ==========================================================================  ===================
state         meaning                                                                     on a re-run
============  ==========================================================================  ===================
``pending``   read from the input, not sent yet (or reconciled as "no scan was created")  sent
``sent``      the upload was about to start; written and synced *before* the first byte   skipped (unknown)
              leaves, so after a crash it means "may have created a scan"
``receipt``   a scan is known: Jumio answered with its reference (kept, with Jumio's      skipped (done)
              timestamp), or a callback named it (``reconciled_at`` set)
``failed``    definitely no scan was created: refused before sending (preflight), or      sent again
              answered with an error that proves the request was not processed
``unknown``   sent, but the answer was lost (timeout, dropped connection, 5xx, or the     skipped (unknown)
              batch was cancelled while it was in flight)
============  ==========================================================================  ===================

Every ``failed`` item is resent on a re-run, permanent errors included: the batch records ``failed`` only for
failures that cannot have created a scan (ambiguous failures are ``unknown``), so resending never makes a
duplicate; a request that Jumio refused for good (a 400 or 403) fails again at the cost of one request.
``sent`` and ``unknown`` items are resent only with ``resend_unknown=True``; otherwise they are reported as
``SKIPPED_UNKNOWN`` and listed by :meth:`SqliteJournal.unknown`, for you to reconcile.

**Callbacks settle them.** :meth:`SqliteJournal.record_callback` (fed by
``netverify_async.fastapi.callback_router(journal=...)``) matches a callback to its item by
``merchantIdScanReference``: an item with no known scan becomes ``receipt`` with the callback's scan
reference, and the verification result is stored with the scan. The rules (callbacks before the answer,
twice, for another scan, for a reference not in the journal) are pure functions in
:mod:`netverify_async._reconcile`. Once an item has a known scan it stays ``receipt``: a later ``sent``,
``failed`` or ``unknown`` from the batch (an attempt that raced the callback) does not make it sendable again.
Whatever is left can be settled by hand with :meth:`SqliteJournal.mark_reconciled`.

**What is stored**: references, states, Jumio scan references, error type names and codes, counts,
timestamps, and per scan the verification *decision* (status, reject reason code, description and detail
codes, selfie similarity and validity, the callback's date). Never request bodies, images or image URLs,
names, document numbers, dates of birth or addresses. The files are created readable by their owner only
(``0600``, see :mod:`netverify_async._journalfile`).

:class:`SqliteJournal` keeps it in a SQLite file (WAL mode, ``synchronous=FULL``). Every sqlite call runs in a
worker thread on one connection guarded by a lock, so the event loop never waits on the disk. ``FULL`` makes
each commit reach the disk before the call returns: a ``sent`` row survives a power cut, not only a killed
process (with ``NORMAL`` in WAL mode the last commits can be lost in a power cut, and a lost ``sent`` row
would let a re-run create a duplicate, billed scan). The cost is one fsync per upload, small beside it.
Rows of new ``pending`` items are committed at once but not synced on their own (a lost ``pending`` row
means the same as no row): so no write transaction stays open between calls, and another process (a
callback receiver) can write to the same file while a batch runs.

The table layout is versioned with ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`); opening a journal of an
older layout upgrades it in place, in one transaction, once (any number of processes may race to open it).

The tables and their upgrades live in :mod:`netverify_async._journaltables`; the files' modes and the batch
lock in :mod:`netverify_async._journalfile`. Why this module is still over 600 lines: :class:`SqliteJournal` is one
class whose every transition (a short SQL statement or a call of :mod:`netverify_async._reconcile`) sits next to
the others, so that the rule "an item with a known scan stays ``receipt``" can be checked in one read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
import attrs

from ._errors import FailureKind, JournalError, PreflightError, RequestValidationError, failure_kind
from ._journalfile import FileLock, create_private_file
from ._journaltables import SCHEMA_VERSION as SCHEMA_VERSION
from ._journaltables import iso as _iso
from ._journaltables import load_entries as _load_entries
from ._journaltables import load_entry as _load_entry
from ._journaltables import migrate as _migrate
from ._journaltables import parse_iso as _parse_iso
from ._journaltables import utcnow as _utcnow
from ._journaltables import write_entry as _write_entry
from ._models import ScanReceipt
from ._reconcile import (
    CallbackEffect,
    CallbackFacts,
    CallbackReconciliation,
    JournalEntry,
    JournalScan,
    JournalState,
    ScanResult,
    reconcile_callback,
    reconcile_found,
    reconcile_receipt,
)

if TYPE_CHECKING:
    from .callbacks import NetverifyCallback

__all__ = [
    "CallbackEffect",
    "CallbackJournal",
    "CallbackReconciliation",
    "Journal",
    "JournalEntry",
    "JournalScan",
    "JournalState",
    "ScanResult",
    "SqliteJournal",
    "open_journal",
]

_T = TypeVar("_T")

#: Seconds a connection waits for a lock held by another connection before failing.
_BUSY_TIMEOUT_S = 10.0


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
    library, and ``netverify_async.postgres.PostgresJournal`` (the ``postgres`` extra) keeps the same states in
    PostgreSQL; another store can be used by implementing these coroutines.

    Optional: a journal that also has ``record_callback`` (see :class:`CallbackJournal`) can be fed by
    ``callback_router(journal=...)``, which checks for the method when it is built. A journal without it
    works for batches as before.
    """

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


@runtime_checkable
class CallbackJournal(Protocol):
    """A journal that learns from Jumio's callbacks (optional for custom journals; :class:`SqliteJournal`
    has it). ``callback_router(journal=...)`` accepts any object with this coroutine."""

    async def record_callback(self, callback: NetverifyCallback) -> CallbackReconciliation:
        """Record what ``callback`` says about the item with its ``merchantIdScanReference`` (see
        :meth:`SqliteJournal.record_callback` for the rules). Must be idempotent: callbacks come at least
        once. Raises :class:`~netverify_async.JournalError` when the record could not be stored."""
        ...


# ----------------------------------------------------------------------------------------------------
# The journal


class SqliteJournal:
    """A journal in a SQLite file; see the module docstring for the states and the durability choice.

    Use one journal file per batch of references; only one batch at a time may use it (a second one gets
    :class:`~netverify_async.JournalError`; the lock is an OS file lock on ``<path>.lock``, released even when
    the process is killed). A callback receiver may write to the same file at the same time, from this
    process or another one (:meth:`record_callback`). Close it with :meth:`aclose` or ``async with``; a batch
    that opened the journal from a path closes it itself::

        async with SqliteJournal("batch.journal") as journal:
            async with client.submit_many(requests, journal=journal) as batch:
                async for outcome in batch:
                    ...
            print(await journal.counts())

    A new file is created with mode ``0600`` (owner only), and so are its ``-wal``, ``-shm`` and ``.lock``
    files; an existing file keeps its mode.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._file_lock = FileLock(self.path + ".lock")
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
            create_private_file(self.path)
        except OSError as exc:
            raise JournalError(f"cannot create the journal {self.path!r}: {exc.strerror or exc}") from exc
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
            _migrate(conn, self.path)
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
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(exc, sqlite3.Error):
                    raise JournalError(f"journal {self.path!r}: {type(exc).__name__}: {exc}") from exc
                raise

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
        """Open (and create if needed, or upgrade an older layout) the file now instead of at the first use."""
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

        The insert of a new reference is committed at once but not synced on its own (the next durable
        write syncs it): losing it in a power cut loses nothing (no row and ``pending`` mean the same), and
        no write transaction stays open while the batch waits, which would block a callback receiver.
        """
        ref = merchant_id_scan_reference

        def begin(conn: sqlite3.Connection) -> JournalEntry | None:
            entry = _load_entry(conn, ref)
            if entry is not None:
                return entry
            now = _iso(_utcnow())
            insert = "INSERT INTO items (ref, state, created_at, updated_at) VALUES (?, 'pending', ?, ?)"
            if conn.in_transaction:  # (not left open by this class) joins it: its commit syncs the row
                conn.execute(insert, (ref, now, now))
                return None
            # In WAL mode, NORMAL commits without waiting for the disk; the level cannot change inside a
            # transaction, so the transaction ends (committed or rolled back) before FULL is restored.
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(insert, (ref, now, now))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.rollback()  # a no-op when the transaction is already gone
                    raise
            finally:
                conn.execute("PRAGMA synchronous=FULL")
            return None

        return await self._run(begin)

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        """Record, durably, that the upload is about to start (committed and synced before returning).

        An item that already has a known scan (a callback settled it meanwhile) stays ``receipt``: only its
        count of sends and its ``last_sent_at`` change.
        """
        ref = merchant_id_scan_reference

        def sent(conn: sqlite3.Connection) -> None:
            now = _iso(_utcnow())
            self._ensure_transaction(conn)
            conn.execute(
                "INSERT INTO items (ref, state, sends, created_at, updated_at, last_sent_at) "
                "VALUES (?, 'sent', 1, ?, ?, ?) "
                "ON CONFLICT (ref) DO UPDATE SET sends = sends + 1, updated_at = excluded.updated_at, "
                "last_sent_at = excluded.last_sent_at, "
                "state = CASE WHEN items.state = 'receipt' THEN 'receipt' ELSE 'sent' END, "
                "error_type = NULL, error_code = NULL, safe_to_retry = NULL",
                (ref, now, now, now),
            )
            self._commit(conn)

        await self._run(sent)

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: ScanReceipt) -> None:
        """Record Jumio's receipt (scan reference and timestamp).

        If a callback already named a scan for this item (it raced the answer), the two must agree: the same
        scan gets the receipt's timestamp; another scan is kept too and the item is flagged ``duplicate_scan``
        (see :func:`~netverify_async._reconcile.reconcile_receipt`).
        """
        ref = merchant_id_scan_reference

        def done(conn: sqlite3.Connection) -> None:
            self._ensure_transaction(conn)
            old = _load_entry(conn, ref)
            _write_entry(conn, old, reconcile_receipt(old, ref, receipt, _utcnow()))
            self._commit(conn)

        await self._run(done)

    async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        """Record a failure that created no scan: the error's class name, code and ``safe_to_retry``.

        An item with a known scan (from a callback or an earlier answer) stays ``receipt``.
        """
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
                "safe_to_retry = excluded.safe_to_retry, updated_at = excluded.updated_at "
                "WHERE items.state <> 'receipt'",
                (ref, *values, now, now),
            )
            self._commit(conn)

        await self._run(failed)

    async def mark_unknown(self, merchant_id_scan_references: Iterable[str], error_type: str) -> None:
        """Record that these uploads may have created a scan (one transaction for all of them).

        An item whose scan is already known (a callback arrived before the batch gave up on the answer) stays
        ``receipt``.
        """
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
                "error_code = NULL, safe_to_retry = 0, updated_at = excluded.updated_at "
                "WHERE items.state <> 'receipt'",
                [(ref, error_type, now, now) for ref in refs],
            )
            self._commit(conn)

        await self._run(unknown)

    # -- the callbacks' side ---------------------------------------------------------------------------------

    async def record_callback(self, callback: NetverifyCallback) -> CallbackReconciliation:
        """Learn from one of Jumio's callbacks (a :class:`~netverify_async.callbacks.NetverifyCallback`).

        The callback is matched to the item with its ``merchantIdScanReference`` (a callback without one, to
        the item that already knows its ``jumioIdScanReference``), and then:

        - an item with no known scan (``sent`` or ``unknown``; also ``pending`` or ``failed``) is settled:
          the scan reference is recorded, the state becomes ``receipt``, ``reconciled_at`` is set
          (:attr:`~CallbackEffect.SETTLED`). This also covers a callback that beats the HTTP answer: the
          answer, recorded afterwards, must name the same scan or the item is flagged ``duplicate_scan``;
        - the verification result is stored with the scan (:class:`ScanResult`: status, reject reason,
          similarity and validity, callback date; nothing personal), for a known scan too
          (:attr:`~CallbackEffect.RECORDED`);
        - a scan other than the known one(s) is added and the item flagged ``duplicate_scan``
          (:attr:`~CallbackEffect.DUPLICATE_SCAN`);
        - the same callback again changes nothing (:attr:`~CallbackEffect.UNCHANGED`), and a callback for a
          reference the journal does not hold is ignored (:attr:`~CallbackEffect.NOT_IN_JOURNAL`).

        The record is committed and synced before this returns. Raises ``TypeError`` for something that is
        not a parsed callback, :class:`~netverify_async.JournalError` when the file cannot be written.
        """
        facts = CallbackFacts.from_callback(callback)

        def record(conn: sqlite3.Connection) -> CallbackReconciliation:
            self._ensure_transaction(conn)  # read and write under the one write lock
            ref = facts.merchant_id_scan_reference
            if ref is None:
                found = conn.execute(
                    "SELECT ref FROM scans WHERE scan_reference = ? ORDER BY ref LIMIT 1",
                    (facts.scan_reference,),
                ).fetchone()
                ref = None if found is None else found[0]
            old = None if ref is None else _load_entry(conn, ref)
            decision = reconcile_callback(old, facts, _utcnow())
            if decision.changed and decision.entry is not None:
                _write_entry(conn, old, decision.entry)
            self._commit(conn)
            return decision

        return await self._run(record)

    async def record_result(
        self, merchant_id_scan_reference: str, scan_reference: str, result: ScanResult
    ) -> bool:
        """Store a verification result learnt by polling the retrieval API (see
        :func:`netverify_async.wait_for_results`) with a scan the journal already knows, in the same columns as a
        callback's result (nothing personal). ``callback_at`` stays unset (no callback was received, so this is
        no proof for ``--resend-unresolved-after``), and a result already stored (from a callback) is kept.
        The result is stored as given: :func:`~netverify_async.wait_for_results` sets its ``callback_date`` to
        the time of the poll, so that a later read reports when it became known, as for a callback's result.

        Returns True when the result was written; False when the journal does not know that scan, or it
        already has a result. Committed and synced before this returns.
        """
        ref = merchant_id_scan_reference

        def record(conn: sqlite3.Connection) -> bool:
            self._ensure_transaction(conn)
            old = _load_entry(conn, ref)
            known = (
                None
                if old is None
                else next((s for s in old.scans if s.scan_reference == scan_reference), None)
            )
            if old is None or known is None or known.result is not None:
                self._commit(conn)
                return False
            scans = tuple(
                attrs.evolve(s, result=result) if s.scan_reference == scan_reference else s for s in old.scans
            )
            _write_entry(conn, old, attrs.evolve(old, scans=scans, updated_at=_utcnow()))
            self._commit(conn)
            return True

        return await self._run(record)

    # -- inspection and reconciliation -----------------------------------------------------------------------

    async def get(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry of one reference (with its scans), or None."""
        ref = merchant_id_scan_reference
        return await self._run(lambda conn: _load_entry(conn, ref))

    async def entries(self, state: JournalState | str | None = None) -> list[JournalEntry]:
        """Every entry (or those in ``state``) with its scans, ordered by reference."""
        if state is None:
            return await self._run(lambda conn: _load_entries(conn, "", (), "ref"))
        value = JournalState(state).value
        return await self._run(lambda conn: _load_entries(conn, "WHERE state = ?", (value,), "ref"))

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

    async def unresolved(self, older_than: _dt.timedelta | None = None) -> list[JournalEntry]:
        """Entries whose outcome is unknown (``sent`` or ``unknown``), the longest-waiting first.

        With ``older_than``, only those last sent at least that long ago (by ``last_sent_at``; for an item
        of a layout-1 journal, its ``updated_at``): the candidates for a "no callback came" horizon, to be
        compared with :meth:`last_callback_at` before being declared scan-less with :meth:`mark_reconciled`.
        """
        where = "WHERE state IN ('sent', 'unknown')"
        args: tuple[Any, ...] = ()
        if older_than is not None:
            if older_than < _dt.timedelta(0):
                raise JournalError("unresolved: older_than must not be negative")
            where += " AND coalesce(last_sent_at, updated_at) <= ?"
            args = (_iso(_utcnow() - older_than),)
        order = "coalesce(last_sent_at, updated_at), ref"
        return await self._run(lambda conn: _load_entries(conn, where, args, order))

    async def last_callback_at(self) -> _dt.datetime | None:
        """When the journal last recorded a callback for one of its scans (None if it never did): the proof
        that callbacks reach the receiver feeding this journal."""
        row = await self._run(lambda conn: conn.execute("SELECT max(callback_at) FROM scans").fetchone())
        return _parse_iso(row[0])

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
        items can be reconciled (:class:`~netverify_async.JournalError` otherwise); an item a callback
        already settled is ``receipt``, so a late "no scan" can never make it sendable again.
        """
        ref = merchant_id_scan_reference
        if scan_reference is not None and (not isinstance(scan_reference, str) or not scan_reference.strip()):
            raise JournalError("mark_reconciled: scan_reference must be a non-empty string or None")
        if timestamp is not None and timestamp.tzinfo is None:
            raise JournalError("mark_reconciled: timestamp must be timezone-aware")

        def reconcile(conn: sqlite3.Connection) -> JournalEntry:
            self._ensure_transaction(conn)
            old = _load_entry(conn, ref)
            if old is None:
                raise JournalError("mark_reconciled: the journal has no such merchant reference")
            if not old.state.outcome_unknown:
                raise JournalError(
                    "mark_reconciled: only 'sent' or 'unknown' items can be reconciled, "
                    f"this one is {old.state.value!r}"
                )
            now = _utcnow()
            if scan_reference is None:
                conn.execute(
                    "UPDATE items SET state = 'pending', scan_reference = NULL, receipt_timestamp = NULL, "
                    "error_type = NULL, error_code = NULL, safe_to_retry = NULL, "
                    "updated_at = ?, reconciled_at = ? "
                    "WHERE ref = ?",
                    (_iso(now), _iso(now), ref),
                )
            else:
                _write_entry(conn, old, reconcile_found(old, ref, scan_reference, timestamp, now))
            self._commit(conn)
            entry = _load_entry(conn, ref)
            assert entry is not None
            return entry

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
