"""The Redis limiter against a real redis-server: one limit shared by several clients and processes.

Times are the Redis server's own (the booked start of each slot), so the window checks are exact. Runs under
asyncio only: redis-py's asyncio client does not run under trio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from _ratelimit_support import max_in_window_int

from netverify_async import ConfigurationError, RateLimiter, RateLimiterError, parse_rate
from netverify_async.redis import RedisRateLimiter, RedisSlot

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


US = 1_000_000


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def raw(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server)
    yield client
    await client.aclose()


def assert_windows_hold(starts_us: list[int], rates: str) -> None:
    for window in parse_rate(rates):
        width = round(window.seconds * US)
        assert max_in_window_int(starts_us, width) <= window.limit, f"window {window} exceeded"


async def test_limiters_with_separate_connections_share_one_limit(redis_server: str, key: str) -> None:
    rates = "10/0.2s,30/s"
    starts: list[int] = []
    limiters = [RedisRateLimiter(redis_server, key=key, rates=rates) for _ in range(4)]

    async def one(limiter: RedisRateLimiter) -> None:
        async with limiter.slot() as slot:
            assert isinstance(slot, RedisSlot)
            starts.append(slot.server_time_us)
            slot.record(200)

    try:
        async with anyio.create_task_group() as tg:
            for limiter in limiters:
                for _ in range(12):
                    tg.start_soon(one, limiter)
    finally:
        for limiter in limiters:
            await limiter.aclose()
    assert len(starts) == 48 == sum(limiter.granted for limiter in limiters)
    assert_windows_hold(starts, rates)
    # The limit is used, not just respected: 48 starts at 30/s need a bit more than one second.
    assert max_in_window_int(starts, US) == 30


async def test_separate_processes_share_one_limit(redis_server: str, key: str) -> None:
    rates = "8/0.25s"
    worker = Path(__file__).with_name("_redis_worker.py")
    processes = [
        subprocess.Popen(
            [sys.executable, str(worker), redis_server, key, rates, "12"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    starts: list[int] = []
    for process in processes:
        out, err = process.communicate(timeout=50)
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        starts.extend(json.loads(out))
    assert len(starts) == 36
    assert_windows_hold(starts, rates)
    assert max_in_window_int(starts, US // 4) == 8


async def test_a_pause_asked_by_the_server_stops_every_process(
    redis_server: str, key: str, raw: aioredis.Redis
) -> None:
    async with (
        RedisRateLimiter(redis_server, key=key, rates="100/s") as first,
        RedisRateLimiter(redis_server, key=key, rates="100/s") as second,
    ):
        async with first.slot() as slot:
            slot.record(429, 0.4)
            assert first.pause_remaining() > 0.3  # this process stops at once
        pause_until = int(await raw.get(f"{{{key}}}:pause"))
        assert pause_until > slot.server_time_us + 300_000  # shared when the slot was released
        async with second.slot() as later:
            assert isinstance(later, RedisSlot)
            assert later.server_time_us >= pause_until
        assert first.throttled == 1 and second.throttled == 0


async def test_the_script_is_loaded_again_after_a_flush(
    redis_server: str, key: str, raw: aioredis.Redis
) -> None:
    async with RedisRateLimiter(redis_server, key=key, rates="100/s") as limiter:
        async with limiter.slot():
            pass
        await raw.script_flush()
        async with limiter.slot():
            pass
        assert limiter.granted == 2


async def test_keys_expire_after_their_window(redis_server: str, key: str, raw: aioredis.Redis) -> None:
    async with RedisRateLimiter(
        redis_server, key=key, rates="3/s,180/min", hold_on_missing_state=False
    ) as limiter:
        async with limiter.slot() as slot:
            slot.record(429, 2.0)
    one_second = await raw.pttl(f"{{{key}}}:window:1000000us")
    one_minute = await raw.pttl(f"{{{key}}}:window:60000000us")
    pause = await raw.pttl(f"{{{key}}}:pause")
    marker = await raw.pttl(f"{{{key}}}:epoch")
    assert 1_000 < one_second <= 3_000
    assert 119_000 < one_minute <= 121_000
    assert 1_000 < pause <= 3_000
    assert 7 * 24 * 3600 * 1000 - 60_000 < marker <= 7 * 24 * 3600 * 1000  # a week after the last call
    await limiter.reset()
    assert await raw.exists(f"{{{key}}}:window:1000000us", f"{{{key}}}:pause") == 0
    assert await raw.exists(f"{{{key}}}:epoch") == 1  # a fresh state: the next start goes without a hold


async def test_a_process_with_a_margin_sees_starts_an_exact_process_no_longer_needs(
    redis_server: str, key: str
) -> None:
    async with (
        RedisRateLimiter(redis_server, key=key, rates="4/0.3s") as exact,
        RedisRateLimiter(redis_server, key=key, rates="4/0.3s", margin=0.3) as padded,
    ):
        early: list[int] = []
        for _ in range(4):
            async with exact.slot() as slot:
                assert isinstance(slot, RedisSlot)
                early.append(slot.server_time_us)
        await anyio.sleep(0.35)  # now outside the exact 0.3 s window, still inside the padded 0.6 s one
        async with exact.slot():
            pass
        async with padded.slot() as late:
            assert isinstance(late, RedisSlot)
        # Four starts lay in the padded window, so it had to wait for the oldest to be 0.6 s old.
        assert late.server_time_us >= early[0] + 600_000


async def test_concurrency_cap_is_per_process(redis_server: str, key: str) -> None:
    active = peak = 0
    async with RedisRateLimiter(redis_server, key=key, rates="1000/s", max_concurrency=2) as limiter:

        async def one() -> None:
            nonlocal active, peak
            async with limiter.slot():
                active += 1
                peak = max(peak, active)
                await anyio.sleep(0.01)
                active -= 1

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert peak == 2
    assert limiter.in_flight == 0


async def test_a_cancelled_waiter_leaves_nothing_behind(redis_server: str, key: str) -> None:
    async with RedisRateLimiter(redis_server, key=key, rates="1/0.5s") as limiter:
        order: list[str] = []

        async def one(name: str, patience: float) -> None:
            with anyio.move_on_after(patience):
                async with limiter.slot():
                    order.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "first", 5)
            await anyio.sleep(0.05)
            tg.start_soon(one, "impatient", 0.1)
            await anyio.sleep(0.01)
            tg.start_soon(one, "patient", 5)
        assert order == ["first", "patient"]
        assert limiter.waiting == 0 and limiter.in_flight == 0
        assert limiter.granted == 2


async def test_an_unreachable_redis_raises_a_typed_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    async with RedisRateLimiter(
        url, key="test:down", rates="5/s", operation_timeout=2, outage_timeout=0.3
    ) as limiter:
        with pytest.raises(RateLimiterError) as info:
            async with limiter.slot():
                pass
        assert "'test:down'" in str(info.value)
        assert "hunter2" not in str(info.value) and str(port) not in str(info.value)
        assert limiter.waiting == 0 and limiter.in_flight == 0
    assert "hunter2" not in repr(limiter)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", rates="5/s")
    with pytest.raises(ConfigurationError, match="asyncio only"):
        async with limiter.slot():
            pass
    assert limiter.waiting == 0


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="key"):
        RedisRateLimiter("redis://127.0.0.1/0", key="a{b}", rates="5/s")
    with pytest.raises(ConfigurationError, match="key"):
        RedisRateLimiter("redis://127.0.0.1/0", key="", rates="5/s")
    with pytest.raises(ConfigurationError, match="rate rule"):
        RedisRateLimiter("redis://127.0.0.1/0", rates="5/eon")
    with pytest.raises(ConfigurationError, match="jitter"):
        RedisRateLimiter("redis://127.0.0.1/0", rates="5/s", jitter=-1)
    with pytest.raises(ConfigurationError, match="operation_timeout"):
        RedisRateLimiter("redis://127.0.0.1/0", rates="5/s", operation_timeout=0)
    for bad in (-1, float("inf"), True, "5"):
        with pytest.raises(ConfigurationError, match="outage_timeout"):
            RedisRateLimiter("redis://127.0.0.1/0", rates="5/s", outage_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="hold_on_missing_state"):
        RedisRateLimiter("redis://127.0.0.1/0", rates="5/s", hold_on_missing_state=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisRateLimiter("http://example.invalid/", rates="5/s")
    limiter = RedisRateLimiter("redis://:s3cret@127.0.0.1:6379/0", key="acct-1", rates="180/min,3/s")
    assert isinstance(limiter, RateLimiter)
    assert repr(limiter) == "RedisRateLimiter(key='acct-1', rates='3/s,180/min', max_concurrency=None)"
    assert limiter.key == "acct-1"
    assert [str(w) for w in limiter.windows] == ["3/s", "180/min"]


def test_a_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"netverify-async\[redis\]"):
        RedisRateLimiter("redis://127.0.0.1/0", rates="5/s")
