"""Rate limiters against a simulated rate-limited server, on virtual time.

No network and no real waiting: the limiters run unchanged on an asyncio loop whose clock jumps to the next
timer whenever every task is blocked, so minutes of traffic take well under a second. The simulated server
keeps a sliding-window log of the requests it accepted (rejected ones do not count) and answers 429 beyond its
limit; every request reaches it ``LATENCY`` seconds after its slot was granted (plus optional jitter).

Each row keeps 16 workers busy (the demand is always above the limit) and reports:

- accepted/s: requests the server accepted per second (after the first 10 s for adaptive rows, which start
  without knowing the limit), against the long-run rate the server allows;
- 429 share: rejected / all requests the server saw, over the same period;
- worst window: the most client starts in any window of the *server's* windows, wherever it lies, against the
  limit (the sliding-window promise; above the limit means some server alignment sees too many).

Two baselines measured in the same run show what the sliding window fixes: a fixed-window counter (N starts
per window aligned to the client's own clock) and a token bucket with burst N (N/W refill, N tokens).

Run: ``python benchmarks/ratelimit_sim.py`` (prints markdown tables).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import selectors
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from _common import markdown_table

from netverify_async._ratelimit import (
    AdaptiveLimiter,
    RateLimiter,
    SlidingWindowLimiter,
    Slot,
    _StartLog,
    make_limiter,
    parse_rate,
)

WORKERS = 16
LATENCY = 0.1  # seconds from slot grant to the server's count
RESPONSE = 0.15  # seconds from the server's count to the answer
WARMUP = 10.0  # adaptive rows are measured after this


# -- virtual time ------------------------------------------------------------------------------------------


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            return super().select(None)
        self._loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock jumps to the next timer when every task waits."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


# -- the simulated server ----------------------------------------------------------------------------------


class Server:
    """``noise``: the share of requests answered with a random 429, and as many with a random 503, each with
    ``Retry-After: 1`` (see :meth:`answer`), whatever the rate."""

    def __init__(self, spec: str, noise: float = 0.0, seed: int = 7) -> None:
        self.windows = parse_rate(spec)
        self._log = _StartLog(self.windows)
        self.accepted: list[float] = []
        self.rejected: list[float] = []
        self.noise: list[float] = []
        self._noise = noise
        self._rng = random.Random(seed)

    def answer(self, now: float) -> tuple[int, float | None]:
        """The status and Retry-After of one request: a random fault first, else the limit's verdict."""
        if self._noise:
            draw = self._rng.random()
            if draw < 2 * self._noise:
                self.noise.append(now)
                return (429 if draw < self._noise else 503), 1.0
        return self.handle(now), None

    def handle(self, now: float) -> int:
        if self._log.earliest(now) <= now:
            self._log.add(now)
            self.accepted.append(now)
            return 200
        self.rejected.append(now)
        return 429

    @property
    def allowed_rate(self) -> float:
        return min(w.rate for w in self.windows)


# -- baselines: what a naive client does -------------------------------------------------------------------


class _NoFeedback:
    def record(self, status_code: int | None, retry_after: float | None = None) -> None:
        pass


class FixedWindowCounter:
    """N starts per window [kW, (k+1)W) of the client's own clock: up to 2N in a window across a boundary."""

    def __init__(self, limit: int, seconds: float) -> None:
        self._limit, self._seconds = limit, seconds
        self._window_index = -1
        self._count = 0
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        async with self._lock:
            while True:
                now = anyio.current_time()
                index = math.floor(now / self._seconds)
                if index != self._window_index:
                    self._window_index, self._count = index, 0
                if self._count < self._limit:
                    self._count += 1
                    break
                await anyio.sleep((index + 1) * self._seconds - now)
        yield _NoFeedback()


class BurstTokenBucket:
    """Refills N/W tokens per second up to N: a full bucket plus the refill puts nearly 2N in one window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self._rate, self._capacity = limit / seconds, float(limit)
        self._tokens = float(limit)
        self._last: float | None = None
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        async with self._lock:
            while True:
                now = anyio.current_time()
                if self._last is not None:
                    self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerate float rounding in the refill
                    self._tokens = max(0.0, self._tokens - 1)
                    break
                await anyio.sleep((1 - self._tokens) / self._rate + 1e-6)
        yield _NoFeedback()


# -- one run -----------------------------------------------------------------------------------------------


def max_in_window(starts: list[float], seconds: float) -> int:
    import bisect

    ordered = sorted(starts)
    return max(
        (bisect.bisect_left(ordered, t + seconds, lo=i) - i for i, t in enumerate(ordered)),
        default=0,
    )


async def simulate(
    limiter: RateLimiter,
    server: Server,
    duration: float,
    *,
    think: float = 0.0,
    jitter: float = 0.0,
    seed: int = 1,
    workers: int = WORKERS,
) -> dict[str, Any]:
    """Run WORKERS workers for ``duration``; each pauses ``think`` seconds on average (exponential) between
    requests (0: saturating demand). Returns the client's start times and a trace of the adaptive rate."""
    rng = random.Random(seed)
    t0 = anyio.current_time()
    starts: list[float] = []
    trace: list[tuple[float, float]] = []

    async def worker() -> None:
        while anyio.current_time() - t0 < duration:
            if think:
                await anyio.sleep(rng.expovariate(1 / think))
            async with limiter.slot() as slot:
                starts.append(anyio.current_time() - t0)
                await anyio.sleep(LATENCY + jitter * rng.random())
                status, retry_after = server.answer(anyio.current_time() - t0)
                await anyio.sleep(RESPONSE)
                slot.record(status, retry_after)

    async def sampler() -> None:
        while anyio.current_time() - t0 < duration:
            await anyio.sleep(1.0)
            rate = getattr(limiter, "current_rate", None)
            trace.append((anyio.current_time() - t0, rate if rate is not None else math.nan))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler)
        for _ in range(workers):
            tg.start_soon(worker)
    return {"starts": starts, "trace": trace}


@dataclasses.dataclass
class Case:
    section: str
    client: str
    factory: Callable[[], RateLimiter]
    server: str
    duration: float = 300.0
    warmup: float = 0.0
    think: float = 0.0
    jitter: float = 0.0


def think_for(spec: str) -> float:
    """A think time that makes the 16 workers offer about twice the server's long-run rate, in bursts."""
    allowed = min(w.rate for w in parse_rate(spec))
    return WORKERS / (2 * allowed) - (LATENCY + RESPONSE)


CASES = [
    # Bursty demand: the same random workload for each limiter.
    Case(
        "bursty demand",
        "fixed-window counter, 5 per 5 s",
        lambda: FixedWindowCounter(5, 5.0),
        "5/5s",
        think=think_for("5/5s"),
    ),
    Case(
        "bursty demand",
        "token bucket 1/s, burst 5",
        lambda: BurstTokenBucket(5, 5.0),
        "5/5s",
        think=think_for("5/5s"),
    ),
    Case(
        "bursty demand",
        "SlidingWindowLimiter('5/5s')",
        lambda: SlidingWindowLimiter("5/5s"),
        "5/5s",
        think=think_for("5/5s"),
    ),
    Case(
        "bursty demand",
        "fixed-window counter, 3 per s",
        lambda: FixedWindowCounter(3, 1.0),
        "3/s,180/min",
        think=think_for("3/s"),
    ),
    Case(
        "bursty demand",
        "SlidingWindowLimiter('3/s,180/min')",
        lambda: SlidingWindowLimiter("3/s,180/min"),
        "3/s,180/min",
        think=think_for("3/s"),
    ),
    # Saturating demand: how much of the limit is used.
    Case("saturating", "SlidingWindowLimiter('5/5s')", lambda: SlidingWindowLimiter("5/5s"), "5/5s"),
    Case("saturating", "SlidingWindowLimiter('20/s')", lambda: SlidingWindowLimiter("20/s"), "20/s", 120),
    Case(
        "saturating",
        "SlidingWindowLimiter('3/s,180/min')",
        lambda: SlidingWindowLimiter("3/s,180/min"),
        "3/s,180/min",
    ),
    # 0-100 ms of random delay between the client's start and the server's count.
    Case("jitter", "SlidingWindowLimiter('5/5s')", lambda: SlidingWindowLimiter("5/5s"), "5/5s", jitter=0.1),
    Case(
        "jitter",
        "SlidingWindowLimiter('5/5s', margin=0.1)",
        lambda: SlidingWindowLimiter("5/5s", margin=0.1),
        "5/5s",
        jitter=0.1,
    ),
    Case(
        "jitter", "make_limiter('5/5s', margin=0)", lambda: make_limiter("5/5s", margin=0), "5/5s", jitter=0.1
    ),
    Case("jitter", "make_limiter('5/5s') (client default)", lambda: make_limiter("5/5s"), "5/5s", jitter=0.1),
    # The limit is unknown or configured too high: measured after the first 10 s.
    Case("adaptive", "AdaptiveLimiter()", AdaptiveLimiter, "10/s", 120, WARMUP),
    Case(
        "adaptive",
        "AdaptiveLimiter(ceiling='20/s')",
        lambda: AdaptiveLimiter(ceiling="20/s"),
        "10/s",
        120,
        WARMUP,
    ),
    Case(
        "adaptive",
        "AdaptiveLimiter(ceiling='20/s')",
        lambda: AdaptiveLimiter(ceiling="20/s"),
        "15/5s",
        warmup=WARMUP,
    ),
    Case("adaptive", "AdaptiveLimiter()", AdaptiveLimiter, "5/5s", warmup=WARMUP),
]


#: The opening: AdaptiveLimiter() against limits it is not told, judged as in benchmarks/ratelimit.py.
OPENING_LIMITS = ("5/5s", "15/5s", "10/s", "3/s,180/min", "20/s")
OPENING_RUN = 90.0
#: Random 429s and 503s: the plain sliding window against the client's default limiter for the same limit.
NOISE = 0.005
NOISE_LIMITS = ("50/s", "150/s")
NOISE_RUN = 120.0
NOISE_WORKERS = 64


def opening_row(spec: str, server: Server) -> list[object]:
    limit = server.allowed_rate
    early = sum(1 for t in server.rejected if t < 30)
    by_30 = sum(1 for t in server.accepted if 20 <= t < 30) / 10
    after = sum(1 for t in server.accepted if 30 <= t < OPENING_RUN) / (OPENING_RUN - 30)
    refused_after = sum(1 for t in server.rejected if 30 <= t < OPENING_RUN)
    seen = refused_after + after * (OPENING_RUN - 30)
    return [spec, early, f"{by_30 / limit:.0%}", f"{after / limit:.1%}", f"{refused_after / seen:.1%}"]


def summarise(case: Case, server: Server, starts: list[float]) -> list[object]:
    measured = [t for t in starts if t >= case.warmup]
    accepted = [t for t in server.accepted if case.warmup <= t < case.duration]
    rejected = [t for t in server.rejected if case.warmup <= t < case.duration]
    seen = len(accepted) + len(rejected)
    worst = ", ".join(f"{max_in_window(measured, w.seconds)} / {w.limit}" for w in server.windows)
    rate = len(accepted) / (case.duration - case.warmup)
    return [
        case.section,
        case.client,
        ",".join(str(w) for w in server.windows),
        f"{case.warmup:.0f}-{case.duration:.0f} s",
        f"{rate:.2f}",
        f"{server.allowed_rate:.2f}",
        f"{rate / server.allowed_rate:.0%}",
        f"{len(rejected) / seen:.1%}" if seen else "-",
        worst,
    ]


async def main() -> None:
    rows: list[list[object]] = []
    convergence: list[tuple[str, list[tuple[float, float]], list[float]]] = []
    for case in CASES:
        server = Server(case.server)
        result = await simulate(case.factory(), server, case.duration, think=case.think, jitter=case.jitter)
        rows.append(summarise(case, server, result["starts"]))
        if case.section == "adaptive" and case.server == "10/s":
            convergence.append((case.client, result["trace"], server.accepted))

    opening_rows: list[list[object]] = []
    for spec in OPENING_LIMITS:
        server = Server(spec)
        await simulate(AdaptiveLimiter(), server, OPENING_RUN, jitter=0.05)
        opening_rows.append(opening_row(spec, server))
    noise_rows: list[list[object]] = []
    for spec in NOISE_LIMITS:
        plain_rate = 0.0
        for label, limiter in (
            (f"SlidingWindowLimiter('{spec}', margin=0.04)", SlidingWindowLimiter(spec, margin=0.04)),
            (f"make_limiter('{spec}') (adaptive under that ceiling)", make_limiter(spec)),
        ):
            server = Server(spec, noise=NOISE)
            await simulate(limiter, server, NOISE_RUN, workers=NOISE_WORKERS)
            rate = sum(1 for t in server.accepted if t < NOISE_RUN) / NOISE_RUN
            plain_rate = plain_rate or rate
            noise_rows.append(
                [spec, label, f"{rate:.1f}", f"{rate / plain_rate:.0%}", len(server.rejected), len(server.noise)]
            )

    print("## Rate limiters against a simulated server (virtual time)\n")
    print(
        markdown_table(
            [
                "demand",
                "client limiter",
                "server limit",
                "measured",
                "accepted/s",
                "allowed/s",
                "efficiency",
                "429 share",
                "most starts in one server window / limit",
            ],
            rows,
            align="lllrrrrrl",
        )
    )
    print(
        f"\n### AdaptiveLimiter() opening against unknown limits ({OPENING_RUN:.0f} s, {WORKERS} workers, "
        "0-50 ms of jitter)\n"
    )
    print(
        markdown_table(
            [
                "server limit",
                "429s 0-30 s",
                "accepted 20-30 s / limit",
                "accepted after 30 s / limit",
                "429 share after 30 s",
            ],
            opening_rows,
        )
    )
    print(
        f"\n### Random 429s: {NOISE:.1%} of answers a random 429 and {NOISE:.1%} a random 503 (Retry-After: 1), "
        f"{NOISE_RUN:.0f} s, {NOISE_WORKERS} workers\n"
    )
    print(
        markdown_table(
            ["server limit", "client limiter", "accepted/s", "vs plain window", "429s of the limit", "random faults"],
            noise_rows,
            align="llrrrr",
        )
    )
    for client, trace, accepted in convergence:
        print(f"\n### {client} against an unknown 10/s limit\n")
        table = []
        for start in range(0, 60, 5):
            rates = [r for t, r in trace if start < t <= start + 5 and not math.isnan(r)]
            count = sum(1 for t in accepted if start <= t < start + 5)
            mean_rate = f"{sum(rates) / len(rates):.2f}" if rates else "off"
            table.append([f"{start}-{start + 5} s", f"{count / 5:.1f}", mean_rate])
        print(markdown_table(["virtual time", "accepted/s", "mean adaptive fill rate /s"], table))


if __name__ == "__main__":
    began = time.perf_counter()
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})
    print(f"\n(simulation took {time.perf_counter() - began:.1f} s of real time)")
