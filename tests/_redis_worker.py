"""A separate process that takes slots from a RedisRateLimiter.

Usage:

* ``python _redis_worker.py URL KEY RATES COUNT``: takes COUNT slots and prints their booked start times (server
  time, microseconds) as JSON.
* ``python _redis_worker.py URL KEY RATES COUNT BASE_URL TOKEN SECRET MARGIN``: sends COUNT submissions to the
  emulator at BASE_URL through a NetverifyClient whose limiter is the RedisRateLimiter (with MARGIN seconds),
  and prints ``{"pid": PID, "ok": N, "errors": [error type names], "losses": state losses noticed}`` as JSON.
  The merchant references are ``p<PID>-<n>``. Starts sending when a line arrives on stdin (so the test decides
  when), at once if stdin is closed.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from netverify_async.redis import RedisRateLimiter, RedisSlot


async def take_slots(url: str, key: str, rates: str, count: int) -> None:
    starts: list[int] = []
    async with RedisRateLimiter(url, key=key, rates=rates, max_concurrency=4) as limiter:

        async def one() -> None:
            async with limiter.slot() as slot:
                assert isinstance(slot, RedisSlot)
                starts.append(slot.server_time_us)
                await anyio.sleep(0.01)
                slot.record(200)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    print(json.dumps(starts))


async def submit(
    url: str, key: str, rates: str, count: int, base_url: str, token: str, secret: str, margin: float
) -> None:
    from _support import make_jpeg

    from netverify_async import Image, NetverifyClient, NetverifyError, NetverifyRequest, RetryPolicy

    jpeg = make_jpeg(320, 240)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    ok = 0
    errors: list[str] = []
    async with (
        RedisRateLimiter(url, key=key, rates=rates, margin=margin, outage_timeout=20) as limiter,
        NetverifyClient(
            api_token=token,
            api_secret=secret,
            base_url=base_url,
            user_agent="Example Corp Tests/1.0",
            rate_limit=limiter,
            retry=RetryPolicy(max_attempts=1, deadline=40),
        ) as client,
    ):

        async def one(ref: str) -> None:
            nonlocal ok
            request = NetverifyRequest(
                merchant_id_scan_reference=ref,
                frontside_image=Image.from_bytes(jpeg),
                country="AUT",
                id_type="PASSPORT",
            )
            try:
                await client.perform_netverify(request)
                ok += 1
            except NetverifyError as exc:
                errors.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for n in range(count):
                tg.start_soon(one, f"p{os.getpid()}-{n}")
        losses = limiter.state_losses
    print(json.dumps({"pid": os.getpid(), "ok": ok, "errors": errors, "losses": losses}))


if __name__ == "__main__":
    if len(sys.argv) == 5:
        anyio.run(take_slots, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        url, key, rates, count, base_url, token, secret, margin = sys.argv[1:9]
        anyio.run(submit, url, key, rates, int(count), base_url, token, secret, float(margin))
