"""The PostgreSQL journal at its edges: a frozen server, queued and cancelled callers, database defaults it must
not depend on (isolation level, synchronous_commit, collation), leases that run out under a plain batch, and
renewals of finished items. Each test uses its own journal name; the ones that change database settings use a
throwaway database, and the ones that freeze the server use a server of this module's own.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import psycopg
import pytest
from _batch_support import client_for, make_request, refs, scans_per_reference
from _postgres_support import journal_name

from netverify_async import (
    JournalError,
    JournalState,
    OutcomeStatus,
    ScanReceipt,
    SqliteJournal,
    SubmissionOutcomeUnknown,
)
from netverify_async.postgres import LeaseLostError, PostgresJournal, schema_name

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

#: A test whose fix is missing would hang forever on a frozen server: the server is resumed after this long so
#: that such a test fails (it checks whether this guard had to act) instead of hanging.
HANG_GUARD_S = 30.0


def admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@contextmanager
def throwaway_database(url: str, *settings: str, create: str = "") -> Iterator[str]:
    """A new database on the server of ``url`` (``ALTER DATABASE ... SET`` each of ``settings``); its URL."""
    name = f"nv_{uuid.uuid4().hex[:12]}"
    with admin(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {create}')
        for setting in settings:
            conn.execute(f'ALTER DATABASE "{name}" SET {setting}')
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Frozen:
    """The server's postmaster and one backend stopped with SIGSTOP (a paused VM, a stalled disk: the kernel
    still acknowledges TCP), resumed by :meth:`resume`, or by the hang guard after :data:`HANG_GUARD_S`."""

    def __init__(self, server: Any, backend_pid: int) -> None:
        with open(os.path.join(server.data, "postmaster.pid")) as fh:
            postmaster = int(fh.readline())
        self.pids = [postmaster, backend_pid]
        self.guard_acted = False
        self._lock = threading.Lock()
        self._frozen = False
        self._timer = threading.Timer(HANG_GUARD_S, self._guard)
        self._timer.daemon = True

    def freeze(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        self._frozen = True
        self._timer.start()

    def _guard(self) -> None:
        self.guard_acted = True
        self.resume()

    def resume(self) -> None:
        with self._lock:
            if self._frozen:
                for pid in self.pids:
                    os.kill(pid, signal.SIGCONT)
                self._frozen = False
        self._timer.cancel()


@contextmanager
def frozen(server: Any, journal: PostgresJournal) -> Iterator[Frozen]:
    assert journal._conn is not None
    state = Frozen(server, journal._conn.info.backend_pid)
    state.freeze()
    try:
        yield state
    finally:
        state.resume()


async def wait_until(predicate: Any) -> None:
    """Wait (on the event loop) until ``predicate()`` holds; the hang guard bounds every such wait."""
    with anyio.fail_after(HANG_GUARD_S + 5):
        while not predicate():
            await anyio.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------
# A frozen server: deadlines and cancellation


async def test_a_call_to_a_frozen_server_can_be_cancelled(postgres_server: Any) -> None:
    async with PostgresJournal(postgres_server.url, journal_name("frozen"), operation_timeout=600) as journal:
        assert await journal.begin_item("order-1") is None
        with frozen(postgres_server, journal) as server:
            with anyio.move_on_after(1) as scope:
                await journal.get("order-1")
            guard_acted = server.guard_acted
        assert scope.cancelled_caught
        assert not guard_acted  # the call returned while the server was still frozen
        entry = await journal.get("order-1")  # a new connection once the server answers again
        assert entry is not None and entry.state is JournalState.PENDING


async def test_a_call_to_a_frozen_server_fails_after_operation_timeout(postgres_server: Any) -> None:
    async with PostgresJournal(postgres_server.url, journal_name("deadline"), operation_timeout=1) as journal:
        await journal.begin_item("order-1")
        with frozen(postgres_server, journal) as server:
            with pytest.raises(
                JournalError, match=r"within 1 s \(operation_timeout\).*outcome of this call is unknown"
            ):
                await journal.mark_sent("order-1")
            guard_acted = server.guard_acted
        assert not guard_acted
        entry = await journal.get("order-1")
        assert entry is not None and entry.state in (JournalState.PENDING, JournalState.SENT)
        await journal.mark_sent("order-1")  # still this object's item
        assert await journal.unknown() == ["order-1"]


async def test_callers_queued_behind_a_frozen_call_wait_without_threads_and_can_be_cancelled(
    postgres_server: Any,
) -> None:
    async with PostgresJournal(postgres_server.url, journal_name("queued"), operation_timeout=600) as journal:
        await journal.begin_item("order-1")
        threads = anyio.to_thread.current_default_thread_limiter()
        first: list[Any] = []
        queued_scopes: list[anyio.CancelScope] = []
        cancelled: list[bool] = []

        async def in_flight() -> None:
            first.append(await journal.get("order-1"))

        async def queued() -> None:
            with anyio.CancelScope() as scope:
                queued_scopes.append(scope)
                await journal.states()
                cancelled.append(False)
                return
            cancelled.append(True)

        with frozen(postgres_server, journal) as server:
            async with anyio.create_task_group() as group:
                group.start_soon(in_flight)
                await wait_until(
                    lambda: threads.borrowed_tokens >= 1 and journal._limiter.borrowed_tokens == 1
                )
                busy_threads = threads.borrowed_tokens
                for _ in range(50):  # more than the default thread pool holds
                    group.start_soon(queued)
                await wait_until(lambda: journal._limiter.statistics().tasks_waiting == 50)
                assert threads.borrowed_tokens == busy_threads  # the queued callers hold no thread
                for scope in queued_scopes:
                    scope.cancel()
                await wait_until(lambda: len(cancelled) == 50)
                assert cancelled == [True] * 50 and first == []  # cancelled while the first call still waits
                assert not server.guard_acted
                server.resume()
        assert len(first) == 1 and first[0] is not None and first[0].state is JournalState.PENDING


class SilentServer:
    """A loopback TCP server that accepts connections and never answers (a hung server or a half-open path)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self.accepted:
            conn.close()


async def test_cancelled_callers_do_not_connect_one_after_another_to_a_silent_server() -> None:
    """Against a server that never answers, the call in flight waits for its connection; the callers queued
    behind it are cancelled without ever trying to connect, and the call in flight is abandoned when its
    caller is cancelled."""
    server = SilentServer()
    try:
        journal = PostgresJournal(f"postgresql://nobody@127.0.0.1:{server.port}/db", journal_name("silent"))
        scopes: list[anyio.CancelScope] = []
        cancelled: list[bool] = []

        async def one() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await journal.states()
                cancelled.append(False)
                return
            cancelled.append(True)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
            await wait_until(
                lambda: len(server.accepted) == 1 and journal._limiter.statistics().tasks_waiting == 4
            )
            for scope in scopes:
                scope.cancel()
        assert cancelled == [True] * 5
        assert len(server.accepted) == 1  # one connection attempt in all: the queued callers never tried
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------------------
# Idle connections closed by the server


async def test_a_restart_between_calls_does_not_fail_the_next_call(postgres_server: Any) -> None:
    name = journal_name("restart")
    async with PostgresJournal(postgres_server.url, name) as journal:
        assert await journal.begin_item("order-1") is None
        postgres_server.restart()
        await journal.mark_sent("order-1")
        assert await journal.unknown() == ["order-1"]


async def test_idle_session_timeout_does_not_fail_the_next_call(postgres_url: str) -> None:
    with throwaway_database(postgres_url, "idle_session_timeout = '200ms'") as url:
        async with PostgresJournal(url, journal_name("idle")) as journal:
            assert journal._conn is not None
            pid = journal._conn.info.backend_pid
            with admin(url) as conn:
                conn.execute("SELECT pg_sleep(0.6)")
                gone = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            assert gone == (0,)
            assert await journal.begin_item("order-1") is None


# ---------------------------------------------------------------------------------------------------------
# Database defaults the journal must not depend on


async def test_transactions_run_at_read_committed_under_a_serializable_default(postgres_url: str) -> None:
    with throwaway_database(postgres_url, "default_transaction_isolation = 'serializable'") as url:
        name = journal_name("iso")
        async with PostgresJournal(url, name) as loader:
            await loader.load((ref, {"n": n}) for n, ref in enumerate(refs("iso", 40)))
            level = await loader._run(lambda conn: conn.execute("SHOW transaction_isolation").fetchone())
            assert level == ("read committed",)
        claimed: list[str] = []

        async def worker(worker_id: str) -> None:
            async with PostgresJournal(url, name, worker_id=worker_id) as journal:
                while leases := await journal.claim(limit=1):
                    claimed.append(leases[0].ref)
                    await journal.mark_sent(leases[0].ref)

        async with anyio.create_task_group() as group:
            for n in range(4):
                group.start_soon(worker, f"w{n}")
        assert sorted(claimed) == refs("iso", 40)


async def test_the_sent_commit_waits_for_the_disk_whatever_the_session_says(postgres_url: str) -> None:
    """With a session default weaker than ``on`` (here ``local``), mark_sent's own transaction runs with
    ``on``; a stronger setting is kept; the other writes keep the session's setting."""
    with throwaway_database(postgres_url, "synchronous_commit = 'local'") as url:
        name = journal_name("durable")
        async with PostgresJournal(url, name) as journal:
            await journal.begin_item("order-0")
            schema = schema_name(name)
            with admin(url) as conn:  # records the setting in force in each transaction that writes a row
                conn.execute(f'CREATE TABLE "{schema}".seen (ref text, op text, setting text)')
                conn.execute(
                    f"""CREATE FUNCTION "{schema}".remember() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO "{schema}".seen VALUES (NEW.ref, NEW.state, current_setting('synchronous_commit'));
                        RETURN NEW;
                    END $$"""
                )
                conn.execute(
                    f'CREATE TRIGGER remember AFTER INSERT OR UPDATE ON "{schema}".items '
                    f'FOR EACH ROW EXECUTE FUNCTION "{schema}".remember()'
                )
            await journal.begin_item("order-1")
            await journal.mark_sent("order-1")
            await journal.mark_sent("order-0")
            await journal.mark_sent("order-2")  # not begun: inserted as sent
            await journal.mark_failed("order-3", ValueError("nothing sent"))
            await journal._run(lambda conn: conn.execute("SET synchronous_commit = remote_apply"))
            await journal.mark_sent("order-4")
            with admin(url) as conn:
                seen = conn.execute(f'SELECT ref, op, setting FROM "{schema}".seen').fetchall()
        assert seen == [
            ("order-1", "pending", "local"),
            ("order-1", "sent", "on"),
            ("order-0", "sent", "on"),
            ("order-2", "sent", "on"),
            ("order-3", "failed", "local"),
            ("order-4", "sent", "remote_apply"),
        ]


MIXED_REFS = ["b-2", "B-1", "a-3", "A-9", "é-1", "e-2", "É-5", "Z-0", "z-0", "_x", "0-1"]


async def test_references_are_ordered_byte_by_byte_like_sqlite(postgres_url: str, tmp_path: Any) -> None:
    """A database whose collation is not "C" (ICU, English) still lists references in SQLite's order (UTF-8
    bytes), in entries(), unknown() and when a callback names only its scan."""
    from netverify_async.callbacks import parse_callback

    expected = sorted(MIXED_REFS)  # code points: the order of UTF-8 bytes
    async with SqliteJournal(tmp_path / "j.sqlite") as sqlite:
        for ref in MIXED_REFS:
            await sqlite.mark_sent(ref)
        assert [e.merchant_id_scan_reference for e in await sqlite.entries()] == expected
        assert await sqlite.unknown() == expected
    create = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C' ENCODING 'UTF8'"
    with throwaway_database(postgres_url, create=create) as url:
        with admin(url) as conn:
            by_database = conn.execute(
                "SELECT r FROM unnest(%s::text[]) AS r ORDER BY r", (MIXED_REFS,)
            ).fetchall()
        assert [r for (r,) in by_database] != expected  # the database's own order differs
        async with PostgresJournal(url, journal_name("collation")) as journal:
            for ref in MIXED_REFS:
                await journal.mark_sent(ref)
            assert [e.merchant_id_scan_reference for e in await journal.entries()] == expected
            assert [e.merchant_id_scan_reference for e in await journal.entries("sent")] == expected
            assert await journal.unknown() == expected
            # one scan named by two references' receipts: a callback without merchant reference settles the first
            scan = "cccccccc-0000-4000-8000-000000000003"
            receipt = ScanReceipt(
                scan_reference=scan, timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
            )
            for ref in ("b-2", "B-1"):
                await journal.mark_receipt(ref, receipt)
            decision = await journal.record_callback(
                parse_callback(f"jumioIdScanReference={scan}&verificationStatus=APPROVED_VERIFIED")
            )
            assert decision.entry is not None and decision.entry.merchant_id_scan_reference == "B-1"


# ---------------------------------------------------------------------------------------------------------
# Leases


async def test_renew_does_not_extend_the_lease_of_a_finished_item(postgres_url: str) -> None:
    name = journal_name("renew")
    async with PostgresJournal(postgres_url, name, worker_id="w") as journal:
        await journal.load([("a", {}), ("b", {}), ("c", {})])
        leases = await journal.claim(limit=3)
        await journal.mark_sent("a")
        await journal.mark_failed("b", ValueError("nothing sent"))
        with admin(postgres_url) as conn:
            before = dict(
                conn.execute(f'SELECT ref, lease_until FROM "{schema_name(name)}".items').fetchall()
            )
        assert await journal.renew(leases) == ["a", "b"]
        with admin(postgres_url) as conn:
            after = dict(conn.execute(f'SELECT ref, lease_until FROM "{schema_name(name)}".items').fetchall())
        assert after["a"] == before["a"] and after["b"] == before["b"] is None
        assert after["c"] > before["c"]


async def test_a_plain_batch_whose_lease_was_taken_over_skips_the_item_and_goes_on(postgres_url: str) -> None:
    """A plain batch's lease (from begin_item) is not renewed: when another process took the item after it ran
    out, mark_sent raises LeaseLostError; the batch does not send it, reports it skipped and goes on."""
    from netverify_async.emulator import run_emulator

    name = journal_name("takeover")
    items = refs("takeover", 3)
    taken = items[1]
    async with PostgresJournal(postgres_url, name, worker_id="other") as other:

        class Slow(PostgresJournal):
            async def mark_sent(self, merchant_id_scan_reference: str) -> None:
                if merchant_id_scan_reference == taken:
                    # the lease ran out meanwhile, and another process took the item
                    with admin(postgres_url) as conn:
                        conn.execute(
                            f'UPDATE "{schema_name(name)}".items SET lease_until = now() WHERE ref = %s',
                            (taken,),
                        )
                    assert (await other.begin_item(taken)) is not None
                await super().mark_sent(merchant_id_scan_reference)

        async with run_emulator(processing_delay=0.0) as emu, client_for(emu) as client:
            async with Slow(postgres_url, name, worker_id="batch") as journal:
                async with client.submit_many(
                    (make_request(ref) for ref in items), concurrency=1, journal=journal
                ) as batch:
                    outcomes = {o.merchant_id_scan_reference: o async for o in batch}
                summary = batch.summary
            assert scans_per_reference(emu) == {ref: 1 for ref in items if ref != taken}
        assert outcomes[taken].status is OutcomeStatus.SKIPPED_UNKNOWN
        assert isinstance(outcomes[taken].error, SubmissionOutcomeUnknown)
        assert isinstance(outcomes[taken].error.__cause__, LeaseLostError)
        assert outcomes[taken].attempts == 0
        assert {outcomes[ref].status for ref in items if ref != taken} == {OutcomeStatus.RECEIPT}
        assert summary.status.value == "completed"
        with admin(postgres_url) as conn:
            row = conn.execute(
                f'SELECT state, sends, owner FROM "{schema_name(name)}".items WHERE ref = %s', (taken,)
            ).fetchone()
        assert row == ("pending", 0, "other")
