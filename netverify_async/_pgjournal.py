"""The submission journal in PostgreSQL: the states and rules of :mod:`netverify_async._journal`, shared by
many processes and hosts, with a work queue whose items are handed out under leases.

See :class:`PostgresJournal` for the use; this docstring says how it keeps the journal's promises.

**Same states, same transitions.** A row moves through ``pending``, ``sent``, ``receipt``, ``failed`` and
``unknown`` exactly as in :class:`~netverify_async.SqliteJournal`; what a receipt, a callback or a manual
reconciliation does to a row is decided by the same pure functions of :mod:`netverify_async._reconcile`. An
item that was loaded into the queue and is not leased (or whose lease expired) is *queued*: it is ``pending``
to :meth:`PostgresJournal.counts` and :meth:`PostgresJournal.states`, and :meth:`PostgresJournal.queued_count`
counts it.

**"Sent" is durable before the first byte leaves.** ``mark_sent``'s transaction sets ``synchronous_commit``
to ``on`` for itself (``SET LOCAL``) when the session's setting is weaker (``off``, ``local``,
``remote_write``), so its commit is flushed to the server's disk, and to its synchronous standbys where
``synchronous_standby_names`` names some, when the call returns. (What the server's storage does with a flushed
write, and whether any standby is configured, is the database's configuration.) A commit whose
acknowledgement is lost raises :class:`~netverify_async.JournalError`, so the caller does not send; the row
may then say ``sent``, which the next run treats as unknown: never resent blindly.

**Isolation and connections.** Every transaction runs at ``READ COMMITTED``, whatever the database's default
(the fencing relies on its re-check of a row after waiting for its lock). The journal keeps one connection
per object with session settings (time zone, ``statement_timeout``) and psycopg's automatic prepared
statements: connect directly or through a pooler in *session* mode; transaction-mode pooling (e.g. pgbouncer
``pool_mode = transaction``) is not supported. A connection found closed by the server when a call begins
(a restart, ``idle_session_timeout``, ``pg_terminate_backend``) is replaced and the call made again: nothing
of it had reached the server. One lost after the call's first statement raises
:class:`~netverify_async.JournalError` ("outcome unknown").

**Leases and fencing.** :meth:`PostgresJournal.claim` takes queued items with ``FOR UPDATE SKIP LOCKED`` and
gives each a new *token* from a sequence and a lease until ``now() + lease_seconds`` (the database's clock;
the hosts' clocks never need to agree). Every write of this object about a leased item is conditioned on the
token it got: a worker whose lease expired and was taken over gets :class:`LeaseLostError` and writes nothing
(``mark_sent`` also requires the lease to be live, so a worker that did not renew in time does not send).
Once ``sent``, an item is never handed out again. A worker killed at any instant therefore leaves its item
``pending`` with a lease that expires (nothing can have been sent: ``sent`` is written before the upload) or
``sent``/``unknown`` (bytes may have left; reconcile it, never resend it blindly). One exception to "writes
nothing": ``mark_receipt`` records the scan even when the lease was taken over (a scan exists at Jumio; losing
that fact could only cause a duplicate) and raises :class:`LeaseLostError` afterwards.

**A plain batch** (``submit_many(..., journal=PostgresJournal(...))``, no :meth:`~PostgresJournal.claim`)
takes each item it is about to send in ``begin_item``: a new reference, or a ``pending``/``failed`` one that
nobody else holds, gets a lease and a token too, so two batches (or a batch and a worker) never send one
reference both; one held by another worker's live lease is refused with
:class:`~netverify_async.JournalError`. Such a lease is not renewed (a batch has no renewal loop), so its
``mark_sent`` is conditioned on the token only: a token that is still current proves that nobody took the
item since. ``finish_run`` and ``aclose`` give back what was taken and not sent, so a re-run can start at
once; after a crash, the next run waits for the lease to expire (``lease_seconds``).

**Clock.** Every time the journal records (``updated_at``, ``last_sent_at``, leases, the horizon of
:meth:`PostgresJournal.unresolved`) is the database's ``now()``, so workers on hosts whose clocks disagree
still write one consistent history.

**Layout.** Each journal name has its own schema, ``netverify_<name>_<hash>`` (the name lower-cased and
cut, with a hash of the exact name, so names that differ only in case or in cut characters never share
one): ``items``, ``scans``, ``runs``, ``schema_version`` and the ``lease_tokens`` sequence. Several batches
can share a database, one name each. :meth:`PostgresJournal.open` creates the schema or upgrades it, in one
transaction under an advisory lock keyed by the schema (any number of processes may open at once); a schema
of a newer version than this library knows is refused.

**What is stored.** What :class:`~netverify_async.SqliteJournal` stores (references, states, scan
references, error type names and codes, counts, timestamps, verification decisions: nothing personal), plus,
per item, the lease (worker id, token, expiry) and the JSON *payload* passed to :meth:`PostgresJournal.load`:
whatever the caller puts there to rebuild the request on a worker, stored as given. Keep personal data out
of it if the database must not hold any (load a key into your own store instead).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio.to_thread
import attrs

from ._errors import JournalError
from ._journal import error_code_of
from ._models import ScanReceipt
from ._reconcile import (
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
    import psycopg
    from psycopg import sql

    from .callbacks import NetverifyCallback

__all__ = [
    "DEFAULT_OPERATION_TIMEOUT",
    "SCHEMA_VERSION",
    "Lease",
    "LeaseLostError",
    "PostgresJournal",
    "schema_name",
]

_T = TypeVar("_T")

#: Version of the layout, kept in the journal schema's ``schema_version`` table.
SCHEMA_VERSION: Final = 1
#: The default lease: how long a claimed item stays with its worker without a renewal.
DEFAULT_LEASE_SECONDS: Final = 120.0
#: Seconds to wait for the server when connecting.
_CONNECT_TIMEOUT_S: Final = 10
#: Longest a statement (a row lock, the migration lock) may wait before the call fails (on the server; at most
#: half of ``operation_timeout``, so that a wait for a lock ends cleanly before the client gives up).
_STATEMENT_TIMEOUT_MS: Final = 30_000
#: The default bound, in seconds, of one journal call (connecting included): see ``operation_timeout``.
DEFAULT_OPERATION_TIMEOUT: Final = 30.0
#: After its caller was cancelled, a call in flight may finish by itself for this long before it is aborted
#: (a healthy database answers in milliseconds: a write that started is normally not lost to a cancellation).
_CANCEL_GRACE_S: Final = 1.0
#: How long the event loop waits for an aborted call's thread to notice (its socket was shut down).
_ABORT_GRACE_S: Final = 2.0
#: A transaction that met a unique violation, a serialization failure or a deadlock is run again this often.
_TRANSACTION_ATTEMPTS: Final = 3
#: Items inserted per statement by :meth:`PostgresJournal.load`.
_LOAD_CHUNK: Final = 1000

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class LeaseLostError(JournalError):
    """This worker's lease on an item is gone: it expired and another worker claimed the item (new token), or
    it expired before ``mark_sent`` (which then wrote nothing: do not send). ``refs`` are the merchant
    references concerned."""

    def __init__(self, message: str, refs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.refs: tuple[str, ...] = tuple(refs)


@attrs.frozen
class Lease:
    """One item handed to this worker by :meth:`PostgresJournal.claim`."""

    #: The merchant reference (``merchantIdScanReference``).
    ref: str
    #: The JSON payload given to :meth:`PostgresJournal.load` (not shown in the repr).
    payload: dict[str, Any] = attrs.field(repr=False)
    #: The fencing token: every write about this item by the claiming journal is conditioned on it.
    token: int
    #: When the lease ends unless renewed (the database's clock, UTC).
    expires_at: _dt.datetime


def schema_name(name: str) -> str:
    """The PostgreSQL schema that holds the journal ``name`` (validated: 1 to 100 letters, digits, ``.``,
    ``_`` or ``-``, starting with a letter or digit)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise JournalError(
            "journal name: must be 1 to 100 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit"
        )
    cleaned = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:30]
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"netverify_{cleaned}_{digest}" if cleaned else f"netverify_{digest}"


#: Connection options used unless the connection string sets them: a bounded connect, and TCP keepalives and a
#: user timeout so that a call on a connection to a vanished server fails (JournalError) instead of hanging.
_DEFAULT_OPTIONS: Final[dict[str, str | int]] = {
    "connect_timeout": _CONNECT_TIMEOUT_S,
    "application_name": "netverify-async journal",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def _connect_options(conninfo: str) -> dict[str, str | int]:
    """The options of :data:`_DEFAULT_OPTIONS` that ``conninfo`` does not set (checked: a typed error, which
    does not repeat the string, for one libpq cannot parse)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise JournalError(
            "PostgresJournal needs psycopg 3: pip install 'netverify-async[postgres]'"
        ) from exc
    try:
        given = conninfo_to_dict(conninfo)
    except Exception:
        raise JournalError("conninfo: not a valid PostgreSQL connection string or URL") from None
    return {key: value for key, value in _DEFAULT_OPTIONS.items() if key not in given}


def _advisory_key(schema: str) -> int:
    digest = hashlib.sha256(b"netverify-async journal migration:" + schema.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    return None if value is None else value.astimezone(_dt.timezone.utc)


def _describe(exc: BaseException) -> str:
    """A psycopg error in a few words, without the statement's parameters or the row's values."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    lines = str(exc).splitlines()
    text = primary or (lines[0] if lines else "")
    code = f" [{sqlstate}]" if sqlstate else ""
    return f"{type(exc).__name__}{code}: {text}" if text else f"{type(exc).__name__}{code}"


# ----------------------------------------------------------------------------------------------------
# The layout

#: ``_MIGRATIONS[n]`` turns version ``n - 1`` into version ``n``; ``{s}`` is the journal's schema.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE {{s}}.items (
            ref text PRIMARY KEY,
            seq bigserial NOT NULL,
            state text NOT NULL CHECK (state IN ({", ".join(repr(s.value) for s in JournalState)})),
            payload jsonb,
            owner text,
            token bigint,
            lease_until timestamptz,
            scan_reference text,
            receipt_timestamp timestamptz,
            error_type text,
            error_code text,
            safe_to_retry boolean,
            sends integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            reconciled_at timestamptz,
            duplicate_scan boolean NOT NULL DEFAULT false,
            last_sent_at timestamptz
        )""",
        "CREATE INDEX items_by_state ON {s}.items (state)",
        "CREATE INDEX items_queue ON {s}.items (seq) WHERE state = 'pending' AND payload IS NOT NULL",
        """CREATE TABLE {s}.scans (
            ref text NOT NULL REFERENCES {s}.items (ref),
            scan_reference text NOT NULL,
            position integer NOT NULL,
            receipt_timestamp timestamptz,
            seen_at timestamptz,
            callback_at timestamptz,
            verification_status text,
            reject_reason_code text,
            reject_reason_description text,
            reject_reason_details text[],
            similarity text,
            validity text,
            callback_date timestamptz,
            PRIMARY KEY (ref, scan_reference)
        )""",
        "CREATE INDEX scans_by_scan_reference ON {s}.scans (scan_reference)",
        """CREATE TABLE {s}.runs (
            id bigserial PRIMARY KEY,
            worker_id text,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            status text NOT NULL,
            counts jsonb
        )""",
        "CREATE SEQUENCE {s}.lease_tokens",
    ),
}
assert set(_MIGRATIONS) == set(range(1, SCHEMA_VERSION + 1))

_ITEM_COLUMNS = (
    "ref, state, scan_reference, receipt_timestamp, error_type, error_code, safe_to_retry, sends, "
    "updated_at, reconciled_at, duplicate_scan, last_sent_at"
)
_SCAN_COLUMNS = (
    "ref, scan_reference, receipt_timestamp, seen_at, callback_at, verification_status, reject_reason_code, "
    "reject_reason_description, reject_reason_details, similarity, validity, callback_date"
)

#: Orders by reference byte by byte (UTF-8), as SQLite does, whatever the database's collation.
_BY_REF: Final = 'ref COLLATE "C"'

#: Makes the current transaction's commit durable: ``synchronous_commit`` at least ``on`` (``SET LOCAL``).
_DURABLE_COMMIT: Final = (
    "SELECT set_config('synchronous_commit', 'on', true) "
    "WHERE current_setting('synchronous_commit') IN ('off', 'local', 'remote_write')"
)

#: The states whose items a batch sends (when nobody else holds them): a claim by ``begin_item`` takes these.
_SENDABLE = ("pending", "failed")


def _scan_from_row(row: Sequence[Any]) -> JournalScan:
    (_ref, scan_ref, receipt_ts, seen, callback_at, status, code, description, details, similarity,
     validity, callback_date) = row  # fmt: skip
    result = None
    if status is not None:
        result = ScanResult(
            verification_status=status,
            reject_reason_code=code,
            reject_reason_description=description,
            reject_reason_details=tuple(details or ()),
            similarity=similarity,
            validity=validity,
            callback_date=_utc(callback_date),
        )
    return JournalScan(
        scan_reference=scan_ref,
        receipt_timestamp=_utc(receipt_ts),
        result=result,
        seen_at=_utc(seen),
        callback_at=_utc(callback_at),
    )


def _entry_from_row(row: Sequence[Any], scans: Iterable[JournalScan] = ()) -> JournalEntry:
    ref, state, scan_ref, receipt_ts, error_type, error_code, safe, sends, updated, reconciled, dup, last = (
        row
    )
    return JournalEntry(
        merchant_id_scan_reference=ref,
        state=JournalState(state),
        scan_reference=scan_ref,
        receipt_timestamp=_utc(receipt_ts),
        error_type=error_type,
        error_code=error_code,
        safe_to_retry=safe,
        sends=sends,
        updated_at=_utc(updated),
        reconciled_at=_utc(reconciled),
        duplicate_scan=bool(dup),
        last_sent_at=_utc(last),
        scans=tuple(scans),
    )


class _Call:
    """One journal call running in a worker thread, which the event loop can abort (its deadline passed, or its
    caller was cancelled) by shutting down the socket of the connection it uses: the blocked thread then gets
    an error at once, even from a server that stopped answering (a frozen server's kernel still acknowledges
    TCP, so keepalives would not notice). The socket is shut down, never closed, from the event loop: the
    thread alone closes its connection."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.aborted = False
        #: Set by the thread when the call is over, whatever its result.
        self.done = threading.Event()

    def attach(self, conn: psycopg.Connection[Any]) -> None:
        """The thread is about to use ``conn`` (refused once the call was aborted)."""
        with self._guard:
            if self.aborted:
                raise JournalError("the journal call was abandoned (its deadline passed or it was cancelled)")
            self._conn = conn

    def detach(self) -> None:
        """The thread no longer uses the connection (call before closing it)."""
        with self._guard:
            self._conn = None

    @property
    def on_connection(self) -> bool:
        """Whether the thread is using a connection (a statement may be on its way to the server)."""
        return self._conn is not None

    def abort(self) -> bool:
        """Abandon the call; True when a connection in use was shut down (its thread notices at once).
        A thread still connecting, or waiting for its turn, goes on until its own bound and then gives up."""
        with self._guard:
            self.aborted = True
            conn = self._conn
            if conn is None:
                return False
            try:
                sock = socket.socket(fileno=os.dup(conn.fileno()))
            except Exception:  # closed meanwhile: nothing to interrupt
                return False
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.close()  # the duplicate only: the connection's own descriptor stays with its thread
            return True


@attrs.define
class _Held:
    """A lease this journal object holds: its token, and whether ``mark_sent`` also needs it to be live."""

    token: int
    strict: bool


class PostgresJournal:
    """A journal in PostgreSQL (the ``[postgres]`` extra, psycopg 3), with a work queue for distributed
    batches. Same states, transitions and guarantees as :class:`~netverify_async.SqliteJournal`; see
    :mod:`netverify_async.postgres` for the rules of leases and fencing.

    ``conninfo`` is a libpq connection string or URL (``postgresql://user@host:5432/db``); ``name`` picks
    the journal inside the database (one schema per name, created by :meth:`open`). ``lease_seconds`` is how
    long a claimed item stays with this worker without :meth:`renew`; ``worker_id`` names this worker in the
    table (default: host name, process id and a random part); it must be unique to this object, since leases
    are told apart by it. ``operation_timeout`` bounds each call, connecting included (see below).

    As a plain batch journal (``client.submit_many(..., journal=PostgresJournal(...))``), ``begin_item``
    claims each item it will send, so two batches over the same references never send one twice; a second
    ``start_run`` is allowed (many workers run at once). For a distributed batch, one process :meth:`load`\\ s
    the items with a JSON payload each, and every worker :meth:`claim`\\ s some, renews its leases, and
    records the transitions of the items it holds.

    Every database call runs in a worker thread on one connection, one call at a time per object (works under
    asyncio and trio); calls waiting for their turn wait in async code and can be cancelled. A call takes at
    most ``operation_timeout`` seconds (connecting included): past that, or when its caller is cancelled and
    it has not finished within a second, it is aborted (its connection is shut down, so even a server that
    stopped answering cannot hold it) and a deadline raises :class:`~netverify_async.JournalError`: for a write,
    the outcome is then unknown. A lost connection raises :class:`~netverify_async.JournalError` too; the next
    call connects again.
    """

    def __init__(
        self,
        conninfo: str,
        name: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        worker_id: str | None = None,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> None:
        if not isinstance(conninfo, str) or not conninfo.strip():
            raise JournalError("conninfo: must be a non-empty PostgreSQL connection string or URL")
        self._connect_options = _connect_options(conninfo)
        self.name = name
        self.schema = schema_name(name)
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)):
            raise JournalError("lease_seconds: must be a number of seconds")
        if not 0 < float(lease_seconds) <= 7 * 24 * 3600:
            raise JournalError("lease_seconds: must be more than 0 and at most 7 days")
        self.lease_seconds = float(lease_seconds)
        if (
            isinstance(operation_timeout, bool)
            or not isinstance(operation_timeout, (int, float))
            or not 0 < float(operation_timeout) <= 3600
        ):
            raise JournalError("operation_timeout: must be a number of seconds, more than 0 and at most 3600")
        self.operation_timeout = float(operation_timeout)
        if worker_id is None:
            worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        if not isinstance(worker_id, str) or not worker_id or len(worker_id) > 200:
            raise JournalError("worker_id: must be a non-empty string of at most 200 characters")
        self.worker_id = worker_id
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        #: One call at a time per journal object; the others wait here, in async code (cancellable).
        self._limiter = anyio.CapacityLimiter(1)
        self._held: dict[str, _Held] = {}
        self._run_id: int | None = None
        self._closed = False
        self._statements: dict[str, sql.Composed] = {}

    def __repr__(self) -> str:
        return f"PostgresJournal(name={self.name!r}, worker_id={self.worker_id!r})"

    # -- plumbing --------------------------------------------------------------------------------------------

    def _q(self, text: str) -> sql.Composed:
        """``text`` with ``{s}`` replaced by the journal's schema (quoted as an identifier)."""
        composed = self._statements.get(text)
        if composed is None:
            from psycopg import sql

            composed = sql.SQL(text).format(s=sql.Identifier(self.schema))
            self._statements[text] = composed
        return composed

    def _connect(self, call: _Call) -> psycopg.Connection[Any]:
        if self._closed:
            raise JournalError("the journal is closed")
        if self._conn is not None:
            if not self._conn.closed and not self._conn.broken:
                return self._conn
            self._drop()
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise JournalError(
                "PostgresJournal needs psycopg 3: pip install 'netverify-async[postgres]'"
            ) from exc
        try:
            conn = psycopg.connect(
                psycopg.conninfo.make_conninfo(self._conninfo, **self._connect_options), autocommit=True
            )
        except psycopg.Error as exc:
            raise JournalError(f"cannot connect to the journal database: {_describe(exc)}") from exc
        # The fencing relies on READ COMMITTED: an UPDATE that waited for a row lock re-checks its condition
        # against the row as committed meanwhile. Pinned, whatever the database's default.
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        statement_timeout_ms = max(1, min(_STATEMENT_TIMEOUT_MS, int(self.operation_timeout * 500)))
        try:
            call.attach(conn)
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(f"SET statement_timeout = {statement_timeout_ms}")
            self._migrate(conn)
        except BaseException as exc:
            call.detach()
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise JournalError(
                    f"journal {self.name!r}: cannot prepare the schema: {_describe(exc)}"
                ) from exc
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - it is broken already; the next call connects again
                pass

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Create the schema or bring it to :data:`SCHEMA_VERSION`, in one transaction under an advisory lock."""
        if self._version(conn) == SCHEMA_VERSION:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_advisory_key(self.schema),))
            conn.execute(self._q("CREATE SCHEMA IF NOT EXISTS {s}"))
            conn.execute(
                self._q(
                    "CREATE TABLE IF NOT EXISTS {s}.schema_version "
                    "(version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            version = self._version(conn)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(self._q(statement))
                conn.execute(self._q("INSERT INTO {s}.schema_version (version) VALUES (%s)"), (target,))

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        found = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".schema_version',)).fetchone()
        if found is None or found[0] is None:
            return 0
        row = conn.execute(self._q("SELECT max(version) FROM {s}.schema_version")).fetchone()
        version = int(row[0]) if row is not None and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {self.name!r} has layout version {version}; this library reads up to "
                f"{SCHEMA_VERSION}"
            )
        return version

    def _exclusive(self) -> None:
        """Take the connection's thread lock (held by a call that is being abandoned, for a moment at most)."""
        if not self._lock.acquire(timeout=self.operation_timeout):
            raise JournalError(f"journal {self.name!r}: an earlier call still holds the connection")

    def _locked(self, fn: Callable[[psycopg.Connection[Any]], _T], call: _Call) -> _T:
        import psycopg
        from psycopg import errors

        retryable = (errors.UniqueViolation, errors.SerializationFailure, errors.DeadlockDetected)
        self._exclusive()
        try:
            attempt = 0
            reconnected = False
            while True:
                if call.aborted:
                    raise JournalError(
                        "the journal call was abandoned (its deadline passed or it was cancelled)"
                    )
                conn = self._connect(call)
                begun = False  # whether BEGIN was answered: from then on, the call's statements may have run
                try:
                    call.attach(conn)
                    try:
                        with conn.transaction():
                            begun = True
                            return fn(conn)
                    finally:
                        call.detach()
                except retryable:
                    attempt += 1
                    if attempt < _TRANSACTION_ATTEMPTS:
                        continue
                    raise JournalError(f"journal {self.name!r}: too much contention on one item") from None
                except psycopg.Error as exc:
                    if not (conn.closed or conn.broken):
                        raise JournalError(f"journal {self.name!r}: {_describe(exc)}") from exc
                    self._drop()
                    if not begun and not reconnected and not call.aborted:
                        # The connection was found dead at BEGIN (closed by the server while idle: a restart,
                        # idle_session_timeout, pg_terminate_backend): nothing of this call reached the
                        # server, so it is made again once, on a new connection.
                        reconnected = True
                        continue
                    raise JournalError(
                        f"journal {self.name!r}: the database connection was lost ({_describe(exc)}); "
                        "the outcome of this call is unknown, the next call connects again"
                    ) from exc
        finally:
            self._lock.release()

    async def _in_thread(self, target: Callable[[_Call], _T]) -> _T:
        """Run ``target`` in a worker thread, one call of this object at a time, within ``operation_timeout``.

        Callers queued behind the call in flight wait in async code and can be cancelled. The call in flight is
        aborted when its deadline passes (:class:`~netverify_async.JournalError`: the outcome of a write is then
        unknown) or, after a short grace, when its caller is cancelled; either way its thread has let go of the
        connection (or is about to) before this returns.
        """
        call = _Call()

        def work(call: _Call) -> _T:
            try:
                return target(call)
            finally:
                call.done.set()

        async with self._limiter:
            try:
                with anyio.move_on_after(self.operation_timeout):
                    return await anyio.to_thread.run_sync(work, call, abandon_on_cancel=True)
            except BaseException:
                if not call.done.is_set():  # cancelled while the thread works on the call
                    with anyio.CancelScope(shield=True):
                        if call.on_connection:  # a write may be under way: let it end by itself if it can
                            await self._wait_done(call, _CANCEL_GRACE_S)
                        if not call.done.is_set() and call.abort():
                            await self._wait_done(call, _ABORT_GRACE_S)
                raise
            if call.abort():
                with anyio.CancelScope(shield=True):
                    await self._wait_done(call, _ABORT_GRACE_S)
        raise JournalError(
            f"journal {self.name!r}: no answer from the database within {self.operation_timeout:g} s "
            "(operation_timeout); the outcome of this call is unknown, the next call connects again"
        )

    @staticmethod
    async def _wait_done(call: _Call, seconds: float) -> None:
        if not call.done.is_set():
            await anyio.to_thread.run_sync(call.done.wait, seconds, abandon_on_cancel=True)

    async def _run(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``fn`` in one transaction (see :meth:`_in_thread` for cancellation and the deadline)."""
        return await self._in_thread(lambda call: self._locked(fn, call))

    def _lease_interval(self) -> _dt.timedelta:
        return _dt.timedelta(seconds=self.lease_seconds)

    @staticmethod
    def _now(conn: psycopg.Connection[Any]) -> _dt.datetime:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = _utc(row[0])
        assert now is not None
        return now

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> PostgresJournal:
        """Connect, and create the journal's schema (or upgrade it) now instead of at the first use."""
        await self._run(lambda conn: None)
        return self

    async def __aenter__(self) -> PostgresJournal:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _give_back(self, conn: psycopg.Connection[Any], held: list[tuple[str, int]]) -> None:
        """Return the items of ``held`` that are still unsent (``pending``, or ``failed`` items taken again by
        ``begin_item``) to the queue: their lease ends now, so a re-run can take them at once."""
        if held:
            conn.execute(
                self._q(
                    "UPDATE {s}.items AS i SET owner = NULL, token = NULL, lease_until = NULL "
                    "FROM unnest(%s::text[], %s::bigint[]) AS h(ref, token) "
                    "WHERE i.ref = h.ref AND i.token = h.token AND i.state IN ('pending', 'failed')"
                ),
                ([ref for ref, _ in held], [token for _, token in held]),
            )

    def _close_sync(self, held: list[tuple[str, int]], call: _Call) -> None:
        self._exclusive()
        try:
            self._closed = True
            conn = self._conn
            if held and conn is not None and not conn.closed and not conn.broken:
                try:
                    call.attach(conn)
                    try:
                        with conn.transaction():
                            self._give_back(conn, held)
                    finally:
                        call.detach()
                except Exception:  # noqa: S110 - best effort: the leases expire by themselves
                    pass
            self._drop()
        finally:
            self._lock.release()

    async def aclose(self) -> None:
        """Give the items this object holds and has not sent back to the queue (best effort: leases of a
        process that dies expire by themselves), and close the connection. Idempotent."""
        # ``_held`` is changed on the event loop's thread only; the worker thread gets a copy
        held = [(ref, h.token) for ref, h in self._held.items()]
        with anyio.CancelScope(shield=True):
            try:
                await self._in_thread(lambda call: self._close_sync(held, call))
            except JournalError:
                pass  # best effort (a database that does not answer): the leases expire by themselves
            finally:
                self._closed = True
        self._held.clear()

    # -- rows ------------------------------------------------------------------------------------------------

    def _load_entry(
        self, conn: psycopg.Connection[Any], ref: str, *, lock: bool = False
    ) -> JournalEntry | None:
        text = f"SELECT {_ITEM_COLUMNS} FROM {{s}}.items WHERE ref = %s"  # noqa: S608 - constant text
        if lock:
            text += " FOR UPDATE"
        row = conn.execute(self._q(text), (ref,)).fetchone()
        if row is None:
            return None
        scans = conn.execute(
            self._q(f"SELECT {_SCAN_COLUMNS} FROM {{s}}.scans WHERE ref = %s ORDER BY position"),  # noqa: S608
            (ref,),
        ).fetchall()
        return _entry_from_row(row, map(_scan_from_row, scans))

    def _load_entries(
        self, conn: psycopg.Connection[Any], where: str, args: tuple[Any, ...], order: str
    ) -> list[JournalEntry]:
        # ``where`` and ``order`` are fixed text of this module; the values go in ``args``.
        rows = conn.execute(
            self._q(f"SELECT {_ITEM_COLUMNS} FROM {{s}}.items {where} ORDER BY {order}"),  # noqa: S608
            args,
        ).fetchall()
        if not rows:
            return []
        scans: dict[str, list[JournalScan]] = {}
        scan_rows = conn.execute(
            self._q(
                f"SELECT {_SCAN_COLUMNS} FROM {{s}}.scans "  # noqa: S608 - constant text
                f"WHERE ref IN (SELECT ref FROM {{s}}.items {where}) ORDER BY ref, position"
            ),
            args,
        ).fetchall()
        for scan_row in scan_rows:
            scans.setdefault(scan_row[0], []).append(_scan_from_row(scan_row))
        return [_entry_from_row(row, scans.get(row[0], ())) for row in rows]

    def _write_entry(
        self, conn: psycopg.Connection[Any], old: JournalEntry | None, new: JournalEntry
    ) -> None:
        """Store ``new`` (a decision of :mod:`netverify_async._reconcile`) over ``old``."""
        values = (
            new.state.value,
            new.scan_reference,
            new.receipt_timestamp,
            new.error_type,
            new.error_code,
            new.safe_to_retry,
            new.updated_at,
            new.reconciled_at,
            new.duplicate_scan,
        )
        if old is None:
            conn.execute(
                self._q(
                    "INSERT INTO {s}.items (state, scan_reference, receipt_timestamp, error_type, error_code, "
                    "safe_to_retry, updated_at, reconciled_at, duplicate_scan, ref, sends, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s, %s, %s, now())"
                ),
                (*values, new.merchant_id_scan_reference, new.sends),
            )
        else:
            conn.execute(
                self._q(
                    "UPDATE {s}.items SET state = %s, scan_reference = %s, receipt_timestamp = %s, "
                    "error_type = %s, error_code = %s, safe_to_retry = %s, updated_at = coalesce(%s, now()), "
                    "reconciled_at = %s, duplicate_scan = %s WHERE ref = %s"
                ),
                (*values, new.merchant_id_scan_reference),
            )
        before = {scan.scan_reference: scan for scan in (old.scans if old is not None else ())}
        for position, scan in enumerate(new.scans):
            if before.get(scan.scan_reference) == scan:
                continue
            result = scan.result
            conn.execute(
                self._q(
                    "INSERT INTO {s}.scans (ref, scan_reference, position, receipt_timestamp, seen_at, "
                    "callback_at, verification_status, reject_reason_code, reject_reason_description, "
                    "reject_reason_details, similarity, validity, callback_date) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (ref, scan_reference) DO UPDATE SET position = excluded.position, "
                    "receipt_timestamp = excluded.receipt_timestamp, seen_at = excluded.seen_at, "
                    "callback_at = excluded.callback_at, verification_status = excluded.verification_status, "
                    "reject_reason_code = excluded.reject_reason_code, "
                    "reject_reason_description = excluded.reject_reason_description, "
                    "reject_reason_details = excluded.reject_reason_details, "
                    "similarity = excluded.similarity, validity = excluded.validity, "
                    "callback_date = excluded.callback_date"
                ),
                (
                    new.merchant_id_scan_reference,
                    scan.scan_reference,
                    position,
                    scan.receipt_timestamp,
                    scan.seen_at,
                    scan.callback_at,
                    *(
                        (None,) * 7
                        if result is None
                        else (
                            result.verification_status,
                            result.reject_reason_code,
                            result.reject_reason_description,
                            list(result.reject_reason_details) or None,
                            result.similarity,
                            result.validity,
                            result.callback_date,
                        )
                    ),
                ),
            )

    def _foreign_lease(self, conn: psycopg.Connection[Any], ref: str) -> tuple[bool, str | None]:
        """Lock the row of ``ref``; (whether it exists, its state if another worker holds a live lease on it)."""
        row = conn.execute(
            self._q(
                "SELECT state, owner IS NOT NULL AND owner <> %s AND lease_until > now() "
                "FROM {s}.items WHERE ref = %s FOR UPDATE"
            ),
            (self.worker_id, ref),
        ).fetchone()
        if row is None:
            return False, None
        return True, (row[0] if row[1] else None)

    def _held_elsewhere(self, action: str) -> JournalError:
        return JournalError(
            f"{action}: another worker holds a live lease on this item (it is being sent or about to be); "
            "nothing was recorded. If that worker died, its lease expires within "
            f"{self.lease_seconds:g} s of its last renewal"
        )

    # -- the batch's side ------------------------------------------------------------------------------------

    async def start_run(self) -> None:
        """Record the start of a batch on this journal object (no lock: many workers run at once)."""

        def start(conn: psycopg.Connection[Any]) -> None:
            if self._run_id is not None:
                raise JournalError("this journal is already used by a running batch")
            row = conn.execute(
                self._q(
                    "INSERT INTO {s}.runs (worker_id, started_at, status) VALUES (%s, now(), 'running') "
                    "RETURNING id"
                ),
                (self.worker_id,),
            ).fetchone()
            assert row is not None
            self._run_id = int(row[0])

        await self._run(start)

    async def finish_run(self, status: str, counts: Mapping[str, int]) -> None:
        """Record how the batch ended; the items its ``begin_item`` took and did not send go back to the queue."""
        payload = json.dumps({str(k): int(v) for k, v in counts.items()}, sort_keys=True)
        taken = [(ref, h.token) for ref, h in self._held.items() if not h.strict]

        run_id = self._run_id

        def finish(conn: psycopg.Connection[Any]) -> None:
            if run_id is not None:
                conn.execute(
                    self._q(
                        "UPDATE {s}.runs SET finished_at = now(), status = %s, counts = %s::jsonb "
                        "WHERE id = %s"
                    ),
                    (status, payload, run_id),
                )
            # the items this batch took by itself (begin_item) and did not send go back to the queue
            self._give_back(conn, taken)

        try:
            await self._run(finish)
        finally:
            # the run is over for this object even when the database could not be told (a connection that
            # failed before the statement): a later start_run must not find it "already running"
            self._run_id = None
        for ref, token in taken:
            held = self._held.get(ref)
            if held is not None and held.token == token:
                del self._held[ref]

    async def begin_item(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry left by earlier runs, or None; a new reference is recorded as ``pending``.

        An item this object claimed is checked against its token (:class:`LeaseLostError` when the lease was
        taken over). Any other item that a batch would send (new, ``pending`` or ``failed``) is claimed here
        with a lease, so that two batches never send it both; :class:`~netverify_async.JournalError` when
        another worker holds a live lease on it. Items with an outcome (``sent``, ``unknown``, ``receipt``) are
        returned as they are, not claimed.
        """
        ref = merchant_id_scan_reference

        def begin(conn: psycopg.Connection[Any]) -> tuple[JournalEntry | None, _Held | None]:
            held = self._held.get(ref)
            if held is not None:
                row = conn.execute(
                    self._q("SELECT 1 FROM {s}.items WHERE ref = %s AND token = %s"), (ref, held.token)
                ).fetchone()
                if row is None:
                    raise LeaseLostError(
                        "begin_item: the lease on this item was lost (another worker claimed it)", [ref]
                    )
                return self._load_entry(conn, ref), None
            inserted = conn.execute(
                self._q(
                    "INSERT INTO {s}.items (ref, state, owner, token, lease_until, created_at, updated_at) "
                    "VALUES (%s, 'pending', %s, nextval('{s}.lease_tokens'), now() + %s, now(), now()) "
                    "ON CONFLICT (ref) DO NOTHING RETURNING token"
                ),
                (ref, self.worker_id, self._lease_interval()),
            ).fetchone()
            if inserted is not None:
                return None, _Held(int(inserted[0]), strict=False)
            _exists, foreign = self._foreign_lease(conn, ref)
            entry = self._load_entry(conn, ref)
            assert entry is not None
            if entry.state.value not in _SENDABLE:
                return entry, None
            if foreign is not None:
                raise self._held_elsewhere("begin_item")
            row = conn.execute(
                self._q(
                    "UPDATE {s}.items SET owner = %s, token = nextval('{s}.lease_tokens'), "
                    "lease_until = now() + %s WHERE ref = %s RETURNING token"
                ),
                (self.worker_id, self._lease_interval(), ref),
            ).fetchone()
            assert row is not None
            return entry, _Held(int(row[0]), strict=False)

        entry, held = await self._run(begin)
        if held is not None:
            self._held[ref] = held
        return entry

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        """Record, durably, that the upload is about to start (committed before returning).

        For an item this object holds a lease on: only while its token is current (and, for a lease from
        :meth:`claim`, not expired); otherwise :class:`LeaseLostError` and nothing is written: do not send.
        Any other item is taken over by this object (refused with :class:`~netverify_async.JournalError` while
        another worker holds a live lease on it). An item that already has a known scan stays ``receipt``:
        only its count of sends and its ``last_sent_at`` change.
        """
        ref = merchant_id_scan_reference
        update = (
            "UPDATE {s}.items SET sends = sends + 1, updated_at = now(), last_sent_at = now(), "
            "state = CASE WHEN state = 'receipt' THEN 'receipt' ELSE 'sent' END, "
            "error_type = NULL, error_code = NULL, safe_to_retry = NULL"
        )

        def sent(conn: psycopg.Connection[Any]) -> _Held | None:
            # This transaction's commit waits for the disk (and the synchronous standbys) whatever the
            # session or server says; a stronger setting (remote_apply) is kept.
            conn.execute(_DURABLE_COMMIT)
            held = self._held.get(ref)
            if held is not None:
                live = " AND lease_until > now()" if held.strict else ""
                cursor = conn.execute(
                    self._q(f"{update} WHERE ref = %s AND token = %s{live}"), (ref, held.token)
                )
                if cursor.rowcount != 1:
                    raise LeaseLostError(
                        "mark_sent: the lease on this item expired or was taken over; nothing was recorded, "
                        "do not send",
                        [ref],
                    )
                return None
            exists, foreign = self._foreign_lease(conn, ref)
            if foreign is not None:
                raise self._held_elsewhere("mark_sent")
            if not exists:
                row = conn.execute(
                    self._q(
                        "INSERT INTO {s}.items (ref, state, sends, owner, token, lease_until, created_at, "
                        "updated_at, last_sent_at) VALUES (%s, 'sent', 1, %s, nextval('{s}.lease_tokens'), "
                        "now() + %s, now(), now(), now()) RETURNING token"
                    ),
                    (ref, self.worker_id, self._lease_interval()),
                ).fetchone()
            else:
                row = conn.execute(
                    self._q(
                        f"{update}, owner = %s, token = nextval('{{s}}.lease_tokens'), lease_until = now() + %s "
                        "WHERE ref = %s RETURNING token"
                    ),
                    (self.worker_id, self._lease_interval(), ref),
                ).fetchone()
            assert row is not None
            return _Held(int(row[0]), strict=False)

        held = await self._run(sent)
        if held is not None:
            self._held[ref] = held

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: ScanReceipt) -> None:
        """Record Jumio's receipt (scan reference and timestamp), with the rules of
        :func:`~netverify_async._reconcile.reconcile_receipt` (a callback may have named a scan already).

        A receipt is a fact about Jumio and is always recorded. If this object's lease on the item was taken
        over meanwhile, :class:`LeaseLostError` is raised *after* recording it.
        """
        ref = merchant_id_scan_reference

        def done(conn: psycopg.Connection[Any]) -> bool:
            held = self._held.get(ref)
            lost = False
            if held is not None:
                row = conn.execute(
                    self._q("SELECT token = %s FROM {s}.items WHERE ref = %s FOR UPDATE"), (held.token, ref)
                ).fetchone()
                lost = row is None or not row[0]
            old = self._load_entry(conn, ref, lock=True)
            self._write_entry(conn, old, reconcile_receipt(old, ref, receipt, self._now(conn)))
            if not lost:
                conn.execute(self._q("UPDATE {s}.items SET lease_until = NULL WHERE ref = %s"), (ref,))
            return lost

        lost = await self._run(done)
        self._held.pop(ref, None)
        if lost:
            raise LeaseLostError(
                "mark_receipt: the receipt was recorded, but the lease on this item had been taken over",
                [ref],
            )

    async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        """Record a failure that created no scan: the error's class name, code and ``safe_to_retry``.

        An item with a known scan stays ``receipt``. Conditioned on this object's token for an item it
        holds (:class:`LeaseLostError` otherwise, nothing written); refused while another worker holds a live
        lease on any other item.
        """
        ref = merchant_id_scan_reference
        values = (type(error).__name__, error_code_of(error), failure_is_safe(error))

        def failed(conn: psycopg.Connection[Any]) -> None:
            held = self._held.get(ref)
            update = (
                "UPDATE {s}.items SET state = 'failed', error_type = %s, error_code = %s, safe_to_retry = %s, "
                "updated_at = now(), lease_until = NULL WHERE ref = %s AND state <> 'receipt'"
            )
            if held is not None:
                row = conn.execute(
                    self._q("SELECT 1 FROM {s}.items WHERE ref = %s AND token = %s FOR UPDATE"),
                    (ref, held.token),
                ).fetchone()
                if row is None:
                    raise LeaseLostError(
                        "mark_failed: the lease on this item was taken over; nothing was recorded", [ref]
                    )
                conn.execute(self._q(update), (*values, ref))
                return
            exists, foreign = self._foreign_lease(conn, ref)
            if foreign is not None:
                raise self._held_elsewhere("mark_failed")
            if exists:
                conn.execute(self._q(update), (*values, ref))
            else:
                conn.execute(
                    self._q(
                        "INSERT INTO {s}.items (ref, state, error_type, error_code, safe_to_retry, created_at, "
                        "updated_at) VALUES (%s, 'failed', %s, %s, %s, now(), now())"
                    ),
                    (ref, *values),
                )

        await self._run(failed)
        self._held.pop(ref, None)  # (kept after LeaseLostError: later calls about it raise it again)

    async def mark_unknown(self, merchant_id_scan_references: Iterable[str], error_type: str) -> None:
        """Record that these uploads may have created a scan (one transaction for all of them).

        An item whose scan is already known stays ``receipt``. Items this object holds are written only while
        its token is current; the others are written, and :class:`LeaseLostError` (with their references in
        ``refs``) is raised after the commit. Refused while another worker holds a live lease on an item this
        object does not hold.
        """
        refs = list(dict.fromkeys(merchant_id_scan_references))
        if not refs:
            return

        def unknown(conn: psycopg.Connection[Any]) -> list[str]:
            lost: list[str] = []
            for ref in refs:
                held = self._held.get(ref)
                if held is not None:
                    row = conn.execute(
                        self._q("SELECT 1 FROM {s}.items WHERE ref = %s AND token = %s FOR UPDATE"),
                        (ref, held.token),
                    ).fetchone()
                    if row is None:
                        lost.append(ref)
                        continue
                    exists = True
                else:
                    exists, foreign = self._foreign_lease(conn, ref)
                    if foreign is not None:
                        raise self._held_elsewhere("mark_unknown")
                if exists:
                    conn.execute(
                        self._q(
                            "UPDATE {s}.items SET state = 'unknown', error_type = %s, error_code = NULL, "
                            "safe_to_retry = false, updated_at = now(), lease_until = NULL "
                            "WHERE ref = %s AND state <> 'receipt'"
                        ),
                        (error_type, ref),
                    )
                else:
                    conn.execute(
                        self._q(
                            "INSERT INTO {s}.items (ref, state, error_type, safe_to_retry, created_at, "
                            "updated_at) VALUES (%s, 'unknown', %s, false, now(), now())"
                        ),
                        (ref, error_type),
                    )
            return lost

        lost = await self._run(unknown)
        for ref in refs:
            if ref not in lost:
                self._held.pop(ref, None)
        if lost:
            raise LeaseLostError(
                f"mark_unknown: the lease on {len(lost)} item(s) was taken over; those were not recorded",
                lost,
            )

    # -- the queue -------------------------------------------------------------------------------------------

    async def load(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Add items to the queue: ``(merchant reference, JSON payload)`` pairs; returns how many were new.

        Idempotent: a reference already in the journal (loaded before, or begun by a batch) is left exactly as
        it is. The payload is what a worker needs to rebuild the request; it is stored as given (see the
        module docstring). Raises :class:`~netverify_async.JournalError` for an empty reference or a payload
        that is not a JSON object.
        """
        rows: list[tuple[str, str]] = []
        for index, pair in enumerate(items):
            try:
                ref, payload = pair
            except (TypeError, ValueError):
                raise JournalError(f"load: item {index} must be a (reference, payload) pair") from None
            if not isinstance(ref, str) or not ref.strip():
                raise JournalError(f"load: item {index}: the reference must be a non-empty string")
            if not isinstance(payload, Mapping):
                raise JournalError(f"load: item {index}: the payload must be a mapping (a JSON object)")
            try:
                text = json.dumps(dict(payload), allow_nan=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise JournalError(
                    f"load: item {index}: the payload is not JSON-serialisable ({type(exc).__name__})"
                ) from None
            rows.append((ref, text))

        def insert(conn: psycopg.Connection[Any]) -> int:
            added = 0
            for start in range(0, len(rows), _LOAD_CHUNK):
                chunk = rows[start : start + _LOAD_CHUNK]
                cursor = conn.execute(
                    self._q(
                        "INSERT INTO {s}.items (ref, state, payload, created_at, updated_at) "
                        "SELECT r, 'pending', p::jsonb, now(), now() "
                        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(r, p, n) ORDER BY n "
                        "ON CONFLICT (ref) DO NOTHING"
                    ),
                    ([r for r, _ in chunk], [p for _, p in chunk]),
                )
                added += max(cursor.rowcount, 0)
            return added

        if not rows:
            return 0
        return await self._run(insert)

    async def claim(self, limit: int = 1) -> list[Lease]:
        """Take up to ``limit`` queued items (loaded, not leased or with an expired lease, in load order).

        Each gets a new token and a lease of ``lease_seconds`` on the database's clock. Items that other
        workers are claiming at the same moment are skipped, not waited for (``FOR UPDATE SKIP LOCKED``), so
        no item is handed to two workers. Items that were sent are never handed out again.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise JournalError("claim: limit must be a positive integer")

        def take(conn: psycopg.Connection[Any]) -> list[Lease]:
            rows = conn.execute(
                self._q(
                    "WITH picked AS (SELECT ref FROM {s}.items "
                    "WHERE state = 'pending' AND payload IS NOT NULL "
                    "AND (lease_until IS NULL OR lease_until <= now()) "
                    "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "UPDATE {s}.items AS i SET owner = %s, token = nextval('{s}.lease_tokens'), "
                    "lease_until = now() + %s FROM picked WHERE i.ref = picked.ref "
                    "RETURNING i.ref, i.payload, i.token, i.lease_until, i.seq"
                ),
                (limit, self.worker_id, self._lease_interval()),
            ).fetchall()
            rows.sort(key=lambda row: row[4])
            return [
                Lease(ref=ref, payload=dict(payload), token=int(token), expires_at=_utc(until))  # type: ignore[arg-type]
                for ref, payload, token, until, _seq in rows
            ]

        leases = await self._run(take)
        for lease in leases:
            self._held[lease.ref] = _Held(lease.token, strict=True)
        return leases

    async def renew(self, leases: Iterable[Lease]) -> list[str]:
        """Extend these leases by ``lease_seconds`` from now; returns the references whose lease was lost
        (another worker claimed the item: its token changed) or that are no longer ``pending`` (sent, or with an
        outcome: there is nothing left to hold, and such a lease is never extended)."""
        pairs = [(lease.ref, lease.token) for lease in leases]
        if not pairs:
            return []

        def extend(conn: psycopg.Connection[Any]) -> list[str]:
            rows = conn.execute(
                self._q(
                    "UPDATE {s}.items AS i SET lease_until = now() + %s "
                    "FROM unnest(%s::text[], %s::bigint[]) AS l(ref, token) "
                    "WHERE i.ref = l.ref AND i.token = l.token AND i.state = 'pending' RETURNING i.ref"
                ),
                (self._lease_interval(), [r for r, _ in pairs], [t for _, t in pairs]),
            ).fetchall()
            kept = {ref for (ref,) in rows}
            return [ref for ref, _ in pairs if ref not in kept]

        return await self._run(extend)

    async def release(self, lease: Lease) -> bool:
        """Give an unsent item back to the queue (``pending`` or ``failed`` -> queued, for another worker).

        Returns False when the lease was already lost. Raises :class:`~netverify_async.JournalError` for an
        item that was sent or has an outcome that may involve a scan (it must never be handed out again).
        """

        def give_back(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                self._q("SELECT state FROM {s}.items WHERE ref = %s AND token = %s FOR UPDATE"),
                (lease.ref, lease.token),
            ).fetchone()
            if row is None:
                return False
            if row[0] not in _SENDABLE:
                raise JournalError(f"release: only an unsent item can be given back; this one is {row[0]!r}")
            conn.execute(
                self._q(
                    "UPDATE {s}.items SET state = 'pending', owner = NULL, token = NULL, lease_until = NULL, "
                    "error_type = NULL, error_code = NULL, safe_to_retry = NULL, updated_at = now() "
                    "WHERE ref = %s"
                ),
                (lease.ref,),
            )
            return True

        released = await self._run(give_back)
        held = self._held.get(lease.ref)
        if held is not None and held.token == lease.token:
            del self._held[lease.ref]
        return released

    async def requeue_failed(self) -> int:
        """Put every loaded ``failed`` item (certainly no scan: see :meth:`mark_failed`) back in the queue, as a
        re-run of a :class:`~netverify_async.SqliteJournal` batch sends them again; returns how many. Their
        error fields are cleared. Items that were sent without an answer (``sent``, ``unknown``) are never
        requeued: reconcile them first (:meth:`mark_reconciled`)."""

        def requeue(conn: psycopg.Connection[Any]) -> int:
            cursor = conn.execute(
                self._q(
                    "UPDATE {s}.items SET state = 'pending', owner = NULL, token = NULL, lease_until = NULL, "
                    "error_type = NULL, error_code = NULL, safe_to_retry = NULL, updated_at = now() "
                    "WHERE state = 'failed' AND payload IS NOT NULL"
                )
            )
            return max(cursor.rowcount, 0)

        return await self._run(requeue)

    async def queued_count(self) -> int:
        """Items a :meth:`claim` could take now (loaded, ``pending``, no live lease)."""
        row = await self._run(
            lambda conn: conn.execute(
                self._q(
                    "SELECT count(*) FROM {s}.items WHERE state = 'pending' AND payload IS NOT NULL "
                    "AND (lease_until IS NULL OR lease_until <= now())"
                )
            ).fetchone()
        )
        return int(row[0]) if row is not None else 0

    async def pending_count(self) -> int:
        """Loaded items not sent yet (``pending``: queued, or leased by a worker that has not sent them). Zero
        means the queue is drained: every loaded item has an outcome (or is ``sent``, its upload under way).
        Items a plain batch began without loading them are not counted (no worker can claim them)."""
        row = await self._run(
            lambda conn: conn.execute(
                self._q("SELECT count(*) FROM {s}.items WHERE state = 'pending' AND payload IS NOT NULL")
            ).fetchone()
        )
        return int(row[0]) if row is not None else 0

    # -- the callbacks' side ---------------------------------------------------------------------------------

    async def record_callback(self, callback: NetverifyCallback) -> CallbackReconciliation:
        """Learn from one of Jumio's callbacks; the rules of :meth:`SqliteJournal.record_callback
        <netverify_async.SqliteJournal.record_callback>` (settle, record, flag a duplicate, ignore the same
        callback twice or a reference not in the journal). Committed before this returns."""
        facts = CallbackFacts.from_callback(callback)

        def record(conn: psycopg.Connection[Any]) -> CallbackReconciliation:
            ref = facts.merchant_id_scan_reference
            if ref is None:
                found = conn.execute(
                    self._q(
                        'SELECT ref FROM {s}.scans WHERE scan_reference = %s ORDER BY ref COLLATE "C" LIMIT 1'
                    ),
                    (facts.scan_reference,),
                ).fetchone()
                ref = None if found is None else found[0]
            old = None if ref is None else self._load_entry(conn, ref, lock=True)
            decision = reconcile_callback(old, facts, self._now(conn))
            if decision.changed and decision.entry is not None:
                self._write_entry(conn, old, decision.entry)
            return decision

        return await self._run(record)

    async def record_result(
        self, merchant_id_scan_reference: str, scan_reference: str, result: ScanResult
    ) -> bool:
        """Store a verification result learnt by polling, with a scan the journal already knows (see
        :meth:`SqliteJournal.record_result <netverify_async.SqliteJournal.record_result>`: stored as given,
        its ``callback_date`` included). True when written."""
        ref = merchant_id_scan_reference

        def record(conn: psycopg.Connection[Any]) -> bool:
            old = self._load_entry(conn, ref, lock=True)
            known = (
                None
                if old is None
                else next((s for s in old.scans if s.scan_reference == scan_reference), None)
            )
            if old is None or known is None or known.result is not None:
                return False
            scans = tuple(
                attrs.evolve(s, result=result) if s.scan_reference == scan_reference else s for s in old.scans
            )
            self._write_entry(conn, old, attrs.evolve(old, scans=scans, updated_at=self._now(conn)))
            return True

        return await self._run(record)

    # -- inspection and reconciliation -----------------------------------------------------------------------

    async def get(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        """The entry of one reference (with its scans), or None."""
        ref = merchant_id_scan_reference
        return await self._run(lambda conn: self._load_entry(conn, ref))

    async def entries(self, state: JournalState | str | None = None) -> list[JournalEntry]:
        """Every entry (or those in ``state``) with its scans, ordered by reference."""
        if state is None:
            return await self._run(lambda conn: self._load_entries(conn, "", (), _BY_REF))
        value = JournalState(state).value
        return await self._run(lambda conn: self._load_entries(conn, "WHERE state = %s", (value,), _BY_REF))

    async def states(self) -> dict[str, JournalState]:
        """``{merchant reference: state}`` for every reference in the journal."""
        rows = await self._run(
            lambda conn: conn.execute(self._q("SELECT ref, state FROM {s}.items")).fetchall()
        )
        return {ref: JournalState(state) for ref, state in rows}

    async def counts(self) -> dict[JournalState, int]:
        """How many references are in each state (every state present, zeros included)."""
        rows = await self._run(
            lambda conn: conn.execute(
                self._q("SELECT state, count(*) FROM {s}.items GROUP BY state")
            ).fetchall()
        )
        found = {JournalState(state): int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in JournalState}

    async def unknown(self) -> list[str]:
        """References whose outcome is unknown (``sent`` or ``unknown``): reconcile them before resending."""
        rows = await self._run(
            lambda conn: conn.execute(
                self._q(
                    "SELECT ref FROM {s}.items WHERE state IN ('sent', 'unknown') ORDER BY ref COLLATE \"C\""
                )
            ).fetchall()
        )
        return [ref for (ref,) in rows]

    async def unresolved(self, older_than: _dt.timedelta | None = None) -> list[JournalEntry]:
        """Entries whose outcome is unknown (``sent`` or ``unknown``), the longest-waiting first; with
        ``older_than``, only those last sent at least that long ago (by the database's clock)."""
        where = "WHERE state IN ('sent', 'unknown')"
        args: tuple[Any, ...] = ()
        if older_than is not None:
            if older_than < _dt.timedelta(0):
                raise JournalError("unresolved: older_than must not be negative")
            where += " AND coalesce(last_sent_at, updated_at) <= now() - %s"
            args = (older_than,)
        order = f"coalesce(last_sent_at, updated_at), {_BY_REF}"
        return await self._run(lambda conn: self._load_entries(conn, where, args, order))

    async def last_callback_at(self) -> _dt.datetime | None:
        """When the journal last recorded a callback for one of its scans (None if it never did)."""
        row = await self._run(
            lambda conn: conn.execute(self._q("SELECT max(callback_at) FROM {s}.scans")).fetchone()
        )
        return None if row is None else _utc(row[0])

    async def runs(self) -> list[dict[str, Any]]:
        """The batches recorded so far, oldest first: ``id``, ``started_at``, ``finished_at``, ``status``,
        ``counts`` and ``worker_id``. A run still ``running`` was killed (or is running now)."""
        rows = await self._run(
            lambda conn: conn.execute(
                self._q(
                    "SELECT id, started_at, finished_at, status, counts, worker_id FROM {s}.runs ORDER BY id"
                )
            ).fetchall()
        )
        return [
            {
                "id": run_id,
                "started_at": _utc(started),
                "finished_at": _utc(finished),
                "status": status,
                "counts": counts,
                "worker_id": worker_id,
            }
            for run_id, started, finished, status, counts, worker_id in rows
        ]

    async def mark_reconciled(
        self,
        merchant_id_scan_reference: str,
        scan_reference: str | None,
        *,
        timestamp: _dt.datetime | None = None,
    ) -> JournalEntry:
        """Settle an unknown outcome (``sent`` or ``unknown``) once you know what happened at Jumio: with the
        scan it created (``receipt``), or ``None`` for "no scan": the item goes back to ``pending`` (queued,
        for a worker to claim, if it was loaded) and the next run sends it. Same rules as
        :meth:`SqliteJournal.mark_reconciled <netverify_async.SqliteJournal.mark_reconciled>`."""
        ref = merchant_id_scan_reference
        if scan_reference is not None and (not isinstance(scan_reference, str) or not scan_reference.strip()):
            raise JournalError("mark_reconciled: scan_reference must be a non-empty string or None")
        if timestamp is not None and timestamp.tzinfo is None:
            raise JournalError("mark_reconciled: timestamp must be timezone-aware")

        def reconcile(conn: psycopg.Connection[Any]) -> JournalEntry:
            old = self._load_entry(conn, ref, lock=True)
            if old is None:
                raise JournalError("mark_reconciled: the journal has no such merchant reference")
            if not old.state.outcome_unknown:
                raise JournalError(
                    "mark_reconciled: only 'sent' or 'unknown' items can be reconciled, "
                    f"this one is {old.state.value!r}"
                )
            now = self._now(conn)
            if scan_reference is None:
                conn.execute(
                    self._q(
                        "UPDATE {s}.items SET state = 'pending', scan_reference = NULL, "
                        "receipt_timestamp = NULL, error_type = NULL, error_code = NULL, safe_to_retry = NULL, "
                        "owner = NULL, token = NULL, lease_until = NULL, updated_at = %s, reconciled_at = %s "
                        "WHERE ref = %s"
                    ),
                    (now, now, ref),
                )
            else:
                self._write_entry(conn, old, reconcile_found(old, ref, scan_reference, timestamp, now))
            entry = self._load_entry(conn, ref)
            assert entry is not None
            return entry

        entry = await self._run(reconcile)
        self._held.pop(ref, None)
        return entry


def failure_is_safe(error: BaseException) -> bool:
    """Whether ``error`` proves that nothing was processed (the journal's ``safe_to_retry``)."""
    from ._errors import FailureKind, failure_kind

    return failure_kind(error) is not FailureKind.AMBIGUOUS
