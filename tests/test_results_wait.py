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
