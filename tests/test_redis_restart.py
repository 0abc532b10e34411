"""The Redis limiter when Redis loses its state, restarts, cannot be reached or freezes (a real redis-server).

Every test here starts its own redis-server (``own_redis``), which it may kill, start again empty on the same
port, flush, or freeze with SIGSTOP. Times compared are the Redis server's own (booked starts, the marker's
creation), so the checks are exact; waits for the server are bounded by the tests' own timeouts only.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import redis.asyncio as aioredis
from _redis_server import OwnRedis, own_redis  # noqa: F401
from _support import emulator_client, free_port, outcome_of

from netverify_async import (
    DeadlineExceeded,
    FailureKind,
    NetverifyError,
    NetverifyRequest,
    RateLimiterError,
    RetryPolicy,
    ScanReceipt,
)
from netverify_async.redis import RedisRateLimiter, RedisSlot

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

US = 1_000_000


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def raw(own_redis: OwnRedis) -> AsyncIterator[aioredis.Redis]:  # noqa: F811
    client = aioredis.Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def marker_created_us(raw: aioredis.Redis, key: str) -> int:
    """When the state marker was written (server time, microseconds)."""
    value = await raw.hget(f"{{{key}}}:epoch", "m")
    assert value is not None
    return int(value.rsplit(b":", 1)[1])


def most_in_any_window(starts: list[int], window_us: int) -> int:
    """The most starts (server times, microseconds) that any interval of ``window_us`` holds."""
    ordered = sorted(starts)
    return max(
        sum(1 for other in ordered[i:] if other < start + window_us) for i, start in enumerate(ordered)
    )


async def take(limiter: RedisRateLimiter) -> int:
    async with limiter.slot() as slot:
        assert isinstance(slot, RedisSlot)
        return slot.server_time_us


# -- a restart in the middle of a run, against the emulator -------------------------------------------------


async def test_a_restart_mid_run_costs_time_and_no_429(
    own_redis: OwnRedis,  # noqa: F811
    emulator: Any,
    make_request: Callable[..., NetverifyRequest],
    key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three clients, each with its own limiter and Redis connection, share the emulator's 5/1s. Two work from
    the start; Redis is killed and started again empty as soon as a full window of five requests reached the
    server, and the third client starts its work right then. The server still counts those five, the new
    Redis knows none of them: without the hold the third client would start five at once and get 429s."""
    emulator.set_faults(rate_limit="5/1s", retry_after=True)
    per_client, clients = 6, 3
    limiters = [
        RedisRateLimiter(own_redis.url, key=key, rates="5/1s", margin=0.6, outage_timeout=20)
        for _ in range(clients)
    ]
    await limiters[0].reset()  # nothing was sent before: no hold at the start
    outcomes: list[ScanReceipt | NetverifyError] = []
    restarted = anyio.Event()

    async def restart_when_the_window_is_full() -> None:
        while emulator.stats.requests < 5:
            await anyio.sleep(0.002)
        await anyio.to_thread.run_sync(own_redis.restart)
        restarted.set()

    async def run(index: int, *, after_restart: bool) -> None:
        if after_restart:
            await restarted.wait()
        policy = RetryPolicy(max_attempts=1, deadline=40)
        async with (
            emulator_client(emulator, rate_limit=limiters[index], retry=policy) as client,
            anyio.create_task_group() as tg,
        ):
            for n in range(per_client):

                async def one(ref: str) -> None:
                    outcomes.append(await outcome_of(client.perform_netverify(make_request(ref)), within=40))

                tg.start_soon(one, f"c{index}-{n}")

    caplog.set_level(logging.WARNING, logger="netverify_async.ratelimit")
    try:
        with anyio.fail_after(50):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_when_the_window_is_full)
                for index in range(clients):
                    tg.start_soon(functools.partial(run, index, after_restart=index == clients - 1))
    finally:
        for limiter in limiters:
            await limiter.aclose()
    stats = emulator.stats
    assert own_redis.restarts == 1
    assert stats.status_counts.get(429, 0) == 0
    assert [type(o).__name__ for o in outcomes] == ["ScanReceipt"] * per_client * clients
    assert stats.scans_created == per_client * clients and not stats.duplicates
    # The client that came after the restart found no marker and wrote one with the hold; the two that knew
    # the old marker noticed the loss once each.
    assert [limiter.state_losses for limiter in limiters] == [1, 1, 0]
    assert "shared state was lost" in caplog.text


# -- lost state: the hold ----------------------------------------------------------------------------------


async def test_a_flush_holds_every_process_for_one_longest_window(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    rates = "3/0.3s,4/0.6s"
    async with (
        RedisRateLimiter(own_redis.url, key=key, rates=rates, margin=0.1) as first,
        RedisRateLimiter(own_redis.url, key=key, rates=rates, margin=0.1) as second,
    ):
        await first.reset()
        before = [await take(first) for _ in range(2)] + [await take(second)]
        await raw.flushall()
        seconds, micros = await raw.time()
        flushed_at = seconds * US + micros
        after_second = await take(second)
        after_first = await take(first)
        created = await marker_created_us(raw, key)
    assert second.state_losses == 1 and first.state_losses == 1
    # The process that asked first wrote the new marker and a hold of one longest window (0.6 s + 0.1 s
    # margin): every start from before the loss is a full window old when the next one is booked.
    assert max(before) < flushed_at <= created
    assert after_second >= created + 700_000 and after_first >= created + 700_000


async def test_a_restarted_server_makes_a_waiting_limiter_hold(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    async with RedisRateLimiter(own_redis.url, key=key, rates="2/0.5s", outage_timeout=20) as limiter:
        await limiter.reset()
        last_before = max([await take(limiter) for _ in range(2)])
        own_redis.restart()
        after = await take(limiter)
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            created = await marker_created_us(raw, key)
    assert limiter.state_losses == 1
    assert after >= created + 500_000 > last_before + 500_000


async def test_the_first_use_of_a_key_holds_unless_told_otherwise(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    async with RedisRateLimiter(own_redis.url, key=key, rates="5/0.4s") as careful:
        first = await take(careful)
    assert first >= await marker_created_us(raw, key) + 400_000
    assert careful.state_losses == 0  # a first use is not a loss

    other = f"{key}-trusting"
    async with RedisRateLimiter(
        own_redis.url, key=other, rates="5/0.4s", hold_on_missing_state=False
    ) as trusting:
        at_once = await take(trusting)
    assert at_once == await marker_created_us(raw, other)  # booked by the very call that wrote the marker


async def test_a_process_that_knew_the_state_holds_even_when_a_new_one_does_not(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    async with (
        RedisRateLimiter(own_redis.url, key=key, rates="5/0.5s", hold_on_missing_state=False) as old,
        RedisRateLimiter(own_redis.url, key=key, rates="5/0.5s", hold_on_missing_state=False) as newcomer,
    ):
        await take(old)
        await raw.flushall()
        written = await take(newcomer)  # never saw a marker: trusts the empty store and goes at once
        assert written == await marker_created_us(raw, key)
        later = await take(
            old
        )  # saw the old marker: the state was lost, so it waits a window from the new one
        again = await take(old)  # one hold per loss
    assert later >= written + 500_000
    assert again >= later
    assert (old.state_losses, newcomer.state_losses) == (1, 0)


async def test_a_known_process_without_the_marker_holds_even_when_hold_on_missing_state_is_off(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="5/0.5s", hold_on_missing_state=False
    ) as limiter:
        await take(limiter)
        await raw.delete(f"{{{key}}}:epoch", f"{{{key}}}:window:500000us")
        after = await take(limiter)
    assert after >= await marker_created_us(raw, key) + 500_000
    assert limiter.state_losses == 1


async def test_a_restart_from_an_older_snapshot_holds(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    """The snapshot has the same marker but fewer booked starts than the process saw: a rollback."""
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="3/3s", hold_on_missing_state=False, outage_timeout=20
    ) as limiter:
        starts = [await take(limiter)]
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            await raw.save()  # the marker and one start
        starts += [await take(limiter) for _ in range(2)]  # the window is full
        own_redis.restart()  # killed without saving; the new server loads the older snapshot
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            assert await raw.zcard(f"{{{key}}}:window:3000000us") == 1  # the snapshot came back
            after = [await take(limiter) for _ in range(2)]
            created = await marker_created_us(raw, key)
    assert limiter.state_losses == 1
    assert max(starts) < created <= min(after)  # a new marker, written when the rollback was found
    assert min(after) >= created + 3 * US  # held one window from then
    assert most_in_any_window(starts + after, 3 * US) == 3


async def test_a_rollback_is_found_even_after_another_process_booked_over_it(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    """The booking count is back where the process saw it, but its own last start is missing: a rollback."""
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="3/2s", hold_on_missing_state=False, outage_timeout=20
    ) as old:
        await take(old)
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            await raw.save()
        for _ in range(2):
            await take(old)
        own_redis.restart()
        async with RedisRateLimiter(
            own_redis.url, key=key, rates="3/2s", hold_on_missing_state=False
        ) as newcomer:
            for _ in range(2):
                await take(newcomer)  # it cannot know about the lost starts
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            assert int(await raw.hget(f"{{{key}}}:epoch", "n") or 0) == 3  # the count old saw last
            after = await take(old)
            created = await marker_created_us(raw, key)
    assert (old.state_losses, newcomer.state_losses) == (1, 0)
    assert after >= created + 2 * US


async def test_a_restart_from_a_snapshot_with_an_older_marker_holds(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    """The snapshot has a marker older than the one the process knows (from before a flush): a rollback."""
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="3/0.5s", hold_on_missing_state=False, outage_timeout=20
    ) as limiter:
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            await take(limiter)
            old = await marker_created_us(raw, key)
            await raw.save()
            await raw.flushall()
            await take(limiter)  # the loss is found: a new marker and a hold
            newer = await marker_created_us(raw, key)
        own_redis.restart()  # back to the snapshot's older marker
        async with aioredis.Redis.from_url(own_redis.url) as raw:
            assert await marker_created_us(raw, key) == old
            after = await take(limiter)
            created = await marker_created_us(raw, key)
    assert limiter.state_losses == 2
    assert old < newer < created and after >= created + 500_000


async def test_evicted_windows_under_a_kept_marker_hold_every_process(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    """An eviction policy removed the short-lived window keys but kept the marker (volatile-ttl)."""
    async with (
        RedisRateLimiter(own_redis.url, key=key, rates="2/0.5s,3/1s", hold_on_missing_state=False) as old,
        RedisRateLimiter(
            own_redis.url, key=key, rates="2/0.5s,3/1s", hold_on_missing_state=False
        ) as newcomer,
    ):
        before = [await take(old) for _ in range(2)]
        await raw.delete(f"{{{key}}}:window:500000us", f"{{{key}}}:window:1000000us")
        assert await raw.exists(f"{{{key}}}:epoch") == 1
        first = await take(newcomer)  # never saw the state, yet finds the last start missing from the windows
        created = await marker_created_us(raw, key)
        second = await take(old)  # sees the new marker: held one window from it as well
    assert (newcomer.state_losses, old.state_losses) == (1, 1)
    assert max(before) < created
    assert first >= created + US and second >= created + US


async def test_windows_that_expired_on_time_are_not_a_loss(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="1/0.2s", hold_on_missing_state=False
    ) as limiter:
        await take(limiter)
        with anyio.fail_after(10):
            while await raw.exists(f"{{{key}}}:window:200000us"):  # expires 2 windows + 1 s after the start
                await anyio.sleep(0.05)
        marker = await raw.hget(f"{{{key}}}:epoch", "m")
        await take(limiter)
        assert await raw.hget(f"{{{key}}}:epoch", "m") == marker
    assert limiter.state_losses == 0


async def test_reset_starts_a_fresh_state_without_a_hold(
    own_redis: OwnRedis,  # noqa: F811
    raw: aioredis.Redis,
    key: str,
) -> None:
    async with (
        RedisRateLimiter(own_redis.url, key=key, rates="1/5s") as operator,
        RedisRateLimiter(own_redis.url, key=key, rates="1/5s") as worker,
    ):
        await operator.reset()
        first = await take(worker)
        await operator.reset()  # the worker knew the previous marker; a reset is not a loss
        second = await take(worker)
    assert first < second < first + 5 * US  # neither the booked start nor a hold made it wait a window
    assert worker.state_losses == 0
    assert await raw.pttl(f"{{{key}}}:epoch") > 6 * 24 * 3600 * 1000


# -- Redis down ----------------------------------------------------------------------------------------------


async def test_admissions_wait_for_redis_to_come_up(own_redis: OwnRedis, key: str) -> None:  # noqa: F811
    own_redis.kill()
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="5/0.2s", outage_timeout=20, operation_timeout=2
    ) as limiter:
        got: list[int] = []

        async def wait_for_slot() -> None:
            got.append(await take(limiter))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_slot)
            with anyio.fail_after(10):
                while not limiter.redis_unavailable:
                    await anyio.sleep(0.01)
            assert got == [] and limiter.waiting == 1  # nothing granted without Redis
            own_redis.start()
        assert len(got) == 1 and not limiter.redis_unavailable
        assert limiter.granted == 1 and limiter.in_flight == 0


async def test_an_outage_longer_than_outage_timeout_raises_and_later_calls_fail_at_once(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    async with RedisRateLimiter(own_redis.url, key=key, rates="5/s", outage_timeout=0.3) as limiter:
        own_redis.kill()
        with pytest.raises(RateLimiterError) as info:
            await take(limiter)
        assert key in str(info.value) and str(own_redis.port) not in str(info.value)
        assert info.value.kind is FailureKind.NOT_SENT
        assert limiter.redis_unavailable
        # the outage already lasted outage_timeout: the next admission asks once and fails
        with pytest.raises(RateLimiterError):
            await take(limiter)
        assert limiter.granted == 0 and limiter.waiting == 0
        own_redis.start()
        await take(limiter)  # works again as soon as Redis answers
        assert not limiter.redis_unavailable and limiter.granted == 1


async def test_outage_timeout_zero_fails_at_the_first_error(key: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with RedisRateLimiter(url, key=key, rates="5/s", outage_timeout=0) as limiter:
        with pytest.raises(RateLimiterError, match="Redis call failed"):
            await take(limiter)
        assert limiter.waiting == 0 and limiter.in_flight == 0


async def test_an_authentication_error_is_not_waited_for(own_redis: OwnRedis, key: str) -> None:  # noqa: F811
    async with aioredis.Redis.from_url(own_redis.url) as raw:
        await raw.config_set("requirepass", "right")
    async with RedisRateLimiter(
        f"redis://:wrong@127.0.0.1:{own_redis.port}/0", key=key, rates="5/s", outage_timeout=30
    ) as limiter:
        with anyio.fail_after(10), pytest.raises(RateLimiterError) as info:
            await take(limiter)
        assert "wrong" not in str(info.value)
        assert not limiter.redis_unavailable


# -- Redis frozen --------------------------------------------------------------------------------------------


async def test_a_frozen_redis_never_holds_a_call_past_its_deadline(
    own_redis: OwnRedis,  # noqa: F811
    emulator: Any,
    make_request: Callable[..., NetverifyRequest],
    key: str,
) -> None:
    """SIGSTOP: connections are accepted but nothing answers. The call's own deadline (1 s) ends the wait,
    long before ``operation_timeout`` (30 s) or ``outage_timeout`` (60 s) would, and nothing is sent."""
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="5/s", operation_timeout=30, outage_timeout=60
    ) as limiter:
        await limiter.reset()
        policy = RetryPolicy(deadline=1.0)
        async with emulator_client(emulator, rate_limit=limiter, retry=policy) as client:
            await client.perform_netverify(make_request("before"))
            own_redis.freeze()
            try:
                with anyio.fail_after(15):  # a hang guard, well below operation_timeout
                    with pytest.raises(DeadlineExceeded, match="nothing was sent") as info:
                        await client.perform_netverify(make_request("frozen"))
            finally:
                own_redis.thaw()
            assert info.value.kind is FailureKind.NOT_SENT
            assert limiter.waiting == 0 and limiter.in_flight == 0
            await client.perform_netverify(make_request("after"))
    stats = emulator.stats
    assert stats.requests == 2 and set(stats.scans_by_merchant_reference) == {"before", "after"}


async def test_a_frozen_redis_raises_after_the_timeouts(own_redis: OwnRedis, key: str) -> None:  # noqa: F811
    async with RedisRateLimiter(
        own_redis.url, key=key, rates="5/s", operation_timeout=0.2, outage_timeout=0.5
    ) as limiter:
        await limiter.reset()
        own_redis.freeze()
        try:
            with pytest.raises(RateLimiterError, match=r"did not answer within 0\.2s"):
                await take(limiter)
        finally:
            own_redis.thaw()
        assert limiter.waiting == 0 and limiter.in_flight == 0 and limiter.granted == 0
        await take(limiter)
        assert limiter.granted == 1


async def test_a_frozen_redis_fails_every_queued_admission_together(
    own_redis: OwnRedis,  # noqa: F811
    key: str,
) -> None:
    """Once the head gives up, the waiters behind it fail with it, without one more Redis call each."""
    calls = 0

    class Counting(RedisRateLimiter):
        async def _call(self, operation: Callable[[], Any], *, shield: bool = False) -> Any:
            nonlocal calls
            calls += 1
            return await super()._call(operation, shield=shield)

    async with Counting(
        own_redis.url, key=key, rates="5/s", operation_timeout=0.2, outage_timeout=0.3, max_concurrency=1
    ) as limiter:
        await limiter.reset()
        own_redis.freeze()
        failed_after: list[int] = []

        async def admit() -> None:
            with pytest.raises(RateLimiterError, match=r"did not answer within 0\.2s") as info:
                await take(limiter)
            assert info.value.kind is FailureKind.NOT_SENT
            failed_after.append(calls)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(admit)
        finally:
            own_redis.thaw()
        assert len(failed_after) == 4 and len(set(failed_after)) == 1  # no Redis call between the failures
        assert limiter.waiting == 0 and limiter.in_flight == 0 and limiter.granted == 0
        await take(limiter)  # works again as soon as Redis answers
        assert limiter.granted == 1


# -- a restart seen by separate processes --------------------------------------------------------------------


async def test_separate_processes_get_no_429_across_a_restart(
    own_redis: OwnRedis,  # noqa: F811
    emulator: Any,
    key: str,
) -> None:
    """Three worker processes share 5/1s through Redis. Two send from the start; Redis restarts empty as soon as
    five requests reached the server and both of them had a request accepted, and the third process starts
    sending right then."""
    emulator.set_faults(rate_limit="5/1s", retry_after=True)
    async with RedisRateLimiter(own_redis.url, key=key, rates="5/1s") as operator:
        await operator.reset()  # nothing was sent before: no hold at the start
    worker = Path(__file__).with_name("_redis_worker.py")
    command = [
        sys.executable,
        str(worker),
        own_redis.url,
        key,
        "5/1s",
        "5",
        emulator.base_url,
        emulator.api_token,
        emulator.api_secret,
        "1.0",  # margin: generous, since the processes compete for the CPU with the server and each other
    ]
    outputs: list[dict[str, Any]] = []

    async def run(process: anyio.abc.Process, go: anyio.Event) -> None:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        await go.wait()
        await process.stdin.send(b"go\n")
        await process.stdin.aclose()
        out = b"".join([chunk async for chunk in process.stdout])
        err = b"".join([chunk async for chunk in process.stderr])
        assert await process.wait() == 0, err.decode(errors="replace")[-2000:]
        outputs.append(json.loads(out))

    early, late = anyio.Event(), anyio.Event()
    processes = [await anyio.open_process(command) for _ in range(3)]
    try:
        with anyio.fail_after(50):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, processes[0], early)
                tg.start_soon(run, processes[1], early)
                tg.start_soon(run, processes[2], late)
                early.set()
                senders = {f"p{processes[0].pid}-", f"p{processes[1].pid}-"}
                while True:
                    sent = set(emulator.stats.scans_by_merchant_reference)
                    if len(sent) >= 5 and all(any(r.startswith(p) for r in sent) for p in senders):
                        break
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(own_redis.restart)
                late.set()
                # Requests booked before the restart have arrived by now; none booked after it can have (the
                # hold lasts 2 s from the restart).
                await anyio.sleep(1.0)
                sent_before = set(emulator.stats.scans_by_merchant_reference)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    stats = emulator.stats
    assert stats.status_counts.get(429, 0) == 0, stats.per_second
    assert sorted(o["ok"] for o in outputs) == [5, 5, 5] and all(o["errors"] == [] for o in outputs)
    assert stats.scans_created == 15 and not stats.duplicates
    # A process that knew the old state and sent after the restart noticed the loss; the newcomer did not.
    sent_after = set(stats.scans_by_merchant_reference) - sent_before
    for output in outputs:
        knew = output["pid"] != processes[2].pid
        expected = 1 if knew and any(r.startswith(f"p{output['pid']}-") for r in sent_after) else 0
        assert output["losses"] == expected, (output, sorted(sent_after))
