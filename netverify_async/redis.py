"""One account's rate limit shared by several processes and hosts, kept in Redis (the ``[redis]`` extra).

:class:`RedisRateLimiter` follows the same :class:`~netverify_async._ratelimit.RateLimiter` protocol as the
in-process limiters and makes the same promise: no interval of W seconds, wherever it lies, holds more than N
request starts, now counted over *every* process that uses the same key. The check-and-book step is a single
Lua script that runs atomically on the Redis server and reads the server's own clock, so the hosts' clocks
never need to agree.

It uses redis-py's asyncio client and therefore runs under asyncio only (not trio). The concurrency cap is per
process; fairness is first come, first served inside a process, not across processes.

Redis may lose the windows (a restart without persistence, ``FLUSHALL``, a failover to an empty replica) or
go back to an older state (a restart from an older snapshot, a lagging replica, evicted window keys) while the
API still counts the requests made just before. A marker key written with the windows, with a count of the
starts booked under it, tells the script when that happened, and the script then holds every admission, in
every process, for one longest window: a restart costs time, never a 429. While Redis cannot be reached, waiters keep asking (with back-off) for up to
``outage_timeout`` seconds, and never start without a booked slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._errors import ConfigurationError, RateLimiterError
from ._ratelimit import (
    DEFAULT_MAX_PAUSE,
    LimiterSlot,
    RateSpec,
    RateWindow,
    _check_margin,
    _format_windows,
    _QueuedLimiter,
    parse_rate,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisRateLimiter", "RedisSlot"]

logger = logging.getLogger("netverify_async.ratelimit")

#: The key prefix used when none is given. Use one key per account (and per API family: submissions and the
#: retrieval API have separate limits).
DEFAULT_KEY: Final = "netverify:ratelimit"
#: How long one Redis round trip may take before the limiter gives up with RateLimiterError.
DEFAULT_OPERATION_TIMEOUT: Final = 5.0
#: Up to this many seconds of random delay are added to every wait, so processes that wait for the same
#: start to leave the window do not all come back at the same instant.
DEFAULT_JITTER: Final = 0.003
#: How long (seconds) a waiter keeps asking a Redis that cannot be reached (refused or dropped connections,
#: timeouts, a server still loading, a replica that is read-only during a failover) before the limiter gives
#: up with RateLimiterError.
DEFAULT_OUTAGE_TIMEOUT: Final = 30.0
#: The state marker outlives the last admission by this long (7 days); the window keys expire much sooner.
_EPOCH_TTL_MS: Final = 7 * 24 * 3600 * 1000
#: Back-off between attempts while Redis cannot be reached: first delay, cap (seconds).
_OUTAGE_FIRST_DELAY: Final = 0.05
_OUTAGE_MAX_DELAY: Final = 1.0
_MICROS: Final = 1_000_000

# Atomic sliding-window admission on the Redis server's clock.
#   KEYS[1]    string: the end of the shared pause (server time, microseconds)
#   KEYS[2]    hash: the state marker, written together with the windows and refreshed by every call:
#              m = "<id>:<created, server time in microseconds>" (a missing marker means the windows may have
#              been lost), n = how many starts were booked under this marker, t = when the last one was booked
#   KEYS[3..]  sorted sets, one per window length: recent start times (score, microseconds), kept for two
#              window lengths so that a process enforcing a longer window (a margin) still sees them
#   ARGV[1]    a member name unique to this start
#   ARGV[2]    pause to record, microseconds from now (0: none)
#   ARGV[3]    "1": book a start if every window allows it; "0": only record the pause
#   ARGV[4]    the marker this process saw last ("": none yet)
#   ARGV[5]    the highest booking count this process saw under that marker
#   ARGV[6]    the member of the last start this process booked under that marker ("": none)
#   ARGV[7]    when that start was booked (server time, microseconds)
#   ARGV[8]    an id for a new marker, should this call have to write one
#   ARGV[9]    the hold after a loss, microseconds: the longest window (with its margin)
#   ARGV[10]   "1": hold also when this process never saw a marker (first use, or the state is unknown)
#   ARGV[11]   the marker's time to live, milliseconds
#   ARGV[12..] limit, window length (microseconds), and how long after the last booked start the set must
#              still hold it (microseconds), for each sorted set, in KEYS order
# Returns {wait, now, marker, lost, count}: wait 0 means a start was booked at now; otherwise nothing was booked
# and the caller should try again after wait microseconds. lost is 1 when this call found the state lost or
# rolled back; count is the marker's booking count after this call.
_SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_until = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local known = ARGV[4]
local known_count = tonumber(ARGV[5]) or 0
local hold = tonumber(ARGV[9])
local hold_until = 0
local lost = 0
local renew = false
local state = redis.call('HMGET', KEYS[2], 'm', 'n', 't')
local marker = state[1]
local count = tonumber(state[2] or '0') or 0
local last = tonumber(state[3] or '0') or 0
if not marker then
  -- no marker: first use, a long idle time, or the state was lost (restart without persistence, flush,
  -- failover to an empty replica); the server may still count starts this store no longer knows
  renew = true
  if known ~= '' or ARGV[10] == '1' then hold_until = now + hold end
  if known ~= '' then lost = 1 end
elseif known ~= '' and marker ~= known then
  -- (a marker created at 0 comes from reset(): a fresh start asked for by an operator, not a loss)
  local created = tonumber(string.match(marker, ':(%d+)$') or '0') or 0
  local known_created = tonumber(string.match(known, ':(%d+)$') or '0') or 0
  if created > 0 and created < known_created then
    -- an older state came back (a restart from an older snapshot, a lagging replica): the starts booked
    -- since are lost, up to now
    renew = true
    hold_until = now + hold
    lost = 1
  elseif created > 0 then
    -- the state was lost and written again by another process since this one last saw it
    hold_until = created + hold
    lost = 1
  end
elseif known ~= '' and count < known_count then
  -- the same marker with fewer booked starts than this process saw: the state was rolled back (an older
  -- snapshot, an append-only file missing its last writes, a lagging replica)
  renew = true
  hold_until = now + hold
  lost = 1
else
  -- a recent start must still be in every window set: the last one booked by anyone (an empty set was
  -- evicted) and the last one booked by this process (else the state was rolled back to before it, even if
  -- other processes have booked more starts since)
  local own = ARGV[6]
  local own_at = tonumber(ARGV[7]) or 0
  for i = 3, #KEYS do
    local horizon = tonumber(ARGV[3 * i + 5])
    if (last > 0 and now - last < horizon and redis.call('EXISTS', KEYS[i]) == 0)
        or (known ~= '' and own ~= '' and now - own_at < horizon and not redis.call('ZSCORE', KEYS[i], own)) then
      renew = true
      hold_until = now + hold
      lost = 1
      break
    end
  end
end
if renew then
  marker = ARGV[8] .. ':' .. string.format('%.0f', now)
  count = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'm', marker, 'n', '0')
end
redis.call('PEXPIRE', KEYS[2], ARGV[11])
local pause = tonumber(ARGV[2])
if pause > 0 and now + pause > hold_until then hold_until = now + pause end
if hold_until > pause_until and hold_until > now then
  pause_until = hold_until
  redis.call('SET', KEYS[1], string.format('%.0f', pause_until), 'PX', math.ceil((pause_until - now) / 1000) + 1000)
end
if ARGV[3] ~= '1' then
  return {0, now, marker, lost, count}
end
local wait = pause_until - now
for i = 3, #KEYS do
  local limit = tonumber(ARGV[3 * i + 3])
  local window = tonumber(ARGV[3 * i + 4])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%.0f', now - 2 * window))
  local kept = redis.call('ZCARD', KEYS[i])
  if kept >= limit then
    -- the limit-th most recent start: one more start is allowed once it is a full window old
    local nth = redis.call('ZRANGE', KEYS[i], kept - limit, kept - limit, 'WITHSCORES')
    local free_at = tonumber(nth[2]) + window
    if free_at - now > wait then wait = free_at - now end
  end
end
if wait > 0 then
  return {wait, now, marker, lost, count}
end
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], string.format('%.0f', now), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * tonumber(ARGV[3 * i + 4]) / 1000) + 1000)
end
count = redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HSET', KEYS[2], 't', string.format('%.0f', now))
return {0, now, marker, lost, count}
"""


def _import_redis() -> ModuleType:
    try:
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "netverify_async.redis needs the redis package; "
            "install it with: pip install 'netverify-async[redis]'"
        ) from exc
    return redis


def _script_sha(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


class RedisSlot(LimiterSlot):
    """A slot booked in Redis.

    ``start_time`` is the Redis server's clock in seconds; ``server_time_us`` is the exact booked start in
    microseconds since the epoch, as stored in the windows' sorted sets.
    """

    __slots__ = ("server_time_us",)

    def __init__(self, limiter: RedisRateLimiter, server_time_us: int) -> None:
        super().__init__(limiter, server_time_us / _MICROS)
        self.server_time_us = server_time_us


class RedisRateLimiter(_QueuedLimiter):
    """Sliding-window rate limit shared through Redis by every process that uses the same ``key``.

    ``redis`` is a ``redis.asyncio.Redis`` client (not closed by the limiter) or a URL such as
    ``"redis://localhost:6379/0"`` (the limiter opens the client and closes it in :meth:`aclose` or at the
    end of ``async with``). ``rates`` is a rate spec (e.g. ``"5/5s"`` or ``"3/s,180/min"``); processes
    sharing a key should use the same rates. ``key`` names the account's limit (no braces; it becomes a Redis
    Cluster hash tag, so all keys of one limit live on one node).
    ``max_concurrency`` caps requests in flight *in this process*. ``margin`` seconds are added to every window
    to absorb network jitter (default 0: exact windows; the client's own limiters use 0.25 s). ``jitter`` adds
    up to that many seconds of random delay to each wait. ``operation_timeout`` bounds each Redis round trip.
    ``outage_timeout`` is how long admissions keep waiting for a Redis that cannot be reached before they fail
    (0: fail at the first error). ``hold_on_missing_state`` holds admissions for one window also when this
    process finds no state it has seen before (first use of the key, or after a week without requests); see
    below.

    Every start is booked by one Lua script (EVALSHA, falling back to EVAL when the server does not know it)
    that reads the server clock, drops start times older than two window lengths from each window's sorted
    set, and either books the start in every set or returns how long until the N-th most recent start is a
    full window old. Window keys expire two window lengths after the last start. A 429 (or 503) with
    ``Retry-After`` pauses this process at once and, when the slot is released, stores a shared pause that
    every other process honours.

    **Lost state.** The script keeps a marker (the hash ``{key}:epoch``) next to the windows and refreshes it on
    every call (it expires after 7 days without one). When the marker is missing (Redis restarted without
    persistence, ``FLUSHALL``, a failover to an empty replica, or the key was never used) the script writes a
    new one and stores a shared pause of one longest window (margin included), so no process starts a request
    until every start the server may still count has left its window. A process that had seen the old marker
    always holds; one that never saw a marker holds too unless ``hold_on_missing_state=False``, and when such
    a process wrote the new marker without a hold, the processes that knew the old one still hold until one
    window after it was written.

    **Rolled-back state.** The marker also counts the starts booked under it and keeps the time of the last
    one; each process remembers the highest count it saw and its own last booked start. The state is taken
    as rolled back (a restart from an older RDB snapshot, an append-only file missing its last second, a
    failover to a lagging replica, a snapshot with an older marker) when the count is lower than this process
    saw, when this process's own last start, younger than one window, is missing from the window sets, or when a window
    set is empty although the last start booked by anyone is younger than that window (evicted keys). The
    script then writes a new marker and holds every process for one longest window from that moment. A
    rollback is found by the first call of a process that saw the lost starts; starts that no running
    process saw (its process has exited) cannot be told apart from starts never made.
    :attr:`state_losses` counts the losses and rollbacks this process noticed.

    **Redis down or frozen.** No slot is ever granted without a booked start. A Redis that refuses or drops
    connections, times out (``operation_timeout``), is still loading, or is read-only during a failover is
    asked again with back-off (50 ms doubling up to 1 s) for up to ``outage_timeout`` seconds from the first
    failure; after that, and right away for errors a working server gives (authentication, permissions,
    scripts), admissions raise :class:`~netverify_async.RateLimiterError` (nothing was sent). Once an outage
    has lasted ``outage_timeout``, the admission at the head of the queue fails and every admission queued
    behind it fails with it at once, without a Redis call of its own; later admissions try Redis once (up to
    ``operation_timeout``) and fail until it answers again.
    The wait for Redis is cancellable: a caller's deadline (``RetryPolicy.deadline`` of the client) ends it
    on time with :class:`~netverify_async.DeadlineExceeded`.
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        rates: RateSpec,
        key: str = DEFAULT_KEY,
        max_concurrency: int | None = None,
        margin: float = 0.0,
        jitter: float = DEFAULT_JITTER,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT,
        hold_on_missing_state: bool = True,
        max_pause: float = DEFAULT_MAX_PAUSE,
    ) -> None:
        super().__init__(
            max_concurrency=max_concurrency, clock=None, honour_retry_after=True, max_pause=max_pause
        )
        self._redis_module = _import_redis()
        if not isinstance(key, str) or not key or len(key) > 200 or "{" in key or "}" in key:
            raise ConfigurationError(
                "key: must be a non-empty string of at most 200 characters without braces"
            )
        if not isinstance(jitter, (int, float)) or not math.isfinite(jitter) or jitter < 0:
            raise ConfigurationError(f"jitter: must be a finite number >= 0 seconds, got {jitter!r}")
        if (
            not isinstance(operation_timeout, (int, float))
            or not math.isfinite(operation_timeout)
            or operation_timeout <= 0
        ):
            raise ConfigurationError(
                f"operation_timeout: must be a finite number > 0, got {operation_timeout!r}"
            )
        if (
            not isinstance(outage_timeout, (int, float))
            or isinstance(outage_timeout, bool)
            or not math.isfinite(outage_timeout)
            or outage_timeout < 0
        ):
            raise ConfigurationError(
                f"outage_timeout: must be a finite number >= 0 seconds, got {outage_timeout!r}"
            )
        if not isinstance(hold_on_missing_state, bool):
            raise ConfigurationError(
                f"hold_on_missing_state: must be True or False, got {type(hold_on_missing_state).__name__}"
            )
        self._windows = parse_rate(rates)
        self._margin = _check_margin(margin)
        self._key = key
        self._jitter = float(jitter)
        self._operation_timeout = float(operation_timeout)
        self._outage_timeout = float(outage_timeout)
        self._hold_on_missing_state = hold_on_missing_state
        self._owns_client = isinstance(redis, str)
        if isinstance(redis, str):
            try:
                self._redis: Any = self._redis_module.asyncio.Redis.from_url(redis)
            except ValueError:
                raise ConfigurationError(
                    "redis: not a valid Redis URL (redis://, rediss:// or unix://)"
                ) from None
        else:
            self._redis = redis
        hash_tag = "{" + key + "}"
        self._keys: tuple[str, ...] = (
            f"{hash_tag}:pause",
            f"{hash_tag}:epoch",
            *(f"{hash_tag}:window:{round(w.seconds * _MICROS)}us" for w in self._windows),
        )
        # The sets are named by the configured window length, so processes with different margins share them.
        # Each set keeps a start for at least two configured window lengths (whoever trims it), so the last
        # booked start must still be there for min(own window, two windows): an empty set sooner was evicted.
        self._window_args: tuple[int, ...] = tuple(
            n
            for w in self._windows
            for n in (
                w.limit,
                round((w.seconds + self._margin) * _MICROS),
                round(min(w.seconds + self._margin, 2 * w.seconds) * _MICROS),
            )
        )
        # After a loss every process holds for the longest window, margin included.
        self._hold_us = max(round((w.seconds + self._margin) * _MICROS) for w in self._windows)
        # The marker must outlive the windows it vouches for (their keys live two window lengths).
        self._epoch_ttl_ms = max(_EPOCH_TTL_MS, math.ceil(2 * self._hold_us / 1000) + 1000)
        self._sha = _script_sha(_SCRIPT)
        self._member_prefix = secrets.token_hex(8)
        self._counter = 0
        self._published_pause_until = -math.inf
        self._random = random.Random()
        self._epoch = ""  # the state marker last seen in Redis ("": none yet)
        self._booked_count = 0  # the highest booking count seen under that marker
        self._own_last: tuple[str, int] = ("", 0)  # this process's last start under it: member, server µs
        self._state_losses = 0
        self._outage_since: float | None = None  # when Redis stopped answering (None: it answers)
        self._outage_delay = _OUTAGE_FIRST_DELAY

    # -- public --------------------------------------------------------------------------------------------

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """The configured windows (without the margin), shortest first."""
        return self._windows

    @property
    def key(self) -> str:
        """The name of this limit in Redis."""
        return self._key

    @property
    def state_losses(self) -> int:
        """How many times this process found the shared state lost in Redis (and held its admissions)."""
        return self._state_losses

    @property
    def redis_unavailable(self) -> bool:
        """True while Redis does not answer: the last call to it failed and none succeeded since."""
        return self._outage_since is not None

    async def reset(self) -> None:
        """Forget every booked start and the shared pause of this key, and start a fresh state with no hold.

        For tests and operators, and only when no request under this key was sent within the last window: the
        processes that use the key go on at once, with empty windows.
        """
        self._counter += 1
        fresh = f"{self._member_prefix}.{self._counter}:0"  # created at 0: a process that knew the old one
        # does not hold

        async def operation() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*self._keys)
                pipe.hset(self._keys[1], mapping={"m": fresh, "n": 0})
                pipe.pexpire(self._keys[1], self._epoch_ttl_ms)
                return await pipe.execute()

        await self._call(operation, shield=True)
        self._epoch = fresh
        self._booked_count = 0
        self._own_last = ("", 0)

    async def aclose(self) -> None:
        """Close the Redis client if the limiter opened it from a URL."""
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(key={self._key!r}, rates={_format_windows(self._windows)!r}, "
            f"max_concurrency={self._max_concurrency!r})"
        )

    # -- Redis calls ---------------------------------------------------------------------------------------

    async def _call(self, operation: Callable[[], Awaitable[Any]], *, shield: bool = False) -> Any:
        """Run one Redis operation, bounded by ``operation_timeout``; failures become RateLimiterError.

        An admission is not shielded: a caller's deadline or cancellation ends it at once. Should the script
        have booked a start by then, that start is never used and only counts against the limit (the safe
        side); redis-py drops a connection whose answer was not read. ``shield`` protects writes that must
        not be lost half-way (the shared pause, a reset).

        A failure that a working Redis would not give (refused or dropped connection, timeout, a server still
        loading its data or read-only during a failover) marks the start of an outage, and the error's
        ``__cause__`` tells the kind; any answer ends the outage.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisRateLimiter runs under asyncio only (redis-py's asyncio client); "
                "use the asyncio backend"
            ) from None
        errors = self._redis_module.exceptions
        try:
            with anyio.CancelScope(shield=shield), anyio.fail_after(self._operation_timeout):
                answer = await operation()
        except TimeoutError as exc:
            self._note_outage()
            raise RateLimiterError(
                f"rate limiter {self._key!r}: Redis did not answer within {self._operation_timeout:g}s"
            ) from exc
        except (errors.RedisError, OSError) as exc:
            if self._is_outage(exc):
                self._note_outage()
            raise RateLimiterError(
                f"rate limiter {self._key!r}: Redis call failed ({type(exc).__name__})"
            ) from exc
        if self._outage_since is not None:
            logger.warning(
                "rate limiter %r: Redis answers again after %.1fs",
                self._key,
                anyio.current_time() - self._outage_since,
            )
        self._outage_since = None
        self._outage_delay = _OUTAGE_FIRST_DELAY
        return answer

    def _is_outage(self, exc: BaseException) -> bool:
        """Whether ``exc`` is what an unreachable, restarting or failing-over Redis gives (worth waiting for),
        rather than a configuration error (authentication, permissions, a broken script)."""
        errors = self._redis_module.exceptions
        if isinstance(exc, (errors.AuthenticationError, errors.AuthorizationError)):
            return False
        if isinstance(exc, (errors.ConnectionError, errors.TimeoutError, OSError)):
            return True  # includes BusyLoadingError: a restarted server still loading its data
        return isinstance(exc, (errors.ReadOnlyError, errors.TryAgainError, errors.ClusterDownError))

    def _note_outage(self) -> None:
        if self._outage_since is None:
            self._outage_since = anyio.current_time()
            logger.warning("rate limiter %r: Redis cannot be reached; admissions wait for it", self._key)

    async def _run_script(self, *, book: bool, pause_us: int = 0, shield: bool = False) -> tuple[int, int]:
        """Run the admission script: book a start (``book``) and/or record a shared pause; (wait, now) in µs."""
        self._counter += 1
        member = f"{self._member_prefix}:{self._counter}" if book else ""
        args = (
            member,
            pause_us,
            1 if book else 0,
            self._epoch,
            self._booked_count,
            *self._own_last,
            f"{self._member_prefix}.{self._counter}",
            self._hold_us,
            1 if self._hold_on_missing_state else 0,
            self._epoch_ttl_ms,
            *self._window_args,
        )
        errors = self._redis_module.exceptions

        async def evaluate() -> Any:
            try:
                return await self._redis.evalsha(self._sha, len(self._keys), *self._keys, *args)
            except errors.NoScriptError:
                return await self._redis.eval(_SCRIPT, len(self._keys), *self._keys, *args)

        answer = await self._call(evaluate, shield=shield)
        if (
            not isinstance(answer, list)
            or len(answer) != 5
            or not all(
                isinstance(n, int) and not isinstance(n, bool)
                for n in (answer[0], answer[1], answer[3], answer[4])
            )
            or not isinstance(answer[2], (bytes, str))
        ):
            raise RateLimiterError(f"rate limiter {self._key!r}: unexpected answer from the Redis script")
        wait_us, now_us, marker, lost, count = answer
        epoch = marker.decode() if isinstance(marker, bytes) else marker
        # Answers may come back out of order (a booking and a shared pause in flight together): keep the
        # highest count seen under one marker.
        if epoch == self._epoch:
            self._booked_count = max(self._booked_count, count)
        else:
            self._booked_count = count
            self._own_last = ("", 0)  # booked under another marker: no longer expected in the windows
        self._epoch = epoch
        if book and wait_us <= 0 and now_us >= self._own_last[1]:
            self._own_last = (member, now_us)
        if lost:
            self._state_losses += 1
            self._published_pause_until = -math.inf  # the shared pause was lost with the rest
            logger.warning(
                "rate limiter %r: the shared state was lost or rolled back in Redis (restart, flush, failover "
                "or eviction); admissions are held for %.3gs so that starts the server may still count leave "
                "its window",
                self._key,
                self._hold_us / _MICROS,
            )
        return wait_us, now_us

    # -- hooks of the queued limiter -----------------------------------------------------------------------

    async def _try_start(self) -> LimiterSlot | float:
        now = self._clock()
        if self._paused_until > now:
            return self._paused_until - now
        try:
            wait_us, server_now_us = await self._run_script(book=True)
        except RateLimiterError as exc:
            outage_since = self._outage_since
            if (
                outage_since is None
                or exc.__cause__ is None
                or not self._is_outage(exc.__cause__)
                or anyio.current_time() - outage_since >= self._outage_timeout
            ):
                raise
            # Redis is restarting, failing over or briefly unreachable: ask again after a back-off (the
            # caller's deadline still applies; nothing starts without a booked slot).
            delay = self._outage_delay
            self._outage_delay = min(delay * 2, _OUTAGE_MAX_DELAY)
            return delay * (0.5 + self._random.random())
        if wait_us <= 0:
            return RedisSlot(self, server_now_us)
        return wait_us / _MICROS + self._random.random() * self._jitter

    def _queue_error(self, error: Exception) -> BaseException | None:
        # The head gave up on an outage that lasted outage_timeout: every admission queued behind it fails
        # now too, rather than each in turn after one more Redis round trip (operation_timeout each when Redis
        # is frozen).
        cause = error.__cause__
        if not isinstance(error, RateLimiterError) or cause is None or not self._is_outage(cause):
            return None
        queued = RateLimiterError(str(error))
        queued.__cause__ = cause
        return queued

    async def _after_release(self, slot: LimiterSlot) -> None:
        # Share a pause this process was asked for, so the other processes stop too.
        now = self._clock()
        if self._paused_until <= max(now, self._published_pause_until):
            return
        until = self._paused_until
        try:
            await self._run_script(book=False, pause_us=math.ceil((until - now) * _MICROS), shield=True)
        except (RateLimiterError, ConfigurationError) as exc:
            logger.warning("could not share the server's pause through Redis: %s", exc)
            return
        self._published_pause_until = max(self._published_pause_until, until)
