"""One account's rate limit shared by several processes and hosts, kept in Redis (the ``[redis]`` extra).

:class:`RedisRateLimiter` follows the same :class:`~netverify_async._ratelimit.RateLimiter` protocol as the
in-process limiters and makes the same promise: no interval of W seconds, wherever it lies, holds more than N
request starts, now counted over *every* process that uses the same key. The check-and-book step is a single
Lua script that runs atomically on the Redis server and reads the server's own clock, so the hosts' clocks
never need to agree.

It uses redis-py's asyncio client and therefore runs under asyncio only (not trio). The concurrency cap is per
process; fairness is first come, first served inside a process, not across processes.
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
#: Keys outlive their last entry by this long, so an idle account leaves nothing behind.
_KEY_TTL_SLACK_MS: Final = 1000
_MICROS: Final = 1_000_000

# Atomic sliding-window admission on the Redis server's clock.
#   KEYS[1]    string: the end of the shared pause (server time, microseconds)
#   KEYS[2..]  sorted sets, one per window length: recent start times (score, microseconds), kept for two
#              window lengths so that a process enforcing a longer window (a margin) still sees them
#   ARGV[1]    a member name unique to this start
#   ARGV[2]    pause to record, microseconds from now (0: none)
#   ARGV[3]    "1": book a start if every window allows it; "0": only record the pause
#   ARGV[4..]  limit, window length (microseconds) for each sorted set, in KEYS order
# Returns {wait, now}: wait 0 means a start was booked at now; otherwise nothing changed (except the pause)
# and the caller should try again after wait microseconds.
_SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_until = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local pause = tonumber(ARGV[2])
if pause > 0 and now + pause > pause_until then
  pause_until = now + pause
  redis.call('SET', KEYS[1], string.format('%.0f', pause_until), 'PX', math.ceil(pause / 1000) + 1000)
end
if ARGV[3] ~= '1' then
  return {0, now}
end
local wait = pause_until - now
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
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
  return {wait, now}
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], string.format('%.0f', now), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * tonumber(ARGV[2 * i + 1]) / 1000) + 1000)
end
return {0, now}
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

    Every start is booked by one Lua script (EVALSHA, falling back to EVAL when the server does not know it)
    that reads the server clock, drops start times older than two window lengths from each window's sorted
    set, and either books the start in every set or returns how long until the N-th most recent start is a
    full window old. Keys expire two window lengths after the last start. A 429 (or 503) with ``Retry-After`` pauses this process at once and, when the slot is released,
    stores a shared pause that every other process honours.

    Redis errors and timeouts raise :class:`~netverify_async.RateLimiterError` (nothing was sent).
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
        self._windows = parse_rate(rates)
        self._margin = _check_margin(margin)
        self._key = key
        self._jitter = float(jitter)
        self._operation_timeout = float(operation_timeout)
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
            *(f"{hash_tag}:window:{round(w.seconds * _MICROS)}us" for w in self._windows),
        )
        # The sets are named by the configured window length, so processes with different margins share them.
        self._window_args: tuple[int, ...] = tuple(
            n for w in self._windows for n in (w.limit, round((w.seconds + self._margin) * _MICROS))
        )
        self._sha = _script_sha(_SCRIPT)
        self._member_prefix = secrets.token_hex(8)
        self._counter = 0
        self._published_pause_until = -math.inf
        self._random = random.Random()

    # -- public --------------------------------------------------------------------------------------------

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """The configured windows (without the margin), shortest first."""
        return self._windows

    @property
    def key(self) -> str:
        """The name of this limit in Redis."""
        return self._key

    async def reset(self) -> None:
        """Forget every booked start and the shared pause of this key (for tests and operators)."""
        await self._call(lambda: self._redis.delete(*self._keys))

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

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis operation, shielded from cancellation so that an answer is never lost half-way.

        Bounded by ``operation_timeout``; failures become RateLimiterError."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisRateLimiter runs under asyncio only (redis-py's asyncio client); "
                "use the asyncio backend"
            ) from None
        errors = self._redis_module.exceptions
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(self._operation_timeout):
                return await operation()
        except TimeoutError as exc:
            raise RateLimiterError(
                f"rate limiter {self._key!r}: Redis did not answer within {self._operation_timeout:g}s"
            ) from exc
        except (errors.RedisError, OSError) as exc:
            raise RateLimiterError(
                f"rate limiter {self._key!r}: Redis call failed ({type(exc).__name__})"
            ) from exc

    async def _run_script(self, member: str, pause_us: int, book: bool) -> tuple[int, int]:
        args = (member, pause_us, 1 if book else 0, *self._window_args)
        errors = self._redis_module.exceptions

        async def evaluate() -> Any:
            try:
                return await self._redis.evalsha(self._sha, len(self._keys), *self._keys, *args)
            except errors.NoScriptError:
                return await self._redis.eval(_SCRIPT, len(self._keys), *self._keys, *args)

        answer = await self._call(evaluate)
        if (
            not isinstance(answer, list)
            or len(answer) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in answer)
        ):
            raise RateLimiterError(f"rate limiter {self._key!r}: unexpected answer from the Redis script")
        return answer[0], answer[1]

    # -- hooks of the queued limiter -----------------------------------------------------------------------

    async def _try_start(self) -> LimiterSlot | float:
        now = self._clock()
        if self._paused_until > now:
            return self._paused_until - now
        self._counter += 1
        wait_us, server_now_us = await self._run_script(f"{self._member_prefix}:{self._counter}", 0, True)
        if wait_us <= 0:
            return RedisSlot(self, server_now_us)
        return wait_us / _MICROS + self._random.random() * self._jitter

    async def _after_release(self, slot: LimiterSlot) -> None:
        # Share a pause this process was asked for, so the other processes stop too.
        now = self._clock()
        if self._paused_until <= max(now, self._published_pause_until):
            return
        until = self._paused_until
        try:
            await self._run_script("", math.ceil((until - now) * _MICROS), False)
        except (RateLimiterError, ConfigurationError) as exc:
            logger.warning("could not share the server's pause through Redis: %s", exc)
            return
        self._published_pause_until = max(self._published_pause_until, until)
