"""Stopping a batch: aclose inside the block, leaving ``async with``, cancelling the consumer, an exception.

Every way must leave no task of the batch running, produce a summary that splits the references into
receipts / unknown (upload in flight) / not sent, and record the same split in the journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sniffio
from _batch_support import client_for, make_request, refs, scans_per_reference

from netverify_async import (
    BatchStatus,
    BatchSummary,
    ConfigurationError,
    JournalState,
    OutcomeStatus,
    SqliteJournal,
)
from netverify_async.emulator import run_emulator

ITEMS = 8
#: The first request to reach the emulator is answered at once, the next two hang (after creating their scan).
FAULTS: dict[str, Any] = {"processing_delay": 0, "sequence": ["ok", "slow", "slow"], "slow_seconds": 30.0}


pytestmark = pytest.mark.both_loops


def live_batch_tasks() -> list[str]:
    """Names of the tasks of any batch pipeline still alive in this event loop."""
    if sniffio.current_async_library() == "asyncio":
        import asyncio

        names = []
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            qualname = getattr(coro, "__qualname__", "")
            if not task.done() and (task.get_name() == "netverify-batch" or "_Pipeline" in qualname):
                names.append(task.get_name())
        return names
    import trio

    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name == "netverify-batch" or "_Pipeline" in task.name:
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())  # type: ignore[arg-type]
    return found


def requests() -> Iterator[Any]:
    for ref in refs("cancel", ITEMS):
        yield make_request(ref)


async def wait_for_hanging_uploads(emu: Any) -> None:
    """Wait (bounded) until the emulator has created the scans of the two hanging requests."""
    with anyio.fail_after(20):
        while emu.stats.faults_injected.get("slow", 0) < 2:
            await anyio.sleep(0.01)


async def check_split(summary: BatchSummary, emu: Any, journal_path: Path | None) -> None:
    assert summary.status is BatchStatus.CANCELLED
    receipts, unknown, not_sent = set(summary.receipts), set(summary.unknown), set(summary.not_sent)
    assert receipts and unknown
    assert not (receipts & unknown or receipts & not_sent or unknown & not_sent)
    assert len(receipts) + len(unknown) + len(not_sent) + len(summary.failed) == summary.read
    scans = scans_per_reference(emu)
    assert all(scans.get(ref) == 1 for ref in receipts)
    assert all(scans.get(ref, 0) <= 1 for ref in unknown)
    assert not any(ref in scans for ref in not_sent), "an item reported as not sent reached the server"
    # every request that reached the server without a receipt (the two hanging ones at least) is "unknown"
    reached_without_receipt = set(scans) - receipts
    assert len(reached_without_receipt) >= 2
    assert reached_without_receipt <= unknown
    if journal_path is not None:
        async with SqliteJournal(journal_path) as journal:
            states = await journal.states()
            entries = await journal.entries()
            assert sorted(await journal.unknown()) == sorted(unknown)
        assert all(states[ref] is JournalState.RECEIPT for ref in receipts)
        assert all(states[ref] is JournalState.UNKNOWN for ref in unknown)
        # a reference stopped before its journal row was written has no row, which means the same as pending; one
        # stopped in flight before its body was out is "failed", safe to resend: both are sent by the next run
        assert all(
            states.get(ref, JournalState.PENDING) in (JournalState.PENDING, JournalState.FAILED)
            for ref in not_sent
        )
        assert all(
            entry.safe_to_retry is not False
            for entry in entries
            if entry.merchant_id_scan_reference in not_sent
        )


@pytest.mark.anyio
async def test_break_then_aclose(tmp_path: Path) -> None:
    journal_path = tmp_path / "j.sqlite"
    async with run_emulator(**FAULTS) as emu, client_for(emu) as client:
        async with client.submit_many(requests(), concurrency=3, journal=journal_path) as batch:
            async for outcome in batch:
                assert outcome.status is OutcomeStatus.RECEIPT
                await wait_for_hanging_uploads(emu)
                break
            assert batch.summary.status is BatchStatus.RUNNING
            await batch.aclose()
            assert batch.summary.status is BatchStatus.CANCELLED
            assert [o async for o in batch] == []  # nothing more comes after aclose
        assert live_batch_tasks() == []
        await check_split(batch.summary, emu, journal_path)


@pytest.mark.anyio
async def test_leaving_async_with_stops_the_batch(tmp_path: Path) -> None:
    journal_path = tmp_path / "j.sqlite"
    async with run_emulator(**FAULTS) as emu, client_for(emu) as client:
        async with client.submit_many(requests(), concurrency=3, journal=journal_path) as batch:
            async for _ in batch:
                await wait_for_hanging_uploads(emu)
                break
        assert live_batch_tasks() == []
        await check_split(batch.summary, emu, journal_path)


@pytest.mark.anyio
async def test_cancelling_the_consuming_task_stops_the_batch(tmp_path: Path) -> None:
    journal_path = tmp_path / "j.sqlite"
    async with run_emulator(**FAULTS) as emu, client_for(emu) as client:
        batch = client.submit_many(requests(), concurrency=3, journal=journal_path)

        async def consume(scope: anyio.CancelScope) -> None:
            async with batch:
                async for _ in batch:
                    await wait_for_hanging_uploads(emu)
                    scope.cancel()  # the consumer's own scope, while it waits for the next outcome

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, tg.cancel_scope)
        assert live_batch_tasks() == []
        await check_split(batch.summary, emu, journal_path)


@pytest.mark.anyio
async def test_exception_in_the_loop_body_stops_the_batch() -> None:
    async with run_emulator(**FAULTS) as emu, client_for(emu) as client:
        with pytest.raises(LookupError):
            async with client.submit_many(requests(), concurrency=3) as batch:
                async for _ in batch:
                    await wait_for_hanging_uploads(emu)
                    raise LookupError("consumer bug")
        assert live_batch_tasks() == []
        await check_split(batch.summary, emu, None)


@pytest.mark.anyio
async def test_a_batch_iterated_outside_async_with_says_how_to_use_it() -> None:
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        batch = client.submit_many(requests(), concurrency=3)
        with pytest.raises(ConfigurationError, match=r"async with client\.submit_many"):
            async for _ in batch:
                pass
        assert batch.summary.status is BatchStatus.NOT_STARTED
        assert emu.stats.requests == 0


@pytest.mark.anyio
async def test_a_batch_runs_only_once() -> None:
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        batch = client.submit_many(requests(), concurrency=3)
        async with batch:
            await batch.aclose()
        with pytest.raises(ConfigurationError, match="already started"):
            async with batch:
                pass


@pytest.mark.anyio
async def test_a_batch_that_was_never_iterated_starts_nothing(tmp_path: Path) -> None:
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        batch = client.submit_many(requests(), concurrency=3, journal=tmp_path / "never.sqlite")
        await batch.aclose()
        assert batch.summary.status is BatchStatus.NOT_STARTED
        assert emu.stats.requests == 0
    assert not (tmp_path / "never.sqlite").exists()


@pytest.mark.anyio
async def test_items_still_waiting_for_a_rate_limit_slot_count_as_not_sent(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.sqlite3"
    references = refs("slot", 6)
    async with run_emulator(processing_delay=0) as emu:
        async with client_for(emu, rate_limit="2/60s") as client:
            async with client.submit_many(
                (make_request(r) for r in references), concurrency=4, journal=str(journal_path)
            ) as batch:
                received = []
                async for outcome in batch:
                    received.append(outcome)
                    if len(received) == 2:
                        # two more items wait for a slot in the limiter (concurrency 4): none of them has left
                        with anyio.fail_after(10):
                            while client.submit_limiter.waiting < 2:
                                await anyio.sleep(0.01)
                        break
            summary = batch.summary
    assert {o.status for o in received} == {OutcomeStatus.RECEIPT}
    assert summary.unknown == ()
    # every item read but not sent (the two waiting for a slot, and any the reader had taken in beyond them)
    assert summary.read >= 4
    assert len(summary.not_sent) == summary.read - 2
    assert sum(len(v) for v in emu.stats.scans_by_merchant_reference.values()) == 2
    async with SqliteJournal(journal_path) as journal:
        states = await journal.states()
    assert sorted(s for s in states.values() if s is JournalState.RECEIPT) == [JournalState.RECEIPT] * 2
    assert JournalState.UNKNOWN not in states.values() and JournalState.SENT not in states.values()
