"""The retrieval API through the client: status, details, delete, polling, 404s and retried GETs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from _misbehaving import TIMESTAMP, Reply, answer, serve
from _support import SleepRecorder, client_at, emulator_client

from netverify_async import (
    ConfigurationError,
    DeadlineExceeded,
    NetverifyRequest,
    NotFoundError,
    RetryPolicy,
    ScanState,
)
from netverify_async._constants import LOOPBACK_POLL_SCHEDULE_S, RETRIEVAL_POLL_SCHEDULE_S, SCANS_PATH

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]


async def test_status_then_details_of_a_finished_scan(
    emulator: Any, make_request: Callable[..., NetverifyRequest]
) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(make_request("ret-1"))
        status = await client.scan_status(receipt.scan_reference)
        assert status.scan_reference == receipt.scan_reference
        assert status.status is ScanState.DONE
        details = await client.scan_details(receipt.scan_reference)
    assert details.scan_reference == receipt.scan_reference
    assert details.document is not None and details.transaction is not None


async def test_pending_until_the_processing_delay_has_passed(
    make_request: Callable[..., NetverifyRequest],
) -> None:
    from netverify_async.emulator import run_emulator

    async with run_emulator(processing_delay=30.0) as emu, emulator_client(emu) as client:
        receipt = await client.perform_netverify(make_request("slow-scan"))
        status = await client.scan_status(receipt.scan_reference)
    assert status.status is ScanState.PENDING
    assert not status.is_final


async def test_unknown_scan_is_a_typed_404_with_body_and_tracking_id(emulator: Any) -> None:
    async with emulator_client(emulator) as client:
        with pytest.raises(NotFoundError) as info:
            await client.scan_status("00000000-0000-0000-0000-000000000000")
    assert info.value.status_code == 404
    assert info.value.tracking_id
    assert info.value.body is not None and info.value.body["httpStatus"] == "404"


async def test_delete_removes_the_scan(emulator: Any, make_request: Callable[..., NetverifyRequest]) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(make_request("del-1"))
        await client.delete_scan(receipt.scan_reference)
        with pytest.raises(NotFoundError):
            await client.scan_details(receipt.scan_reference)


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/b", "x" * 101, "ref?x=1"])
async def test_scan_references_are_checked_before_building_a_url(emulator: Any, bad: str) -> None:
    async with emulator_client(emulator) as client:
        with pytest.raises(ConfigurationError, match="scan_reference"):
            await client.scan_status(bad)
    assert emulator.stats.requests == 0


async def test_ambiguous_failures_of_gets_are_retried(
    emulator: Any, make_request: Callable[..., NetverifyRequest], sleeps: SleepRecorder
) -> None:
    async with emulator_client(emulator, sleeps) as client:
        receipt = await client.perform_netverify(make_request("get-retry"))
        emulator.set_faults(sequence=["500", "drop"], apply_to=["retrieval"])
        status = await client.scan_status(receipt.scan_reference)
    assert status.status is ScanState.DONE
    # both faults hit the GET and it still succeeded (a dropped keep-alive GET may be resent by the pool
    # itself, which is harmless for an idempotent call)
    assert dict(emulator.stats.faults_injected) == {"500": 1, "drop": 1}
    assert len(sleeps.waits) >= 1


def pending_scan_server(*, done_after: int | None = None) -> Any:
    """A scripted server on which ``scan-1`` is PENDING for the first ``done_after`` status requests (for ever:
    None), then DONE; it records when each request arrived (``server.requests[i].at``)."""
    pending = Reply(200, body=json.dumps({"timestamp": TIMESTAMP, "scanReference": "scan-1", "status": "PENDING"}).encode())
    plan = [pending] * done_after + [Reply(200)] if done_after is not None else [pending]
    return serve(answer(*plan))


@pytest.mark.virtual_time
async def test_wait_for_result_polls_on_the_given_schedule() -> None:
    async with pending_scan_server(done_after=2) as server:
        async with client_at(server.base_url, retrieval_rate_limit=None) as client:
            started = anyio.current_time()
            details = await client.wait_for_result("scan-1", schedule=(0.1, 0.3, 0.6, 1.0, 2.0))
    assert details.scan_reference == "scan-1"
    assert [r.target for r in server.requests] == [f"{SCANS_PATH}/scan-1"] * 3 + [f"{SCANS_PATH}/scan-1/data"]
    # each check at its offset from the call (seconds on the virtual clock); the details right after DONE
    assert [r.at - started for r in server.requests] == pytest.approx([0.1, 0.3, 0.6, 0.6])


@pytest.mark.virtual_time
async def test_wait_for_result_gives_up_after_the_schedule() -> None:
    async with pending_scan_server() as server:
        async with client_at(server.base_url, retrieval_rate_limit=None) as client:
            started = anyio.current_time()
            with pytest.raises(DeadlineExceeded):
                await client.wait_for_result("scan-1", schedule=(40, 60, 100))
            gave_up_after = anyio.current_time() - started
    # Jumio's schedule is in seconds since the call, not between checks
    assert [r.at - started for r in server.requests] == pytest.approx([40, 60, 100])
    assert gave_up_after == pytest.approx(100)


async def test_retrieval_goes_through_its_own_rate_limiter(
    emulator: Any, make_request: Callable[..., NetverifyRequest]
) -> None:
    async with emulator_client(emulator, retrieval_rate_limit="2/s", retry=RetryPolicy(max_attempts=1)) as client:
        receipt = await client.perform_netverify(make_request("lim"))
        emulator.set_faults(retrieval_rate_limit="3/s")
        for _ in range(6):  # back to back these would exceed 3/s; the client waits for free slots instead
            await client.scan_status(receipt.scan_reference)
    assert emulator.stats.status_counts.get(429, 0) == 0


async def test_wait_for_result_against_the_emulator_polls_within_a_second(
    make_request: Callable[..., NetverifyRequest],
) -> None:
    from netverify_async.emulator import run_emulator

    recorder = SleepRecorder()
    async with run_emulator(processing_delay=60.0) as emu, emulator_client(emu, recorder) as client:
        receipt = await client.perform_netverify(make_request("poll-3"))
        with pytest.raises(DeadlineExceeded):
            await client.wait_for_result(receipt.scan_reference)
    # a loopback base URL gets the fast schedule: the first check comes well within a second
    assert recorder.waits[0] < 1.0
    assert len(recorder.waits) == len(LOOPBACK_POLL_SCHEDULE_S)


async def test_a_production_host_keeps_jumios_polling_schedule() -> None:
    import httpx

    from netverify_async import NetverifyClient

    def pending(request: httpx.Request) -> httpx.Response:  # nothing leaves the machine
        return httpx.Response(200, json={"scanReference": "scan-1", "status": "PENDING", "timestamp": None})

    recorder = SleepRecorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(pending)) as http:
        client = NetverifyClient(
            api_token="t",
            api_secret="s",
            user_agent="Example Corp Tests/1.0",
            region="EU",
            http_client=http,
            retrieval_rate_limit=None,
            sleep=recorder,
        )
        async with client:
            with pytest.raises(DeadlineExceeded):
                await client.wait_for_result("scan-1")
    assert recorder.waits[0] == pytest.approx(RETRIEVAL_POLL_SCHEDULE_S[0], abs=1)
    assert len(recorder.waits) == len(RETRIEVAL_POLL_SCHEDULE_S)
