"""Re-running a batch with its journal: only what has no receipt is sent, never a second scan per reference."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_support import GOOD_PNG, client_for, make_request, refs, scans_per_reference

from netverify_async import (
    BatchOutcome,
    BatchStatus,
    JournalError,
    JournalState,
    OutcomeStatus,
    RetryPolicy,
    ServerError,
    SqliteJournal,
    SubmissionOutcomeUnknown,
)
from netverify_async.emulator import run_emulator

REFS = refs("resume", 8)


pytestmark = pytest.mark.both_loops


def requests() -> Any:
    return (make_request(ref) for ref in REFS)


async def run_all(client: Any, journal: Any, **options: Any) -> dict[str, BatchOutcome]:
    async with client.submit_many(requests(), concurrency=3, journal=journal, **options) as batch:
        return {o.merchant_id_scan_reference: o async for o in batch}


@pytest.mark.anyio
async def test_interrupt_rerun_reconcile_rerun(tmp_path: Path) -> None:
    journal_path = tmp_path / "batch.journal"
    faults: dict[str, Any] = {"processing_delay": 0, "sequence": ["ok", "slow", "slow"], "slow_seconds": 30.0}
    async with run_emulator(**faults) as emu, client_for(emu) as client:
        # run 1: stopped while two uploads hang (their scans exist, their answers never came)
        async with client.submit_many(requests(), concurrency=3, journal=journal_path) as batch:
            async for _ in batch:
                with anyio.fail_after(20):
                    while emu.stats.faults_injected.get("slow", 0) < 2:
                        await anyio.sleep(0.01)
                break
        first = batch.summary
        assert first.status is BatchStatus.CANCELLED and len(first.unknown) >= 2

        # run 2: the rest is sent; the unknown ones are skipped, not resent
        second = await run_all(client, journal_path)
        scans = scans_per_reference(emu)
        for ref in first.receipts:
            assert second[ref].status is OutcomeStatus.SKIPPED_ALREADY_DONE
            assert second[ref].receipt is not None
        for ref in first.unknown:
            assert second[ref].status is OutcomeStatus.SKIPPED_UNKNOWN
            assert isinstance(second[ref].error, SubmissionOutcomeUnknown)
        sent_now = {ref for ref, o in second.items() if o.status is OutcomeStatus.RECEIPT}
        assert sent_now == set(REFS) - set(first.receipts) - set(first.unknown)
        assert all(count == 1 for count in scans.values()), scans
        assert set(scans) >= set(REFS) - set(first.unknown)

        # reconcile the unknown ones from what the server knows (here: the emulator's records)
        by_ref = emu.stats.scans_by_merchant_reference
        async with SqliteJournal(journal_path) as journal:
            assert sorted(await journal.unknown()) == sorted(first.unknown)
            for ref in await journal.unknown():
                await journal.mark_reconciled(ref, by_ref[ref][0] if ref in by_ref else None)
            assert await journal.unknown() == []
        never_arrived = {ref for ref in first.unknown if ref not in by_ref}

        # run 3: only what never reached the server is sent; then every reference has exactly one scan
        third = await run_all(client, journal_path)
        assert {ref for ref, o in third.items() if o.status is OutcomeStatus.RECEIPT} == never_arrived
        assert all(
            o.status is OutcomeStatus.SKIPPED_ALREADY_DONE
            for ref, o in third.items()
            if ref not in never_arrived
        )
        assert scans_per_reference(emu) == dict.fromkeys(REFS, 1)


@pytest.mark.anyio
async def test_failed_items_are_resent_by_the_next_run(tmp_path: Path) -> None:
    journal_path = tmp_path / "batch.journal"
    async with run_emulator(processing_delay=0, sequence=["503", "503"]) as emu:
        async with client_for(emu, retry=RetryPolicy.no_retries()) as client:
            first = await run_all(client, journal_path)
            failed = {ref for ref, o in first.items() if o.status is OutcomeStatus.FAILED}
            assert len(failed) == 2
            assert all(isinstance(first[ref].error, ServerError) for ref in failed)
            async with SqliteJournal(journal_path) as journal:
                entries = [await journal.get(ref) for ref in failed]
            assert all(e is not None and e.state is JournalState.FAILED and e.safe_to_retry for e in entries)
            second = await run_all(client, journal_path)
        assert {ref for ref, o in second.items() if o.status is OutcomeStatus.RECEIPT} == failed
        assert scans_per_reference(emu) == dict.fromkeys(REFS, 1)


@pytest.mark.anyio
async def test_resend_unknown_sends_ambiguous_items_again(tmp_path: Path) -> None:
    # a 500 is ambiguous for a submission; here it came before processing, so resending is what is needed
    journal_path = tmp_path / "batch.journal"
    async with run_emulator(processing_delay=0, sequence=["500"], error_phase="before") as emu:
        async with client_for(emu) as client:
            first = await run_all(client, journal_path)
            unknown = [ref for ref, o in first.items() if o.status is OutcomeStatus.UNKNOWN]
            assert len(unknown) == 1
            assert isinstance(first[unknown[0]].error, SubmissionOutcomeUnknown)
            second = await run_all(client, journal_path)
            assert second[unknown[0]].status is OutcomeStatus.SKIPPED_UNKNOWN
            third = await run_all(client, journal_path, resend_unknown=True)
            assert third[unknown[0]].status is OutcomeStatus.RECEIPT
        async with SqliteJournal(journal_path) as journal:
            entry = await journal.get(unknown[0])
        assert entry is not None and entry.sends == 2 and entry.state is JournalState.RECEIPT
        assert scans_per_reference(emu) == dict.fromkeys(REFS, 1)


@pytest.mark.anyio
async def test_journal_object_is_left_open_for_the_caller(tmp_path: Path) -> None:
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with SqliteJournal(tmp_path / "j.sqlite") as journal:
            await run_all(client, journal)
            counts = await journal.counts()  # still usable: the batch did not close it
            runs = await journal.runs()
    assert counts[JournalState.RECEIPT] == len(REFS)
    assert runs[-1]["status"] == "completed" and runs[-1]["counts"]["receipt"] == len(REFS)


@pytest.mark.anyio
async def test_journal_file_holds_no_personal_data_or_image_bytes(tmp_path: Path) -> None:
    journal_path = tmp_path / "private.journal"
    request = make_request("priv-1", first_name="Zebulonia", last_name="Quixotica", number="X98765432")
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many([request], concurrency=1, journal=journal_path) as batch:
            outcomes = [o async for o in batch]
    assert outcomes[0].status is OutcomeStatus.RECEIPT
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("private.journal"))
    assert b"priv-1" in stored  # the instrument works: the reference itself is there
    for secret in (b"Zebulonia", b"Quixotica", b"X98765432", GOOD_PNG[:64], base64.b64encode(GOOD_PNG[:48])):
        assert secret not in stored


class BrokenJournal(SqliteJournal):
    """A journal whose disk fails when the third item is about to be sent."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.marked = 0

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        self.marked += 1
        if self.marked == 3:
            raise JournalError("journal: disk I/O error")
        await super().mark_sent(merchant_id_scan_reference)


@pytest.mark.anyio
async def test_a_journal_that_cannot_record_stops_the_batch_before_sending(tmp_path: Path) -> None:
    journal = BrokenJournal(tmp_path / "broken.sqlite")
    async with run_emulator(processing_delay=0, latency=0.2) as emu, client_for(emu) as client:
        with pytest.raises(JournalError, match="disk I/O"):
            async with client.submit_many(requests(), concurrency=1, journal=journal) as batch:
                async for _ in batch:
                    pass
        await journal.aclose()
        assert batch.summary.status is BatchStatus.FAILED
        assert batch.summary.error_type == "JournalError"
        assert emu.stats.scans_created == 2  # the item that could not be recorded was not sent


class ReceiptLosingJournal(SqliteJournal):
    """A journal whose disk fails when the first receipt is recorded."""

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: Any) -> None:
        raise JournalError("journal: disk full")


@pytest.mark.anyio
async def test_a_receipt_the_journal_cannot_record_is_still_reported(tmp_path: Path) -> None:
    journal = ReceiptLosingJournal(tmp_path / "full.sqlite")
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        seen: list[BatchOutcome] = []
        with pytest.raises(JournalError, match="disk full"):
            async with client.submit_many(requests(), concurrency=1, journal=journal) as batch:
                async for outcome in batch:
                    seen.append(outcome)
        assert [o.status for o in seen] == [OutcomeStatus.RECEIPT]
        ref = seen[0].merchant_id_scan_reference
        assert batch.summary.receipts == (ref,)
        assert emu.stats.scans_created == 1
        # the journal still says "sent": a re-run would report it unknown, never send it again
        assert await journal.unknown() == [ref]
        await journal.aclose()
