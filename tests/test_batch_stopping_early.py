"""A batch stops early when every item would fail the same way, and never calls an unsent item "unknown".

- 401/403 answers in a row (bad credentials, a refused User-Agent): the batch stops taking new items, says why,
  and leaves the items it did not send pending for the next run.
- Cancelled during an outage (every attempt refused before its body was out): the items in flight are "not
  sent", the journal records them as safe to resend, and the next run sends them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_support import client_for, make_request, refs, scans_per_reference
from _misbehaving import Reply, answer_by_reference, serve
from _support import closed_port_url

from netverify_async import (
    BatchStatus,
    BatchStoppedError,
    ForbiddenError,
    JournalState,
    OutcomeStatus,
    RetryPolicy,
    SqliteJournal,
)
from netverify_async._batch import submit_many
from netverify_async.emulator import run_emulator

ITEMS = 12


pytestmark = pytest.mark.both_loops


@pytest.mark.anyio
async def test_repeated_authentication_refusals_stop_the_batch_and_leave_the_rest_pending(tmp_path: Path) -> None:
    journal_path = tmp_path / "auth.sqlite"
    references = refs("auth", ITEMS)
    seen = []
    async with run_emulator(processing_delay=0) as emu:
        async with client_for(emu, api_secret="wrong-secret") as client:
            with pytest.raises(BatchStoppedError, match="authentication refusals in a row") as info:
                async with client.submit_many(
                    (make_request(ref) for ref in references), concurrency=1, journal=journal_path
                ) as batch:
                    async for outcome in batch:
                        seen.append(outcome)
        answered_403 = emu.stats.requests
    assert "invalid Basic authentication" in str(info.value)  # the server's own reason is shown
    assert "wrong-secret" not in str(info.value)
    summary = batch.summary
    assert summary.status is BatchStatus.FAILED and summary.error_type == "BatchStoppedError"
    assert [o.status for o in seen] == [OutcomeStatus.FAILED] * 3
    assert all(isinstance(o.error, ForbiddenError) for o in seen)
    assert answered_403 == 3  # not one request more than the three refusals
    assert len(summary.not_sent) >= 1 and not summary.unknown
    async with SqliteJournal(journal_path) as journal:
        states = await journal.states()
    assert not any(state is JournalState.UNKNOWN for state in states.values())

    # the next run, with the right secret, sends everything that was not sent
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many(
            (make_request(ref) for ref in references), concurrency=2, journal=journal_path
        ) as batch:
            outcomes = [o async for o in batch]
        assert {o.status for o in outcomes} == {OutcomeStatus.RECEIPT}
        assert set(scans_per_reference(emu)) == set(references)


@pytest.mark.anyio
async def test_refusals_broken_by_a_receipt_do_not_stop_the_batch() -> None:
    # a 403 for one item's suspicious values is that item's problem, as long as others get through
    references = refs("mixed", 7)
    plan: dict[str, Reply | int] = {ref: 403 for ref in references if not ref.endswith(("2", "5"))}
    async with serve(answer_by_reference(plan)) as server:
        fake: Any = type("Server", (), {"api_token": "t", "api_secret": "s", "base_url": server.base_url})()
        async with client_for(fake) as client:
            # one item at a time through every stage, so that the answers come in the order planned
            requests = (make_request(ref) for ref in references)
            async with submit_many(client, requests, concurrency=1, prepare_workers=1) as batch:
                outcomes = [o async for o in batch]
    statuses = [o.status for o in outcomes]
    assert statuses.count(OutcomeStatus.RECEIPT) == 2 and statuses.count(OutcomeStatus.FAILED) == 5
    assert batch.summary.status is BatchStatus.COMPLETED


@pytest.mark.anyio
async def test_cancelled_during_an_outage_nothing_is_unknown_and_the_next_run_sends_everything(
    tmp_path: Path,
) -> None:
    journal_path = tmp_path / "outage.sqlite"
    references = refs("outage", 6)
    down = closed_port_url()
    slow_retries = RetryPolicy(max_attempts=50, backoff_base=0.2, backoff_max=0.2, deadline=None)
    fake: Any = type("Emu", (), {"api_token": "t", "api_secret": "s", "base_url": down})()
    async with client_for(fake, retry=slow_retries) as client:
        batch = client.submit_many((make_request(ref) for ref in references), concurrency=3, journal=journal_path)
        with anyio.move_on_after(1.5):  # the user presses Ctrl-C while every connection is refused
            async with batch:
                async for _ in batch:
                    pass
    summary = batch.summary
    assert summary.status is BatchStatus.CANCELLED
    assert summary.unknown == ()  # no attempt got its body out: no scan can exist
    assert summary.not_sent and set(summary.not_sent) <= set(references)
    async with SqliteJournal(journal_path) as journal:
        states = await journal.states()
        entries = {e.merchant_id_scan_reference: e for e in await journal.entries()}
    assert all(state in (JournalState.PENDING, JournalState.FAILED) for state in states.values())
    assert all(e.safe_to_retry is not False for e in entries.values())

    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many(
            (make_request(ref) for ref in references), concurrency=3, journal=journal_path
        ) as batch:
            outcomes = [o async for o in batch]
        assert {o.status for o in outcomes} == {OutcomeStatus.RECEIPT}
        assert scans_per_reference(emu) == dict.fromkeys(references, 1)
