"""performNetverify through the client against the emulator over real loopback HTTP, on asyncio and trio.

Each failure class of the retry table is driven by an emulator fault: what is retried, what is raised, and that
no duplicate scan is ever created unless ``retry_ambiguous`` asks for it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _misbehaving import MisbehavingServer, Reply, answer, scan_for, serve
from _support import RequestFactory, SleepRecorder, client_at, closed_port_url, emulator_client, make_jpeg

from netverify_async import (
    BadRequestError,
    ConnectError,
    DeadlineExceeded,
    ForbiddenError,
    NetverifyClient,
    PreflightError,
    RateLimitedError,
    RetryBudgetExhausted,
    RetryEvent,
    RetryPolicy,
    ScanReceipt,
    ServerError,
    SubmissionOutcomeUnknown,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]


def on_virtual_time(server: MisbehavingServer, **kwargs: Any) -> NetverifyClient:
    """A client for a scripted server on virtual time: waits really wait (``anyio.sleep``), and nothing runs in a
    worker thread (no preflight; the test images are small enough to encode inline)."""
    return client_at(server.base_url, preflight=False, **kwargs)


async def test_success_returns_a_receipt_and_records_one_scan(
    emulator: Any, make_request: RequestFactory
) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(make_request("ok-1"))
    assert isinstance(receipt, ScanReceipt)
    assert receipt.timestamp.tzinfo is not None
    assert emulator.stats.scans_by_merchant_reference["ok-1"] == (receipt.scan_reference,)


async def test_wrong_credentials_raise_forbidden_with_tracking_id(
    emulator: Any, make_request: RequestFactory
) -> None:
    async with emulator_client(emulator, api_secret="wrong-secret") as client:
        with pytest.raises(ForbiddenError) as info:
            await client.perform_netverify(make_request())
    assert info.value.status_code == 403
    assert info.value.tracking_id
    assert "wrong-secret" not in str(info.value)
    assert emulator.stats.scans_created == 0


async def test_body_refused_by_the_server_raises_bad_request(
    emulator: Any, make_request: RequestFactory
) -> None:
    # preflight off, so the too-small image reaches the server, which refuses it
    tiny = make_jpeg(120, 80)
    from netverify_async import Image

    request = make_request(frontside_image=Image.from_bytes(tiny))
    async with emulator_client(emulator, preflight=False) as client:
        with pytest.raises(BadRequestError) as info:
            await client.perform_netverify(request)
    assert info.value.status_code == 400
    assert info.value.body is not None
    assert emulator.stats.scans_created == 0


async def test_preflight_stops_a_bad_image_before_anything_is_sent(
    emulator: Any, make_request: RequestFactory
) -> None:
    from netverify_async import Image

    request = make_request(frontside_image=Image.from_bytes(make_jpeg(120, 80)))
    async with emulator_client(emulator) as client:
        with pytest.raises(PreflightError):
            await client.perform_netverify(request)
    assert emulator.stats.requests == 0


@pytest.mark.virtual_time
async def test_429_with_retry_after_is_waited_for_then_retried(make_request: RequestFactory) -> None:
    events: list[RetryEvent] = []
    refusal = Reply(429, (("Retry-After", "3"),), b'{"title":"Too Many Requests"}')
    async with serve(answer(refusal, 200)) as server:
        async with on_virtual_time(server, on_retry=events.append) as client:
            receipt = await client.perform_netverify(make_request("b"))
    refused, accepted = server.requests
    assert accepted.at - refused.at == pytest.approx(3.0)  # waited exactly as long as asked, then retried
    assert [(e.status_code, e.delay) for e in events] == [(429, 3.0)]
    assert receipt.scan_reference == scan_for("b")
    assert server.bodies("b") == 2  # a 429 is a refusal: resending creates no duplicate


async def test_retry_after_above_the_cap_raises_rate_limited_with_the_wait(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(rate_limit="1/60s", retry_after=True)
    policy = RetryPolicy(max_retry_after=5)
    async with emulator_client(emulator, sleeps, retry=policy) as client:
        await client.perform_netverify(make_request("first"))
        with pytest.raises(RateLimitedError) as info:
            await client.perform_netverify(make_request("second"))
    assert info.value.retry_after is not None and info.value.retry_after > 5
    assert sleeps.waits == []  # not retried early
    assert info.value.safe_to_retry


async def test_503_is_retried_and_succeeds(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["503", "503"])
    async with emulator_client(emulator, sleeps) as client:
        receipt = await client.perform_netverify(make_request("r503"))
    assert len(sleeps.waits) == 2
    assert emulator.stats.scans_by_merchant_reference["r503"] == (receipt.scan_reference,)
    assert client.stats.retries == 2


@pytest.mark.parametrize("status", ["500", "502", "504"])
async def test_ambiguous_server_error_is_not_retried_and_reports_unknown(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder, status: str
) -> None:
    emulator.set_faults(sequence=[status], error_phase="after")
    async with emulator_client(emulator, sleeps) as client:
        with pytest.raises(SubmissionOutcomeUnknown) as info:
            await client.perform_netverify(make_request("amb"))
    assert info.value.merchant_id_scan_reference == "amb"
    assert isinstance(info.value.__cause__, ServerError)
    assert sleeps.waits == []
    assert len(emulator.stats.scans_by_merchant_reference["amb"]) == 1  # exactly one scan, never two


async def test_dropped_connection_after_the_body_creates_no_duplicate(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(drop_rate=1.0, seed=3)
    async with emulator_client(emulator, sleeps) as client:
        for i in range(5):
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(make_request(f"drop-{i}"))
    stats = emulator.stats
    assert stats.scans_created == 5
    assert not stats.duplicates
    assert sleeps.waits == []


async def test_retry_ambiguous_opts_in_to_resending(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["drop"])
    async with emulator_client(emulator, sleeps, retry=RetryPolicy(retry_ambiguous=True)) as client:
        receipt = await client.perform_netverify(make_request("dup"))
    scans = emulator.stats.scans_by_merchant_reference["dup"]
    assert len(scans) == 2 and receipt.scan_reference in scans  # the documented price of the opt-in


@pytest.mark.virtual_time
async def test_slow_answer_trips_the_attempt_timeout_as_unknown(make_request: RequestFactory) -> None:
    async with serve(answer(200, after=5.0)) as server:
        async with on_virtual_time(server, retry=RetryPolicy(attempt_timeout=0.5)) as client:
            started = anyio.current_time()
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(make_request("slow"))
            took = anyio.current_time() - started
    assert took == pytest.approx(0.5)  # the attempt timeout, not the server, ended the call
    assert server.bodies("slow") == 1  # the whole body arrived (a scan may exist), and it was not resent


async def test_refused_connection_is_retried_then_raised_as_safe(
    make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    client = client_at(closed_port_url(), sleep=sleeps, retry=RetryPolicy(max_attempts=3))
    async with client:
        with pytest.raises(ConnectError) as info:
            await client.perform_netverify(make_request())
    assert info.value.safe_to_retry
    assert info.value.attempts == 3
    assert len(sleeps.waits) == 2


async def test_budget_exhaustion_stops_retrying(make_request: RequestFactory, sleeps: SleepRecorder) -> None:
    policy = RetryPolicy(max_attempts=10, budget_capacity=10, retry_cost=5)
    client = client_at(closed_port_url(), sleep=sleeps, retry=policy)
    async with client:
        with pytest.raises(RetryBudgetExhausted) as info:
            await client.perform_netverify(make_request())
        assert isinstance(info.value.__cause__, ConnectError)
        assert len(sleeps.waits) == 2  # 10 tokens pay for two retries of cost 5
        with pytest.raises(RetryBudgetExhausted):  # the budget is shared by the whole client
            await client.perform_netverify(make_request("again"))
        assert len(sleeps.waits) == 2


async def test_deadline_bounds_the_whole_call(emulator: Any, make_request: RequestFactory) -> None:
    emulator.set_faults(errors={503: 1.0})
    policy = RetryPolicy(max_attempts=50, deadline=1.0, backoff_base=0.2, backoff_max=0.4)
    async with emulator_client(emulator, None, retry=policy) as client:
        with anyio.fail_after(10):
            with pytest.raises(DeadlineExceeded) as info:
                await client.perform_netverify(make_request())
    assert info.value.safe_to_retry  # 503 never created anything
    assert emulator.stats.scans_created == 0


@pytest.mark.virtual_time
@pytest.mark.parametrize(("latency", "attempts"), [(0.35, 1), (0.3, 2), (0.2, 3)])
async def test_no_retry_starts_that_the_deadline_would_cut_off(
    make_request: RequestFactory, latency: float, attempts: int
) -> None:
    # Every attempt is refused (503 with Retry-After: 0, safe to resend) after ``latency`` seconds. A retry
    # starts only while the 1 s deadline leaves twice the last attempt's time for it: at 0.35 s, 0.65 s are
    # left after the first (< 0.7); at 0.3 s one retry fits (0.7 > 0.6), a third attempt would not (0.4 < 0.6).
    # A POST cut off in flight has an unknown outcome, so the client stops while the failure is still known
    # to be safe to resend. The decision itself is unit-tested in test_retry_decision.py; this shows the
    # client feeding it the attempt's real duration and what is left of the deadline.
    refused = Reply(503, (("Retry-After", "0"),))
    policy = RetryPolicy(max_attempts=50, deadline=1.0, backoff_base=0.01, backoff_max=0.01)
    async with serve(answer(refused, after=latency)) as server:
        async with on_virtual_time(server, retry=policy) as client:
            started = anyio.current_time()
            with pytest.raises(DeadlineExceeded) as info:
                await client.perform_netverify(make_request())
            took = anyio.current_time() - started
    assert info.value.safe_to_retry
    assert info.value.attempts == attempts == server.bodies()
    assert client.stats.outcome_unknown == 0
    assert took < 1.0  # it gave up before the deadline, with no attempt left in flight


@pytest.mark.virtual_time
async def test_cancellation_mid_retry_stops_at_once(make_request: RequestFactory) -> None:
    refused = Reply(503, (("Retry-After", "30"),))  # the retry waits exactly 30 s
    async with serve(answer(refused)) as server:
        async with on_virtual_time(server, retry=RetryPolicy(max_attempts=100)) as client:
            started = anyio.current_time()
            with anyio.move_on_after(10) as scope:
                await client.perform_netverify(make_request())
            assert scope.cancelled_caught
            assert anyio.current_time() - started == pytest.approx(10)  # the wait ended with the cancellation
            await anyio.sleep(60)  # long past the moment the retry was due
        assert server.bodies() == client.stats.attempts == 1  # nothing kept retrying in the background


async def test_on_retry_hook_sees_each_retry_without_personal_data(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["503"])
    events: list[Any] = []
    async with emulator_client(emulator, sleeps, on_retry=events.append) as client:
        await client.perform_netverify(make_request("hook", first_name="Sentinelfirstname"))
    assert len(events) == 1
    assert events[0].status_code == 503 and events[0].merchant_id_scan_reference == "hook"
    assert "Sentinelfirstname" not in repr(events[0])


@pytest.mark.parametrize("pool", ["own", "caller's http_client"])
async def test_no_request_outlives_its_call_waiting_for_the_garbage_collector(
    emulator: Any, make_request: RequestFactory, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a request holds its body (megabytes for a real ID photo): it must go when the call returns, not at the
    # next garbage collection, which a reference cycle would wait for
    import gc
    import weakref

    import httpx

    built: list[weakref.ref[httpx.Request]] = []
    build = httpx.Request.__init__

    def recording_build(self: httpx.Request, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        built.append(weakref.ref(self))

    monkeypatch.setattr(httpx.Request, "__init__", recording_build)
    user_http = httpx.AsyncClient() if pool != "own" else None
    request = make_request("gc")
    try:
        async with emulator_client(emulator, http_client=user_http) as client:
            await client.perform_netverify(request)  # builds the pool outside the measured part
            gc.collect()
            gc.disable()
            try:
                before = len(built)
                for _ in range(3):
                    await client.perform_netverify(request)
                measured = built[before:]
                alive = [ref for ref in measured if ref() is not None]
                left = [o for o in gc.get_objects() if isinstance(o, httpx.Request)]
            finally:
                gc.enable()
    finally:
        if user_http is not None:
            await user_http.aclose()
    assert len(measured) >= 3  # the calls did build requests (on a path that builds none, the check is empty)
    assert alive == []
    assert left == []
