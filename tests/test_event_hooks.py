"""Event hooks: the client, a batch and the callback endpoint tell their hooks what happened, in order.

Against the bundled emulator over real HTTP, with faults injected on demand; waits between retries are
recorded, not slept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import FORM, serve
from _support import SAMPLE_APPROVED, SleepRecorder, emulator_client, make_jpeg
from fastapi import FastAPI

from netverify_async import (
    AttemptFinished,
    AttemptStarted,
    CallbackHandled,
    CallFinished,
    CallStarted,
    ConfigurationError,
    Event,
    FailureKind,
    Image,
    JournalTransition,
    LimiterWaited,
    PreflightError,
    PreflightRejected,
    RetryScheduled,
    SubmissionOutcomeUnknown,
)
from netverify_async.callbacks import CallbackOriginVerifier
from netverify_async.fastapi import callback_router

pytestmark = pytest.mark.anyio

RequestFactory = Callable[..., Any]


class Recorder:
    """A synchronous hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def names(self, *, of: type | tuple[type, ...] = object) -> list[str]:
        return [type(e).__name__ for e in self.events if isinstance(e, of)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


ONE_ATTEMPT = ["LimiterWaited", "AttemptStarted", "AttemptFinished"]


async def test_a_submission_reports_one_attempt_in_order(emulator: Any, make_request: RequestFactory) -> None:
    hook = Recorder()
    request = make_request("order-1")
    async with emulator_client(emulator, event_hooks=[hook]) as client:
        body = await client.encode(await client.prepare(request))
        receipt = await client.perform_netverify(request)

    assert hook.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]
    started, waited, attempt, finished, done = hook.events
    assert isinstance(started, CallStarted)
    assert started.operation == "performNetverify" and started.method == "POST"
    assert started.url == emulator.base_url + "/api/netverify/v2/performNetverify"
    assert started.url_template == "/api/netverify/v2/performNetverify"
    assert (started.server_address, started.server_port) == ("127.0.0.1", httpx.URL(emulator.base_url).port)
    assert started.idempotent is False
    assert started.merchant_id_scan_reference == "order-1"
    assert "order-1" not in repr(started)  # the reference is carried, never shown
    assert isinstance(waited, LimiterWaited) and waited.limiter == "submission" and waited.seconds >= 0
    assert isinstance(attempt, AttemptStarted) and attempt.attempt == 1 and attempt.body_bytes == len(body)
    assert isinstance(finished, AttemptFinished)
    assert finished.status_code == 200 and finished.failure_kind is None and finished.error_type is None
    assert finished.bytes_sent == len(body)
    assert finished.tracking_id and len(finished.tracking_id) == 36
    assert isinstance(done, CallFinished)
    assert (done.outcome, done.attempts, done.status_code, done.bytes_sent) == ("success", 1, 200, len(body))
    assert done.tracking_id == finished.tracking_id
    assert {e.call_id for e in (waited, attempt, finished, done)} == {started.call_id}
    assert receipt.scan_reference
    assert client.stats.attempts == 1 and client.stats.receipts == 1


async def test_a_429_is_retried_and_reported(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["429"])
    hook = Recorder()
    async with emulator_client(emulator, sleeps, event_hooks=[hook]) as client:
        await client.perform_netverify(make_request("order-2"))

    assert hook.names() == ["CallStarted", *ONE_ATTEMPT, "RetryScheduled", *ONE_ATTEMPT, "CallFinished"]
    first, second = hook.of(AttemptFinished)
    assert (first.attempt, first.status_code, first.failure_kind) == (1, 429, FailureKind.REFUSED)
    assert first.error_type == "RateLimitedError"
    assert (second.attempt, second.status_code) == (2, 200)
    [retry] = hook.of(RetryScheduled)
    assert (retry.attempt, retry.status_code, retry.failure_kind) == (1, 429, FailureKind.REFUSED)
    assert [retry.delay] == sleeps.waits
    [done] = hook.of(CallFinished)
    assert (done.outcome, done.attempts, done.status_code) == ("success", 2, 200)
    assert client.stats.retries == len(hook.of(RetryScheduled)) == 1
    assert client.stats.throttled == 1


@pytest.mark.parametrize(("fault", "status", "error"), [("500", 500, "ServerError"), ("drop", None, "ReadError")])
async def test_an_ambiguous_failure_ends_the_call_as_unknown(
    emulator: Any, make_request: RequestFactory, fault: str, status: int | None, error: str
) -> None:
    emulator.set_faults(sequence=[fault], error_phase="after")
    hook = Recorder()
    request = make_request("order-3")
    async with emulator_client(emulator, event_hooks=[hook]) as client:
        size = len(await client.encode(await client.prepare(request)))
        with pytest.raises(SubmissionOutcomeUnknown):
            await client.perform_netverify(request)

    assert hook.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]  # not retried: it may exist
    [attempt] = hook.of(AttemptFinished)
    assert (attempt.status_code, attempt.failure_kind, attempt.error_type) == (status, FailureKind.AMBIGUOUS, error)
    assert attempt.bytes_sent == size  # the whole body was out: that is what makes it ambiguous
    [done] = hook.of(CallFinished)
    assert (done.outcome, done.failure_kind, done.error_type) == ("unknown", FailureKind.AMBIGUOUS, "SubmissionOutcomeUnknown")
    assert client.stats.outcome_unknown == 1


async def test_a_preflight_rejection_sends_nothing_and_is_reported(
    emulator: Any, make_request: RequestFactory
) -> None:
    hook = Recorder()
    tiny = make_request("order-4", frontside_image=Image.from_bytes(make_jpeg(100, 80)))
    async with emulator_client(emulator, event_hooks=[hook]) as client:
        with pytest.raises(PreflightError):
            await client.perform_netverify(tiny)

    [rejected] = hook.events
    assert isinstance(rejected, PreflightRejected)
    assert (rejected.role, rejected.codes, rejected.merchant_id_scan_reference) == ("front", ("too_small",), "order-4")
    assert client.stats.attempts == 0 and emulator.stats.scans_created == 0


async def test_a_retrieval_call_redacts_the_scan_reference(emulator: Any, make_request: RequestFactory) -> None:
    hook = Recorder()
    async with emulator_client(emulator, event_hooks=[hook]) as client:
        receipt = await client.perform_netverify(make_request("order-5"))
        hook.events.clear()
        await client.scan_status(receipt.scan_reference)

    [started] = hook.of(CallStarted)
    assert (started.operation, started.method, started.idempotent) == ("scanStatus", "GET", True)
    assert started.url == emulator.base_url + "/api/netverify/v2/scans/REDACTED"
    assert started.url_template == "/api/netverify/v2/scans/{scanReference}"
    assert started.merchant_id_scan_reference is None
    assert receipt.scan_reference not in repr(hook.events)
    [waited] = hook.of(LimiterWaited)
    assert waited.limiter == "retrieval"


@pytest.mark.both_loops
async def test_sync_and_async_hooks_receive_the_same_events_on_each_loop(
    emulator: Any, make_request: RequestFactory
) -> None:
    plain = Recorder()
    seen: list[str] = []

    async def awaited(event: Event) -> None:
        await anyio.sleep(0)
        seen.append(type(event).__name__)

    async with emulator_client(emulator, event_hooks=[plain, awaited]) as client:
        await client.perform_netverify(make_request("order-6"))
    assert seen == plain.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]


@pytest.mark.both_loops
async def test_a_failing_hook_never_breaks_a_submission(
    emulator: Any, make_request: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    after = Recorder()
    private = "sentinel-" + "hook-message"  # what a hook's exception might quote: never logged

    def broken(event: Event) -> None:
        raise ValueError(private)

    async def broken_async(event: Event) -> None:
        await anyio.sleep(0)
        raise RuntimeError(private)

    caplog.set_level(logging.ERROR, logger="netverify_async")
    async with emulator_client(emulator, event_hooks=[broken, broken_async, after]) as client:
        receipt = await client.perform_netverify(make_request("order-7"))
    assert receipt.scan_reference
    assert after.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]
    failures = [r.getMessage() for r in caplog.records if "event hook" in r.getMessage()]
    assert len(failures) == 2 * len(after.events)
    assert any("raised ValueError on CallStarted" in m for m in failures)
    assert any("raised RuntimeError on CallFinished" in m for m in failures)
    assert not any(private in m for m in failures)


async def test_hooks_can_be_added_later_and_are_checked(emulator: Any, make_request: RequestFactory) -> None:
    with pytest.raises(ConfigurationError, match="event_hooks"):
        emulator_client(emulator, event_hooks=Recorder())
    with pytest.raises(ConfigurationError, match="event_hooks"):
        emulator_client(emulator, event_hooks=["not callable"])
    hook = Recorder()
    async with emulator_client(emulator) as client:
        await client.perform_netverify(make_request("order-8"))
        client.event_hooks.append(hook)
        await client.perform_netverify(make_request("order-9"))
    assert hook.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]


@pytest.mark.both_loops
async def test_a_cancelled_call_still_finishes_its_events(emulator: Any, make_request: RequestFactory) -> None:
    emulator.set_faults(sequence=["slow"], slow_seconds=30)
    hook = Recorder()
    awaited: list[str] = []

    async def async_hook(event: Event) -> None:
        await anyio.sleep(0)  # a checkpoint: it would be cancelled here without the shield
        awaited.append(type(event).__name__)

    async with emulator_client(emulator, event_hooks=[hook, async_hook]) as client:
        with anyio.move_on_after(0.5):
            await client.perform_netverify(make_request("order-10"))
    assert hook.names() == awaited == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]
    [attempt] = hook.of(AttemptFinished)
    [done] = hook.of(CallFinished)
    assert attempt.status_code is None and done.outcome == "cancelled"


async def test_a_batch_reports_preflight_rejections_and_journal_states(
    emulator: Any, make_request: RequestFactory, tmp_path: Path
) -> None:
    hook = Recorder()
    requests = [
        make_request("good-1"),
        make_request("tiny-1", frontside_image=Image.from_bytes(make_jpeg(100, 80))),
        make_request("good-2"),
    ]
    async with emulator_client(emulator, event_hooks=[hook]) as client:
        async with client.submit_many(requests, journal=tmp_path / "batch.journal", concurrency=2) as batch:
            outcomes = {o.merchant_id_scan_reference: o.status.value async for o in batch}

    assert outcomes == {"good-1": "receipt", "tiny-1": "preflight_rejected", "good-2": "receipt"}
    states: dict[str, list[str]] = {}
    for event in hook.of(JournalTransition):
        states.setdefault(event.merchant_id_scan_reference, []).append(event.state)
    assert states == {
        "good-1": ["pending", "sent", "receipt"],
        "tiny-1": ["pending", "failed"],
        "good-2": ["pending", "sent", "receipt"],
    }
    [rejected] = hook.of(PreflightRejected)
    assert (rejected.merchant_id_scan_reference, rejected.codes) == ("tiny-1", ("too_small",))
    done = hook.of(CallFinished)
    assert sorted(e.merchant_id_scan_reference for e in done) == ["good-1", "good-2"]
    assert {e.outcome for e in done} == {"success"}
    # every call's events arrive in order, whatever the interleaving of the two uploads
    for call in done:
        mine = [type(e).__name__ for e in hook.events if getattr(e, "call_id", None) == call.call_id]
        assert mine == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]


async def test_the_callback_endpoint_reports_each_delivery() -> None:
    hook = Recorder()
    handled: list[str] = []

    async def handler(callback: Any) -> None:
        handled.append(callback.jumio_id_scan_reference)

    app = FastAPI()
    verifier = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    app.include_router(callback_router(handler, verifier=verifier, event_hooks=[hook]))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        answers = [
            (await http.post("/netverify/callback", content=body, headers=FORM)).status_code
            for body in (SAMPLE_APPROVED, SAMPLE_APPROVED, "not=a-callback")
        ]
    assert answers == [200, 200, 400]
    events = hook.of(CallbackHandled)
    assert [(e.status_code, e.outcome) for e in events] == [(200, "accepted"), (200, "duplicate"), (400, "invalid")]
    assert events[0].verification_status == "APPROVED_VERIFIED"
    assert events[0].scan_reference == "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    assert events[2].verification_status is None and events[2].scan_reference is None
    assert all(e.duration >= 0 for e in events)
    assert "FIRSTNAME" not in repr(events) and "P1234" not in repr(events)
    assert handled == ["xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"]


async def test_urls_keep_the_base_path_and_drop_the_scan_reference() -> None:
    from netverify_async._events import CallTrace
    from netverify_async._exchange import Call

    call = Call(operation="downloadImage", method="GET", path="/api/netverify/v2/scans/abc-123/images/front",
                body=None, idempotent=True)
    hook = Recorder()
    trace = CallTrace([hook], call, base_url="https://proxy.example:8443/jumio/", limiter="retrieval")
    await trace.started()
    [started] = hook.of(CallStarted)
    assert started.url == "https://proxy.example:8443/jumio/api/netverify/v2/scans/REDACTED/images/front"
    assert started.url_template == "/jumio/api/netverify/v2/scans/{scanReference}/images/front"
    assert (started.server_address, started.server_port) == ("proxy.example", 8443)
