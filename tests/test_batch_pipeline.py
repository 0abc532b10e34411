"""Batch submission against the emulator over real loopback HTTP: outcomes, ordering, laziness, memory budget."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _batch_support import (
    TOO_SMALL_PNG,
    client_for,
    counting_requests,
    make_request,
    png_bytes,
    refs,
    scans_per_reference,
)
from _support import gated_emulator

from netverify_async import (
    BatchItemError,
    BatchOutcome,
    BatchProgress,
    BatchStatus,
    ConfigurationError,
    NetverifyClient,
    NetverifyRequest,
    OutcomeStatus,
    PreflightError,
    RequestValidationError,
    ScanReceipt,
    check_unique_references,
)
from netverify_async.emulator import run_emulator

pytestmark = pytest.mark.both_loops


async def collect(batch: Any) -> list[BatchOutcome]:
    """Every outcome of ``batch``, entering its ``async with`` block."""
    async with batch:
        return await outcomes_of(batch)


async def outcomes_of(batch: Any) -> list[BatchOutcome]:
    """Every outcome of a batch whose block was entered already."""
    return [outcome async for outcome in batch]


@pytest.mark.anyio
async def test_mixed_batch_gives_one_typed_outcome_per_item_and_sends_only_the_good_ones() -> None:
    items: list[Any] = [
        make_request("good-0"),
        make_request("small-1", TOO_SMALL_PNG),
        make_request("good-0"),  # duplicate reference
        "not a request",
        make_request("good-4"),
    ]
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many(items, concurrency=4) as batch:
            outcomes = await outcomes_of(batch)
        stats = scans_per_reference(emu)

    by_index = {o.index: o for o in outcomes}
    assert sorted(by_index) == [0, 1, 2, 3, 4]
    assert by_index[0].status is OutcomeStatus.RECEIPT
    assert isinstance(by_index[0].receipt, ScanReceipt)
    assert by_index[4].status is OutcomeStatus.RECEIPT
    assert by_index[1].status is OutcomeStatus.PREFLIGHT_REJECTED
    assert isinstance(by_index[1].error, PreflightError)
    assert by_index[1].attempts == 0
    assert by_index[2].status is OutcomeStatus.INVALID
    assert isinstance(by_index[2].error, RequestValidationError)
    assert by_index[2].error.codes == {"duplicate_reference"}
    assert "good-0" not in str(by_index[2].error)  # names the rule, not the value
    assert by_index[3].status is OutcomeStatus.INVALID
    assert by_index[3].merchant_id_scan_reference is None
    assert isinstance(by_index[3].error, RequestValidationError)
    assert by_index[3].error.codes == {"type"}
    assert stats == {"good-0": 1, "good-4": 1}
    summary = batch.summary
    assert summary.status is BatchStatus.COMPLETED and summary.complete
    assert summary.read == 5 and summary.submitted == 2
    assert sorted(summary.receipts) == ["good-0", "good-4"]
    assert summary.failed == ("small-1",)
    assert summary.unknown == () and summary.not_sent == ()


@pytest.mark.anyio
async def test_outcomes_come_in_completion_order_not_input_order() -> None:
    # "first" reaches the emulator first, which creates its scan but holds the answer; "second" is read from the
    # input only then, and is answered at once: its outcome must come out while "first" is still waiting (a batch
    # that kept input order would wait for "first" until fail_after ends the test).
    async with gated_emulator(hold=lambda n: n == 1) as (emu, gate), client_for(emu) as client:

        async def requests() -> AsyncIterator[NetverifyRequest]:
            yield make_request("first")
            with anyio.fail_after(20):
                while gate.held < 1:
                    await anyio.sleep(0.01)
            yield make_request("second")

        async with client.submit_many(requests(), concurrency=2) as batch:
            with anyio.fail_after(20):
                early = await anext(batch)
                assert emu.stats.scans_created == 2 and gate.held == 1  # "first" is still in flight
                gate.open()
                outcomes = [early, *[o async for o in batch]]
    assert [o.status for o in outcomes] == [OutcomeStatus.RECEIPT, OutcomeStatus.RECEIPT]
    assert [o.merchant_id_scan_reference for o in outcomes] == ["second", "first"]
    assert [o.index for o in outcomes] == [1, 0]


@pytest.mark.anyio
async def test_invalid_items_are_reported_before_uploads_finish() -> None:
    async with gated_emulator() as (emu, gate), client_for(emu) as client:
        items = [make_request("a"), make_request("b"), make_request("a")]
        async with client.submit_many(items, concurrency=2) as batch:
            with anyio.fail_after(20):
                first = await anext(batch)  # every answer is held: no upload can have finished
                gate.open()
                rest = [o async for o in batch]
    assert first.index == 2 and first.status is OutcomeStatus.INVALID
    assert {o.index for o in rest} == {0, 1}


@pytest.mark.anyio
async def test_async_iterable_input() -> None:
    async def source() -> AsyncIterator[NetverifyRequest]:
        for ref in refs("async", 6):
            await anyio.sleep(0)
            yield make_request(ref)

    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        outcomes = await collect(client.submit_many(source(), concurrency=3))
        stats = scans_per_reference(emu)
    assert sorted(o.merchant_id_scan_reference or "" for o in outcomes) == refs("async", 6)
    assert all(o.status is OutcomeStatus.RECEIPT for o in outcomes)
    assert stats == dict.fromkeys(refs("async", 6), 1)


@pytest.mark.anyio
async def test_huge_lazy_generator_is_read_only_as_far_as_needed() -> None:
    pulled = [0]
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many(counting_requests("lazy", 100_000, pulled), concurrency=2) as batch:
            seen = []
            async for outcome in batch:
                seen.append(outcome)
                if len(seen) == 3:
                    break
        summary = batch.summary
    assert all(o.status is OutcomeStatus.RECEIPT for o in seen)
    # the stage buffers hold a handful of items; nothing close to the whole input was ever built
    assert pulled[0] < 30
    assert summary.status is BatchStatus.CANCELLED
    assert summary.read == pulled[0]


@pytest.mark.anyio
async def test_itertools_input_of_a_million_is_fine_when_stopped_early() -> None:
    requests = (make_request(f"it-{i}") for i in itertools.count())
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        async with client.submit_many(itertools.islice(requests, 1_000_000), concurrency=2) as batch:
            first = await batch.__anext__()
            await batch.aclose()
    assert first.status is OutcomeStatus.RECEIPT
    assert batch.summary.read < 30


class MeasuringClient(NetverifyClient):
    """The real client, measuring the bodies being uploaded at the same time (an independent instrument)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body_bytes = 0
        self.peak_body_bytes = 0
        self.uploads = 0
        self.peak_uploads = 0

    async def send_encoded(
        self, body: bytes, *, merchant_id_scan_reference: str, on_send: Any = None, on_body_sent: Any = None
    ) -> ScanReceipt:
        self.body_bytes += len(body)
        self.uploads += 1
        self.peak_body_bytes = max(self.peak_body_bytes, self.body_bytes)
        self.peak_uploads = max(self.peak_uploads, self.uploads)
        try:
            return await super().send_encoded(
                body, merchant_id_scan_reference=merchant_id_scan_reference, on_send=on_send, on_body_sent=on_body_sent
            )
        finally:
            self.body_bytes -= len(body)
            self.uploads -= 1


@pytest.mark.anyio
async def test_byte_budget_caps_what_is_in_flight() -> None:
    image = png_bytes(400, 60, noisy=True)  # about 72 kB, incompressible
    budget = 500_000  # room for two items (raw + body estimate), far less than concurrency 8 would take
    requests = [make_request(ref, image) for ref in refs("budget", 10)]
    # the first answer is held until a second upload reaches the emulator: the budget must let two overlap (if
    # it let only one through at a time, fail_after would end the test)
    async with gated_emulator(hold=lambda n: n == 1, open_at=2) as (emu, _):
        async with client_for(emu, client_class=MeasuringClient) as client:
            async with client.submit_many(requests, concurrency=8, max_bytes_in_flight=budget) as batch:
                with anyio.fail_after(30):
                    outcomes = await outcomes_of(batch)
    assert all(o.status is OutcomeStatus.RECEIPT for o in outcomes)
    assert batch.peak_bytes_in_flight <= budget
    assert client.peak_body_bytes <= budget  # the budget held the others back
    assert 2 <= client.peak_uploads < 8


@pytest.mark.anyio
async def test_item_larger_than_the_budget_goes_through_alone() -> None:
    requests = [make_request(ref) for ref in refs("alone", 4)]
    async with run_emulator(processing_delay=0, latency=0.05) as emu:
        async with client_for(emu, client_class=MeasuringClient) as client:
            async with client.submit_many(requests, concurrency=4, max_bytes_in_flight=1000) as batch:
                outcomes = await outcomes_of(batch)
    assert all(o.status is OutcomeStatus.RECEIPT for o in outcomes)
    assert client.peak_uploads == 1
    assert batch.largest_item_bytes > 1000
    assert batch.peak_bytes_in_flight == batch.largest_item_bytes


@pytest.mark.anyio
async def test_progress_hook_sees_counts_and_a_final_snapshot() -> None:
    seen: list[BatchProgress] = []

    async def on_progress(progress: BatchProgress) -> None:
        seen.append(progress)

    items = [make_request(ref) for ref in refs("prog", 5)] + [make_request("prog-bad", TOO_SMALL_PNG)]
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        await collect(client.submit_many(items, concurrency=3, on_progress=on_progress))
    assert seen, "the hook was never called"
    last = seen[-1]
    assert (last.completed, last.receipts, last.preflight_rejected, last.in_flight) == (6, 5, 1, 0)
    assert last.submitted == 5 and last.read == 6
    assert last.rate > 0 and last.elapsed > 0
    completed = [p.completed for p in seen]
    assert completed == sorted(completed)


@pytest.mark.anyio
async def test_progress_counts_the_clients_retries_and_429s() -> None:
    seen: list[BatchProgress] = []
    async with run_emulator(processing_delay=0, sequence=["429"]) as emu, client_for(emu) as client:
        outcomes = await collect(client.submit_many(refs_requests(2), concurrency=1, on_progress=seen.append))
    assert all(o.status is OutcomeStatus.RECEIPT for o in outcomes)
    assert (seen[-1].retries, seen[-1].throttled) == (1, 1)


@pytest.mark.anyio
async def test_failing_progress_hook_is_logged_once_and_does_not_stop_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    def on_progress(progress: BatchProgress) -> None:
        calls.append(progress)
        raise RuntimeError("display broke")

    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        with caplog.at_level(logging.ERROR, logger="netverify_async.batch"):
            outcomes = await collect(
                client.submit_many(refs_requests(4), concurrency=2, on_progress=on_progress)
            )
    assert len(calls) == 1
    assert all(o.status is OutcomeStatus.RECEIPT for o in outcomes)
    assert "on_progress" in caplog.text


def refs_requests(count: int) -> list[NetverifyRequest]:
    return [make_request(ref) for ref in refs("r", count)]


class FlakyClient(NetverifyClient):
    """The real client, except for two chosen references that hit an unexpected bug."""

    async def prepare(self, request: NetverifyRequest) -> NetverifyRequest:
        if request.merchant_id_scan_reference == "bug-prepare":
            raise KeyError("bug in prepare")
        return await super().prepare(request)

    async def send_encoded(
        self, body: bytes, *, merchant_id_scan_reference: str, on_send: Any = None, on_body_sent: Any = None
    ) -> ScanReceipt:
        if merchant_id_scan_reference == "bug-upload":
            await on_send()  # the item holds its slot and is recorded as sent
            on_body_sent()  # and its whole body went out: a scan may exist
            raise ZeroDivisionError("bug in upload")
        if merchant_id_scan_reference == "bug-after-slot":
            await on_send()  # recorded as sent, but no byte of the body left
            raise ZeroDivisionError("bug before the body was written")
        if merchant_id_scan_reference == "bug-before-send":
            raise ZeroDivisionError("bug before the upload started")
        return await super().send_encoded(
            body, merchant_id_scan_reference=merchant_id_scan_reference, on_send=on_send, on_body_sent=on_body_sent
        )


@pytest.mark.anyio
async def test_unexpected_exceptions_become_typed_item_errors() -> None:
    items = [
        make_request("bug-prepare"),
        make_request("fine"),
        make_request("bug-upload"),
        make_request("bug-before-send"),
        make_request("bug-after-slot"),
    ]
    async with run_emulator(processing_delay=0) as emu, client_for(emu, client_class=FlakyClient) as client:
        outcomes = {
            o.merchant_id_scan_reference: o for o in await collect(client.submit_many(items, concurrency=2))
        }
    prepare_failure = outcomes["bug-prepare"]
    assert prepare_failure.status is OutcomeStatus.FAILED  # nothing was sent
    assert isinstance(prepare_failure.error, BatchItemError)
    assert prepare_failure.error.stage == "prepare"
    assert isinstance(prepare_failure.error.__cause__, KeyError)
    upload_failure = outcomes["bug-upload"]
    assert upload_failure.status is OutcomeStatus.UNKNOWN  # it may have left: never call it "not sent"
    assert isinstance(upload_failure.error, BatchItemError)
    assert isinstance(upload_failure.error.__cause__, ZeroDivisionError)
    for ref in ("bug-before-send", "bug-after-slot"):  # no byte of the body left: no scan can exist
        assert outcomes[ref].status is OutcomeStatus.FAILED
        assert isinstance(outcomes[ref].error, BatchItemError)
    assert outcomes["fine"].status is OutcomeStatus.RECEIPT


@pytest.mark.anyio
async def test_an_input_that_raises_finishes_what_was_read_then_raises() -> None:
    def source() -> Any:
        yield make_request("in-0")
        yield make_request("in-1")
        raise OSError("disk went away")

    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        seen: list[BatchOutcome] = []
        with pytest.raises(OSError, match="disk went away"):
            async with client.submit_many(source(), concurrency=2) as batch:
                async for outcome in batch:
                    seen.append(outcome)
    assert sorted(o.merchant_id_scan_reference or "" for o in seen) == ["in-0", "in-1"]
    assert batch.summary.status is BatchStatus.FAILED
    assert batch.summary.error_type == "OSError"


@pytest.mark.anyio
async def test_arguments_are_checked_before_anything_starts() -> None:
    async with run_emulator(processing_delay=0) as emu, client_for(emu) as client:
        with pytest.raises(ConfigurationError, match="concurrency"):
            client.submit_many([], concurrency=-1)
        with pytest.raises(ConfigurationError, match="requests"):
            client.submit_many("abc", concurrency=1)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="requests"):
            client.submit_many(make_request("x"), concurrency=1)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="max_bytes_in_flight"):
            client.submit_many([], concurrency=1, max_bytes_in_flight=0)
        empty = await collect(client.submit_many([], concurrency=1))
    assert empty == []


def test_check_unique_references_lists_every_repeat_by_position() -> None:
    requests = [make_request("x"), make_request("y"), make_request("x"), make_request("x")]
    with pytest.raises(RequestValidationError) as caught:
        check_unique_references(requests)
    assert [issue.path for issue in caught.value.errors] == [
        "[2].merchantIdScanReference",
        "[3].merchantIdScanReference",
    ]
    assert caught.value.codes == {"duplicate_reference"}
    assert "'x'" not in str(caught.value)
    check_unique_references([make_request("a"), make_request("b")])
