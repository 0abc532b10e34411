"""The journal's tables: the layout, its versioned upgrades, and the rows as :class:`JournalEntry` values.

Layout 2 (``PRAGMA user_version = 2``):

``items``
    one row per merchant reference: ``state``, the primary ``scan_reference`` and ``receipt_timestamp``,
    the last error's type and code, ``sends``, ``created_at``/``updated_at``/``reconciled_at``,
    ``duplicate_scan`` and ``last_sent_at`` (the last two new in layout 2).
``scans`` (new in layout 2)
    one row per (merchant reference, Jumio scan reference), in the order the journal learnt of them: the
    receipt's timestamp, when it was first seen and when its first callback came, and the verification
    result of :class:`~netverify_async._reconcile.ScanResult` (status, reject reason code, description and
    detail codes, similarity, validity, callback date). Nothing personal.
``runs``
    one row per batch: start, end, status and counts.

Upgrades run in one ``BEGIN IMMEDIATE`` transaction that reads the version again, so they are idempotent and
safe when several processes open the same old file at once; a file of a newer layout is refused.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Iterable
from typing import Any

from ._convert import format_timestamp, parse_timestamp
from ._errors import JournalError
from ._reconcile import JournalEntry, JournalScan, JournalState, ScanResult

__all__ = [
    "SCHEMA_VERSION",
    "iso",
    "load_entries",
    "load_entry",
    "migrate",
    "parse_iso",
    "utcnow",
    "write_entry",
]

#: Version of the table layout, kept in ``PRAGMA user_version``. 1: items and runs. 2: the scans of each item
#: with their verification results, ``duplicate_scan`` and ``last_sent_at``.
SCHEMA_VERSION = 2


def utcnow() -> _dt.datetime:
    """Now, in UTC, to the millisecond: what the tables can hold, so a returned entry equals the stored one."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def parse_iso(text: str | None) -> _dt.datetime | None:
    return None if text is None else parse_timestamp(text)


_ITEM_COLUMNS = (
    "ref, state, scan_reference, receipt_timestamp, error_type, error_code, safe_to_retry, sends, "
    "updated_at, reconciled_at, duplicate_scan, last_sent_at"
)
_SCAN_COLUMNS = (
    "ref, scan_reference, receipt_timestamp, seen_at, callback_at, verification_status, reject_reason_code, "
    "reject_reason_description, reject_reason_details, similarity, validity, callback_date"
)
_SELECT_ITEMS = f"SELECT {_ITEM_COLUMNS} FROM items"  # noqa: S608 - constant text
_SELECT_SCANS = f"SELECT {_SCAN_COLUMNS} FROM scans"  # noqa: S608 - constant text

#: Layout 1, as created by the first versions (kept as it was: a journal of layout 0 or 1 starts from it).
_LAYOUT_1 = (
    f"""CREATE TABLE IF NOT EXISTS items (
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
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS items_by_state ON items (state)",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        counts TEXT
    )""",
)

#: The steps from one layout to the next: ``_MIGRATIONS[n]`` turns layout ``n - 1`` into layout ``n``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE items ADD COLUMN duplicate_scan INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE items ADD COLUMN last_sent_at TEXT",
        """CREATE TABLE scans (
            ref TEXT NOT NULL,
            scan_reference TEXT NOT NULL,
            position INTEGER NOT NULL,
            receipt_timestamp TEXT,
            seen_at TEXT,
            callback_at TEXT,
            verification_status TEXT,
            reject_reason_code TEXT,
            reject_reason_description TEXT,
            reject_reason_details TEXT,
            similarity TEXT,
            validity TEXT,
            callback_date TEXT,
            PRIMARY KEY (ref, scan_reference)
        ) WITHOUT ROWID""",
        "CREATE INDEX scans_by_scan_reference ON scans (scan_reference)",
        # the scan reference of every item of layout 1 (from a receipt or mark_reconciled) becomes its scan
        "INSERT INTO scans (ref, scan_reference, position, receipt_timestamp, seen_at) "
        "SELECT ref, scan_reference, 0, receipt_timestamp, updated_at FROM items WHERE scan_reference IS NOT NULL",
    ),
}
assert set(_MIGRATIONS) == set(range(2, SCHEMA_VERSION + 1))


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_version(path: str, version: int) -> None:
    if not 0 <= version <= SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path!r} has layout version {version}; this library reads up to {SCHEMA_VERSION}"
        )


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`: create it, or upgrade an older layout in place.

    One transaction under the write lock, the version read again inside it: idempotent, and safe when
    several processes open the same old journal at once (the first upgrades it, the others find it done).
    """
    version = _user_version(conn)
    _check_version(path, version)
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)
        _check_version(path, version)
        if version < SCHEMA_VERSION:
            for statement in _LAYOUT_1:
                conn.execute(statement)
            for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _scan_from_row(row: tuple[Any, ...]) -> JournalScan:
    (
        _ref,
        scan_ref,
        receipt_ts,
        seen,
        callback_at,
        status,
        code,
        description,
        details,
        similarity,
        validity,
        callback_date,
    ) = row
    result = None
    if status is not None:
        result = ScanResult(
            verification_status=status,
            reject_reason_code=code,
            reject_reason_description=description,
            reject_reason_details=tuple(details.split(",")) if details else (),
            similarity=similarity,
            validity=validity,
            callback_date=parse_iso(callback_date),
        )
    return JournalScan(
        scan_reference=scan_ref,
        receipt_timestamp=parse_iso(receipt_ts),
        result=result,
        seen_at=parse_iso(seen),
        callback_at=parse_iso(callback_at),
    )


def _entry_from_row(row: tuple[Any, ...], scans: Iterable[JournalScan] = ()) -> JournalEntry:
    ref, state, scan_ref, receipt_ts, error_type, error_code, safe, sends, updated, reconciled, dup, last = (
        row
    )
    return JournalEntry(
        merchant_id_scan_reference=ref,
        state=JournalState(state),
        scan_reference=scan_ref,
        receipt_timestamp=parse_iso(receipt_ts),
        error_type=error_type,
        error_code=error_code,
        safe_to_retry=None if safe is None else bool(safe),
        sends=sends,
        updated_at=parse_iso(updated),
        reconciled_at=parse_iso(reconciled),
        duplicate_scan=bool(dup),
        last_sent_at=parse_iso(last),
        scans=tuple(scans),
    )


def load_entry(conn: sqlite3.Connection, ref: str) -> JournalEntry | None:
    row = conn.execute(_SELECT_ITEMS + " WHERE ref = ?", (ref,)).fetchone()
    if row is None:
        return None
    scans = conn.execute(_SELECT_SCANS + " WHERE ref = ? ORDER BY position", (ref,)).fetchall()
    return _entry_from_row(row, map(_scan_from_row, scans))


def load_entries(
    conn: sqlite3.Connection, where: str, args: tuple[Any, ...], order: str
) -> list[JournalEntry]:
    """The entries ``SELECT ... FROM items <where> ORDER BY <order>`` with their scans (two queries).

    ``where`` and ``order`` are fixed text of this module (never user input); the values go in ``args``.
    """
    rows = conn.execute(f"{_SELECT_ITEMS} {where} ORDER BY {order}", args).fetchall()
    if not rows:
        return []
    scans: dict[str, list[JournalScan]] = {}
    scan_rows = conn.execute(
        f"{_SELECT_SCANS} WHERE ref IN (SELECT ref FROM items {where}) ORDER BY ref, position",  # noqa: S608
        args,
    ).fetchall()
    for scan_row in scan_rows:
        scans.setdefault(scan_row[0], []).append(_scan_from_row(scan_row))
    return [_entry_from_row(row, scans.get(row[0], ())) for row in rows]


def write_entry(conn: sqlite3.Connection, old: JournalEntry | None, new: JournalEntry) -> None:
    """Store ``new`` (the row after a decision of :mod:`netverify_async._reconcile`) over ``old``."""
    item = (
        new.state.value,
        new.scan_reference,
        iso(new.receipt_timestamp),
        new.error_type,
        new.error_code,
        None if new.safe_to_retry is None else int(new.safe_to_retry),
        iso(new.updated_at or utcnow()),
        iso(new.reconciled_at),
        int(new.duplicate_scan),
    )
    if old is None:
        conn.execute(
            "INSERT INTO items (state, scan_reference, receipt_timestamp, error_type, error_code, safe_to_retry, "
            "updated_at, reconciled_at, duplicate_scan, ref, sends, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*item, new.merchant_id_scan_reference, new.sends, item[6]),
        )
    else:
        conn.execute(
            "UPDATE items SET state = ?, scan_reference = ?, receipt_timestamp = ?, error_type = ?, "
            "error_code = ?, safe_to_retry = ?, updated_at = ?, reconciled_at = ?, duplicate_scan = ? "
            "WHERE ref = ?",
            (*item, new.merchant_id_scan_reference),
        )
    before = {scan.scan_reference: scan for scan in (old.scans if old is not None else ())}
    for position, scan in enumerate(new.scans):
        if before.get(scan.scan_reference) == scan:
            continue
        result = scan.result
        conn.execute(
            "INSERT OR REPLACE INTO scans (ref, scan_reference, position, receipt_timestamp, seen_at, "
            "callback_at, verification_status, reject_reason_code, reject_reason_description, "
            "reject_reason_details, similarity, validity, callback_date) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.merchant_id_scan_reference,
                scan.scan_reference,
                position,
                iso(scan.receipt_timestamp),
                iso(scan.seen_at),
                iso(scan.callback_at),
                *(
                    (None,) * 7
                    if result is None
                    else (
                        result.verification_status,
                        result.reject_reason_code,
                        result.reject_reason_description,
                        ",".join(result.reject_reason_details) or None,
                        result.similarity,
                        result.validity,
                        iso(result.callback_date),
                    )
                ),
            ),
        )
