"""The retry policy, the pure retry decision, the client-wide retry budget and the retry loop (tenacity).

Every failed attempt carries one :class:`~netverify_async.FailureKind`, decided where it failed
(:mod:`netverify_async._exchange`). What the loop does with it:

========================  ==========================================  ====================  ==================
kind                      examples                                    performNetverify      GET / DELETE
========================  ==========================================  ====================  ==================
``NOT_SENT``              DNS, refused connection, connect/pool       retried               retried
                          timeout, TLS handshake, connection broken
                          before the whole body was written
``REFUSED``               429, 503 with Retry-After                   retried, Retry-After  retried
``AMBIGUOUS``             anything after a complete body that is not  NOT retried: raises   retried
                          a certain refusal: read timeout, lost       SubmissionOutcome-
                          connection, 500/502/504, 503 without        Unknown (unless
                          Retry-After, 408, redirects, 1xx, unknown   ``retry_ambiguous``)
                          statuses
``PERMANENT``             400, 401, 403, 404 and the other refusals   raised at once        raised at once
                          that repeat
========================  ==========================================  ====================  ==================

:func:`decide` is the whole decision, a pure function of the policy and what happened; tenacity runs the loop
with its ``retry`` (is the kind retryable), ``stop`` (attempts, Retry-After cap, deadline, budget) and ``wait``
(full-jitter backoff, Retry-After) all read from that one decision, and ``before_sleep`` for the hooks.

The retry budget works like botocore's retry quota: each retry spends tokens from a bucket shared by the whole
client, each success puts one back. When a dependency is down, the bucket empties and the client stops adding
retries to the load (it raises :class:`~netverify_async.RetryBudgetExhausted` instead).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import attrs
import tenacity

from ._enums import TextEnum
from ._errors import (
    ConfigurationError,
    DeadlineExceeded,
    FailureKind,
    ReadError,
    RequestError,
    RetryBudgetExhausted,
)

__all__ = [
    "FailureKind",
    "GiveUp",
    "GiveUpReason",
    "RetryAfter",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "decide",
    "parse_retry_after",
    "run_with_retries",
]

logger = logging.getLogger("netverify_async")

# A retry is only started when the deadline leaves at least this long (or twice what the last attempt took) for
# it: an attempt the deadline cuts off in flight turns a failure that was safe to retry into an unknown outcome.
MIN_ATTEMPT_WINDOW = 0.1

_T = TypeVar("_T")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value <= 0):
        raise ConfigurationError(f"RetryPolicy.{attribute.name} must be a positive number")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigurationError(f"RetryPolicy.{attribute.name} must be zero or positive")


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"RetryPolicy.{attribute.name} must be an integer >= 1")


@attrs.frozen
class RetryPolicy:
    """How the client retries. Immutable; use :func:`attrs.evolve` to derive variants.

    - ``max_attempts``: attempts in all, the first one included (1 disables retries).
    - ``backoff_base`` / ``backoff_max``: full-jitter exponential backoff, the n-th retry waits a random time in
      ``[0, min(backoff_max, backoff_base * 2**(n-1))]``.
    - ``deadline``: seconds for the whole call, all attempts and waits included (None: no overall limit).
    - ``attempt_timeout``: seconds for one attempt (connect + upload + answer), inside the deadline.
    - ``connect_timeout``: seconds to get a connection (from the pool or a new one).
    - ``max_retry_after``: the longest ``Retry-After`` the client waits for; after a longer one the refusal
      itself (:class:`~netverify_async.RateLimitedError`, or the 503's ``ServerError``) is raised, carrying the
      wait in ``retry_after``, instead of retrying early.
    - ``retry_ambiguous``: resend performNetverify after an ambiguous failure. Off by default because it can
      create a duplicate, billed scan; GET and DELETE calls are always retried after ambiguous failures.
    - ``budget_capacity`` / ``retry_cost`` / ``timeout_retry_cost`` / ``success_refund``: the client-wide retry
      budget (tokens); ``budget_capacity=0`` disables the budget.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=20.0, validator=_positive)
    deadline: float | None = attrs.field(default=120.0, validator=_positive)
    attempt_timeout: float = attrs.field(default=60.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    retry_ambiguous: bool = False
    budget_capacity: int = attrs.field(default=500, validator=_non_negative)
    retry_cost: int = attrs.field(default=5, validator=_non_negative)
    timeout_retry_cost: int = attrs.field(default=10, validator=_non_negative)
    success_refund: int = attrs.field(default=1, validator=_non_negative)

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)

    def backoff_ceiling(self, retry_number: int) -> float:
        """The longest wait before the given retry (1 = first retry): exponential, capped at ``backoff_max``."""
        return min(self.backoff_max, self.backoff_base * (2.0 ** max(0, retry_number - 1)))

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before the given retry (1 = first retry)."""
        return (rng or random).uniform(0, self.backoff_ceiling(retry_number))

    def should_retry(self, kind: FailureKind, *, idempotent: bool) -> bool:
        """Whether a failure of this kind may be retried at all (attempts and budget aside)."""
        if kind in (FailureKind.NOT_SENT, FailureKind.REFUSED):
            return True
        if kind is FailureKind.AMBIGUOUS:
            return idempotent or self.retry_ambiguous
        return False


class RetryBudget:
    """Client-wide token bucket that caps how much retrying the client adds when the server is failing.

    Used from one event loop; its operations never await, so they need no lock.
    """

    def __init__(
        self, capacity: int, *, retry_cost: int, timeout_retry_cost: int, success_refund: int
    ) -> None:
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.success_refund = success_refund
        self.available = capacity

    @classmethod
    def from_policy(cls, policy: RetryPolicy) -> RetryBudget:
        return cls(
            policy.budget_capacity,
            retry_cost=policy.retry_cost,
            timeout_retry_cost=policy.timeout_retry_cost,
            success_refund=policy.success_refund,
        )

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def can_pay(self, *, timeout: bool) -> bool:
        """Whether the budget can pay for one retry (nothing is taken)."""
        return not self.enabled or self._cost(timeout) <= self.available

    def try_spend(self, *, timeout: bool) -> bool:
        """Take the cost of one retry; False (and nothing taken) when the budget cannot pay for it."""
        if not self.can_pay(timeout=timeout):
            return False
        if self.enabled:
            self.available -= self._cost(timeout)
        return True

    def _cost(self, timeout: bool) -> int:
        return self.timeout_retry_cost if timeout else self.retry_cost

    def refund(self) -> None:
        """Give tokens back after a success."""
        if self.enabled:
            self.available = min(self.capacity, self.available + self.success_refund)

    def __repr__(self) -> str:
        return f"RetryBudget(available={self.available}, capacity={self.capacity})"


@attrs.frozen
class RetryEvent:
    """What the ``on_retry`` hook receives before each wait: safe to log (no secret, no personal data).

    ``kind`` is the failed attempt's :class:`FailureKind`; ``AMBIGUOUS`` on a submission means the retry may
    create a second scan (only with ``retry_ambiguous``).
    """

    operation: str
    attempt: int
    delay: float
    kind: FailureKind
    error_type: str
    status_code: int | None
    tracking_id: str | None
    merchant_id_scan_reference: str | None


def parse_retry_after(headers: Mapping[str, str], *, now: _dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or invalid."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        seconds = float(raw)
        return seconds if math.isfinite(seconds) else None
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is not None:
        return value if math.isfinite(value) and value >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    current = now or _dt.datetime.now(_dt.timezone.utc)
    return max(0.0, (when - current).total_seconds())


# ----------------------------------------------------------------------------------------------------------
# The decision
# ----------------------------------------------------------------------------------------------------------


class GiveUpReason(TextEnum):
    """Why :func:`decide` stopped retrying."""

    #: the failure's kind is never retried for this call (PERMANENT; AMBIGUOUS on a submission by default)
    NOT_RETRYABLE = "not_retryable"
    #: ``max_attempts`` attempts were made
    ATTEMPTS = "attempts"
    #: the server asks for a longer wait than ``max_retry_after``
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    #: the deadline leaves no room for the wait and another attempt
    DEADLINE = "deadline"
    #: the client-wide retry budget cannot pay for another retry
    BUDGET = "budget"


@attrs.frozen
class RetryAfter:
    """Retry after ``delay`` seconds."""

    delay: float


@attrs.frozen
class GiveUp:
    """Stop; the call ends with the last failure (or an error that says why it stopped)."""

    reason: GiveUpReason


Decision = RetryAfter | GiveUp


def decide(
    policy: RetryPolicy,
    *,
    kind: FailureKind,
    idempotent: bool,
    attempts: int,
    retry_after: float | None,
    last_attempt_took: float,
    time_left: float,
    budget_can_pay: bool,
    jitter: float,
) -> Decision:
    """The retry decision after a failed attempt, from nothing but its inputs.

    ``attempts`` is how many attempts were made (the failed one included); ``time_left`` is what remains of the
    deadline (``math.inf`` without one); ``jitter`` is a number in [0, 1) that scales the backoff ceiling (full
    jitter); ``budget_can_pay`` says whether the client-wide budget could pay for a retry now.
    """
    if not policy.should_retry(kind, idempotent=idempotent):
        return GiveUp(GiveUpReason.NOT_RETRYABLE)
    if attempts >= policy.max_attempts:
        return GiveUp(GiveUpReason.ATTEMPTS)
    delay = jitter * policy.backoff_ceiling(attempts)
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return GiveUp(GiveUpReason.RETRY_AFTER_TOO_LONG)
        delay = max(delay, retry_after)
    window = min(policy.attempt_timeout, max(MIN_ATTEMPT_WINDOW, 2 * last_attempt_took))
    if delay + window >= time_left:
        return GiveUp(GiveUpReason.DEADLINE)
    if not budget_can_pay:
        return GiveUp(GiveUpReason.BUDGET)
    return RetryAfter(delay)


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------


@attrs.define
class AttemptHistory:
    """What happened so far in one call: read by the caller when the loop ends."""

    deadline_at: float
    attempts: int = 0
    #: an attempt failed in a way that may have been processed by the server
    maybe_processed: bool = False
    last_started: float = 0.0
    last_took: float = 0.0
    #: the decision after each failed attempt, by attempt number
    decisions: dict[int, Decision] = attrs.field(factory=dict)


SleepFunc = Callable[[float], Awaitable[None]]
BeforeSleep = Callable[[int, RequestError, float], Awaitable[None]]


async def run_with_retries(
    attempt: Callable[[int], Awaitable[_T]],
    *,
    policy: RetryPolicy,
    idempotent: bool,
    budget: RetryBudget,
    history: AttemptHistory,
    sleep: SleepFunc,
    before_sleep: BeforeSleep,
    rng: random.Random | None = None,
) -> _T:
    """Run ``attempt(number)`` until it returns, or :func:`decide` gives up; the final error is raised.

    ``attempt`` raises a :class:`~netverify_async.RequestError` carrying its kind for a failed attempt; any
    other exception ends the call as it is. On giving up for the deadline or the budget, the error says so
    (:class:`~netverify_async.DeadlineExceeded`, :class:`~netverify_async.RetryBudgetExhausted`, both carrying
    the last failure's kind, with that failure as ``__cause__``). ``history`` tells the caller whether an
    attempt may have been processed.
    """
    draw = rng.random if rng is not None else random.random

    def decision(state: tenacity.RetryCallState) -> Decision:
        number = state.attempt_number
        found = history.decisions.get(number)
        if found is None:
            error = state.outcome.exception() if state.outcome is not None else None
            if not isinstance(error, RequestError) or isinstance(error, DeadlineExceeded):
                found = GiveUp(GiveUpReason.NOT_RETRYABLE)
            else:
                found = decide(
                    policy,
                    kind=error.kind,
                    idempotent=idempotent,
                    attempts=number,
                    retry_after=getattr(error, "retry_after", None),
                    last_attempt_took=history.last_took,
                    time_left=history.deadline_at - anyio.current_time(),
                    budget_can_pay=budget.can_pay(timeout=_is_timeout(error)),
                    jitter=draw(),
                )
            history.decisions[number] = found
        return found

    def retryable(state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        return decision(state) != GiveUp(GiveUpReason.NOT_RETRYABLE)

    def stop(state: tenacity.RetryCallState) -> bool:
        return isinstance(decision(state), GiveUp)

    def wait(state: tenacity.RetryCallState) -> float:
        found = decision(state)
        return found.delay if isinstance(found, RetryAfter) else 0.0

    async def hook(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        found = decision(state)
        assert isinstance(error, RequestError) and isinstance(found, RetryAfter)
        budget.try_spend(timeout=_is_timeout(error))
        await before_sleep(state.attempt_number, error, found.delay)

    retrying = tenacity.AsyncRetrying(
        retry=retryable,
        stop=stop,
        wait=wait,
        before_sleep=hook,
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retrying(_recorded(attempt, history))
    except RequestError as error:
        if not isinstance(error, DeadlineExceeded):  # a deadline reached before an attempt counts what was sent
            error.attempts = history.attempts
        reason = history.decisions.get(history.attempts)
        if reason == GiveUp(GiveUpReason.DEADLINE):
            raise _gave_up(DeadlineExceeded, "the deadline leaves no time to retry after", error) from error
        if reason == GiveUp(GiveUpReason.BUDGET):
            raise _gave_up(RetryBudgetExhausted, "client retry budget exhausted; not retrying", error) from error
        raise


def _recorded(attempt: Callable[[int], Awaitable[_T]], history: AttemptHistory) -> Callable[[], Awaitable[_T]]:
    """``attempt`` numbered, timed and its failures' kinds recorded in ``history``."""

    async def run() -> _T:
        history.attempts += 1
        history.last_started = anyio.current_time()
        try:
            return await attempt(history.attempts)
        except RequestError as error:
            if error.kind is FailureKind.AMBIGUOUS:
                history.maybe_processed = True
            raise
        finally:
            history.last_took = anyio.current_time() - history.last_started

    return run


def _is_timeout(error: RequestError) -> bool:
    return isinstance(error, ReadError)


def _gave_up(cls: type[RequestError], why: str, error: RequestError) -> RequestError:
    final = cls(
        f"{error.operation or 'call'}: {why} {type(error).__name__}",
        kind=error.kind,
        operation=error.operation,
        merchant_id_scan_reference=error.merchant_id_scan_reference,
        attempts=error.attempts,
    )
    return final
