"""The adaptive limiter: slows down on 429, probes upwards again, and never breaks a configured ceiling.

Runs on virtual time on asyncio and trio (see _ratelimit_support). The "server" here is a simulated
sliding-window limit in the same process: what is tested is the controller's reaction to its answers.
"""

from __future__ import annotations

import random

import anyio
import pytest
from _ratelimit_support import max_in_window

from netverify_async import AdaptiveLimiter, make_limiter, parse_rate
from netverify_async._ratelimit import LimiterSlot, _StartLog

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time, pytest.mark.timeout(60)]


class SimulatedServer:
    """Accepts a request when the sliding windows allow it (rejected requests do not count), else 429."""

    def __init__(self, spec: str) -> None:
        self._log = _StartLog(parse_rate(spec))
        self.accepted: list[float] = []
        self.rejected: list[float] = []

    def handle(self, now: float) -> int:
        if self._log.earliest(now) <= now:
            self._log.add(now)
            self.accepted.append(now)
            return 200
        self.rejected.append(now)
        return 429


async def saturate(
    limiter: AdaptiveLimiter,
    server: SimulatedServer,
    seconds: float,
    workers: int = 12,
    jitter: float = 0.05,
) -> None:
    """Keep ``workers`` requests going for ``seconds`` of virtual time (the server's clock starts at 0)."""
    rng = random.Random(3)
    t0 = anyio.current_time()

    async def worker() -> None:
        while anyio.current_time() - t0 < seconds:
            async with limiter.slot() as slot:
                await anyio.sleep(0.05 + jitter * rng.random())  # the request travels to the server
                status = server.handle(anyio.current_time() - t0)
                await anyio.sleep(0.1)
                slot.record(status)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return t0


async def steady(limiter: AdaptiveLimiter, rate: float, seconds: float, status: int = 200) -> LimiterSlot:
    """Send one request every 1/rate seconds, all answered ``status``; returns the last slot."""
    last = None
    for _ in range(round(rate * seconds)):
        async with limiter.slot() as slot:
            slot.record(status)
            last = slot
        await anyio.sleep(1 / rate)
    assert last is not None
    return last


def share_after(server: SimulatedServer, warmup: float) -> tuple[float, float]:
    accepted = [t for t in server.accepted if t >= warmup]
    rejected = [t for t in server.rejected if t >= warmup]
    span = max(server.accepted + server.rejected) - warmup
    return len(accepted) / span, len(rejected) / max(1, len(accepted) + len(rejected))


async def test_pacing_stays_off_until_the_first_throttle() -> None:
    limiter = AdaptiveLimiter()
    t0 = anyio.current_time()
    for _ in range(200):
        async with limiter.slot() as slot:
            slot.record(200)
    assert anyio.current_time() == t0  # nothing was held back
    assert limiter.current_rate is None
    assert limiter.granted == 200 and limiter.throttled == 0


async def test_a_429_cuts_the_rate_below_the_measured_send_rate() -> None:
    limiter = AdaptiveLimiter()
    await steady(limiter, rate=10, seconds=5)
    measured = limiter.measured_rate
    assert measured == pytest.approx(10, rel=0.15)
    async with limiter.slot() as slot:
        slot.record(429)
    first_cut = limiter.current_rate
    assert first_cut == pytest.approx(0.7 * measured, rel=0.01)
    assert limiter.throttled == 1
    # The next request is paced by the new rate; a 429 for it cuts again.
    async with limiter.slot() as slot:
        slot.record(429)
    assert limiter.current_rate is not None and limiter.current_rate < first_cut


async def test_one_overload_is_one_cut_however_many_requests_were_in_flight() -> None:
    limiter = AdaptiveLimiter()
    await steady(limiter, rate=10, seconds=5)
    contexts = [limiter.slot() for _ in range(5)]
    in_flight = [await context.__aenter__() for context in contexts]  # all started before the cut
    for slot in in_flight:
        slot.record(429)
    assert limiter.throttled == 5
    assert limiter.current_rate == pytest.approx(0.7 * limiter.measured_rate, rel=0.2)
    cut = limiter.current_rate
    for context in contexts:
        await context.__aexit__(None, None, None)
    assert limiter.current_rate == cut
    assert limiter.in_flight == 0


async def test_the_rate_recovers_and_probes_above_the_throttled_level() -> None:
    limiter = AdaptiveLimiter(recovery_time=4)
    server = SimulatedServer("1000/s")  # never throttles by itself
    await steady(limiter, rate=10, seconds=3)
    async with limiter.slot() as slot:
        slot.record(429)
    cut = limiter.current_rate
    assert cut is not None and cut < 10
    await saturate(limiter, server, seconds=4)
    back = limiter.current_rate
    assert back is not None and back > cut
    await saturate(limiter, server, seconds=4)
    probing = limiter.current_rate
    assert probing is not None and probing > 1.2 * back and probing > 10


async def test_finds_a_server_limit_it_was_not_told() -> None:
    limiter = AdaptiveLimiter()
    server = SimulatedServer("10/s")
    await saturate(limiter, server, seconds=60)
    rate, rejected_share = share_after(server, warmup=10)
    assert 7.5 <= rate <= 10.0
    assert rejected_share < 0.08
    assert limiter.current_rate is not None and 5 < limiter.current_rate < 20
    assert limiter.throttled == len(server.rejected)


async def test_a_ceiling_that_is_too_high_corrects_itself_and_is_never_exceeded() -> None:
    limiter = AdaptiveLimiter(ceiling="20/s")
    starts: list[float] = []
    original_grant = limiter._on_grant

    def spy(start: float) -> None:
        starts.append(start)
        original_grant(start)

    limiter._on_grant = spy  # type: ignore[method-assign]
    server = SimulatedServer("10/s")
    await saturate(limiter, server, seconds=40, workers=40)
    assert max_in_window(starts, 1.0) <= 20
    rate, rejected_share = share_after(server, warmup=10)
    assert rate >= 7.5
    assert rejected_share < 0.08
    assert limiter.current_rate is not None and limiter.current_rate < 20


async def test_a_ceiling_the_server_accepts_costs_nothing() -> None:
    limiter = AdaptiveLimiter(ceiling="15/5s")
    server = SimulatedServer("15/5s")
    await saturate(limiter, server, seconds=30, jitter=0)
    assert server.rejected == []
    assert limiter.current_rate is None
    assert len(server.accepted) >= 15 * 6


async def test_a_margin_absorbs_network_jitter() -> None:
    # Requests take 50 to 100 ms to reach the server: exact windows get the odd 429, a 50 ms margin none.
    exact = SimulatedServer("15/5s")
    await saturate(AdaptiveLimiter(ceiling="15/5s"), exact, seconds=30, jitter=0.05)
    assert exact.rejected
    padded = SimulatedServer("15/5s")
    limiter = AdaptiveLimiter(ceiling="15/5s", margin=0.05)
    await saturate(limiter, padded, seconds=30, jitter=0.05)
    assert padded.rejected == []
    assert limiter.current_rate is None


async def test_transport_failures_and_server_errors_leave_the_rate_alone() -> None:
    limiter = AdaptiveLimiter(initial_rate=5)
    await steady(limiter, rate=5, seconds=2)
    rate = limiter.current_rate
    for status in (None, 500, 502, 503, 504):
        async with limiter.slot() as slot:
            slot.record(status)
    assert limiter.current_rate == rate
    assert limiter.throttled == 0


async def test_initial_rate_paces_from_the_first_request() -> None:
    limiter = AdaptiveLimiter(initial_rate=4)
    t0 = anyio.current_time()
    starts = []
    for _ in range(9):
        async with limiter.slot() as slot:
            starts.append(slot.start_time - t0)
            slot.record(200)
    assert starts == pytest.approx([0.25 * i for i in range(9)], abs=1e-4)
    assert limiter.current_rate == pytest.approx(4)


async def test_the_rate_stays_between_min_and_max() -> None:
    limiter = AdaptiveLimiter(initial_rate=2, min_rate=1, max_rate=3)
    for _ in range(10):
        async with limiter.slot() as slot:
            slot.record(429)
    assert limiter.current_rate == 1
    server = SimulatedServer("100/s")
    await saturate(limiter, server, seconds=30)
    assert limiter.current_rate == 3
    assert max_in_window(server.accepted, 10.0) <= 3 * 10 + 1


async def test_retry_after_pauses_the_adaptive_limiter_too() -> None:
    limiter = AdaptiveLimiter(ceiling="50/s")
    t0 = anyio.current_time()
    async with limiter.slot() as slot:
        slot.record(429, 3.0)
    async with limiter.slot() as slot:
        assert slot.start_time - t0 >= 3.0
    assert limiter.pause_remaining() == 0


async def test_a_503_with_retry_after_pauses_without_a_cut() -> None:
    limiter = AdaptiveLimiter(initial_rate=5)
    await steady(limiter, rate=5, seconds=2)
    rate = limiter.current_rate
    t0 = anyio.current_time()
    async with limiter.slot() as slot:
        slot.record(503, 2.0)
    assert limiter.throttled == 1
    assert limiter.current_rate == rate  # unavailable is not "too fast"
    async with limiter.slot() as slot:
        assert slot.start_time - t0 >= 2.0
        slot.record(200)


async def test_a_429_soon_after_a_pause_cuts_from_the_fill_rate_not_the_idle_time() -> None:
    limiter = AdaptiveLimiter(initial_rate=10)
    await steady(limiter, rate=10, seconds=5)
    async with limiter.slot() as slot:
        slot.record(429, 3.0)  # cut to 7/s, and a 3 s pause with no starts at all
    assert limiter.current_rate == pytest.approx(7.0, rel=0.05)
    async with limiter.slot() as slot:  # the first start after the pause
        before = limiter.current_rate
        assert before is not None
        assert limiter.measured_rate < 0.5 * before  # the meter has just folded in the idle pause
        slot.record(429)
    assert limiter.current_rate == pytest.approx(0.7 * before, rel=0.01)


async def test_the_client_default_widens_the_windows_by_four_percent() -> None:
    limiter = make_limiter("2/s")
    t0 = anyio.current_time()
    starts = []
    for _ in range(5):
        async with limiter.slot() as slot:
            starts.append(anyio.current_time() - t0)
            slot.record(200)
    assert starts == pytest.approx([0, 0, 1.04, 1.04, 2.08], abs=1e-4)
    slow = make_limiter("1/20s")  # the margin is capped at a quarter second
    t0 = anyio.current_time()
    for _ in range(2):
        async with slow.slot():
            pass
    assert anyio.current_time() - t0 == pytest.approx(20.25, abs=1e-4)
    exact = make_limiter("2/s", margin=0)
    t0 = anyio.current_time()
    for _ in range(3):
        async with exact.slot():
            pass
    assert anyio.current_time() - t0 == pytest.approx(1.0, abs=1e-4)
