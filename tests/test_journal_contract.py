"""One contract for every journal: the same tests run against SqliteJournal and PostgresJournal (a real
PostgreSQL server), on asyncio and on trio; then what only the PostgreSQL journal does (names sharing one
database, its schema, the work queue with leases and fencing, a lost connection).

The SQLite-only behaviour (files, modes, the batch lock, layout upgrades) is in tests/test_journal_states.py and
tests/test_journal_reconciliation.py.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from _batch_support import client_for, make_request, refs, scans_per_reference
from _postgres_support import CommitCuttingProxy, journal_name

from netverify_async import (
    BadRequestError,
    CallbackEffect,
    CallbackJournal,
    Journal,
    JournalError,
    JournalState,
    OutcomeStatus,
    RateLimitedError,
    RequestValidationError,
    ScanReceipt,
    SqliteJournal,
    ValidationIssue,
)
from netverify_async.callbacks import NetverifyCallback, parse_callback
from netverify_async.postgres import SCHEMA_VERSION, Lease, LeaseLostError, PostgresJournal, schema_name

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

SCAN_A = "aaaaaaaa-0000-4000-8000-000000000001"
SCAN_B = "bbbbbbbb-0000-4000-8000-000000000002"
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, dt.timezone.utc)
RECEIPT = ScanReceipt(scan_reference=SCAN_A, timestamp=T0)
FRAUD_REASON = json.dumps(
    {
        "rejectReasonCode": "100",
        "rejectReasonDescription": "MANIPULATED_DOCUMENT",
        "rejectReasonDetails": [{"detailsCode": "1001", "detailsDescription": "PHOTO"}],
    }
)

AnyJournal = Any  # SqliteJournal | PostgresJournal: the same methods
Factory = Callable[..., AnyJournal]


def callback(
    merchant: str | None = "order-1",
    scan: str = SCAN_A,
    status: str | None = "APPROVED_VERIFIED",
    **fields: str,
) -> NetverifyCallback:
    form = {"jumioIdScanReference": scan, **fields}
    if merchant is not None:
        form["merchantIdScanReference"] = merchant
    if status is not None:
        form["verificationStatus"] = status
    return parse_callback(urllib.parse.urlencode(form))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_journal(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Makes journal objects on one store (a file, or a name in the database): each one is like another
    process opening the same journal."""
    if backend == "sqlite":
        path = tmp_path / "j.sqlite"
        return lambda **kw: SqliteJournal(path)
    url = request.getfixturevalue("postgres_url")
    name = journal_name()
    return lambda **kw: PostgresJournal(url, name, **kw)


@pytest.fixture
async def journal(new_journal: Factory) -> AsyncIterator[AnyJournal]:
    async with new_journal() as opened:
        yield opened


# ---------------------------------------------------------------------------------------------------------
# States and transitions


async def test_is_a_journal_and_a_callback_journal(journal: AnyJournal) -> None:
    assert isinstance(journal, Journal) and isinstance(journal, CallbackJournal)


async def test_an_item_moves_through_the_states(journal: AnyJournal) -> None:
    assert await journal.begin_item("ref-1") is None
    assert (await journal.get("ref-1")).state is JournalState.PENDING
    await journal.mark_sent("ref-1")
    entry = await journal.get("ref-1")
    assert entry is not None and entry.state is JournalState.SENT and entry.sends == 1
    assert entry.last_sent_at is not None
    await journal.mark_receipt("ref-1", RECEIPT)
    entry = await journal.get("ref-1")
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert entry.receipt == RECEIPT and entry.sends == 1 and entry.scan_references == (SCAN_A,)


async def test_sent_is_visible_to_another_connection_before_mark_sent_returns(
    journal: AnyJournal, new_journal: Factory
) -> None:
    await journal.begin_item("a")
    await journal.begin_item("b")
    await journal.mark_sent("a")
    async with new_journal() as other:  # another process, after a crash of this one
        assert await other.states() == {"a": JournalState.SENT, "b": JournalState.PENDING}
        assert await other.unknown() == ["a"]


async def test_failures_keep_only_the_error_type_code_and_retry_flag(journal: AnyJournal) -> None:
    await journal.begin_item("bad")
    await journal.mark_sent("bad")
    await journal.mark_failed("bad", BadRequestError("performNetverify: Bad Request", status_code=400))
    await journal.mark_failed("limited", RateLimitedError("rate limited", status_code=429, retry_after=3))
    invalid = RequestValidationError([ValidationIssue("country", "invalid_country", "not ISO 3166")])
    await journal.mark_failed("invalid", invalid)
    bad, limited, inv = [await journal.get(ref) for ref in ("bad", "limited", "invalid")]
    assert bad is not None
    assert (bad.state, bad.error_type, bad.error_code) == (JournalState.FAILED, "BadRequestError", "400")
    assert limited is not None and limited.safe_to_retry is True and limited.error_code == "429"
    assert inv is not None and inv.error_code == "invalid_country" and inv.safe_to_retry is True


async def test_counts_states_unknown_and_entries(journal: AnyJournal) -> None:
    assert await journal.counts() == dict.fromkeys(JournalState, 0)
    for ref in ("p", "s", "r", "f", "u1", "u2"):
        await journal.begin_item(ref)
    await journal.mark_sent("s")
    await journal.mark_receipt("r", RECEIPT)
    await journal.mark_failed("f", BadRequestError("x", status_code=400))
    await journal.mark_unknown(["u1", "u2"], "ReadError")
    assert await journal.counts() == {
        JournalState.PENDING: 1,
        JournalState.SENT: 1,
        JournalState.RECEIPT: 1,
        JournalState.FAILED: 1,
        JournalState.UNKNOWN: 2,
    }
    states = await journal.states()
    assert states["p"] is JournalState.PENDING and states["u2"] is JournalState.UNKNOWN
    assert await journal.unknown() == ["s", "u1", "u2"]  # "sent" after a crash is just as unknown
    unknown_entries = await journal.entries(JournalState.UNKNOWN)
    assert [e.error_type for e in unknown_entries] == ["ReadError", "ReadError"]
    assert [e.merchant_id_scan_reference for e in await journal.entries()] == ["f", "p", "r", "s", "u1", "u2"]
    assert [e.merchant_id_scan_reference for e in await journal.entries("receipt")] == ["r"]


async def test_resume_an_earlier_run_finds_every_state(journal: AnyJournal, new_journal: Factory) -> None:
    await journal.start_run()
    for ref in ("done", "lost", "refused", "in-flight", "waiting"):
        await journal.begin_item(ref)
    await journal.mark_sent("done")
    await journal.mark_receipt("done", RECEIPT)
    await journal.mark_sent("lost")
    await journal.mark_unknown(["lost"], "ReadTimeout")
    await journal.mark_failed("refused", BadRequestError("x", status_code=400))
    await journal.mark_sent("in-flight")
    await journal.aclose()  # the run "dies" here: never finished
    async with new_journal() as rerun:
        await rerun.start_run()
        found = {
            ref: await rerun.begin_item(ref) for ref in ("done", "lost", "refused", "in-flight", "waiting")
        }
        assert await rerun.begin_item("new") is None
        runs = await rerun.runs()
        await rerun.finish_run("completed", {"receipt": 1})
        finished = await rerun.runs()
    states = {ref: (entry.state if entry else None) for ref, entry in found.items()}
    assert states == {
        "done": JournalState.RECEIPT,  # skipped as done
        "lost": JournalState.UNKNOWN,  # skipped as unknown
        "refused": JournalState.FAILED,  # sent again
        "in-flight": JournalState.SENT,  # skipped as unknown
        "waiting": JournalState.PENDING,  # sent
    }
    assert found["done"] is not None and found["done"].receipt == RECEIPT
    assert [run["status"] for run in runs] == ["running", "running"]  # the first one was killed
    assert finished[-1]["status"] == "completed" and finished[-1]["counts"] == {"receipt": 1}
    assert finished[-1]["finished_at"] is not None and finished[0]["finished_at"] is None


async def test_a_journal_object_runs_one_batch_at_a_time(journal: AnyJournal) -> None:
    await journal.start_run()
    with pytest.raises(JournalError, match="already used by a running batch"):
        await journal.start_run()
    await journal.finish_run("completed", {})
    await journal.start_run()
    await journal.finish_run("cancelled", {"pending": 2})
    assert [run["status"] for run in await journal.runs()] == ["completed", "cancelled"]


async def test_reconciling_unknown_outcomes_by_hand(journal: AnyJournal) -> None:
    await journal.mark_sent("created")
    await journal.mark_unknown(["created", "lost"], "ReadError")
    found = await journal.mark_reconciled("created", "scan-77")
    assert found.state is JournalState.RECEIPT and found.scan_reference == "scan-77"
    assert found.reconciled_at is not None and found.receipt is None  # no Jumio timestamp given
    not_created = await journal.mark_reconciled("lost", None)
    assert not_created.state is JournalState.PENDING and not_created.reconciled_at is not None
    assert await journal.unknown() == []
    with pytest.raises(JournalError, match="only 'sent' or 'unknown'"):
        await journal.mark_reconciled("created", "scan-78")  # would hide a receipt
    with pytest.raises(JournalError, match="no such"):
        await journal.mark_reconciled("never-seen", None)
    with pytest.raises(JournalError, match="timezone-aware"):
        await journal.mark_reconciled("lost", "s", timestamp=dt.datetime(2024, 1, 1))
    with pytest.raises(JournalError, match="non-empty"):
        await journal.mark_reconciled("lost", " ")


# ---------------------------------------------------------------------------------------------------------
# Callbacks


async def test_a_callback_settles_an_unknown_item_and_keeps_its_result(journal: AnyJournal) -> None:
    await journal.begin_item("order-1")
    await journal.mark_sent("order-1")
    await journal.mark_unknown(["order-1"], "ReadTimeout")
    done = await journal.record_callback(
        callback(status="DENIED_FRAUD", rejectReason=FRAUD_REASON, callbackDate="2024-05-01T12:30:00.000Z")
    )
    assert done.effect is CallbackEffect.SETTLED and done.changed
    entry = await journal.get("order-1")
    assert done.entry == entry
    assert await journal.unknown() == []
    assert entry is not None and entry.state is JournalState.RECEIPT and entry.scan_reference == SCAN_A
    assert entry.reconciled_at is not None and entry.error_type is None and entry.sends == 1
    assert entry.result is not None
    assert (entry.result.verification_status, entry.result.reject_reason_code) == ("DENIED_FRAUD", "100")
    assert entry.result.reject_reason_details == ("1001",)
    assert entry.result.callback_date == dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)


async def test_a_callback_before_the_receipt_then_the_receipt_agrees(journal: AnyJournal) -> None:
    await journal.begin_item("order-1")
    await journal.mark_sent("order-1")
    raced = await journal.record_callback(callback())  # the callback beats the HTTP answer
    assert raced.effect is CallbackEffect.SETTLED
    await journal.mark_receipt("order-1", ScanReceipt(SCAN_A, T0))
    entry = await journal.get("order-1")
    assert entry is not None and entry.state is JournalState.RECEIPT and not entry.duplicate_scan
    assert entry.receipt == ScanReceipt(SCAN_A, T0) and entry.scan_references == (SCAN_A,)
    assert entry.result is not None and entry.result.approved
    assert entry.scans[0].callback_at is not None and entry.scans[0].receipt_timestamp == T0


async def test_a_callback_before_a_receipt_that_names_another_scan_is_flagged(journal: AnyJournal) -> None:
    await journal.mark_sent("order-1")
    await journal.record_callback(callback(scan=SCAN_A))
    await journal.mark_receipt("order-1", ScanReceipt(SCAN_B, T0))
    entry = await journal.get("order-1")
    assert entry is not None and entry.duplicate_scan
    assert entry.scan_references == (SCAN_A, SCAN_B) and entry.receipt == ScanReceipt(SCAN_B, T0)


@pytest.mark.parametrize("batch_says", ["unknown", "failed", "sent"])
async def test_the_batch_never_undoes_what_a_callback_settled(journal: AnyJournal, batch_says: str) -> None:
    await journal.begin_item("order-1")
    await journal.mark_sent("order-1")
    await journal.record_callback(callback())
    if batch_says == "unknown":
        await journal.mark_unknown(["order-1"], "RemoteProtocolError")
    elif batch_says == "failed":
        await journal.mark_failed("order-1", BadRequestError("Bad Request", status_code=400))
    else:
        await journal.mark_sent("order-1")
    entry = await journal.get("order-1")
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert entry.scan_reference == SCAN_A and entry.error_type is None
    assert entry.sends == (2 if batch_says == "sent" else 1)


async def test_the_same_callback_twice_is_recorded_once(journal: AnyJournal) -> None:
    await journal.mark_sent("order-1")
    await journal.mark_unknown(["order-1"], "ReadTimeout")
    first = await journal.record_callback(callback(rejectReason=FRAUD_REASON, status="DENIED_FRAUD"))
    before = await journal.get("order-1")
    again = await journal.record_callback(callback(rejectReason=FRAUD_REASON, status="DENIED_FRAUD"))
    assert first.effect is CallbackEffect.SETTLED
    assert again.effect is CallbackEffect.UNCHANGED and not again.changed
    assert again.entry == first.entry == before == await journal.get("order-1")


async def test_a_callback_for_a_reference_not_in_the_journal_is_ignored(journal: AnyJournal) -> None:
    await journal.mark_receipt("order-1", RECEIPT)
    ignored = await journal.record_callback(callback("made-elsewhere", SCAN_B))
    assert ignored.effect is CallbackEffect.NOT_IN_JOURNAL and not ignored.changed
    assert ignored.entry is None and ignored.merchant_id_scan_reference == "made-elsewhere"
    assert await journal.get("made-elsewhere") is None
    assert list(await journal.states()) == ["order-1"]


async def test_duplicate_scans_are_recorded_and_flagged(journal: AnyJournal) -> None:
    await journal.mark_sent("order-1")
    await journal.mark_unknown(["order-1"], "RemoteProtocolError")
    await journal.mark_sent("order-1")  # resend_unknown=True
    await journal.mark_receipt("order-1", ScanReceipt(SCAN_B, T0))
    first = await journal.record_callback(callback(scan=SCAN_B))
    second = await journal.record_callback(callback(scan=SCAN_A, status="DENIED_FRAUD"))
    again = await journal.record_callback(callback(scan=SCAN_A, status="DENIED_FRAUD"))
    assert (first.effect, second.effect, again.effect) == (
        CallbackEffect.RECORDED,
        CallbackEffect.DUPLICATE_SCAN,
        CallbackEffect.UNCHANGED,
    )
    entry = await journal.get("order-1")
    assert entry is not None and entry.duplicate_scan and entry.sends == 2
    assert entry.scan_references == (SCAN_B, SCAN_A) and entry.receipt == ScanReceipt(SCAN_B, T0)
    assert [scan.result.verification_status for scan in entry.scans if scan.result] == [
        "APPROVED_VERIFIED",
        "DENIED_FRAUD",
    ]
    assert [e.merchant_id_scan_reference for e in await journal.entries() if e.duplicate_scan] == ["order-1"]


async def test_a_callback_without_merchant_reference_is_matched_by_its_scan(journal: AnyJournal) -> None:
    await journal.mark_receipt("order-1", RECEIPT)
    matched = await journal.record_callback(callback(merchant=None, scan=SCAN_A))
    unmatched = await journal.record_callback(callback(merchant=None, scan=SCAN_B))
    assert matched.effect is CallbackEffect.RECORDED and matched.merchant_id_scan_reference == "order-1"
    assert unmatched.effect is CallbackEffect.NOT_IN_JOURNAL and unmatched.merchant_id_scan_reference is None


async def test_record_callback_refuses_what_is_not_a_callback(journal: AnyJournal) -> None:
    with pytest.raises(TypeError, match="NetverifyCallback"):
        await journal.record_callback("jumioIdScanReference=x")


async def test_a_receiver_writes_while_a_batch_holds_the_journal(
    journal: AnyJournal, new_journal: Factory
) -> None:
    async with new_journal() as receiver:
        await journal.start_run()
        await journal.begin_item("order-1")
        await journal.mark_sent("order-1")
        await journal.begin_item("order-2")
        with anyio.fail_after(10):
            settled = await receiver.record_callback(callback("order-1"))
        assert settled.effect is CallbackEffect.SETTLED
        await journal.mark_unknown(["order-1"], "ReadTimeout")  # the batch gives up on the answer later
        assert (await journal.get("order-1")).state is JournalState.RECEIPT
        await journal.finish_run("completed", {})


async def test_unresolved_items_the_horizon_and_the_last_callback(journal: AnyJournal) -> None:
    assert await journal.last_callback_at() is None
    for ref in ("order-1", "order-2", "order-3"):
        await journal.mark_sent(ref)
    await journal.mark_unknown(["order-1", "order-2"], "ReadTimeout")
    await journal.record_callback(callback("order-3"))
    unresolved = await journal.unresolved()
    assert [e.merchant_id_scan_reference for e in unresolved] == ["order-1", "order-2"]
    assert all(e.last_sent_at is not None for e in unresolved)
    assert await journal.unresolved(older_than=dt.timedelta(hours=1)) == []
    await anyio.sleep(0.05)
    old_enough = await journal.unresolved(older_than=dt.timedelta(milliseconds=20))
    assert [e.merchant_id_scan_reference for e in old_enough] == ["order-1", "order-2"]
    last = await journal.last_callback_at()
    assert last is not None and last.tzinfo is not None
    assert all(last >= e.last_sent_at for e in unresolved if e.last_sent_at)
    with pytest.raises(JournalError, match="negative"):
        await journal.unresolved(older_than=dt.timedelta(seconds=-1))
    assert (await journal.mark_reconciled("order-1", None)).state is JournalState.PENDING


async def test_mark_reconciled_then_a_late_callback(journal: AnyJournal) -> None:
    await journal.mark_sent("order-1")
    found = await journal.mark_reconciled("order-1", SCAN_A, timestamp=T0)
    late = await journal.record_callback(callback("order-1", SCAN_A))
    assert found.scan_references == (SCAN_A,) and found.receipt == ScanReceipt(SCAN_A, T0)
    assert late.effect is CallbackEffect.RECORDED and not late.entry.duplicate_scan


async def test_record_result_from_polling(journal: AnyJournal) -> None:
    from netverify_async import ScanResult

    result = ScanResult(verification_status="APPROVED_VERIFIED", similarity="MATCH", validity="true")
    await journal.mark_receipt("order-1", RECEIPT)
    assert await journal.record_result("order-1", SCAN_A, result) is True
    assert await journal.record_result("order-1", SCAN_A, result) is False  # already has one
    assert await journal.record_result("order-1", SCAN_B, result) is False  # unknown scan
    assert await journal.record_result("nobody", SCAN_A, result) is False
    entry = await journal.get("order-1")
    assert entry is not None and entry.result == result and entry.scans[0].callback_at is None


async def test_a_batch_then_its_rerun_against_the_emulator(new_journal: Factory) -> None:
    """The journal behind a real batch: a re-run skips every item that has a receipt."""
    from netverify_async.emulator import run_emulator

    items = refs("contract", 5)
    async with run_emulator(processing_delay=0.0) as emu, client_for(emu) as client:
        for attempt in range(2):
            async with new_journal() as journal:
                async with client.submit_many(
                    (make_request(ref) for ref in items), concurrency=2, journal=journal
                ) as batch:
                    outcomes = {o.merchant_id_scan_reference: o.status async for o in batch}
                expected = OutcomeStatus.RECEIPT if attempt == 0 else OutcomeStatus.SKIPPED_ALREADY_DONE
                assert outcomes == dict.fromkeys(items, expected)
                assert (await journal.counts())[JournalState.RECEIPT] == 5
                assert [run["status"] for run in await journal.runs()][-1] == "completed"
        assert scans_per_reference(emu) == dict.fromkeys(items, 1)


async def test_a_stopped_batch_then_an_immediate_rerun_sends_the_rest_once(new_journal: Factory) -> None:
    """Items read but not sent when the batch stopped are sendable at once by the next run (another process):
    the PostgreSQL journal gives back what its batch took and did not send."""
    from netverify_async.emulator import run_emulator

    items = refs("stopped", 8)
    async with run_emulator(processing_delay=0.0) as emu, client_for(emu) as client:
        async with new_journal() as journal:
            async with client.submit_many(
                (make_request(ref) for ref in items), concurrency=1, journal=journal
            ) as batch:
                first = []
                async for outcome in batch:
                    first.append(outcome)
                    batch.stop()
            counts = await journal.counts()
        assert (
            counts[JournalState.PENDING] > 0
            and counts[JournalState.SENT] == counts[JournalState.UNKNOWN] == 0
        )
        async with new_journal() as rerun:
            async with client.submit_many(
                (make_request(ref) for ref in items), concurrency=2, journal=rerun
            ) as batch:
                second = {o.merchant_id_scan_reference: o.status async for o in batch}
            assert (await rerun.counts())[JournalState.RECEIPT] == 8
    done_first = {o.merchant_id_scan_reference for o in first if o.status is OutcomeStatus.RECEIPT}
    assert done_first and all(second[ref] is OutcomeStatus.SKIPPED_ALREADY_DONE for ref in done_first)
    assert all(second[ref] is OutcomeStatus.RECEIPT for ref in items if ref not in done_first)
    assert scans_per_reference(emu) == dict.fromkeys(items, 1)


async def test_earlier_failures_a_stopped_batch_then_an_immediate_rerun(new_journal: Factory) -> None:
    """Items an earlier run left ``failed`` (nothing sent) are taken again by the next batch; when that batch is
    stopped, the ones it did not send are given back, so a re-run straight after sends them."""
    from netverify_async.emulator import run_emulator

    items = refs("refailed", 6)
    async with new_journal() as earlier:
        for ref in items:
            await earlier.mark_failed(ref, ValueError("refused, nothing sent"))
    async with run_emulator(processing_delay=0.0) as emu, client_for(emu) as client:
        async with new_journal() as journal:
            async with client.submit_many(
                (make_request(ref) for ref in items), concurrency=1, journal=journal
            ) as batch:
                first = []
                async for outcome in batch:
                    first.append(outcome)
                    batch.stop()
        async with new_journal() as rerun:
            async with client.submit_many(
                (make_request(ref) for ref in items), concurrency=2, journal=rerun
            ) as batch:
                second = {o.merchant_id_scan_reference: o.status async for o in batch}
            assert (await rerun.counts())[JournalState.RECEIPT] == 6
    done_first = {o.merchant_id_scan_reference for o in first if o.status is OutcomeStatus.RECEIPT}
    assert done_first and len(done_first) < len(items)
    assert second == {
        ref: OutcomeStatus.SKIPPED_ALREADY_DONE if ref in done_first else OutcomeStatus.RECEIPT
        for ref in items
    }
    assert scans_per_reference(emu) == dict.fromkeys(items, 1)


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL only: names, schema, queue, leases, fencing, lost connections


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    return postgres_url


def admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def expire_leases(url: str, name: str, refs: list[str] | None = None) -> None:
    """Move the leases into the past, as if lease_seconds had gone by (the database's clock decides)."""
    with admin(url) as conn:
        where = "" if refs is None else " WHERE ref = ANY(%s)"
        conn.execute(
            f"UPDATE \"{schema_name(name)}\".items SET lease_until = now() - interval '1 second'{where}",
            () if refs is None else (refs,),
        )


def raw_item(url: str, name: str, ref: str) -> tuple[Any, ...] | None:
    with admin(url) as conn:
        return conn.execute(
            f'SELECT state, sends, owner, token, payload FROM "{schema_name(name)}".items WHERE ref = %s',
            (ref,),
        ).fetchone()


async def test_two_journal_names_in_one_database_are_isolated(pg_url: str) -> None:
    first, second = journal_name("iso"), journal_name("iso")
    async with PostgresJournal(pg_url, first) as a, PostgresJournal(pg_url, second) as b:
        await a.mark_sent("order-1")
        await b.mark_receipt("order-1", RECEIPT)
        await a.load([("q", {"n": 1})])
        assert await a.states() == {"order-1": JournalState.SENT, "q": JournalState.PENDING}
        assert await b.states() == {"order-1": JournalState.RECEIPT}
        assert await b.claim(limit=10) == []
        settled = await b.record_callback(callback("order-1"))
        assert settled.effect is CallbackEffect.RECORDED
        assert (await a.get("order-1")).state is JournalState.SENT
    assert schema_name(first) != schema_name(second)


def test_journal_names_are_validated_and_map_to_distinct_schemas() -> None:
    for bad in ("", " ", 'x"; DROP TABLE items; --', "-leading", "a" * 101, "tab\tname", "ünïcode", None):
        with pytest.raises(JournalError, match="journal name"):
            PostgresJournal("postgresql://127.0.0.1/db", bad)  # type: ignore[arg-type]
    assert schema_name("Batch-1") != schema_name("batch-1") != schema_name("batch_1")
    assert schema_name("batch-2026-12").startswith("netverify_batch_2026_12_")
    assert all(len(schema_name(n)) <= 63 for n in ("a" * 100, "A.b-C_d" * 14))
    with pytest.raises(JournalError, match="lease_seconds"):
        PostgresJournal("postgresql://127.0.0.1/db", "x", lease_seconds=0)
    with pytest.raises(JournalError, match="worker_id"):
        PostgresJournal("postgresql://127.0.0.1/db", "x", worker_id="")
    with pytest.raises(JournalError, match="conninfo: not a valid") as refused:
        PostgresJournal("postgresql://batch:s3cret-pw@[127.0.0.1/db", "x")
    assert "s3cret" not in str(refused.value)
    journal = PostgresJournal("postgresql://batch:s3cret-pw@127.0.0.1/db", "x", worker_id="w1")
    assert "s3cret" not in repr(journal) and repr(journal) == "PostgresJournal(name='x', worker_id='w1')"


async def test_schema_creation_is_idempotent_and_safe_when_many_open_at_once(pg_url: str) -> None:
    name = journal_name("migrate")
    journals = [PostgresJournal(pg_url, name) for _ in range(6)]
    try:
        async with anyio.create_task_group() as tg:
            for journal in journals:
                tg.start_soon(journal.open)  # six connections race to create the same schema
        await journals[0].mark_sent("order-1")
        seen = [await journal.states() for journal in journals]
    finally:
        for journal in journals:
            await journal.aclose()
    async with PostgresJournal(pg_url, name) as again:  # opening an existing journal changes nothing
        assert await again.states() == {"order-1": JournalState.SENT}
    assert all(s == {"order-1": JournalState.SENT} for s in seen)
    with admin(pg_url) as conn:
        versions = conn.execute(f'SELECT version FROM "{schema_name(name)}".schema_version').fetchall()
    assert versions == [(SCHEMA_VERSION,)]


async def test_a_schema_of_a_newer_version_is_refused(pg_url: str) -> None:
    name = journal_name("newer")
    async with PostgresJournal(pg_url, name):
        pass
    with admin(pg_url) as conn:
        conn.execute(f'INSERT INTO "{schema_name(name)}".schema_version (version) VALUES (99)')
    journal = PostgresJournal(pg_url, name)
    with pytest.raises(JournalError, match="layout version 99"):
        await journal.open()
    await journal.aclose()


async def test_load_is_idempotent_and_never_changes_an_existing_item(pg_url: str) -> None:
    name = journal_name("load")
    async with PostgresJournal(pg_url, name) as journal:
        assert await journal.load([("a", {"row": 1}), ("b", {"row": 2}), ("a", {"row": 9})]) == 2
        lease = (await journal.claim())[0]
        await journal.mark_sent(lease.ref)
        assert await journal.load([("a", {"row": 3}), ("b", {"row": 4}), ("c", {"row": 5})]) == 1
        assert await journal.load([]) == 0
        assert await journal.states() == {
            "a": JournalState.SENT,
            "b": JournalState.PENDING,
            "c": JournalState.PENDING,
        }
        with pytest.raises(JournalError, match="item 1: the payload must be a mapping"):
            await journal.load([("d", {}), ("e", ["not", "an", "object"])])  # type: ignore[list-item]
        with pytest.raises(JournalError, match="item 0: the reference"):
            await journal.load([("", {})])
        with pytest.raises(JournalError, match="not JSON-serialisable"):
            await journal.load([("f", {"when": dt.datetime(2024, 1, 1)})])
        assert sorted(await journal.states()) == ["a", "b", "c"]  # a refused load writes nothing
    row_a, row_b = raw_item(pg_url, name, "a"), raw_item(pg_url, name, "b")
    assert row_a is not None and row_a[0] == "sent" and row_a[4] == {"row": 1}
    assert row_b is not None and row_b[4] == {"row": 2}


async def test_claim_hands_each_item_to_one_owner_under_concurrent_claimers(pg_url: str) -> None:
    name = journal_name("claim")
    items = [(f"item-{i:04d}", {"i": i}) for i in range(150)]
    workers = [PostgresJournal(pg_url, name, worker_id=f"w{n}") for n in range(6)]
    taken: dict[str, list[Lease]] = {}
    try:
        await workers[0].open()
        assert await workers[0].load(items) == 150

        async def drain(worker: PostgresJournal) -> None:
            got = taken.setdefault(worker.worker_id, [])
            while leases := await worker.claim(limit=7):
                got.extend(leases)

        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(drain, worker)
        assert await workers[0].queued_count() == 0 and await workers[0].pending_count() == 150
    finally:
        for worker in workers:
            await worker.aclose()
    everything = [lease for leases in taken.values() for lease in leases]
    assert sorted(lease.ref for lease in everything) == [ref for ref, _ in items]  # each once, none twice
    assert len({lease.token for lease in everything}) == 150
    assert all(lease.payload == {"i": int(lease.ref[5:])} for lease in everything)


async def test_claim_skips_rows_another_claimer_has_locked(pg_url: str) -> None:
    """A claimer in the middle of its transaction holds row locks: the others skip those rows, never wait."""
    name = journal_name("skip")
    async with PostgresJournal(pg_url, name) as journal:
        await journal.load([("first", {}), ("second", {})])
        with admin(pg_url) as other, other.transaction():
            other.execute(f'SELECT 1 FROM "{schema_name(name)}".items WHERE ref = %s FOR UPDATE', ("first",))
            with anyio.fail_after(10):
                taken = await journal.claim(limit=2)
            assert [lease.ref for lease in taken] == ["second"]
        assert [lease.ref for lease in await journal.claim(limit=2)] == ["first"]


def test_a_lease_does_not_show_its_payload() -> None:
    lease = Lease(ref="order-1", payload={"name": "JANEPERSONAL"}, token=7, expires_at=T0)
    assert "JANEPERSONAL" not in repr(lease) and "order-1" in repr(lease)


async def test_an_expired_lease_is_reclaimed_and_the_old_owner_cannot_record(pg_url: str) -> None:
    name = journal_name("fence")
    async with (
        PostgresJournal(pg_url, name, worker_id="old") as old,
        PostgresJournal(pg_url, name, worker_id="new") as new,
    ):
        await old.load([("order-1", {"n": 1}), ("order-2", {"n": 2})])
        first = await old.claim(limit=2)
        assert [lease.ref for lease in first] == ["order-1", "order-2"]
        assert await new.claim() == []  # live leases are not handed out
        assert await old.begin_item("order-1") is not None  # still ours
        expire_leases(pg_url, name)
        # not renewed in time: the old owner must not send even before anyone reclaims it
        with pytest.raises(LeaseLostError) as lost:
            await old.mark_sent("order-2")
        assert lost.value.refs == ("order-2",) and isinstance(lost.value, JournalError)
        assert raw_item(pg_url, name, "order-2")[:2] == ("pending", 0)  # type: ignore[index]
        assert await old.queued_count() == 2
        second = await new.claim(limit=5)
        assert [lease.ref for lease in second] == ["order-1", "order-2"]
        assert all(b.token > a.token for a, b in zip(first, second, strict=True))
        before = raw_item(pg_url, name, "order-1")
        for attempt in (old.mark_sent("order-1"), old.begin_item("order-1")):
            with pytest.raises(LeaseLostError):
                await attempt
        with pytest.raises(LeaseLostError):
            await old.mark_failed("order-1", BadRequestError("x", status_code=400))
        with pytest.raises(LeaseLostError):
            await old.mark_unknown(["order-1"], "ReadTimeout")
        assert raw_item(pg_url, name, "order-1") == before  # the old owner wrote nothing
        assert before is not None and before[:3] == ("pending", 0, "new")
        assert await old.renew(first) == ["order-1", "order-2"]
        assert await new.renew(second) == []
        await new.mark_sent("order-1")
        assert raw_item(pg_url, name, "order-1")[:3] == ("sent", 1, "new")  # type: ignore[index]


async def test_a_receipt_is_recorded_even_when_the_lease_was_taken_over(pg_url: str) -> None:
    name = journal_name("receipt")
    async with (
        PostgresJournal(pg_url, name, worker_id="a") as a,
        PostgresJournal(pg_url, name, worker_id="b") as b,
    ):
        await a.load([("order-1", {})])
        await a.claim()
        await a.mark_sent("order-1")
        await b.mark_reconciled("order-1", None)  # someone decided (wrongly) that no scan was created
        await b.claim()
        with pytest.raises(LeaseLostError, match="the receipt was recorded"):
            await a.mark_receipt("order-1", RECEIPT)  # a scan exists: that fact is never dropped
        entry = await b.get("order-1")
        assert entry is not None and entry.state is JournalState.RECEIPT and entry.scan_reference == SCAN_A
        assert await b.queued_count() == 0 and await b.pending_count() == 0
        # b goes on with the item it holds: its answer names another scan, so both are kept and flagged
        await b.mark_receipt("order-1", ScanReceipt(SCAN_B, T0))
        entry = await b.get("order-1")
        assert entry is not None and entry.duplicate_scan and entry.scan_references == (SCAN_A, SCAN_B)


async def test_sent_items_are_never_handed_out_again(pg_url: str) -> None:
    name = journal_name("sent")
    async with (
        PostgresJournal(pg_url, name, worker_id="a") as a,
        PostgresJournal(pg_url, name, worker_id="b") as b,
    ):
        await a.load([(ref, {}) for ref in ("s", "u", "f", "r")])
        leases = {lease.ref: lease for lease in await a.claim(limit=4)}
        for ref in leases:
            await a.begin_item(ref)
            await a.mark_sent(ref)
        await a.mark_unknown(["u"], "ReadTimeout")
        await a.mark_failed("f", BadRequestError("x", status_code=400))
        await a.mark_receipt("r", RECEIPT)
        expire_leases(pg_url, name)
        assert await b.claim(limit=10) == []
        assert await b.queued_count() == 0 and await b.pending_count() == 0
        assert await b.unknown() == ["s", "u"]
        with pytest.raises(JournalError, match="only an unsent item"):
            await a.release(leases["s"])
        assert await a.release(leases["f"]) is True  # a failed item may be given back...
        assert [lease.ref for lease in await b.claim()] == ["f"]  # ...and another worker takes it
        assert await a.release(leases["f"]) is False  # the lease is not a's any more
        await b.mark_failed("f", BadRequestError("x", status_code=400))
        assert await a.requeue_failed() == 1  # a re-run sends failed items again (never sent/unknown ones)
        assert [lease.ref for lease in await a.claim(limit=10)] == ["f"]
        assert (await a.counts())[JournalState.FAILED] == 0


async def test_release_gives_an_unsent_item_back(pg_url: str) -> None:
    name = journal_name("release")
    async with (
        PostgresJournal(pg_url, name, worker_id="a") as a,
        PostgresJournal(pg_url, name, worker_id="b") as b,
    ):
        await a.load([("x", {"k": "v"})])
        (lease,) = await a.claim()
        assert await b.claim() == []
        assert await a.release(lease) is True
        assert await a.queued_count() == 1
        (taken,) = await b.claim()
        assert taken.ref == "x" and taken.payload == {"k": "v"} and taken.token > lease.token
        with pytest.raises(JournalError, match="another worker holds a live lease"):
            await a.mark_sent("x")  # released: a must not send any more (b holds it now)


async def test_begin_item_claims_what_a_plain_batch_sends(pg_url: str) -> None:
    """Two plain batches over the same references never send one twice."""
    name = journal_name("plain")
    async with (
        PostgresJournal(pg_url, name, worker_id="a") as a,
        PostgresJournal(pg_url, name, worker_id="b") as b,
    ):
        await a.start_run()
        await b.start_run()  # no exclusive lock: many workers run at once
        assert await a.begin_item("order-1") is None
        with pytest.raises(JournalError, match="another worker holds a live lease") as refused:
            await b.begin_item("order-1")
        assert "order-1" not in str(refused.value)
        with pytest.raises(JournalError, match="another worker"):
            await b.mark_sent("order-1")
        assert raw_item(pg_url, name, "order-1")[:3] == ("pending", 0, "a")  # type: ignore[index]
        await a.mark_sent("order-1")
        assert (await b.begin_item("order-1")).state is JournalState.SENT  # type: ignore[union-attr]
        await a.begin_item("order-2")  # begun, never sent: given back when the batch ends
        await a.finish_run("cancelled", {})
        entry = await b.begin_item("order-2")
        assert entry is not None and entry.state is JournalState.PENDING
        await b.mark_sent("order-2")
        await b.finish_run("completed", {})
        assert {run["worker_id"] for run in await a.runs()} == {"a", "b"}


async def test_mark_unknown_records_the_items_still_held_and_reports_the_lost_ones(pg_url: str) -> None:
    name = journal_name("unknown")
    async with (
        PostgresJournal(pg_url, name, worker_id="a") as a,
        PostgresJournal(pg_url, name, worker_id="b") as b,
    ):
        await a.load([("kept", {}), ("taken", {})])
        await a.claim(limit=2)
        await a.mark_sent("kept")
        expire_leases(pg_url, name, ["taken"])
        assert [lease.ref for lease in await b.claim()] == ["taken"]
        with pytest.raises(LeaseLostError) as lost:
            await a.mark_unknown(["kept", "taken"], "ReadTimeout")
        assert lost.value.refs == ("taken",)
        assert await a.states() == {"kept": JournalState.UNKNOWN, "taken": JournalState.PENDING}
        with pytest.raises(LeaseLostError):
            await a.mark_unknown(["taken"], "ReadTimeout")  # still not a's, however often it asks


KILLED_WORKER = """
import os, signal, sys, anyio
from netverify_async.postgres import PostgresJournal

async def main():
    journal = PostgresJournal(sys.argv[1], sys.argv[2], worker_id="doomed")
    await journal.open()
    await journal.load([("in-flight", {}), ("claimed", {}), ("queued", {})])
    leases = await journal.claim(limit=2)
    await journal.begin_item("in-flight")
    await journal.mark_sent("in-flight")
    os.kill(os.getpid(), signal.SIGKILL)  # dies holding both leases, one item sent

anyio.run(main)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_killed_worker_leaves_sent_items_sent_and_the_rest_reclaimable(pg_url: str) -> None:
    name = journal_name("killed")
    result = await anyio.run_process(
        [sys.executable, "-c", KILLED_WORKER, pg_url, name], check=False, stdout=subprocess.DEVNULL
    )
    assert result.returncode == -signal.SIGKILL
    async with PostgresJournal(pg_url, name, worker_id="heir") as heir:
        assert [lease.ref for lease in await heir.claim(limit=5)] == ["queued"]
        assert await heir.pending_count() == 2
        expire_leases(pg_url, name, ["claimed"])  # lease_seconds later
        assert [lease.ref for lease in await heir.claim(limit=5)] == ["claimed"]
        assert await heir.unknown() == ["in-flight"]
        assert raw_item(pg_url, name, "in-flight")[:3] == ("sent", 1, "doomed")  # type: ignore[index]


async def test_an_idle_connection_closed_by_the_server_is_replaced_and_the_call_made(pg_url: str) -> None:
    """The server ends the idle connection between two calls (pg_terminate_backend, like a restart or
    idle_session_timeout): nothing of the next call had reached it, so the call is made on a new connection."""
    name = journal_name("terminate")
    async with PostgresJournal(pg_url, name) as journal:
        await journal.begin_item("order-1")
        assert journal._conn is not None
        first_pid = journal._conn.info.backend_pid
        with admin(pg_url) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
        await journal.mark_sent("order-1")  # the lease is still held
        assert journal._conn is not None and journal._conn.info.backend_pid != first_pid
        assert (await journal.get("order-1")).state is JournalState.SENT  # type: ignore[union-attr]
        with admin(pg_url) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (journal._conn.info.backend_pid,))
        assert await journal.begin_item("order-2") is None
        assert raw_item(pg_url, name, "order-2")[:2] == ("pending", 0)  # type: ignore[index]


async def test_a_sent_commit_whose_answer_was_lost_is_never_sent_and_never_resent(pg_url: str) -> None:
    """The "sent" commit happens but its acknowledgement is lost: mark_sent raises JournalError, so the batch does
    not send; the row says ``sent``, so no later run or worker sends it blindly."""
    from netverify_async.emulator import run_emulator

    name = journal_name("lostack")
    with CommitCuttingProxy(pg_url) as proxy:

        class CutAtSent(PostgresJournal):
            async def mark_sent(self, merchant_id_scan_reference: str) -> None:
                proxy.cut_next_commit()
                await super().mark_sent(merchant_id_scan_reference)

        async with run_emulator(processing_delay=0.0) as emu, client_for(emu) as client:
            async with CutAtSent(proxy.url, name) as journal:
                with pytest.raises(JournalError, match="connection was lost"):
                    async with client.submit_many([make_request("order-1")], journal=journal) as batch:
                        async for _ in batch:
                            pass
                assert proxy.cuts == 1
                assert scans_per_reference(emu) == {}  # nothing was sent
                assert raw_item(pg_url, name, "order-1")[:2] == ("sent", 1)  # type: ignore[index]
            async with PostgresJournal(pg_url, name) as rerun:
                assert await rerun.claim(limit=5) == []
                async with client.submit_many([make_request("order-1")], journal=rerun) as batch:
                    statuses = [o.status async for o in batch]
            assert statuses == [OutcomeStatus.SKIPPED_UNKNOWN]
            assert scans_per_reference(emu) == {}


async def test_a_stopped_server_raises_journal_error_and_a_restart_recovers(postgres_server: Any) -> None:
    name = journal_name("restart")
    async with PostgresJournal(postgres_server.url, name) as journal:
        await journal.mark_sent("order-1")
        postgres_server.stop()
        try:
            with pytest.raises(JournalError):
                await journal.mark_sent("order-2")
            with pytest.raises(JournalError, match="cannot connect"):
                await journal.states()
        finally:
            postgres_server.start()
        await journal.mark_sent("order-2")
        assert await journal.unknown() == ["order-1", "order-2"]


async def test_a_run_finished_while_the_server_is_down_can_be_started_again(postgres_server: Any) -> None:
    async with PostgresJournal(postgres_server.url, journal_name("rerun")) as journal:
        await journal.start_run()
        postgres_server.stop()
        try:
            with pytest.raises(JournalError):
                await journal.finish_run("failed", {})
        finally:
            postgres_server.start()
        await journal.start_run()  # not "already used by a running batch"
        await journal.finish_run("completed", {})
        assert [run["status"] for run in await journal.runs()][-1] == "completed"


async def test_a_closed_journal_refuses_calls(pg_url: str) -> None:
    journal = PostgresJournal(pg_url, journal_name("closed"))
    await journal.open()
    await journal.aclose()
    await journal.aclose()
    with pytest.raises(JournalError, match="closed"):
        await journal.states()
    with pytest.raises(JournalError, match="cannot connect"):
        await PostgresJournal("postgresql://nobody@127.0.0.1:1/none", "x").open()


def test_importing_the_package_does_not_import_psycopg() -> None:
    code = "import sys, netverify_async, netverify_async._pgjournal; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
