"""The sliding-window limiter: no window of any alignment ever holds more than its limit of starts.

Every async test runs on virtual time (see _ratelimit_support), on asyncio and on trio, so the assertions
about times are exact and independent of the machine's speed.
"""

from __future__ import annotations

import math
import random

import anyio
import pytest
from _ratelimit_support import max_in_window
from hypothesis import given, settings
from hypothesis import strategies as st

from netverify_async import RateWindow, SlidingWindowLimiter, UnlimitedLimiter, parse_rate
from netverify_async._ratelimit import _StartLog

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time, pytest.mark.timeout(60)]


def assert_windows_hold(starts: list[float], windows: tuple[RateWindow, ...]) -> None:
    for window in windows:
        assert max_in_window(starts, window.seconds) <= window.limit, f"window {window} exceeded"


# -- the pure bookkeeping ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    spec=st.sampled_from(["5/5s", "3/s,180/min", "15/5s", "2/0.5s,5/3s", "1/s"]),
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=300),
)
def test_start_log_never_allows_more_than_the_limit_in_any_window(spec: str, gaps: list[float]) -> None:
    windows = parse_rate(spec)
    log = _StartLog(windows)
    now = 0.0
    starts: list[float] = []
    for gap in gaps:
        now += gap
        start = log.earliest(now)
        assert start >= now
        log.add(start)
        starts.append(start)
        now = start
    assert_windows_hold(starts, windows)


def test_start_log_is_not_more_conservative_than_needed() -> None:
    # A saturated 5/5s log lets the sixth start go exactly when the first leaves the window.
    log = _StartLog(parse_rate("5/5s"))
    for t in (0.0, 0.1, 0.2, 0.3, 0.4):
        log.add(t)
    assert log.earliest(0.5) == 5.0
    log.add(5.0)
    assert log.earliest(5.0) == 5.1
    # 3/s and 180/min: the per-second window paces the start, the minute window caps the total.
    log = _StartLog(parse_rate("3/s,180/min"))
    now = 0.0
    for _ in range(180):
        now = log.earliest(now)
        log.add(now)
    assert now == pytest.approx(59.0)
    assert log.earliest(now) == pytest.approx(60.0)


# -- the limiter, on virtual time --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["5/5s", "20/s", "3/s,180/min"])
async def test_random_arrivals_never_exceed_any_window(spec: str) -> None:
    rng = random.Random(f"arrivals-{spec}")
    limiter = SlidingWindowLimiter(spec, max_concurrency=8)
    starts: list[float] = []
    first = anyio.current_time()
    windows = limiter.windows
    average = min(w.rate for w in windows)
    count = 400 if average >= 3 else 120

    async def request(arrival: float) -> None:
        await anyio.sleep(arrival)
        async with limiter.slot() as slot:
            assert slot.start_time == anyio.current_time()
            starts.append(slot.start_time)
            await anyio.sleep(rng.expovariate(1 / 0.3))
            slot.record(200)

    async with anyio.create_task_group() as tg:
        arrival = 0.0
        for _ in range(count):
            # Bursty demand, on average 1.5 times what the limit allows.
            arrival += rng.expovariate(1.5 * average) if rng.random() < 0.7 else 0.0
            tg.start_soon(request, arrival)

    assert len(starts) == count == limiter.granted
    assert limiter.in_flight == 0 and limiter.waiting == 0
    assert_windows_hold(starts, windows)
    # The limit is used, not just respected: over the run the rate is close to what the windows allow.
    elapsed = max(starts) - first
    assert count / elapsed > 0.8 * average


async def test_a_start_counts_when_its_slot_is_granted_even_if_held_long() -> None:
    limiter = SlidingWindowLimiter("2/s")
    times = []
    for _ in range(5):
        async with limiter.slot() as slot:
            times.append(slot.start_time)
            await anyio.sleep(0.75)  # the window runs from the start, not from the end of the request
    t0 = times[0]
    assert [round(t - t0, 6) for t in times] == [0.0, 0.75, 1.5, 2.25, 3.0]


async def test_concurrency_cap_is_never_exceeded() -> None:
    rng = random.Random(7)
    limiter = SlidingWindowLimiter("50/s", max_concurrency=3)
    active = 0
    peak = 0

    async def request() -> None:
        nonlocal active, peak
        await anyio.sleep(rng.random())
        async with limiter.slot():
            active += 1
            peak = max(peak, active)
            assert limiter.in_flight == active <= 3
            await anyio.sleep(rng.random() * 0.5)
            active -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(request)
    assert peak == 3
    assert limiter.in_flight == 0


async def test_unlimited_limiter_only_caps_concurrency() -> None:
    limiter = UnlimitedLimiter(2)
    active = peak = 0
    t0 = anyio.current_time()

    async def request() -> None:
        nonlocal active, peak
        async with limiter.slot() as slot:
            active += 1
            peak = max(peak, active)
            slot.record(429, 30.0)  # no pause: unlimited means unlimited
            await anyio.sleep(1)
            active -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(request)
    assert peak == 2
    assert anyio.current_time() - t0 == pytest.approx(3.0)
    assert limiter.throttled == 6
    assert limiter.pause_remaining() == 0


async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = SlidingWindowLimiter("1/s", max_concurrency=1)
    order: list[int] = []

    async def request(number: int) -> None:
        await anyio.sleep(number * 0.01)  # arrive in this order, all while the first slot is held
        async with limiter.slot():
            order.append(number)
            await anyio.sleep(0.5 if number % 2 else 1.5)

    async with anyio.create_task_group() as tg:
        for number in range(12):
            tg.start_soon(request, number)
    assert order == list(range(12))


async def test_a_cancelled_waiter_takes_no_slot_and_does_not_block_the_queue() -> None:
    limiter = SlidingWindowLimiter("1/10s")
    t0 = anyio.current_time()
    entered: list[tuple[str, float]] = []

    async def request(name: str, delay: float, give_up_after: float = math.inf) -> None:
        await anyio.sleep(delay)
        with anyio.move_on_after(give_up_after):
            async with limiter.slot():
                entered.append((name, anyio.current_time() - t0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, "first", 0)
        tg.start_soon(request, "impatient", 1, 3)  # head of the queue, gives up at t=4
        tg.start_soon(request, "patient", 2)  # queued behind it
        await anyio.sleep(5)
        assert limiter.waiting == 1  # the impatient waiter is gone, nothing left behind
    assert entered == [("first", 0.0), ("patient", pytest.approx(10.0))]
    assert limiter.granted == 2
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_cancelling_a_waiter_for_the_concurrency_cap_wakes_the_next() -> None:
    limiter = UnlimitedLimiter(1)
    entered: list[str] = []
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.slot():
            entered.append("holder")
            await release.wait()

    async def waiter(name: str, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            async with limiter.slot():
                entered.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.sleep(0.1)
        scope = anyio.CancelScope()
        tg.start_soon(waiter, "cancelled", scope)
        await anyio.sleep(0.1)
        tg.start_soon(waiter, "next")
        await anyio.sleep(0.1)
        scope.cancel()
        await anyio.sleep(0.1)
        assert limiter.waiting == 1
        release.set()
    assert entered == ["holder", "next"]
    assert limiter.in_flight == 0


async def test_cancellation_storm_leaks_nothing_and_keeps_the_windows() -> None:
    rng = random.Random(11)
    limiter = SlidingWindowLimiter("4/s,10/5s", max_concurrency=3)
    starts: list[float] = []
    completed = 0

    async def request() -> None:
        nonlocal completed
        await anyio.sleep(rng.random() * 20)
        with anyio.move_on_after(rng.choice([0.0, 0.5, 1.0, 2.0, 5.0, 30.0])):
            async with limiter.slot() as slot:
                starts.append(slot.start_time)
                await anyio.sleep(rng.random())
            completed += 1

    async with anyio.create_task_group() as tg:
        for _ in range(150):
            tg.start_soon(request)
    assert limiter.granted == len(starts)
    assert 0 < completed <= len(starts) < 150
    assert limiter.in_flight == 0 and limiter.waiting == 0
    assert_windows_hold(starts, limiter.windows)


async def test_a_429_with_retry_after_pauses_every_new_start() -> None:
    limiter = SlidingWindowLimiter("100/s")
    t0 = anyio.current_time()
    async with limiter.slot() as slot:
        slot.record(429, 7.5)
        assert limiter.throttled == 1
    assert limiter.pause_remaining() == pytest.approx(7.5)
    starts = []

    async def request() -> None:
        async with limiter.slot() as slot:
            starts.append(slot.start_time - t0)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(request)
    assert min(starts) >= 7.5
    assert max(starts) == pytest.approx(7.5, abs=1e-3)


async def test_a_longer_pause_wins_and_a_shorter_one_does_not_shorten_it() -> None:
    limiter = SlidingWindowLimiter("100/s")
    t0 = anyio.current_time()
    async with limiter.slot() as first, limiter.slot() as second:
        first.record(429, 10)
        second.record(503, 2)  # 503 with Retry-After is a throttle too
    async with limiter.slot() as third:
        assert third.start_time - t0 >= 10
    assert limiter.throttled == 2


async def test_pauses_are_capped_and_bad_values_ignored() -> None:
    limiter = SlidingWindowLimiter("100/s", max_pause=60)
    async with limiter.slot() as slot:
        slot.record(429, 86_400)
    assert limiter.pause_remaining() == pytest.approx(60)
    limiter = SlidingWindowLimiter("100/s")
    for retry_after in (None, -5.0, float("nan"), float("inf"), 0.0):
        async with limiter.slot() as slot:
            slot.record(429, retry_after)
        assert limiter.pause_remaining() == 0
    async with limiter.slot() as slot:
        slot.record(503)  # a 503 without Retry-After is not a throttle
        slot.record(429, 30)  # only the first record counts
    assert limiter.pause_remaining() == 0
    assert limiter.throttled == 5


async def test_a_waiter_already_queued_honours_a_pause_recorded_later() -> None:
    limiter = SlidingWindowLimiter("1/s")
    t0 = anyio.current_time()
    started: list[float] = []

    async def late() -> None:
        async with limiter.slot() as slot:
            started.append(slot.start_time - t0)

    async with anyio.create_task_group() as tg:
        async with limiter.slot() as slot:
            tg.start_soon(late)  # waits for t=1
            await anyio.sleep(0.5)
            slot.record(429, 4)  # at t=0.5: nothing before t=4.5
    assert started == [pytest.approx(4.5, abs=1e-3)]


async def test_margin_widens_every_window() -> None:
    limiter = SlidingWindowLimiter("2/s", margin=0.25)
    times = []
    for _ in range(4):
        async with limiter.slot() as slot:
            times.append(slot.start_time - (times[0] if times else slot.start_time))
    assert times == pytest.approx([0.0, 0.0, 1.25, 1.25], abs=1e-5)
    assert limiter.windows == (RateWindow(2, 1.0),)


async def test_a_slot_context_cannot_be_entered_twice() -> None:
    limiter = SlidingWindowLimiter("5/s")
    context = limiter.slot()
    async with context:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with context:
            pass
