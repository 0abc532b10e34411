"""Callback-driven reconciliation end to end, on asyncio and on trio: a batch against the emulator, the
emulator's callbacks delivered over HTTP to ``callback_router(journal=...)``, and the journal settling itself.

The receiver has its own connection to the batch's journal file (as it would in another process). Its
callbacks can be held back by a gate, so that "the batch left the item unknown" is seen before "the callback
settled it".
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_support import client_for, make_request
from fastapi import FastAPI

from netverify_async import JournalState, OutcomeStatus, SqliteJournal
from netverify_async.callbacks import CallbackOriginVerifier
from netverify_async.emulator import RunningEmulator, run_emulator, serve_asgi
from netverify_async.fastapi import callback_router

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

LOOPBACK = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
PATH = "/netverify/callback"
REFS = {
    "e2e-1#approved": "APPROVED_VERIFIED",
    "e2e-2#fraud": "DENIED_FRAUD",
    "e2e-3#unreadable": "ERROR_NOT_READABLE_ID",
}
_Message = MutableMapping[str, Any]


class Gate:
    """ASGI middleware that holds every HTTP request until ``open`` is set (thread-safe: on trio the app
    runs in the server's own thread and loop)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()

    async def __call__(
        self,
        scope: _Message,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        while scope["type"] == "http" and not self.open.is_set():
            await anyio.sleep(0.01)
        await self.app(scope, receive, send)


@asynccontextmanager
async def receiver_and_emulator(
    journal_path: Path, *, gated: bool, **emulator: Any
) -> AsyncIterator[tuple[Gate, RunningEmulator]]:
    """The callback receiver (its own SqliteJournal on ``journal_path``) and an emulator that calls it."""
    emulator.setdefault("processing_delay", 0)
    receiver_journal = SqliteJournal(journal_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with receiver_journal:  # opened and closed by the app, as a service would
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(callback_router(journal=receiver_journal, verifier=LOOPBACK))
    gate = Gate(app)
    if not gated:
        gate.open.set()
    try:
        async with (
            serve_asgi(gate) as app_url,
            run_emulator(
                allow_http_callbacks=True,
                callback_url_override=app_url + PATH,
                callback_timeout=30,
                **emulator,
            ) as emu,
        ):
            yield gate, emu
    finally:
        gate.open.set()  # never leave a request hanging at shutdown


async def run_batch(emu: RunningEmulator, journal_path: Path, **options: Any) -> dict[str, OutcomeStatus]:
    statuses: dict[str, OutcomeStatus] = {}
    async with client_for(emu) as client:
        requests = [make_request(ref) for ref in REFS]
        async with client.submit_many(requests, concurrency=1, journal=journal_path, **options) as batch:
            async for outcome in batch:
                statuses[outcome.merchant_id_scan_reference] = outcome.status
    return statuses


async def test_a_dropped_answer_is_settled_by_its_callback(tmp_path: Path) -> None:
    path = tmp_path / "uploads.journal"
    async with receiver_and_emulator(path, gated=True, sequence=["ok", "drop", "ok"]) as (gate, emu):
        first = await run_batch(emu, path)
        [dropped] = [ref for ref, status in first.items() if status is OutcomeStatus.UNKNOWN]
        assert sorted(first.values()) == sorted([OutcomeStatus.RECEIPT] * 2 + [OutcomeStatus.UNKNOWN])
        async with SqliteJournal(path) as journal:
            assert await journal.unknown() == [dropped]  # what a batch leaves today, without callbacks

        gate.open.set()  # the callbacks, held until now, reach the receiver
        records = await emu.wait_for_callbacks(3, timeout=30)
        assert {(r.result, r.status_code) for r in records} == {("delivered", 200)}
        created = emu.stats.scans_by_merchant_reference

        async with SqliteJournal(path) as journal:
            assert await journal.unknown() == []
            entries = {e.merchant_id_scan_reference: e for e in await journal.entries()}
            assert await journal.last_callback_at() is not None
        second = await run_batch(emu, path)  # the next run sends nothing again
        assert emu.stats.duplicates == {}

    settled = entries[dropped]
    assert settled.state is JournalState.RECEIPT and settled.reconciled_at is not None
    assert settled.scan_reference == created[dropped][0] and len(created[dropped]) == 1
    assert settled.receipt is None  # Jumio's answer never arrived; the callback named the scan
    for ref, status in REFS.items():
        entry = entries[ref]
        assert entry.state is JournalState.RECEIPT and not entry.duplicate_scan
        assert entry.scan_references == created[ref]
        assert entry.result is not None and entry.result.verification_status == status
        assert entry.result.callback_date is not None
        if ref != dropped:
            assert entry.receipt is not None and entry.reconciled_at is None
    assert entries["e2e-2#fraud"].result.reject_reason_code == "100"  # type: ignore[union-attr]
    assert entries["e2e-3#unreadable"].result.reject_reason_details == ("2001",)  # type: ignore[union-attr]
    assert set(second.values()) == {OutcomeStatus.SKIPPED_ALREADY_DONE}


async def test_a_callback_that_beats_the_answer_is_confirmed_by_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "uploads.journal"
    # the first answer is held for 2 s after its scan is created, the callbacks go 0.4 s after: only the slow
    # one's callback comes before its answer
    settings: dict[str, Any] = {"sequence": ["slow"], "slow_seconds": 2.0, "processing_delay": 0.4}
    async with receiver_and_emulator(path, gated=False, **settings) as (_, emu):
        statuses = await run_batch(emu, path)
        await emu.wait_for_callbacks(3, timeout=30)
        created = emu.stats.scans_by_merchant_reference
        async with SqliteJournal(path) as journal:
            entries = {e.merchant_id_scan_reference: e for e in await journal.entries()}
    assert set(statuses.values()) == {OutcomeStatus.RECEIPT}
    raced = [e for e in entries.values() if e.reconciled_at is not None]
    assert len(raced) == 1  # the slow one: settled by its callback while the batch still waited
    for ref, entry in entries.items():
        assert entry.state is JournalState.RECEIPT and not entry.duplicate_scan
        assert entry.scan_references == created[ref]
        assert entry.receipt is not None and entry.receipt.scan_reference == created[ref][0]
        assert entry.result is not None and entry.result.verification_status == REFS[ref]


async def test_a_scan_created_twice_is_recorded_and_flagged(tmp_path: Path) -> None:
    """The user opted into resending an unknown item before its callback came: two scans, both recorded."""
    path = tmp_path / "uploads.journal"
    async with receiver_and_emulator(path, gated=True, sequence=["drop"]) as (gate, emu):
        first = await run_batch(emu, path)
        [dropped] = [ref for ref, status in first.items() if status is OutcomeStatus.UNKNOWN]
        resent = await run_batch(emu, path, resend_unknown=True)
        assert resent[dropped] is OutcomeStatus.RECEIPT
        gate.open.set()
        await emu.wait_for_callbacks(4, timeout=30)
        created = emu.stats.scans_by_merchant_reference
        async with SqliteJournal(path) as journal:
            entries = {e.merchant_id_scan_reference: e for e in await journal.entries()}
    assert list(emu.stats.duplicates) == [dropped]
    twice = entries[dropped]
    assert twice.state is JournalState.RECEIPT and twice.duplicate_scan
    assert set(twice.scan_references) == set(created[dropped]) and len(twice.scans) == 2
    assert twice.receipt is not None and twice.receipt.scan_reference == created[dropped][1]  # the resend's
    assert all(scan.result is not None for scan in twice.scans)
    assert twice.sends == 2
    assert [ref for ref, e in entries.items() if e.duplicate_scan] == [dropped]
