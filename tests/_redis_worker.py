"""A separate process that takes slots from a RedisRateLimiter and prints their booked start times as JSON.

Usage: python _redis_worker.py URL KEY RATES COUNT
"""

from __future__ import annotations

import json
import sys

import anyio

from netverify_async.redis import RedisRateLimiter, RedisSlot


async def main(url: str, key: str, rates: str, count: int) -> None:
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


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
