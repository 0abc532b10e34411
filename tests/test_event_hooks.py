"""Event hooks: the client, a batch and the callback endpoint tell their hooks what happened, in order.

Against the bundled emulator over real HTTP, with faults injected on demand; waits between retries are
recorded, not slept.
"""

from __future__ import annotations

import logging
import sys
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


# -- hooks never hold the send path -------------------------------------------------------------------------

#: How long the tests below let a call run before deciding that a stuck hook is holding it (a hang guard:
#: with the time limit on hooks the call ends after ``hook_timeout``, far sooner).
HANG_GUARD = 20.0


class StuckHook:
    """An async hook that blocks on ``kind`` until ``release`` is set (which the tests do only at the end)."""

    def __init__(self, kind: type[Any]) -> None:
        self.kind = kind
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.abandoned = 0

    async def __call__(self, event: Event) -> None:
        if not isinstance(event, self.kind):
            return
        self.entered.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.abandoned += 1
            raise


async def finished_within_guard(call: Callable[[], Any], stuck: StuckHook) -> tuple[bool, list[Any]]:
    """Run ``call`` in a task; (whether it finished while ``stuck`` was still blocked, its results)."""
    results: list[Any] = []
    done = anyio.Event()

    async def run() -> None:
        results.append(await call())
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.move_on_after(HANG_GUARD):
            await done.wait()
        finished = done.is_set() and not stuck.release.is_set()
        stuck.release.set()  # lets a call that is still held finish, so that the test ends
    return finished, results


@pytest.mark.both_loops
async def test_a_stuck_async_hook_does_not_hold_the_upload(
    emulator: Any, make_request: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = StuckHook(AttemptStarted)  # the event emitted after the slot was taken, just before the body leaves
    after = Recorder()
    caplog.set_level(logging.WARNING, logger="netverify_async")
    async with emulator_client(emulator, event_hooks=[stuck, after]) as client:  # the default hook_timeout
        assert client.hook_timeout == 1.0
        finished, [receipt] = await finished_within_guard(
            lambda: client.perform_netverify(make_request("stuck-1")), stuck
        )

    assert finished, "the submission waited for the stuck hook"
    assert receipt.scan_reference and emulator.stats.scans_created == 1
    assert stuck.abandoned == 1
    assert after.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]  # the later hooks still ran
    warnings = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(warnings) == 1 and "on AttemptStarted" in warnings[0] and "StuckHook" in warnings[0]


@pytest.mark.both_loops
async def test_a_call_whose_hook_is_stuck_can_still_be_cancelled(
    emulator: Any, make_request: RequestFactory
) -> None:
    stuck = StuckHook(AttemptStarted)
    hook = Recorder()
    scope = anyio.CancelScope()

    async def submit() -> None:
        with scope:
            await client.perform_netverify(make_request("stuck-2"))

    async def cancel_when_stuck() -> None:
        await stuck.entered.wait()
        scope.cancel()  # the caller gives up while the hook is blocked

    async with emulator_client(emulator, event_hooks=[hook, stuck], hook_timeout=0.2) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_stuck)
            finished, _ = await finished_within_guard(submit, stuck)

    assert finished, "the cancelled call waited for the stuck hook"
    assert scope.cancelled_caught and stuck.abandoned == 1
    assert hook.names() == ["CallStarted", *ONE_ATTEMPT, "CallFinished"]
    [done] = hook.of(CallFinished)
    assert done.outcome == "cancelled"


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="before 3.11 asyncio cannot tell a hook's own cancellation from the caller's"
)
async def test_a_hook_cancelled_by_its_own_work_never_breaks_a_submission(
    emulator: Any, make_request: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio  # (asyncio only: a trio hook cannot raise a Cancelled of its own)

    async def self_cancelled(event: Event) -> None:
        if isinstance(event, AttemptStarted):
            waited_for = asyncio.get_running_loop().create_future()
            waited_for.cancel()  # e.g. a future another task cancelled
            await waited_for

    def plain_self_cancelled(event: Event) -> None:
        if isinstance(event, AttemptFinished):
            done = asyncio.get_running_loop().create_future()
            done.cancel()
            done.result()  # raises CancelledError, from a plain function

    hook = Recorder()
    caplog.set_level(logging.ERROR, logger="netverify_async")
    hooks = [self_cancelled, plain_self_cancelled, hook]
    async with emulator_client(emulator, event_hooks=hooks) as client:
        receipt = await client.perform_netverify(make_request("cancelled-hook-1"))

    assert receipt.scan_reference and emulator.stats.scans_created == 1
    [done] = hook.of(CallFinished)
    assert done.outcome == "success"
    failures = [r.getMessage() for r in caplog.records if "event hook" in r.getMessage()]
    assert len(failures) == 2
    assert "self_cancelled raised CancelledError on AttemptStarted" in failures[0]
    assert "plain_self_cancelled raised CancelledError on AttemptFinished" in failures[1]


async def test_a_task_cancel_during_a_hook_still_cancels_the_call(
    emulator: Any, make_request: RequestFactory
) -> None:
    import asyncio  # plain asyncio cancellation (task.cancel()), which reaches into the hook's shield

    stuck = StuckHook(AttemptStarted)
    hook = Recorder()
    async with emulator_client(emulator, event_hooks=[hook, stuck], hook_timeout=HANG_GUARD) as client:
        task = asyncio.ensure_future(client.perform_netverify(make_request("task-cancel-1")))
        await stuck.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stuck.abandoned == 1 and not stuck.release.is_set()
    [done] = hook.of(CallFinished)
    assert done.outcome == "cancelled"
    assert emulator.stats.scans_created == 0


async def test_the_hook_timeout_is_checked(emulator: Any) -> None:
    for bad in (0, -1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ConfigurationError, match="hook_timeout"):
            emulator_client(emulator, hook_timeout=bad)
    with pytest.raises(ConfigurationError, match="hook_timeout"):
        callback_router(lambda c: None, hook_timeout=0)


async def test_a_stuck_hook_does_not_hold_the_callback_answer() -> None:
    stuck = StuckHook(CallbackHandled)

    async def handler(callback: Any) -> None:
        pass

    app = FastAPI()
    verifier = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    app.include_router(callback_router(handler, verifier=verifier, event_hooks=[stuck], hook_timeout=0.2))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        finished, [answer] = await finished_within_guard(
            lambda: http.post("/netverify/callback", content=SAMPLE_APPROVED, headers=FORM), stuck
        )
    assert finished, "Jumio's answer waited for the stuck hook"
    assert answer.status_code == 200 and stuck.abandoned == 1


async def test_a_callback_without_a_status_reports_none() -> None:
    hook = Recorder()

    async def handler(callback: Any) -> None:
        pass

    app = FastAPI()
    verifier = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    app.include_router(callback_router(handler, verifier=verifier, event_hooks=[hook]))
    without_status = SAMPLE_APPROVED.replace("&verificationStatus=APPROVED_VERIFIED", "")
    assert without_status != SAMPLE_APPROVED
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        answer = await http.post("/netverify/callback", content=without_status, headers=FORM)
    assert answer.status_code == 200
    [event] = hook.of(CallbackHandled)
    assert event.outcome == "accepted" and event.verification_status is None
