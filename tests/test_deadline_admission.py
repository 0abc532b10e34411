"""A call's deadline covers its wait for a rate-limit slot (virtual time, asyncio and trio).

The server is an ``httpx.MockTransport`` (no real I/O, so virtual time applies): a ``Retry-After`` pause or a long
queue must never hold a caller past its own deadline, and a call that cannot start in time fails with
``DeadlineExceeded`` saying that nothing was sent.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from netverify_async import DeadlineExceeded, FailureKind, NetverifyClient, RetryPolicy, ScanReceipt

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time, pytest.mark.timeout(60)]

RECEIPT = {"timestamp": "2024-05-01T09:30:00.000Z", "jumioIdScanReference": "4bd9b5cf-0a5d-4d39-a5a4-4d1f0c3c1e11"}
BODY = json.dumps({"merchantIdScanReference": "x"}).encode()


class Server:
    """Answers the scripted statuses in order (the last repeats), counting the bodies it received."""

    def __init__(self, *script: tuple[int, dict[str, str]]) -> None:
        self.script = list(script)
        self.bodies = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies += 1
        status, headers = self.script[min(self.bodies - 1, len(self.script) - 1)]
        content = json.dumps(RECEIPT if status == 200 else {"status": status}).encode()
        return httpx.Response(status, headers={"content-type": "application/json", **headers}, content=content)


def client(http: httpx.AsyncClient, **options: Any) -> NetverifyClient:
    settings: dict[str, Any] = {
        "api_token": "token",
        "api_secret": "secret",
        "user_agent": "Example Corp Tests/1.0",
        "http_client": http,
        "retry": RetryPolicy(deadline=2.0, max_retry_after=60),
    }
    settings.update(options)
    return NetverifyClient(**settings)


async def test_a_retry_after_pause_longer_than_the_deadline_fails_at_once_without_sending() -> None:
    server = Server((429, {"retry-after": "30"}), (200, {}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http, client(http) as c:
        with pytest.raises(DeadlineExceeded):  # its own 30 s wait cannot fit in 2 s
            await c.send_encoded(BODY, merchant_id_scan_reference="first")
        started = anyio.current_time()
        with pytest.raises(DeadlineExceeded, match="nothing was sent") as info:
            await c.send_encoded(BODY, merchant_id_scan_reference="second")
        waited = anyio.current_time() - started
    assert waited == 0  # failed at once: the pause is known to outlast the deadline
    assert info.value.kind is FailureKind.NOT_SENT and info.value.safe_to_retry
    assert server.bodies == 1  # the second call sent nothing


async def test_callers_queued_behind_a_window_fail_at_their_deadline_not_after_the_queue() -> None:
    server = Server((200, {}))
    outcomes: list[tuple[float, object]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        async with client(http, rate_limit="5/5s") as c:
            started = anyio.current_time()

            async def submit(ref: str) -> None:
                try:
                    result: object = await c.send_encoded(BODY, merchant_id_scan_reference=ref)
                except DeadlineExceeded as exc:
                    result = exc
                outcomes.append((anyio.current_time() - started, result))

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(submit, f"ref-{i}")
    receipts = [r for _, r in outcomes if isinstance(r, ScanReceipt)]
    refused = [r for _, r in outcomes if isinstance(r, DeadlineExceeded)]
    assert len(receipts) == 5 and len(refused) == 7
    assert max(elapsed for elapsed, _ in outcomes) <= 2.0  # nobody waited past the 2 s deadline
    assert all(r.kind is FailureKind.NOT_SENT for r in refused)
    assert server.bodies == 5
