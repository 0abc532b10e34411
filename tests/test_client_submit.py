"""performNetverify through the client against the emulator over real loopback HTTP, on asyncio and trio.

Each failure class of the retry table is driven by an emulator fault: what is retried, what is raised, and that
no duplicate scan is ever created unless ``retry_ambiguous`` asks for it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from _support import USER_AGENT, SleepRecorder, emulator_client, make_jpeg

from netverify_async import (
    BadRequestError,
    ConnectError,
    DeadlineExceeded,
    ForbiddenError,
    NetverifyClient,
    NetverifyRequest,
    PreflightError,
    RateLimitedError,
    RetryBudgetExhausted,
    RetryPolicy,
    ScanReceipt,
    ServerError,
    SubmissionOutcomeUnknown,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


pytestmark = pytest.mark.anyio

RequestFactory = Callable[..., NetverifyRequest]


client_for = emulator_client


async def test_success_returns_a_receipt_and_records_one_scan(
    emulator: Any, make_request: RequestFactory
) -> None:
    async with client_for(emulator) as client:
        receipt = await client.perform_netverify(make_request("ok-1"))
    assert isinstance(receipt, ScanReceipt)
    assert receipt.timestamp.tzinfo is not None
    assert emulator.stats.scans_by_merchant_reference["ok-1"] == (receipt.scan_reference,)


async def test_wrong_credentials_raise_forbidden_with_tracking_id(
    emulator: Any, make_request: RequestFactory
) -> None:
    async with client_for(emulator, api_secret="wrong-secret") as client:
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
    async with client_for(emulator, preflight=False) as client:
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
    async with client_for(emulator) as client:
        with pytest.raises(PreflightError):
            await client.perform_netverify(request)
    assert emulator.stats.requests == 0


async def test_429_with_retry_after_is_waited_for_then_retried(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(rate_limit="1/2s", retry_after=True)
    async with client_for(emulator, sleeps) as client:
        await client.perform_netverify(make_request("a"))
        # the second request is refused with Retry-After; the recorder returns at once, so the emulator may
        # refuse a few times before the real window frees a slot
        with anyio.fail_after(20):
            while True:
                try:
                    await client.perform_netverify(make_request("b"))
                    break
                except RateLimitedError:
                    await anyio.sleep(0.2)
    assert sleeps.waits, "no wait was requested"
    assert all(w >= 1.0 for w in sleeps.waits), sleeps.waits  # Retry-After (whole seconds, >= 1) honoured
    assert emulator.stats.status_counts.get(429, 0) >= 1
    assert not emulator.stats.duplicates


async def test_retry_after_above_the_cap_raises_rate_limited_with_the_wait(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(rate_limit="1/60s", retry_after=True)
    policy = RetryPolicy(max_retry_after=5)
    async with client_for(emulator, sleeps, retry=policy) as client:
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
    async with client_for(emulator, sleeps) as client:
        receipt = await client.perform_netverify(make_request("r503"))
    assert len(sleeps.waits) == 2
    assert emulator.stats.scans_by_merchant_reference["r503"] == (receipt.scan_reference,)
    assert client.stats.retries == 2


@pytest.mark.parametrize("status", ["500", "502", "504"])
async def test_ambiguous_server_error_is_not_retried_and_reports_unknown(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder, status: str
) -> None:
    emulator.set_faults(sequence=[status], error_phase="after")
    async with client_for(emulator, sleeps) as client:
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
    async with client_for(emulator, sleeps) as client:
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
    async with client_for(emulator, sleeps, retry=RetryPolicy(retry_ambiguous=True)) as client:
        receipt = await client.perform_netverify(make_request("dup"))
    scans = emulator.stats.scans_by_merchant_reference["dup"]
    assert len(scans) == 2 and receipt.scan_reference in scans  # the documented price of the opt-in


async def test_slow_answer_trips_the_attempt_timeout_as_unknown(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["slow"], slow_seconds=5.0)
    async with client_for(emulator, sleeps, retry=RetryPolicy(attempt_timeout=0.5)) as client:
        with pytest.raises(SubmissionOutcomeUnknown):
            await client.perform_netverify(make_request("slow"))
    assert len(emulator.stats.scans_by_merchant_reference["slow"]) == 1


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def test_refused_connection_is_retried_then_raised_as_safe(
    make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    client = NetverifyClient(
        api_token="t",
        api_secret="s",
        user_agent=USER_AGENT,
        base_url=f"http://127.0.0.1:{_closed_port()}",
        rate_limit=None,
        sleep=sleeps,
        retry=RetryPolicy(max_attempts=3),
    )
    async with client:
        with pytest.raises(ConnectError) as info:
            await client.perform_netverify(make_request())
    assert info.value.safe_to_retry
    assert info.value.attempts == 3
    assert len(sleeps.waits) == 2


async def test_budget_exhaustion_stops_retrying(make_request: RequestFactory, sleeps: SleepRecorder) -> None:
    policy = RetryPolicy(max_attempts=10, budget_capacity=10, retry_cost=5)
    client = NetverifyClient(
        api_token="t",
        api_secret="s",
        user_agent=USER_AGENT,
        base_url=f"http://127.0.0.1:{_closed_port()}",
        rate_limit=None,
        sleep=sleeps,
        retry=policy,
    )
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
    async with client_for(emulator, None, retry=policy) as client:
        with anyio.fail_after(10):
            with pytest.raises(DeadlineExceeded) as info:
                await client.perform_netverify(make_request())
    assert info.value.safe_to_retry  # 503 never created anything
    assert emulator.stats.scans_created == 0


async def test_no_retry_starts_that_the_deadline_would_cut_off(
    emulator: Any, make_request: RequestFactory
) -> None:
    # Each 503 takes 0.35 s; after the first, 0.65 s of the 1 s deadline remain, less than twice what an attempt
    # takes. A second attempt would finish, a third would be cut off in flight: a POST cut off in flight has an
    # unknown outcome, so the client stops while the failure is still known to be safe to resend.
    emulator.set_faults(errors={503: 1.0}, latency=(0.35, 0.35))
    policy = RetryPolicy(max_attempts=50, deadline=1.0, backoff_base=0.01, backoff_max=0.01)
    async with client_for(emulator, None, retry=policy) as client:
        with pytest.raises(DeadlineExceeded) as info:
            await client.perform_netverify(make_request())
    assert info.value.safe_to_retry
    assert info.value.attempts == 1
    assert client.stats.outcome_unknown == 0
    assert emulator.stats.scans_created == 0


async def test_cancellation_mid_retry_stops_at_once(emulator: Any, make_request: RequestFactory) -> None:
    emulator.set_faults(errors={503: 1.0})
    policy = RetryPolicy(max_attempts=100, backoff_base=30, backoff_max=30)
    async with client_for(emulator, None, retry=policy) as client:
        with anyio.move_on_after(1.0) as scope:
            await client.perform_netverify(make_request())
        assert scope.cancelled_caught
        requests_after_cancel = emulator.stats.requests
        await anyio.sleep(0.3)
    assert requests_after_cancel == emulator.stats.requests  # nothing keeps retrying in the background
    assert 1 <= client.stats.attempts <= 3  # full jitter may draw a short first wait


async def test_on_retry_hook_sees_each_retry_without_personal_data(
    emulator: Any, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    emulator.set_faults(sequence=["503"])
    events: list[Any] = []
    async with client_for(emulator, sleeps, on_retry=events.append) as client:
        await client.perform_netverify(make_request("hook", first_name="Sentinelfirstname"))
    assert len(events) == 1
    assert events[0].status_code == 503 and events[0].merchant_id_scan_reference == "hook"
    assert "Sentinelfirstname" not in repr(events[0])


@pytest.mark.parametrize("pool", ["own", "caller's http_client"])
async def test_no_request_outlives_its_call_waiting_for_the_garbage_collector(
    emulator: Any, make_request: RequestFactory, pool: str
) -> None:
    # a request holds its body (megabytes for a real ID photo): it must go when the call returns, not at the
    # next garbage collection, which a reference cycle would wait for
    import gc

    import httpx

    user_http = httpx.AsyncClient() if pool != "own" else None
    request = make_request("gc")
    try:
        async with client_for(emulator, http_client=user_http) as client:
            await client.perform_netverify(request)  # builds the pool outside the measured part
            gc.collect()
            gc.disable()
            try:
                for _ in range(3):
                    await client.perform_netverify(request)
                left = [o for o in gc.get_objects() if isinstance(o, httpx.Request)]
            finally:
                gc.enable()
    finally:
        if user_http is not None:
            await user_http.aclose()
    assert left == []
