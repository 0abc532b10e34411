"""Client-side rate control: every HTTP attempt asks a limiter for a slot first.

Jumio limits each account to a number of request *starts* per time window (for example 5 per 5 s, or the older
3 per second and 180 per minute) and answers 429 beyond it. The server's windows may be aligned anywhere
in time, so the only safe promise is the sliding-window one: **no interval of length W, wherever it lies,
contains more than N starts**. A fixed-window counter breaks that promise at its boundaries (up to 2N starts
in W) and so does a token bucket whose burst exceeds N.

The limiters here keep that promise exactly:

- :class:`SlidingWindowLimiter` remembers the start times of the last N requests for each window; the next
  request may start at the earliest at ``starts[-N] + W``. All windows are enforced at once, plus an optional
  cap on requests in flight. Waiters are served first come, first served; a waiter that is cancelled takes
  nothing. A 429 (or 503) that carries ``Retry-After`` pauses every new start until the pause is over.
- :class:`AdaptiveLimiter` finds the rate the server accepts from its 429 answers (it opens paced at the most
  conservative documented limit and probes upwards over a token bucket, telling overload from isolated 429s,
  see its docstring), optionally under a configured sliding-window ceiling, so a configured limit that is too
  high corrects itself.
- :class:`UnlimitedLimiter` only caps the number of requests in flight.
- :class:`netverify_async.redis.RedisRateLimiter` shares one limit between processes and hosts.

All of them follow the :class:`RateLimiter` protocol, which is all the client relies on::

    async with limiter.slot() as slot:
        response = await send()
        slot.record(response.status_code, retry_after)

The in-process limiters use anyio only, so they work under asyncio and trio. They are not thread-safe: use
one limiter per event loop.

Why one module of about 900 lines: it holds one job, in sections read top to bottom (protocol, the rate-spec
grammar, the sans-I/O pacing blocks, the waiting queue, the two limiters, the factory); splitting it would
scatter the invariant above across files.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final, Protocol, TypeAlias, runtime_checkable

import anyio
import anyio.lowlevel
import attrs

from ._errors import ConfigurationError

__all__ = [
    "AdaptiveLimiter",
    "LimiterSlot",
    "RateLimiter",
    "RateSpec",
    "RateWindow",
    "SlidingWindowLimiter",
    "Slot",
    "UnlimitedLimiter",
    "make_limiter",
    "parse_rate",
]

logger = logging.getLogger("netverify_async.ratelimit")

#: A clock returning seconds as a float; only differences between its readings are used.
Clock = Callable[[], float]

#: The longest server-requested pause (``Retry-After``) a limiter honours, in seconds. A larger value is cut
#: to this, so one odd header cannot stall a client for hours; the retry policy decides separately whether
#: such a request is retried at all.
DEFAULT_MAX_PAUSE: Final = 300.0

#: Status codes that mean "slow down". A 503 counts only when it carries ``Retry-After``.
_THROTTLE_STATUS: Final = 429
_UNAVAILABLE_STATUS: Final = 503

#: Token counts this close to a whole token count as whole (float rounding in the refill arithmetic).
_EPSILON: Final = 1e-9
#: Waits are extended by this much so that the clock read after waking is past the target, never a rounding
#: error short of it (the window check itself is exact: no tolerance).
_WAKE_SLACK: Final = 1e-6


# ----------------------------------------------------------------------------------------------------------
# The protocol the client codes against
# ----------------------------------------------------------------------------------------------------------


class Slot(Protocol):
    """Permission for one HTTP attempt, handed out by :meth:`RateLimiter.slot`."""

    def record(self, status_code: int | None, retry_after: float | None = None) -> None:
        """Report how the attempt went: the HTTP status, or None when no answer came (transport failure).

        ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one. Only the first call
        counts; a slot that records nothing is neutral.
        """


@runtime_checkable
class RateLimiter(Protocol):
    """Admission control for HTTP attempts."""

    def slot(self) -> AbstractAsyncContextManager[Slot]:
        """Wait until a request may start (every window and the concurrency cap allow it), then hold the slot.

        Leaving the ``async with`` block frees the concurrency slot; the start keeps counting in its windows.
        """
        ...


# ----------------------------------------------------------------------------------------------------------
# Rate specifications
# ----------------------------------------------------------------------------------------------------------


def _format_seconds(seconds: float) -> str:
    for length, unit in ((3600.0, "h"), (60.0, "min"), (1.0, "s")):
        if seconds == length:
            return unit
    return f"{seconds:g}s"


#: The longest window: API limits are counted per second, minute or hour.
MAX_WINDOW_SECONDS: Final = 86_400.0
#: The largest limit a window may have: far beyond any API's, small enough for the start log to hold.
MAX_WINDOW_LIMIT: Final = 1_000_000


def _check_limit(instance: RateWindow, attribute: attrs.Attribute[int], value: object) -> None:
    del instance, attribute
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WINDOW_LIMIT:
        raise ConfigurationError(
            f"rate window: limit must be a whole number from 1 to {MAX_WINDOW_LIMIT:,}, got {value!r}"
        )


def _to_seconds(value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"rate window: seconds must be a finite number > 0, got {value!r}")
    if value > MAX_WINDOW_SECONDS:
        raise ConfigurationError(f"rate window: at most {MAX_WINDOW_SECONDS:g} seconds (a day), got {value!r}")
    return float(value)


@attrs.frozen
class RateWindow:
    """At most ``limit`` request starts in *any* interval of ``seconds`` seconds."""

    limit: int = attrs.field(validator=_check_limit)
    seconds: float = attrs.field(converter=_to_seconds)

    @property
    def rate(self) -> float:
        """The long-run average the window allows, in requests per second."""
        return self.limit / self.seconds

    def __str__(self) -> str:
        return f"{self.limit}/{_format_seconds(self.seconds)}"


#: Anything :func:`parse_rate` accepts: ``"5/5s"``, ``"3/s,180/min"``, a :class:`RateWindow` or several.
RateSpec: TypeAlias = str | RateWindow | Iterable[str | RateWindow]

_UNIT_SECONDS: Final = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
}
_RULE_RE: Final = re.compile(
    r"^\s*(?P<limit>[^/]*?)\s*/\s*(?P<count>[-+]?[0-9]*\.?[0-9]*)\s*(?P<unit>[A-Za-z]*)\s*$"
)


def _parse_rule(rule: str) -> RateWindow:
    match = _RULE_RE.match(rule)
    if match is None:
        raise ConfigurationError(
            f"rate rule {rule.strip()!r}: expected LIMIT/[COUNT]UNIT such as '5/5s', '3/s' or '180/min'"
        )
    limit_text, count_text, unit = match["limit"], match["count"], match["unit"].lower()
    if not (limit_text.isascii() and limit_text.isdigit()) or int(limit_text) < 1:
        raise ConfigurationError(f"rate rule {rule.strip()!r}: the limit must be a whole number >= 1")
    if len(limit_text) > 7 or int(limit_text) > MAX_WINDOW_LIMIT:
        raise ConfigurationError(f"rate rule {rule.strip()!r}: the limit must be at most {MAX_WINDOW_LIMIT:,}")
    if not unit:
        raise ConfigurationError(f"rate rule {rule.strip()!r}: a time unit is missing (s, min or h)")
    if unit not in _UNIT_SECONDS:
        raise ConfigurationError(
            f"rate rule {rule.strip()!r}: unknown time unit {unit!r} "
            "(use s/sec/second, m/min/minute or h/hour)"
        )
    try:
        count = float(count_text) if count_text else 1.0
    except ValueError:
        raise ConfigurationError(f"rate rule {rule.strip()!r}: the window length is not a number") from None
    if count <= 0:
        raise ConfigurationError(f"rate rule {rule.strip()!r}: the window length must be > 0")
    return RateWindow(int(limit_text), count * _UNIT_SECONDS[unit])


def _simplify(windows: Iterable[RateWindow]) -> tuple[RateWindow, ...]:
    """Drop windows implied by others: (N1, W1) is implied by (N2, W2) when W2 >= W1 and N2 <= N1."""
    candidates = sorted(set(windows), key=lambda w: (w.seconds, w.limit))
    kept = [
        w
        for w in candidates
        if not any(o is not w and o.seconds >= w.seconds and o.limit <= w.limit for o in candidates)
    ]
    return tuple(kept)


def parse_rate(spec: RateSpec) -> tuple[RateWindow, ...]:
    """Turn a rate specification into its sliding windows, shortest first.

    Rules are separated by commas; each is ``LIMIT/UNIT`` or ``LIMIT/COUNTUNIT``: ``"5/5s"``,
    ``"3/s,180/min"``, ``"15 / 5 seconds"``, ``"1000/h"``. Units: s, sec, second(s); m, min, minute(s); h, hr,
    hour(s). All windows hold at once. Windows implied by stricter ones are dropped (``"5/s,3/s"`` is
    ``3/s``).

    Raises :class:`~netverify_async.ConfigurationError` naming the offending rule for an empty spec, a limit
    that is not a whole number >= 1, a window length <= 0, an unknown unit, or text that is not a rule.
    """
    items: list[str | RateWindow]
    if isinstance(spec, (str, RateWindow)):
        items = [spec]
    else:
        try:
            items = list(spec)
        except TypeError:
            raise ConfigurationError(
                f"rate: expected a string such as '5/5s' or RateWindow objects, got {type(spec).__name__}"
            ) from None
    windows: list[RateWindow] = []
    for item in items:
        if isinstance(item, RateWindow):
            windows.append(item)
        elif isinstance(item, str):
            windows.extend(_parse_rule(rule) for rule in item.split(",") if rule.strip())
        else:
            raise ConfigurationError(f"rate: expected a string or a RateWindow, got {type(item).__name__}")
    if not windows:
        raise ConfigurationError("rate: the specification is empty; give at least one rule such as '5/5s'")
    return _simplify(windows)


def _format_windows(windows: Iterable[RateWindow]) -> str:
    return ",".join(str(w) for w in windows)


# ----------------------------------------------------------------------------------------------------------
# Sans-I/O building blocks (pure bookkeeping, no clock reads and no waiting)
# ----------------------------------------------------------------------------------------------------------


class _StartLog:
    """The start times of the most recent requests: as many as the largest window limit."""

    __slots__ = ("_starts", "windows")

    def __init__(self, windows: tuple[RateWindow, ...]) -> None:
        self.windows = windows
        self._starts: deque[float] = deque(maxlen=max(w.limit for w in windows))

    def earliest(self, now: float) -> float:
        """The earliest time >= ``now`` at which one more start keeps every window within its limit.

        A new start at t is allowed in window (N, W) when the N-th most recent start s satisfies t >= s + W:
        then no half-open interval of length W can hold s, the N-1 starts after it, and t.
        """
        at = now
        count = len(self._starts)
        for window in self.windows:
            if count >= window.limit:
                at = max(at, self._starts[-window.limit] + window.seconds)
        return at

    def add(self, start: float) -> None:
        self._starts.append(start)


class _TokenBucket:
    """Tokens refill at ``rate`` per second up to ``capacity``; each start takes one (``rate=None``: off)."""

    __slots__ = ("_last", "capacity", "rate", "tokens")

    def __init__(self, rate: float | None, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and self.rate is not None and now > self._last:
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def earliest(self, now: float) -> float:
        if self.rate is None:
            return now
        self._refill(now)
        missing = 1.0 - self.tokens
        return now if missing <= _EPSILON else now + missing / self.rate

    def take(self, now: float) -> None:
        if self.rate is not None:
            self._refill(now)
            self.tokens = max(0.0, self.tokens - 1.0)

    def set_rate(self, now: float, rate: float | None, *, debt: float = 0.0) -> None:
        """Continue at ``rate`` (None: off); ``debt`` tokens are owed first (a pause of ``debt / rate``)."""
        self._refill(now)  # tokens earned so far are earned at the old rate
        if self.rate is None:
            self.tokens = min(1.0, self.capacity)  # pacing switches on: the next start may go now
        self.rate = rate
        self.tokens = min(self.tokens, self.capacity) - debt


#: Seconds after which a pause no longer weighs on _RateMeter's smoothed rate (0.8 per 0.5 s bucket: 0.2**4).
_METER_MEMORY = 2.0


class _RateMeter:
    """Smoothed rate of recent starts: counts per time bucket, folded into an exponential moving average."""

    __slots__ = ("_bucket_seconds", "_count", "_current_bucket", "_smoothing", "rate")

    def __init__(self, bucket_seconds: float = 0.5, smoothing: float = 0.8) -> None:
        self._bucket_seconds = bucket_seconds
        self._smoothing = smoothing
        self._current_bucket: float | None = None
        self._count = 0
        self.rate = 0.0

    def record(self, now: float) -> None:
        bucket = math.floor(now / self._bucket_seconds) * self._bucket_seconds
        if self._current_bucket is None:
            self._current_bucket = bucket
        elif bucket > self._current_bucket:
            observed = self._count / (bucket - self._current_bucket)
            self.rate = self._smoothing * observed + (1.0 - self._smoothing) * self.rate
            self._current_bucket = bucket
            self._count = 0
        self._count += 1

    def estimate(self) -> float:
        """The smoothed rate, or before the first bucket closes, the current bucket's count as a rate."""
        if self.rate > 0 or self._current_bucket is None:
            return self.rate
        return self._count / self._bucket_seconds


#: Seconds a rate must run without a real overload before it counts as good and the next step up is tried.
#: Jumio counts in windows of up to 5 s, so a shorter hold could call a rate good that a 5 s window refuses.
DEFAULT_RECOVERY_TIME: Final = 5.0

#: The window the adaptive limiter opens with when nothing is known: the most conservative documented Jumio
#: limit for initiate requests (accounts created after March 2024).
DEFAULT_OPENING: Final = "5/5s"
#: The opening rate is this share of the opening window's rate, so that evenly spaced starts leave the server's
#: window a little room for network jitter (5 per 5.26 s for ``"5/5s"``).
_OPENING_SHARE: Final = 0.95
#: Factor of each step up while no overload has been seen; after _FAST_AFTER such steps, its square.
_GROWTH: Final = 2.0
_FAST_AFTER: Final = 2
#: A step up adds at most this many requests per round trip: a probe that overshoots is answered one round
#: trip late, and every request sent above the limit meanwhile is a 429.
_PROBE_OVERSHOOT: Final = 2.0
#: Weight of the newest round trip in its moving average.
_RTT_WEIGHT: Final = 0.2
#: The search between the known-good and the lowest failed rate stops when they are this close (relative) ...
_PRECISION: Final = 0.05
#: ... or less than this many requests per hold apart (a finer step cannot be told apart by the server).
_RESOLUTION: Final = 2.0
#: Seconds before a converged search checks once whether the failed rate still fails; doubled after each
#: failed check up to _MAX_REPROBE_WAIT, reset when a rate is found to fail anew.
_REPROBE_WAIT: Final = 60.0
_MAX_REPROBE_WAIT: Final = 900.0
#: A rate is promoted only if the client really used it: at least this share of it was sent during the hold.
_SATURATION: Final = 0.8
#: Window lengths (seconds) the server may count in, used to bound its limit when it refuses a request.
_BOUND_WINDOWS: Final = (1.0, 5.0, 60.0)
#: Throttles at the known-good rate are an overload only when at least this many of them, and this share of
#: the answers, fall within the last hold; fewer are noise (a gateway's odd 429), paused for but not cut for.
_OVERLOAD_COUNT: Final = 2
#: The noise filter looks at the answers of the last hold, but at least at this many.
_FILTER_ANSWERS: Final = 100
DEFAULT_NOISE_SHARE: Final = 0.05


@attrs.define
class _Prober:
    """The adaptive rate policy as pure bookkeeping: a known-good rate, the lowest rate that failed, a probe.

    ``rate`` is the pacing rate (None: pacing off, only the configured ceiling applies; used at and above
    ``top``, the ceiling's rate). A rate that ran for ``hold`` seconds, saturated, without an overload becomes
    ``good``; the next probe is then ``good * growth`` while nothing failed, else the geometric middle between
    ``good`` and ``failed`` until the two are within the precision; then the search rests at ``good`` and, after
    ``reprobe_wait`` seconds, checks once just above ``failed`` (the limit may have been raised). An overload
    during a probe returns to ``good``; an overload at the good rate cuts to ``beta`` times the failed rate.
    """

    hold: float
    growth: float
    beta: float
    min_rate: float
    max_rate: float
    top: float
    good: float
    rate: float | None
    since: float = 0.0
    starts: int = 0
    failed: float = math.inf
    reprobe_wait: float = _REPROBE_WAIT
    reprobe_at: float = math.inf
    climbs: int = 0
    max_step: float = math.inf

    @property
    def probing(self) -> bool:
        """Whether the current rate is above the known-good one (a 429 then means: too fast)."""
        return self.rate is not None and self.rate > self.good * (1.0 + _EPSILON)

    def _set(self, rate: float, now: float) -> None:
        rate = min(self.max_rate, max(self.min_rate, rate))
        self.rate = None if rate >= self.top else rate
        self.since = now
        self.starts = 0

    def restart(self, now: float) -> None:
        """The clock of the current rate starts at ``now`` (the first request)."""
        self.since = now
        self.starts = 0

    def started(self) -> None:
        self.starts += 1

    def _next(self, now: float) -> float:
        good, failed = self.good, self.failed
        highest = good + self.max_step  # what may overshoot, times the round trip, stays a few requests
        if math.isinf(failed):
            self.climbs += 1
            return min(highest, good * (self.growth**2 if self.climbs > _FAST_AFTER else self.growth))
        if failed > good * (1.0 + _PRECISION) and (failed - good) * self.hold >= _RESOLUTION:
            step = good * self.growth  # a normal step up, when it stays clear of the failure
            return min(highest, step if step * (1.0 + _PRECISION) < failed else math.sqrt(good * failed))
        if math.isinf(self.reprobe_at):
            self.reprobe_at = now + self.reprobe_wait
        if now >= self.reprobe_at:
            self.reprobe_at = math.inf
            return failed * (1.0 + _PRECISION)
        return good

    def succeeded(self, now: float) -> bool:
        """An answer that was not a throttle; True when the pacing rate changed."""
        rate = self.rate
        if rate is None:
            return False
        elapsed = now - self.since
        if elapsed < self.hold or self.starts < _SATURATION * rate * elapsed:
            return False
        if rate > self.good:
            self.good = rate
            if rate >= self.failed:  # the old failure does not hold any more: the limit was raised
                self.failed = math.inf
                self.reprobe_wait = _REPROBE_WAIT
        nxt = self._next(now)
        if nxt == rate:
            self.restart(now)
            return False
        self._set(nxt, now)
        return True

    def isolated_throttle(self, now: float) -> bool:
        """A second 429 within the filter's window, too few for an overload. Where the search has converged just
        under a failure, it may mean that the known-good rate is a hair above the limit (it passed its hold by
        luck): step down by half the precision. True when the pacing rate changed."""
        rate = self.rate
        if rate is None or self.probing or self.failed > self.good * (1.0 + 2.0 * _PRECISION):
            return False
        self.failed = min(self.failed, self.good)
        self.good = max(self.min_rate, self.good * (1.0 - _PRECISION / 2.0))
        self._set(self.good, now)
        return self.rate != rate

    def overloaded(self, now: float, bound: float) -> float | None:
        """A real overload while sending at the current rate; ``bound`` is an upper bound of the server's
        rate from its own count. Returns the new pacing rate (None: pacing off)."""
        at = self.top if self.rate is None else self.rate
        probing = self.probing
        self.climbs = 0
        if not probing:
            self.reprobe_wait = _REPROBE_WAIT
        elif self.reprobe_at == math.inf and self.failed < math.inf and at > self.failed:
            self.reprobe_wait = min(_MAX_REPROBE_WAIT, 2.0 * self.reprobe_wait)  # a check above `failed`
        floor = min(at, self.good * (1.0 + _PRECISION)) if probing else self.min_rate
        self.failed = min(self.failed, at, max(bound, floor))  # a probe's failure never undoes a proven rate
        if not probing or self.good >= self.failed:
            self.good = max(self.min_rate, self.beta * self.failed)
            self._set(self.good, now)
        else:  # the known-good rate stands: the search goes on between it and the failure
            self._set(self._next(now), now)
        return self.rate


# ----------------------------------------------------------------------------------------------------------
# The in-process machinery shared by every limiter: a FIFO queue, a concurrency cap, a server pause
# ----------------------------------------------------------------------------------------------------------


def _check_concurrency(max_concurrency: int | None) -> int | None:
    if max_concurrency is None:
        return None
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
        raise ConfigurationError(
            f"max_concurrency: must be None or a whole number >= 1, got {max_concurrency!r}"
        )
    return max_concurrency


def _check_positive(name: str, value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def _check_margin(margin: object) -> float:
    if (
        not isinstance(margin, (int, float))
        or isinstance(margin, bool)
        or not math.isfinite(margin)
        or margin < 0
    ):
        raise ConfigurationError(f"margin: must be a finite number >= 0 seconds, got {margin!r}")
    return float(margin)


def _widen(windows: tuple[RateWindow, ...], margin: float) -> tuple[RateWindow, ...]:
    """The windows as enforced: each ``margin`` seconds longer, to absorb jitter on the way to the server."""
    return tuple(RateWindow(w.limit, w.seconds + margin) for w in windows)


def _is_throttle(status_code: int | None, retry_after: float | None) -> bool:
    return status_code == _THROTTLE_STATUS or (status_code == _UNAVAILABLE_STATUS and retry_after is not None)


class _Waiter:
    __slots__ = ("error", "wakeup")

    def __init__(self) -> None:
        self.wakeup = anyio.Event()
        self.error: BaseException | None = None  # set when the whole queue fails with the head


class LimiterSlot:
    """A slot of an in-process limiter; ``start_time`` is when it was granted (the limiter's clock)."""

    __slots__ = ("_limiter", "_recorded", "refused", "start_time")

    def __init__(self, limiter: _QueuedLimiter, start_time: float) -> None:
        self._limiter = limiter
        self._recorded = False
        self.start_time = start_time
        #: Whether the answer was a throttle (429 or 503 with ``Retry-After``): the server did not count it.
        self.refused = False

    def record(self, status_code: int | None, retry_after: float | None = None) -> None:
        """Report the attempt's HTTP status (None: no answer) and ``Retry-After`` seconds.

        Only the first call counts.
        """
        if self._recorded:
            return
        self._recorded = True
        self._limiter._feedback(self, status_code, retry_after)

    def __repr__(self) -> str:
        return f"<LimiterSlot start_time={self.start_time:.6f} recorded={self._recorded}>"


class _SlotContext:
    __slots__ = ("_limiter", "_slot")

    def __init__(self, limiter: _QueuedLimiter) -> None:
        self._limiter = limiter
        self._slot: LimiterSlot | None = None

    async def __aenter__(self) -> LimiterSlot:
        if self._slot is not None:
            raise RuntimeError("a slot context can be entered only once; call limiter.slot() again")
        self._slot = await self._limiter._acquire()
        return self._slot

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._slot is not None
        self._limiter._release()
        await self._limiter._after_release(self._slot)


class _QueuedLimiter:
    """FIFO admission with a concurrency cap and a server-requested pause; subclasses add pacing rules.

    Only the waiter at the head of the queue looks at the pacing rules; the others sleep until they reach
    the head. Granting is synchronous (no await between the check and the bookkeeping), so a cancelled waiter
    can never hold a slot it did not return.
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None,
        clock: Clock | None,
        honour_retry_after: bool,
        max_pause: float,
    ) -> None:
        self._max_concurrency = _check_concurrency(max_concurrency)
        self._clock: Clock = clock if clock is not None else anyio.current_time
        self._honour_retry_after = honour_retry_after
        self._max_pause = _check_positive("max_pause", max_pause)
        self._queue: deque[_Waiter] = deque()
        self._in_flight = 0
        self._paused_until = -math.inf
        self._granted = 0
        self._throttled = 0

    # -- public observability ------------------------------------------------------------------------------

    @property
    def max_concurrency(self) -> int | None:
        """The cap on requests in flight (None: no cap)."""
        return self._max_concurrency

    @property
    def granted(self) -> int:
        """How many slots were handed out so far."""
        return self._granted

    @property
    def throttled(self) -> int:
        """How many attempts were answered 429 (or 503 with ``Retry-After``)."""
        return self._throttled

    @property
    def in_flight(self) -> int:
        """Slots currently held."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Tasks currently waiting for a slot."""
        return len(self._queue)

    def pause_remaining(self) -> float:
        """Seconds left of the pause a server asked for with ``Retry-After`` (0 when none)."""
        return max(0.0, self._paused_until - self._clock())

    def slot(self) -> AbstractAsyncContextManager[LimiterSlot]:
        """Wait for a slot (FIFO), hold it for the ``async with`` block; see :class:`RateLimiter`."""
        return _SlotContext(self)

    # -- hooks for subclasses ------------------------------------------------------------------------------

    def _earliest_start(self, now: float) -> float:
        """The earliest time >= ``now`` at which the head of the queue may start, by the pacing rules."""
        return now

    def _on_grant(self, start: float) -> None:
        """Book a start at ``start``."""

    def _on_feedback(self, slot: LimiterSlot, status_code: int | None, throttled: bool, now: float) -> None:
        """React to an attempt's outcome (after the pause and counters were updated)."""

    async def _try_start(self) -> LimiterSlot | float:
        """Try to start the head of the queue: its slot, or the seconds to wait before trying again."""
        now = self._clock()
        at = max(self._earliest_start(now), self._paused_until)
        if at <= now:
            self._on_grant(now)
            return LimiterSlot(self, now)
        return at - now

    async def _after_release(self, slot: LimiterSlot) -> None:
        """Called after a slot was released, outside the limiter's bookkeeping (may await)."""

    def _queue_error(self, error: Exception) -> BaseException | None:
        """When the head's :meth:`_try_start` raised ``error``: the error every other queued waiter fails with
        at once (a new one for each call), or None to let them go on and try in turn (the default)."""
        return None

    # -- the machinery -------------------------------------------------------------------------------------

    def _wake_head(self) -> None:
        if self._queue:
            self._queue[0].wakeup.set()

    def _has_capacity(self) -> bool:
        return self._max_concurrency is None or self._in_flight < self._max_concurrency

    async def _acquire(self) -> LimiterSlot:
        await anyio.lowlevel.checkpoint_if_cancelled()
        waiter = _Waiter()
        self._queue.append(waiter)
        waited = False
        try:
            while True:
                delay = math.inf
                if waiter.error is not None:
                    raise waiter.error
                if self._queue[0] is waiter and self._has_capacity():
                    try:
                        outcome = await self._try_start()
                    except Exception as exc:
                        for other in self._queue:
                            if other is not waiter and other.error is None:
                                other.error = self._queue_error(exc)
                                if other.error is None:
                                    break
                                other.wakeup.set()
                        raise
                    if isinstance(outcome, LimiterSlot):
                        self._queue.popleft()
                        self._in_flight += 1
                        self._granted += 1
                        self._wake_head()
                        slot = outcome
                        break
                    delay = outcome
                waiter.wakeup = anyio.Event()
                waited = True
                with anyio.move_on_after(delay + _WAKE_SLACK):
                    await waiter.wakeup.wait()
        except BaseException:
            was_head = bool(self._queue) and self._queue[0] is waiter
            try:
                self._queue.remove(waiter)
            except ValueError:  # pragma: no cover - the waiter leaves the queue only here or when granted
                pass
            if was_head:
                self._wake_head()
            raise
        if not waited:
            # Let other tasks run even when the slot was free; should a cancellation land here, the slot goes
            # back (its start keeps counting, which only errs on the safe side).
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                self._release()
                raise
        return slot

    def _release(self) -> None:
        self._in_flight -= 1
        self._wake_head()

    def _feedback(self, slot: LimiterSlot, status_code: int | None, retry_after: float | None) -> None:
        now = self._clock()
        throttled = _is_throttle(status_code, retry_after)
        if throttled:
            self._throttled += 1
            slot.refused = True
            if (
                self._honour_retry_after
                and retry_after is not None
                and math.isfinite(retry_after)
                and retry_after > 0
            ):
                self._paused_until = max(self._paused_until, now + min(retry_after, self._max_pause))
        self._on_feedback(slot, status_code, throttled, now)
        self._wake_head()


# ----------------------------------------------------------------------------------------------------------
# The limiters
# ----------------------------------------------------------------------------------------------------------


class UnlimitedLimiter(_QueuedLimiter):
    """No pacing at all: only an optional cap on requests in flight (FIFO). ``Retry-After`` is not applied
    here (the retry policy still waits it out for the request that got it)."""

    def __init__(self, max_concurrency: int | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(
            max_concurrency=max_concurrency,
            clock=clock,
            honour_retry_after=False,
            max_pause=DEFAULT_MAX_PAUSE,
        )

    def __repr__(self) -> str:
        return f"UnlimitedLimiter(max_concurrency={self._max_concurrency!r})"


class SlidingWindowLimiter(_QueuedLimiter):
    """Never more than N request starts in any interval of W seconds, for every configured window at once.

    ``rates`` is a spec for :func:`parse_rate` (``"5/5s"``, ``"3/s,180/min"``) or :class:`RateWindow` objects.
    ``max_concurrency`` caps requests in flight (None: no cap). ``margin`` seconds are added to every window
    to absorb network jitter between the client's start and the server's count (default 0: exact windows).
    ``clock`` is a monotonic clock that runs at the pace of anyio's (default :func:`anyio.current_time`).
    ``max_pause`` bounds the pause honoured after a 429/503 with ``Retry-After``.

    A start counts at the moment its slot is granted. Waiters are served in arrival order. After a slot
    records a 429 (or 503) with ``Retry-After``, no slot is granted until that pause is over.
    """

    def __init__(
        self,
        rates: RateSpec,
        *,
        max_concurrency: int | None = None,
        margin: float = 0.0,
        clock: Clock | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
    ) -> None:
        super().__init__(
            max_concurrency=max_concurrency, clock=clock, honour_retry_after=True, max_pause=max_pause
        )
        self._configured = parse_rate(rates)
        self._margin = _check_margin(margin)
        self._log = _StartLog(_widen(self._configured, self._margin))

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """The configured windows (without the margin), shortest first."""
        return self._configured

    def _earliest_start(self, now: float) -> float:
        return self._log.earliest(now)

    def _on_grant(self, start: float) -> None:
        self._log.add(start)

    def __repr__(self) -> str:
        margin = f", margin={self._margin:g}" if self._margin else ""
        return (
            f"SlidingWindowLimiter(rates={_format_windows(self._configured)!r}, "
            f"max_concurrency={self._max_concurrency!r}{margin})"
        )


class AdaptiveLimiter(_QueuedLimiter):
    """Finds the rate the server accepts from its 429 answers, under an optional sliding-window ceiling.

    **Opening.** With nothing known, requests start evenly spaced at 95 % of the ``opening`` window's rate
    (default ``"5/5s"``, the most conservative limit Jumio documents): never an unpaced burst. ``initial_rate``
    opens at that rate instead. With a ``ceiling`` (a known limit, e.g. ``"15/5s"``) and no ``initial_rate``,
    pacing is off and only the ceiling applies: no probing at all until the server disagrees.

    **Probing up.** A rate that ran for ``recovery_time`` seconds (default 5 s, one Jumio window) with the
    demand above it and no overload becomes the *known-good* rate. While nothing has failed, the next step is
    twice that (four times after two such steps); once a rate has failed, it is twice the known-good rate if
    that stays clear of the failure, else the geometric middle of the two, until they are within 5 % (or
    2 requests per hold) of each other. No step adds more than 2 requests per round trip: an overshoot is
    answered a round trip late, and each request sent above the limit meanwhile is a 429. The search then rests
    at the known-good rate and checks once, after 60 s (doubling up to 15 min while it keeps failing), whether
    the failed rate still fails.

    **Overload.** 429s answered to a probe (sent above the known-good rate), as soon as they are at least
    ``noise_share`` of the probe's answers (at a few requests per second: the first one), end it: the search
    goes on from the known-good rate after a pause that lets the probe's extra starts leave the server's
    windows, and the failed rate is remembered, bounded by what the server accepted (one more than the accepted
    starts in the last 1, 5 or 60 s, whichever gives the highest rate). At the known-good rate (or at the
    ceiling), 429s are an overload only when at least 2 of them, and at least ``noise_share`` (default 5 %) of
    the answers, fall within the last hold (at least the last 100 answers): then the rate is cut to ``beta``
    (default 0.7) times the failed rate and the search starts again. An isolated 429 is noise: its
    ``Retry-After`` pause is honoured and the rate is kept, except that a second one within that window, where
    the search has converged just under a failure (the known-good rate may then be a hair above the limit),
    steps it down by 2.5 %. Answers to
    requests that started before the latest change of rate are not counted again (one overload is one cut,
    however many requests were in flight). Transport failures and 5xx answers carry no information about the
    rate; a 503 with ``Retry-After`` pauses every start as a 429 with ``Retry-After`` does, without a cut.

    The rate stays within ``[min_rate, max_rate]``; ``burst`` tokens (default 1: evenly spaced starts) may be
    used at once. ``ceiling`` is enforced exactly as by :class:`SlidingWindowLimiter` (with the same optional
    ``margin``) on top of the adaptive rate: the adaptive part can only go lower, and pacing switches off when
    the rate reaches the ceiling's. ``current_rate`` is the pacing rate (None while off), ``known_good_rate``
    and ``failed_rate`` the search's bounds, ``measured_rate`` the smoothed send rate; ``granted`` and
    ``throttled`` count slots and throttled answers.
    """

    def __init__(
        self,
        initial_rate: float | None = None,
        *,
        min_rate: float = 0.5,
        max_rate: float | None = None,
        ceiling: RateSpec | None = None,
        max_concurrency: int | None = None,
        margin: float = 0.0,
        burst: float = 1.0,
        beta: float = 0.7,
        recovery_time: float = DEFAULT_RECOVERY_TIME,
        clock: Clock | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        opening: RateSpec = DEFAULT_OPENING,
        noise_share: float = DEFAULT_NOISE_SHARE,
    ) -> None:
        super().__init__(
            max_concurrency=max_concurrency, clock=clock, honour_retry_after=True, max_pause=max_pause
        )
        self._min_rate = _check_positive("min_rate", min_rate)
        self._max_rate = math.inf if max_rate is None else _check_positive("max_rate", max_rate)
        if self._max_rate < self._min_rate:
            raise ConfigurationError("max_rate: must be >= min_rate")
        if initial_rate is not None:
            initial_rate = _check_positive("initial_rate", initial_rate)
            if not self._min_rate <= initial_rate <= self._max_rate:
                raise ConfigurationError("initial_rate: must lie between min_rate and max_rate")
        burst = _check_positive("burst", burst)
        if burst < 1:
            raise ConfigurationError(f"burst: must be >= 1 token, got {burst!r}")
        beta = _check_positive("beta", beta)
        if beta >= 1:
            raise ConfigurationError(f"beta: must lie strictly between 0 and 1, got {beta!r}")
        noise_share = _check_positive("noise_share", noise_share)
        if noise_share >= 1:
            raise ConfigurationError(f"noise_share: must lie strictly between 0 and 1, got {noise_share!r}")
        self._noise_share = noise_share
        hold = _check_positive("recovery_time", recovery_time)
        margin = _check_margin(margin)
        self._ceiling = parse_rate(ceiling) if ceiling is not None else ()
        self._opening = parse_rate(opening)
        self._log = _StartLog(_widen(self._ceiling, margin)) if self._ceiling else None
        top = min((w.limit / (w.seconds + margin) for w in self._ceiling), default=math.inf)
        if initial_rate is not None:
            start: float | None = initial_rate
        elif self._ceiling:
            start = None
        else:
            opening_rate = _OPENING_SHARE * min(w.rate for w in self._opening)
            start = min(self._max_rate, max(self._min_rate, opening_rate))
        self._prober = _Prober(
            hold=hold,
            growth=_GROWTH,
            beta=beta,
            min_rate=self._min_rate,
            max_rate=self._max_rate,
            top=top,
            good=top if start is None else start,
            rate=start if start is None or start < top else None,
        )
        self._bucket = _TokenBucket(self._prober.rate, burst)
        self._meter = _RateMeter()
        self._hold = hold
        self._started = False
        self._last_cut = -math.inf
        self._pause_seen_until = -math.inf
        self._rtt: float | None = None  # smoothed seconds from a start to its answer
        #: Slots of the last 60 s (for the bound of the server's rate) and recent answers (for the noise filter).
        self._history: deque[LimiterSlot] = deque()
        self._answers: deque[tuple[float, bool]] = deque()

    # -- observability -------------------------------------------------------------------------------------

    @property
    def current_rate(self) -> float | None:
        """The adaptive pacing rate in requests per second; None while pacing is off (only the ceiling)."""
        return self._bucket.rate

    @property
    def known_good_rate(self) -> float:
        """The highest rate that ran for a hold without an overload (the ceiling's rate when one is set)."""
        return self._prober.good

    @property
    def failed_rate(self) -> float | None:
        """The lowest rate the server refused since the search last moved past it (None: none)."""
        return None if math.isinf(self._prober.failed) else self._prober.failed

    @property
    def measured_rate(self) -> float:
        """The smoothed rate of recent starts, in requests per second."""
        return self._meter.rate

    @property
    def ceiling(self) -> tuple[RateWindow, ...]:
        """The configured sliding windows that are never exceeded (empty: none)."""
        return self._ceiling

    @property
    def opening(self) -> tuple[RateWindow, ...]:
        """The window whose rate the limiter opens with when nothing else is known."""
        return self._opening

    # -- hooks ---------------------------------------------------------------------------------------------

    def _earliest_start(self, now: float) -> float:
        if not self._started:
            self._started = True
            self._prober.restart(now)
        at = self._bucket.earliest(now)
        if self._log is not None:
            at = max(at, self._log.earliest(now))
        return at

    def _on_grant(self, start: float) -> None:
        self._bucket.take(start)
        self._meter.record(start)
        self._prober.started()
        if self._log is not None:
            self._log.add(start)

    async def _try_start(self) -> LimiterSlot | float:
        outcome = await super()._try_start()
        if isinstance(outcome, LimiterSlot):
            history = self._history
            history.append(outcome)
            horizon = outcome.start_time - _BOUND_WINDOWS[-1]
            while history[0].start_time <= horizon:
                history.popleft()
        return outcome

    def _server_bound(self, refused: LimiterSlot) -> float:
        """An upper bound of the server's rate: a window of the server was full when it refused ``refused``,
        so its limit is at most the starts not refused in that window up to it (+1 for timing differences).
        Starts still waiting for their answer count as accepted; only windows of 1, 5 or 60 s are looked at,
        and only those the client has been sending through for their whole length (no pause as long as the
        window): a refusal early in a burst can come from a server counting in a shorter window (a proxy's
        zero-burst ``limit_req``), and a count over a window the client had barely begun is no bound of that
        server's rate (infinite: no bound)."""
        at = refused.start_time
        best = 0.0
        starts = [s.start_time for s in self._history if s.start_time <= at]
        windows = []
        for seconds in _BOUND_WINDOWS:
            busy_since = at
            for start in reversed(starts):
                if busy_since - start > seconds:
                    break
                busy_since = start
            if at - busy_since >= seconds:
                windows.append(seconds)
        if not windows:
            return math.inf
        for seconds in windows:
            since = at - seconds
            accepted = sum(
                1 for s in self._history if since < s.start_time <= at and not s.refused and s is not refused
            )
            best = max(best, (accepted + 1) / seconds)
        return best

    def _drain_time(self, now: float, rate: float) -> float:
        """The pause after which starts at ``rate`` never put more requests in a window of the server than it
        held when it refused (for windows of 1 s and of one hold that can take ``rate``; at most one hold).

        The server's window of W seconds was full with the accepted starts s_1 < ... < s_n of the last W
        seconds; the k-th new start (at ``now + pause + (k - 1) / rate``) may come only after s_k has left the
        window (at ``s_k + W``).
        """
        pause = 0.0
        for seconds in (1.0, self._hold):
            recent = [s.start_time for s in self._history if s.start_time > now - seconds and not s.refused]
            if rate * seconds > len(recent):
                continue  # too fast for such a window anyway: if it is the server's, the next 429 will say so
            for k, start in enumerate(recent):
                pause = max(pause, start + seconds - now - k / rate)
        return min(pause, self._hold)

    def _overload(self) -> bool:
        """Whether the 429 just recorded shows real overload rather than noise.

        While probing: the probe's 429s are at least ``noise_share`` of its answers (at a few requests per
        second, the first 429 already is). At the known-good rate: the same over the last hold (at least the
        last 100 answers), and at least 2 of them.
        """
        prober = self._prober
        if prober.probing:
            outcomes = [throttled for at, throttled in self._answers if at >= prober.since]
            least = 1
        else:
            outcomes = [throttled for _, throttled in self._answers]
            least = _OVERLOAD_COUNT
        throttles = sum(outcomes)
        return throttles >= least and throttles >= self._noise_share * len(outcomes)

    def _on_feedback(self, slot: LimiterSlot, status_code: int | None, throttled: bool, now: float) -> None:
        prober = self._prober
        if self._paused_until > max(now, self._pause_seen_until):
            # a Retry-After pause stops the clock of the current rate: the hold counts sending time only
            prober.since += self._paused_until - max(now, self._pause_seen_until)
        self._pause_seen_until = max(self._pause_seen_until, self._paused_until)
        if status_code is not None:
            rtt = max(now - slot.start_time, 1e-3)
            self._rtt = rtt if self._rtt is None else self._rtt + _RTT_WEIGHT * (rtt - self._rtt)
            prober.max_step = _PROBE_OVERSHOOT / self._rtt
        if status_code is None or status_code >= 500 or slot.start_time <= self._last_cut:
            return  # no information about the rate, or sent at an earlier rate already answered for
        answers = self._answers
        answers.append((now, throttled))
        while len(answers) > _FILTER_ANSWERS and answers[0][0] < now - self._hold:
            answers.popleft()
        if not throttled:
            if prober.succeeded(now):
                self._bucket.set_rate(now, prober.rate)
            return
        if not self._overload():
            if sum(throttled for _, throttled in answers) >= _OVERLOAD_COUNT and prober.isolated_throttle(now):
                self._bucket.set_rate(now, prober.rate)
            logger.debug("isolated 429 taken as noise: rate %s", self._bucket.rate)
            return
        before = prober.rate
        rate = prober.overloaded(now, self._server_bound(slot))
        pause = 0.0 if rate is None else self._drain_time(now, rate)
        self._bucket.set_rate(now, rate, debt=0.0 if rate is None else pause * rate)
        if rate is not None:
            prober.since = now + pause  # the hold starts once the server's windows have drained
        self._last_cut = now
        self._answers.clear()
        logger.debug(
            "overload at %s/s: rate -> %s/s, failed at %.3f/s, pause %.2f s",
            "off" if before is None else f"{before:.3f}",
            "off" if rate is None else f"{rate:.3f}",
            prober.failed,
            pause,
        )

    def __repr__(self) -> str:
        ceiling = f"ceiling={_format_windows(self._ceiling)!r}, " if self._ceiling else ""
        rate = "off" if self._bucket.rate is None else f"{self._bucket.rate:.3g}/s"
        return f"AdaptiveLimiter({ceiling}current_rate={rate}, max_concurrency={self._max_concurrency!r})"


# ----------------------------------------------------------------------------------------------------------
# Building a limiter from the client's settings
# ----------------------------------------------------------------------------------------------------------

#: The word that selects :class:`AdaptiveLimiter` without a ceiling in :func:`make_limiter`.
ADAPTIVE: Final = "adaptive"

#: Seconds added to every configured window by :func:`make_limiter`. The server counts a request when it
#: arrives, not when the client let it start; connection setup and TLS make that delay vary by tens to hundreds
#: of milliseconds, enough to squeeze N+1 arrivals into a window that saw only N starts. 0.25 s costs 5 % of a
#: 5 s window and removes those 429s (see benchmarks/ratelimit_sim.py).
DEFAULT_WINDOW_MARGIN: Final = 0.25


def make_limiter(
    spec: str | RateLimiter | None,
    *,
    max_concurrency: int | None = None,
    margin: float | None = None,
) -> RateLimiter:
    """The limiter for a client setting.

    - a rate spec (``"5/5s"``, ``"3/s,180/min"``): :class:`AdaptiveLimiter` with that ceiling, i.e. the
      sliding windows (each ``margin`` seconds longer for network jitter; by default 4% of the shortest
      window, at most 0.25 s, which costs about 4% of the configured rate), slowing down further on its own if
      the server still answers 429;
    - ``"adaptive"``: :class:`AdaptiveLimiter` without a ceiling, discovering the limit from 429 answers;
    - ``None``: :class:`UnlimitedLimiter` (only the concurrency cap);
    - a limiter object: returned unchanged (its own concurrency cap applies).
    """
    if spec is None:
        return UnlimitedLimiter(max_concurrency)
    if isinstance(spec, str):
        if spec.strip().lower() == ADAPTIVE:
            return AdaptiveLimiter(max_concurrency=max_concurrency)
        if margin is None:
            shortest = min(w.seconds for w in parse_rate(spec))
            margin = min(DEFAULT_WINDOW_MARGIN, 0.04 * shortest)
        return AdaptiveLimiter(ceiling=spec, max_concurrency=max_concurrency, margin=margin)
    if isinstance(spec, RateLimiter):
        return spec
    raise ConfigurationError(
        "rate limit: expected a spec such as '5/5s', 'adaptive', None or a limiter, "
        f"got {type(spec).__name__}"
    )
