"""The adaptive limiter: opens paced, probes upwards, backs off on real overload, ignores isolated 429s, and never
breaks a configured ceiling.

Runs on virtual time on asyncio and trio (see _ratelimit_support). The "server" here is a simulated
sliding-window limit in the same process: what is tested is the controller's reaction to its answers.
"""

from __future__ import annotations

import itertools
import math
import random

import anyio
import pytest
from _ratelimit_support import max_in_window

from netverify_async import AdaptiveLimiter, SlidingWindowLimiter, make_limiter, parse_rate
from netverify_async._ratelimit import LimiterSlot, RateLimiter, _Prober, _StartLog

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time, pytest.mark.timeout(60)]


class SimulatedServer:
    """Accepts a request when the sliding windows allow it (rejected requests do not count), else 429.

    ``noise`` is the share of requests answered with a random 429 and (as many) a random 503, both with
    ``Retry-After: 1``, whatever the rate: what a gateway in front of the API may do now and then.
    """

    def __init__(self, spec: str, noise: float = 0.0, seed: int = 5) -> None:
        self._log = _StartLog(parse_rate(spec))
        self.allowed_rate = min(w.rate for w in parse_rate(spec))
        self.accepted: list[float] = []
        self.rejected: list[float] = []
        self.noise: list[float] = []
        self._noise = noise
        self._rng = random.Random(seed)

    def handle(self, now: float) -> tuple[int, float | None]:
        draw = self._rng.random()
        if draw < 2 * self._noise:
            self.noise.append(now)
            return (429 if draw < self._noise else 503), 1.0
        if self._log.earliest(now) <= now:
            self._log.add(now)
            self.accepted.append(now)
            return 200, None
        self.rejected.append(now)
        return 429, None

    def rate(self, start: float, end: float) -> float:
        """Accepted requests per second in [start, end)."""
        return sum(1 for t in self.accepted if start <= t < end) / (end - start)

    def refused(self, start: float, end: float) -> int:
        """429s of the limit itself (not the random ones) in [start, end)."""
        return sum(1 for t in self.rejected if start <= t < end)


async def saturate(
    limiter: RateLimiter,
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
                status, retry_after = server.handle(anyio.current_time() - t0)
                await anyio.sleep(0.1)
                slot.record(status, retry_after)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)


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


# -- the opening ------------------------------------------------------------------------------------------------


async def test_the_opening_is_paced_at_the_most_conservative_documented_window() -> None:
    limiter = AdaptiveLimiter()
    assert limiter.opening == parse_rate("5/5s")
    assert limiter.current_rate == pytest.approx(0.95)
    t0 = anyio.current_time()
    starts = []
    for _ in range(6):
        async with limiter.slot() as slot:
            starts.append(slot.start_time - t0)
            slot.record(200)
    # evenly spaced, never a burst: any 5 s holds at most 5 starts, so a "5 per 5 s" account sees no 429
    assert starts == pytest.approx([i / 0.95 for i in range(6)], abs=1e-4)
    assert max_in_window(starts, 5.0) == 5


async def test_the_opening_is_configurable() -> None:
    limiter = AdaptiveLimiter(opening="15/5s")
    assert limiter.current_rate == pytest.approx(0.95 * 3)
    assert make_limiter("adaptive").current_rate == pytest.approx(0.95)  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", ["5/5s", "15/5s", "10/s"])
async def test_the_opening_finds_an_unknown_limit_with_few_429s(spec: str) -> None:
    limiter = AdaptiveLimiter()
    server = SimulatedServer(spec)
    await saturate(limiter, server, seconds=90)
    limit = server.allowed_rate
    assert server.refused(0, 30) <= 3
    assert server.rate(20, 30) >= 0.8 * limit
    assert server.rate(30, 90) >= 0.9 * limit
    late = server.refused(30, 90)
    assert late / (late + server.rate(30, 90) * 60) < 0.03
    assert limiter.known_good_rate <= limit  # what it settled on was never refused


async def test_probing_steps_up_once_per_hold_without_429s() -> None:
    limiter = AdaptiveLimiter(recovery_time=5)
    server = SimulatedServer("1000/s")
    seen: list[float] = []

    async def watch() -> None:
        while True:
            rate = limiter.current_rate
            if rate is not None and (not seen or rate != seen[-1]):
                seen.append(rate)
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await saturate(limiter, server, seconds=21)
        tg.cancel_scope.cancel()
    # 0.95/s for a hold, then twice that per hold; after two such steps four times, but each step adds at
    # most 2 requests per round trip (here 0.15 to 0.2 s: 10 to 13 more per second)
    assert seen[:3] == pytest.approx([0.95, 1.9, 3.8])
    assert all(10 <= later - earlier <= 2 / 0.15 for earlier, later in itertools.pairwise(seen[2:]))
    assert len(seen) == 5
    assert limiter.failed_rate is None
    assert server.rejected == []


async def test_a_slow_round_trip_makes_the_steps_smaller() -> None:
    limiter = AdaptiveLimiter(initial_rate=10)
    seen: list[float] = [10.0]
    rng = random.Random(1)

    async def worker() -> None:
        while anyio.current_time() < t0 + 30:
            async with limiter.slot() as slot:
                await anyio.sleep(0.9 + 0.2 * rng.random())  # an upload of a few images: about a second
                slot.record(200)
                rate = limiter.current_rate
                if rate is not None and rate != seen[-1]:
                    seen.append(rate)

    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(worker)
    steps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    # doubling would go 10, 20, 40: with a round trip of about 1 s, each step adds about 2/s instead
    assert len(steps) >= 4
    assert all(0 < step <= 2 / 0.9 for step in steps)  # a probe that overshoots costs about 2 429s


async def test_a_failed_probe_goes_back_to_the_search_between_known_good_and_failed() -> None:
    limiter = AdaptiveLimiter()
    server = SimulatedServer("15/5s")
    await saturate(limiter, server, seconds=14)  # the probe at 3.8/s failed
    assert len(server.rejected) == 1
    assert limiter.known_good_rate == pytest.approx(1.9)
    failed = limiter.failed_rate
    assert failed is not None and 3.0 <= failed <= 3.8
    assert limiter.current_rate == pytest.approx((1.9 * failed) ** 0.5)  # the geometric middle


async def test_after_a_failed_probe_the_server_window_drains_before_the_next_start() -> None:
    limiter = AdaptiveLimiter(initial_rate=2, recovery_time=5)
    accepted: list[float] = []
    for _ in range(11):  # 5 s at 2/s: the hold is over, the next answer promotes 2/s and starts the probe
        async with limiter.slot() as slot:
            accepted.append(slot.start_time)
            slot.record(200)
    assert limiter.current_rate == 4
    for _ in range(4):  # one second of the probe at 4/s goes through
        async with limiter.slot() as slot:
            accepted.append(slot.start_time)
            slot.record(200)
    async with limiter.slot() as slot:  # then the server's 1 s window is full
        refused_at = slot.start_time
        slot.record(429)
    assert limiter.known_good_rate == 2 and limiter.current_rate is not None and limiter.current_rate < 4
    for _ in range(8):
        async with limiter.slot() as slot:
            accepted.append(slot.start_time)
            slot.record(200)
    # no second of the server, wherever it lies, sees more accepted starts than it held when it refused
    held = sum(1 for t in accepted if refused_at - 1 < t <= refused_at)
    assert max_in_window([t for t in accepted if t > refused_at - 1], 1.0) <= held
    assert min(t for t in accepted if t > refused_at) > refused_at  # a pause, not an instant restart


async def test_a_run_of_failed_probes_costs_one_429_each() -> None:
    limiter = AdaptiveLimiter(initial_rate=4, recovery_time=5)
    server = SimulatedServer("24/5s")
    await saturate(limiter, server, seconds=40, jitter=0)
    assert limiter.throttled == len(server.rejected) <= 3
    assert 0.9 * 4.8 <= limiter.known_good_rate <= 4.8
    assert server.rate(10, 40) >= 0.9 * 4.8


async def test_after_converging_it_checks_the_failed_rate_again_and_follows_a_raised_limit() -> None:
    limiter = AdaptiveLimiter()
    low = SimulatedServer("10/s")
    await saturate(limiter, low, seconds=60)
    settled = limiter.known_good_rate
    assert 9 <= settled <= 10
    high = SimulatedServer("40/s")  # the account's limit was raised
    await saturate(limiter, high, seconds=120, workers=40)
    assert limiter.known_good_rate > 30
    assert high.rate(100, 120) >= 0.75 * 40


async def test_a_known_limit_skips_the_probing() -> None:
    limiter = make_limiter("15/5s")
    assert isinstance(limiter, AdaptiveLimiter) and limiter.current_rate is None
    server = SimulatedServer("15/5s")
    await saturate(limiter, server, seconds=30, jitter=0)
    assert server.refused(0, 30) == 0
    assert server.rate(0, 30) >= 0.9 * 3


# -- real overload and noise ------------------------------------------------------------------------------------


async def test_an_isolated_429_at_the_known_good_rate_is_noise() -> None:
    limiter = AdaptiveLimiter(initial_rate=10)
    await steady(limiter, rate=10, seconds=3)
    t0 = anyio.current_time()
    async with limiter.slot() as slot:
        slot.record(429, 2.0)
    assert limiter.current_rate == 10  # no cut
    assert limiter.throttled == 1
    async with limiter.slot() as slot:
        assert slot.start_time - t0 >= 2.0  # but the pause is honoured
        slot.record(200)


async def test_429s_close_together_at_the_known_good_rate_are_an_overload() -> None:
    limiter = AdaptiveLimiter(initial_rate=10)
    await steady(limiter, rate=10, seconds=3)
    for _ in range(2):
        async with limiter.slot() as slot:
            slot.record(429)
    assert limiter.current_rate is not None and limiter.current_rate <= 0.7 * 10 + 1e-9
    assert limiter.failed_rate is not None and limiter.failed_rate <= 10


async def test_one_overload_is_one_cut_however_many_requests_were_in_flight() -> None:
    limiter = AdaptiveLimiter(initial_rate=10)
    await steady(limiter, rate=10, seconds=3)
    contexts = [limiter.slot() for _ in range(5)]
    in_flight = [await context.__aenter__() for context in contexts]  # all started before the cut
    for slot in in_flight:
        slot.record(429)
    assert limiter.throttled == 5
    cut = limiter.current_rate
    assert cut is not None and cut <= 7.0 + 1e-9
    assert cut >= 0.7 * 0.7 * 10  # cut once, not five times
    for context in contexts:
        await context.__aexit__(None, None, None)
    assert limiter.current_rate == cut
    assert limiter.in_flight == 0


async def test_random_429s_cost_no_more_than_a_plain_sliding_window() -> None:
    # The soak: 0.5 % of answers a random 429 and 0.5 % a random 503, each with Retry-After: 1.
    plain_server = SimulatedServer("50/s", noise=0.005)
    await saturate(SlidingWindowLimiter("50/s", margin=0.04), plain_server, seconds=120, workers=40)
    adaptive_server = SimulatedServer("50/s", noise=0.005)
    limiter = make_limiter("50/s")
    await saturate(limiter, adaptive_server, seconds=120, workers=40)
    assert len(adaptive_server.noise) >= 30  # the noise was there
    assert adaptive_server.rate(0, 120) >= 0.95 * plain_server.rate(0, 120)
    assert isinstance(limiter, AdaptiveLimiter) and limiter.current_rate is None  # never cut


async def test_with_random_429s_a_ceiling_that_is_too_high_still_corrects_itself() -> None:
    limiter = AdaptiveLimiter(ceiling="20/s")
    server = SimulatedServer("10/s", noise=0.005)
    await saturate(limiter, server, seconds=90, workers=20)
    assert server.rate(30, 90) >= 0.8 * 10  # the random 503s and 429s pause everything a little
    late = server.refused(30, 90)
    assert late / (late + server.rate(30, 90) * 60) < 0.03
    assert limiter.current_rate is not None and limiter.current_rate <= 10


async def test_without_a_ceiling_random_429s_still_let_it_find_the_limit() -> None:
    limiter = AdaptiveLimiter()
    server = SimulatedServer("10/s", noise=0.005)
    await saturate(limiter, server, seconds=120, workers=20)
    # At a few requests per second one random 429 during a probe looks like the limit (here at 3.8/s and at
    # 3.2/s): the search settles low until its check of the failed rate a minute later, then finds 10/s.
    assert limiter.throttled > len(server.rejected)
    assert server.rate(100, 120) >= 0.8 * 10  # the random Retry-After pauses cost about a tenth
    assert server.refused(0, 120) <= 5


# -- the ceiling ------------------------------------------------------------------------------------------------


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
    assert rate >= 8.5
    assert rejected_share < 0.03
    assert limiter.current_rate is not None and limiter.current_rate < 20


async def test_probing_never_exceeds_the_ceiling() -> None:
    limiter = AdaptiveLimiter(initial_rate=2, ceiling="8/s")
    starts: list[float] = []
    original_grant = limiter._on_grant

    def spy(start: float) -> None:
        starts.append(start)
        original_grant(start)

    limiter._on_grant = spy  # type: ignore[method-assign]
    server = SimulatedServer("100/s")
    await saturate(limiter, server, seconds=30, workers=20)
    assert max_in_window(starts, 1.0) <= 8
    assert limiter.current_rate is None  # the probe reached the ceiling: pacing is off, the ceiling rules
    assert server.rate(20, 30) >= 0.9 * 8


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


# -- other answers and settings ---------------------------------------------------------------------------------


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
    assert limiter.failed_rate == 1  # nothing was accepted: the bound from the server's count is the floor
    server = SimulatedServer("100/s")
    await saturate(limiter, server, seconds=120)  # the failed rate is checked again after a minute
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
    for _ in range(3):  # even several of them
        async with limiter.slot() as slot:
            slot.record(503, 2.0)
    assert limiter.throttled == 3
    assert limiter.current_rate == rate  # unavailable is not "too fast"
    async with limiter.slot() as slot:
        assert slot.start_time - t0 >= 2.0
        slot.record(200)


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


# -- the policy alone (pure bookkeeping) ------------------------------------------------------------------------


def _prober(good: float, rate: float | None, failed: float = math.inf) -> _Prober:
    return _Prober(
        hold=5.0,
        growth=2.0,
        beta=0.7,
        min_rate=0.5,
        max_rate=math.inf,
        top=math.inf,
        good=good,
        rate=rate,
        failed=failed,
    )


def test_the_search_steps_between_known_good_and_failed() -> None:
    prober = _prober(good=4.0, rate=4.0, failed=20.0)
    prober.starts = 20
    assert prober.succeeded(5.0)
    assert prober.rate == 8.0  # twice the known-good rate stays clear of the failure
    prober = _prober(good=4.0, rate=4.0, failed=6.0)
    prober.starts = 20
    assert prober.succeeded(5.0)
    assert prober.rate == pytest.approx(math.sqrt(24.0))  # else the geometric middle
    prober = _prober(good=4.0, rate=4.0, failed=4.1)
    prober.starts = 20
    assert not prober.succeeded(5.0)  # converged: it rests, and checks the failure again a minute later
    assert prober.reprobe_at == 65.0
    prober.starts = 1000
    assert prober.succeeded(65.0)
    assert prober.rate == pytest.approx(4.1 * 1.05)


def test_a_rate_the_client_did_not_use_is_not_promoted() -> None:
    prober = _prober(good=4.0, rate=4.0)
    prober.starts = 5  # a quarter of what 4/s for 5 s would have sent: the demand was lower
    assert not prober.succeeded(5.0)
    assert prober.rate == 4.0


def test_repeated_isolated_429s_just_under_a_failure_step_down_a_little() -> None:
    prober = _prober(good=10.03, rate=10.03, failed=10.5)  # converged, perhaps a hair above the limit
    assert prober.isolated_throttle(100.0)
    assert prober.rate == pytest.approx(10.03 * 0.975)
    assert prober.failed == 10.03
    searching = _prober(good=5.0, rate=5.0, failed=10.0)  # far from the failure: noise changes nothing
    assert not searching.isolated_throttle(100.0)
    assert searching.rate == 5.0


class ZeroBurstServer(SimulatedServer):
    """A proxy's ``limit_req`` without burst: a request is refused when it comes less than 1/rate after the
    last accepted one, however few came in the last second."""

    def __init__(self, rate: float) -> None:
        super().__init__(f"{rate:g}/s")
        self._gap = 1.0 / rate
        self._last = -math.inf

    def handle(self, now: float) -> tuple[int, float | None]:
        if now - self._last >= self._gap:
            self._last = now
            self.accepted.append(now)
            return 200, None
        self.rejected.append(now)
        return 429, None


async def test_a_refusal_early_in_a_burst_is_no_bound_of_a_per_second_rate() -> None:
    # Started too fast against a zero-burst proxy, the first 429 comes after one or two accepted requests: a
    # count over that first fraction of a second would "prove" a limit of 2/s and hold the rate there.
    server = ZeroBurstServer(20)
    limiter = AdaptiveLimiter(initial_rate=40, max_concurrency=8)
    await saturate(limiter, server, 30, workers=8)
    assert server.rejected and server.rejected[0] < 1.0  # the burst was refused at once
    assert limiter.known_good_rate is not None and limiter.known_good_rate >= 10, limiter.known_good_rate
    assert server.rate(15, 30) >= 0.4 * 20
