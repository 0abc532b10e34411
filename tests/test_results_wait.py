"""wait_for_results: results from the journal first, the rest polled (bounded), stored, and not polled again."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import emulator_client

from netverify_async import NetverifyRequest, SqliteJournal, wait_for_results
from netverify_async.callbacks import parse_callback

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]


async def test_polls_the_scans_of_a_batch_then_a_rerun_polls_nothing(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite3"
    refs = [f"res-{i}" for i in range(5)]
    async with emulator_client(emulator) as client:
        async with client.submit_many(
            [make_request(ref) for ref in refs], concurrency=3, journal=journal_path
        ) as batch:
            outcomes = [outcome async for outcome in batch]
        before = emulator.stats.requests
        async with wait_for_results(client, outcomes, journal=journal_path, concurrency=2) as results:
            first = [result async for result in results]
        polled = emulator.stats.requests - before
        assert results.polled == 5 and results.from_journal == 0
        assert polled >= 10  # a status and a details request per scan at least

        before = emulator.stats.requests
        async with wait_for_results(client, journal_path) as again:
            second = [result async for result in again]
        assert emulator.stats.requests == before  # resumable: nothing polled again
        assert again.polled == 0 and again.from_journal == 5

    assert sorted(r.merchant_id_scan_reference for r in first) == refs
    by_ref = {r.merchant_id_scan_reference: r for r in first}
    for outcome in outcomes:
        assert outcome.receipt is not None
        result = by_ref[outcome.merchant_id_scan_reference or ""]
        assert result.scan_reference == outcome.receipt.scan_reference
        assert result.verification_status is not None and result.error is None
        assert result.source == "polled" and result.submitted_at is not None and result.result_at is not None
    for result in second:
        assert result.source == "journal"
        assert result.verification_status == by_ref[result.merchant_id_scan_reference].verification_status
        assert result.reject_reason_code == by_ref[result.merchant_id_scan_reference].reject_reason_code
        # the same timings as when it was polled: the journal keeps when the result became known
        assert result.result_at == by_ref[result.merchant_id_scan_reference].result_at
        assert result.submitted_at == by_ref[result.merchant_id_scan_reference].submitted_at
    async with SqliteJournal(journal_path) as journal:
        entry = await journal.get(refs[0])
        assert entry is not None and entry.result is not None
        assert entry.scans[0].callback_at is None  # a polled result is no callback
        assert await journal.last_callback_at() is None


async def test_results_from_callbacks_are_taken_without_a_request(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite3"
    async with emulator_client(emulator) as client, SqliteJournal(journal_path) as journal:
        async with client.submit_many(
            [make_request("cb-1"), make_request("cb-2")], concurrency=2, journal=journal
        ) as batch:
            outcomes = {o.merchant_id_scan_reference: o async for o in batch}
        receipt = outcomes["cb-1"].receipt
        assert receipt is not None
        callback = parse_callback(
            {
                "jumioIdScanReference": receipt.scan_reference,
                "merchantIdScanReference": "cb-1",
                "verificationStatus": "DENIED_FRAUD",
                "idScanStatus": "ERROR",
                "rejectReason": '{"rejectReasonCode": "100", "rejectReasonDescription": "MANIPULATED_DOCUMENT"}',
                "callbackDate": "2026-01-02T03:04:05.000Z",
            }
        )
        await journal.record_callback(callback)
        before = emulator.stats.requests
        async with wait_for_results(client, journal, concurrency=1) as results:
            got = {r.merchant_id_scan_reference: r async for r in results}
        assert results.from_journal == 1 and results.polled == 1
        assert emulator.stats.requests - before >= 2  # cb-2 only
    assert got["cb-1"].source == "journal"
    assert got["cb-1"].verification_status == "DENIED_FRAUD"
    assert got["cb-1"].reject_reason_code == "100"
    assert got["cb-1"].reject_reason_description == "MANIPULATED_DOCUMENT"
    assert got["cb-1"].result_at is not None and got["cb-1"].result_at.year == 2026
    assert got["cb-2"].source == "polled"


async def test_a_scan_still_pending_gives_an_error_result(
    make_request: Callable[..., NetverifyRequest],
) -> None:
    from netverify_async import DeadlineExceeded
    from netverify_async.emulator import run_emulator

    async with run_emulator(processing_delay=30.0) as emu, emulator_client(emu) as client:
        receipt = await client.perform_netverify(make_request("slow-1"))
        from netverify_async import BatchOutcome, OutcomeStatus

        outcome = BatchOutcome(0, "slow-1", OutcomeStatus.RECEIPT, receipt=receipt)
        async with wait_for_results(client, [outcome], schedule=[0.0, 0.05]) as results:
            got = [r async for r in results]
    assert len(got) == 1 and got[0].verification_status is None
    assert isinstance(got[0].error, DeadlineExceeded)
    assert got[0].as_row()["error"] == "DeadlineExceeded"


async def test_record_result_keeps_a_callback_result_and_ignores_unknown_scans(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    from netverify_async import ScanResult

    async with emulator_client(emulator) as client, SqliteJournal(tmp_path / "j.sqlite3") as journal:
        async with client.submit_many([make_request("rr-1")], concurrency=1, journal=journal) as batch:
            [outcome] = [o async for o in batch]
        assert outcome.receipt is not None
        scan_ref = outcome.receipt.scan_reference
        assert not await journal.record_result("rr-1", "not-a-known-scan", ScanResult("APPROVED_VERIFIED"))
        assert not await journal.record_result("no-such-ref", scan_ref, ScanResult("APPROVED_VERIFIED"))
        assert await journal.record_result("rr-1", scan_ref, ScanResult("DENIED_FRAUD", "100"))
        assert not await journal.record_result("rr-1", scan_ref, ScanResult("APPROVED_VERIFIED"))
        entry = await journal.get("rr-1")
        assert entry is not None and entry.result == ScanResult("DENIED_FRAUD", "100")
        # a later callback replaces a polled result (a polled result has no callback date)
        await journal.record_callback(
            parse_callback(
                {
                    "jumioIdScanReference": scan_ref,
                    "merchantIdScanReference": "rr-1",
                    "verificationStatus": "APPROVED_VERIFIED",
                    "idScanStatus": "SUCCESS",
                    "callbackDate": "2026-01-02T03:04:05.000Z",
                }
            )
        )
        entry = await journal.get("rr-1")
        assert entry is not None and entry.result is not None
        assert entry.result.verification_status == "APPROVED_VERIFIED"


async def test_polls_at_most_concurrency_scans_at_once() -> None:
    import anyio

    from netverify_async import BatchOutcome, DeadlineExceeded, OutcomeStatus, ScanReceipt

    class Client:
        running = peak = 0

        async def wait_for_result(self, scan_reference: str, *, schedule: Any = None) -> Any:
            Client.running += 1
            Client.peak = max(Client.peak, Client.running)
            await anyio.sleep(0.01)
            Client.running -= 1
            raise DeadlineExceeded("pending", operation="waitForResult")

    stamp = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    outcomes = [
        BatchOutcome(
            i, f"c-{i}", OutcomeStatus.RECEIPT, receipt=ScanReceipt(scan_reference=f"s-{i}", timestamp=stamp)
        )
        for i in range(10)
    ]
    async with wait_for_results(Client(), outcomes, concurrency=3) as results:
        got = [r async for r in results]
    assert len(got) == 10 and all(isinstance(r.error, DeadlineExceeded) for r in got)
    assert Client.peak == 3
    assert all(r.submitted_at == stamp for r in got)


def test_csv_cells_guard_every_formula_trigger() -> None:
    from netverify_async._results_wait import FORMULA_TRIGGERS, csv_cells, spreadsheet_safe

    for trigger in FORMULA_TRIGGERS:
        assert spreadsheet_safe(trigger + "x") == "'" + trigger + "x"
    assert [spreadsheet_safe(t) for t in ("", "ref-1", "APPROVED_VERIFIED", "2026-01-02T03:04:05+00:00")] == [
        "",
        "ref-1",
        "APPROVED_VERIFIED",
        "2026-01-02T03:04:05+00:00",
    ]
    assert spreadsheet_safe("a=b") == "a=b"  # only the first character matters
    assert csv_cells({"a": None, "b": "\r=cmd", "c": 100}) == {"a": "", "b": "'\r=cmd", "c": "100"}


async def test_a_reject_description_from_a_callback_is_guarded_in_the_csv_row_only(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    async with emulator_client(emulator) as client, SqliteJournal(tmp_path / "j.sqlite3") as journal:
        async with client.submit_many([make_request("csv-1")], journal=journal) as batch:
            [outcome] = [o async for o in batch]
        assert outcome.receipt is not None
        callback = parse_callback(
            {
                "jumioIdScanReference": outcome.receipt.scan_reference,
                "merchantIdScanReference": "csv-1",
                "verificationStatus": "DENIED_FRAUD",
                "idScanStatus": "ERROR",
                "rejectReason": '{"rejectReasonCode": "100", "rejectReasonDescription": "=HYPERLINK(1)"}',
            }
        )
        await journal.record_callback(callback)
        async with wait_for_results(client, journal) as results:
            [result] = [r async for r in results]
    assert result.source == "journal" and result.reject_reason_description == "=HYPERLINK(1)"
    assert result.as_row()["rejectReasonDescription"] == "=HYPERLINK(1)"
    row = result.as_csv_row()
    assert row["rejectReasonDescription"] == "'=HYPERLINK(1)" and row["rejectReasonCode"] == "100"
    assert row["error"] == "" and row["reference"] == "csv-1"


async def test_a_postgres_journal_is_a_source_too_and_a_rerun_polls_nothing(
    emulator: Any, make_request: Callable[..., NetverifyRequest], postgres_url: str
) -> None:
    from _postgres_support import journal_name

    from netverify_async.postgres import PostgresJournal

    refs = [f"pgres-{i}" for i in range(3)]
    name = journal_name("results")
    async with emulator_client(emulator) as client:
        async with PostgresJournal(postgres_url, name=name) as journal:
            async with client.submit_many([make_request(ref) for ref in refs], journal=journal) as batch:
                assert all([outcome.receipt is not None async for outcome in batch])
            async with wait_for_results(client, journal) as results:
                first = [result async for result in results]
        assert results.polled == 3 and results.from_journal == 0
        assert all(r.verification_status is not None and r.error is None for r in first)
        before = emulator.stats.requests
        async with PostgresJournal(postgres_url, name=name) as journal:
            async with wait_for_results(client, journal) as again:
                second = [result async for result in again]
        assert emulator.stats.requests == before
        assert again.from_journal == 3 and {r.merchant_id_scan_reference for r in second} == set(refs)
    timings = {r.merchant_id_scan_reference: (r.submitted_at, r.result_at) for r in first}
    assert all(r.result_at is not None for r in second)
    assert {r.merchant_id_scan_reference: (r.submitted_at, r.result_at) for r in second} == timings


# ---------------------------------------------------------------------------------------------------------
# callback_grace: callbacks fed to the journal first, polling as the fallback


async def _submit_with_receiver(
    refs: list[str],
    make_request: Callable[..., NetverifyRequest],
    journal_path: Path,
    *,
    fail_first: int,
    processing_delay: float,
) -> Any:
    """A context: emulator sending every callback to a loopback receiver that records it in the journal at
    ``journal_path`` (or refuses it, ``fail_first``); the batch of ``refs`` is submitted inside."""
    from contextlib import asynccontextmanager

    from netverify_async.emulator import run_callback_receiver, run_emulator

    @asynccontextmanager
    async def running() -> Any:
        async with (
            SqliteJournal(journal_path) as receiving,
            run_callback_receiver(fail_first=fail_first, journal=receiving) as receiver,
            run_emulator(
                processing_delay=processing_delay,
                allow_http_callbacks=True,
                callback_url_override=receiver.url,
                callback_retries=0,
            ) as emu,
            emulator_client(emu) as client,
        ):
            async with client.submit_many(
                [make_request(ref) for ref in refs], concurrency=4, journal=journal_path
            ) as batch:
                assert all([outcome.receipt is not None async for outcome in batch])
            yield emu, client, receiver

    return running()


async def test_results_arriving_by_callback_during_the_grace_are_not_polled(
    make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite3"
    refs = [f"grace-{i}" for i in range(4)]
    # processing takes a moment: the callbacks come after the wait started, while the journal is re-read
    async with await _submit_with_receiver(
        refs, make_request, journal_path, fail_first=0, processing_delay=0.5
    ) as (emu, client, receiver):
        before = emu.stats.requests
        # a long grace that ends early: as soon as every scan has its result
        async with wait_for_results(
            client, journal_path, callback_grace=datetime.timedelta(minutes=5)
        ) as got:
            results = [result async for result in got]
        assert emu.stats.requests == before  # not one retrieval request
        assert len(receiver.accepted) >= len(refs)
    assert got.polled == 0 and got.from_journal == len(refs)
    assert 0 <= got.from_callbacks <= len(refs) and got.phase == "done"
    assert sorted(r.merchant_id_scan_reference for r in results) == refs
    assert all(r.source == "journal" and r.verification_status and r.result_at for r in results)


async def test_a_receiver_refusing_callbacks_means_polling_after_the_grace(
    make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite3"
    refs = [f"refused-{i}" for i in range(3)]
    async with await _submit_with_receiver(
        refs, make_request, journal_path, fail_first=10**6, processing_delay=0.0
    ) as (_emu, client, receiver):
        async with wait_for_results(client, journal_path, callback_grace=1.5) as got:
            results = [result async for result in got]
        assert receiver.received and not receiver.accepted  # every callback was refused
    assert got.polled == len(refs) and got.from_journal == 0 and got.from_callbacks == 0
    assert sorted(r.merchant_id_scan_reference for r in results) == refs
    assert all(r.source == "polled" and r.verification_status and r.error is None for r in results)


async def test_the_grace_reads_the_journal_and_polls_only_what_is_still_missing(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    """One result reaches the journal during the grace (recorded like a receiver would), the other is polled."""
    import anyio

    journal_path = tmp_path / "j.sqlite3"
    async with emulator_client(emulator) as client, SqliteJournal(journal_path) as journal:
        async with client.submit_many(
            [make_request("mix-1"), make_request("mix-2")], concurrency=2, journal=journal
        ) as batch:
            receipts = {o.merchant_id_scan_reference: o.receipt async for o in batch}
        first = receipts["mix-1"]
        assert first is not None
        callback = parse_callback(
            {
                "jumioIdScanReference": first.scan_reference,
                "merchantIdScanReference": "mix-1",
                "verificationStatus": "DENIED_FRAUD",
                "idScanStatus": "ERROR",
                "callbackDate": "2026-01-02T03:04:05.000Z",
            }
        )
        got = wait_for_results(client, journal, callback_grace=3.0)

        async def deliver_while_waiting() -> None:
            while got.phase != "callbacks":  # after the first read of the journal, during the grace
                await anyio.sleep(0.01)
            await journal.record_callback(callback)

        async with anyio.create_task_group() as group:
            group.start_soon(deliver_while_waiting)
            async with got:
                got_results = [result async for result in got]
    by_ref = {r.merchant_id_scan_reference: r for r in got_results}
    assert by_ref["mix-1"].source == "journal" and by_ref["mix-1"].verification_status == "DENIED_FRAUD"
    assert by_ref["mix-1"].result_at == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert by_ref["mix-2"].source == "polled" and by_ref["mix-2"].verification_status is not None
    assert (got.from_callbacks, got.from_journal, got.polled) == (1, 1, 1)
    # the callback's result came first: it was given during the grace, before any poll
    assert [r.merchant_id_scan_reference for r in got_results] == ["mix-1", "mix-2"]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "10m", True, datetime.timedelta(seconds=-1)])
def test_callback_grace_is_checked(bad: Any) -> None:
    from netverify_async import ConfigurationError

    with pytest.raises(ConfigurationError, match="callback_grace"):
        wait_for_results(object(), [], callback_grace=bad)


async def test_without_a_journal_the_grace_is_ignored(
    emulator: Any, make_request: Callable[..., NetverifyRequest]
) -> None:
    from netverify_async import BatchOutcome, OutcomeStatus

    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(make_request("nojournal-1"))
        outcome = BatchOutcome(0, "nojournal-1", OutcomeStatus.RECEIPT, receipt=receipt)
        async with wait_for_results(client, [outcome], callback_grace=3600) as got:
            [result] = [r async for r in got]
    assert result.source == "polled" and got.polled == 1 and got.from_callbacks == 0


async def test_a_polled_result_keeps_its_time_until_a_callback_replaces_it(
    emulator: Any, make_request: Callable[..., NetverifyRequest], tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite3"
    async with emulator_client(emulator) as client, SqliteJournal(journal_path) as journal:
        async with client.submit_many(
            [make_request("t-1"), make_request("t-2")], concurrency=2, journal=journal
        ) as batch:
            receipts = {o.merchant_id_scan_reference: o.receipt async for o in batch}
        async with wait_for_results(client, journal) as results:
            polled = {r.merchant_id_scan_reference: r async for r in results}
        assert all(r.source == "polled" and r.result_at is not None for r in polled.values())
        for ref, date in (("t-1", "2000-01-01T00:00:00.000Z"), ("t-2", "2999-01-01T00:00:00.000Z")):
            receipt = receipts[ref]
            assert receipt is not None
            await journal.record_callback(
                parse_callback(
                    {
                        "jumioIdScanReference": receipt.scan_reference,
                        "merchantIdScanReference": ref,
                        "verificationStatus": "DENIED_FRAUD",
                        "idScanStatus": "ERROR",
                        "callbackDate": date,
                    }
                )
            )
        async with wait_for_results(client, journal) as again:
            later = {r.merchant_id_scan_reference: r async for r in again}
        assert again.polled == 0
        assert await journal.last_callback_at() is not None  # the callbacks count as proof either way
    # the first callback replaces a polled result, whatever its date (the poll time is no callback date)
    assert later["t-1"].verification_status == "DENIED_FRAUD"
    assert later["t-1"].result_at == datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    assert later["t-2"].verification_status == "DENIED_FRAUD"
    assert later["t-2"].result_at == datetime.datetime(2999, 1, 1, tzinfo=datetime.timezone.utc)
