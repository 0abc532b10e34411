"""Retry policy, failure classification and the client-wide retry budget.

Every failed attempt falls into one :class:`FailureKind`:

========================  ==========================================  ====================  ==================
kind                      examples                                    performNetverify      GET / DELETE
========================  ==========================================  ====================  ==================
``NOT_SENT``              DNS, refused connection, connect/pool         retried               retried
                          timeout, TLS handshake
``REFUSED``               429, 503 (server did not process it)        retried, Retry-After  retried
``AMBIGUOUS``             read timeout, connection lost after the     NOT retried: raises   retried
                          request was sent, 500 / 502 / 504           SubmissionOutcome-
                                                                      Unknown (unless
                                                                      ``retry_ambiguous``)
``PERMANENT``             400, 401, 403, 404, other 4xx, bad answers  raised at once        raised at once
========================  ==========================================  ====================  ==================

The retry budget works like botocore's retry quota: each retry spends tokens from a bucket shared by the whole
client, each success puts one back. When a dependency is down, the bucket empties and the client stops adding
retries to the load (it raises :class:`~netverify_async.RetryBudgetExhausted` instead).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import ConfigurationError

__all__ = ["FailureKind", "RetryBudget", "RetryEvent", "RetryPolicy", "parse_retry_after"]


class FailureKind(str, enum.Enum):
    """How a failed attempt bears on resending (see the module docstring)."""

    NOT_SENT = "not_sent"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"
    PERMANENT = "permanent"


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
    - ``max_retry_after``: the longest ``Retry-After`` the client waits for; a longer one raises
      :class:`~netverify_async.RateLimitedError` carrying the wait instead of retrying early.
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

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before the given retry (1 = first retry)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, retry_number - 1)))
        return (rng or random).uniform(0, ceiling)

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

    def try_spend(self, *, timeout: bool) -> bool:
        """Take the cost of one retry; False (and nothing taken) when the budget cannot pay for it."""
        if not self.enabled:
            return True
        cost = self.timeout_retry_cost if timeout else self.retry_cost
        if cost > self.available:
            return False
        self.available -= cost
        return True

    def refund(self) -> None:
        """Give tokens back after a success."""
        if self.enabled:
            self.available = min(self.capacity, self.available + self.success_refund)

    def __repr__(self) -> str:
        return f"RetryBudget(available={self.available}, capacity={self.capacity})"


@attrs.frozen
class RetryEvent:
    """What the ``on_retry`` hook receives before each wait: safe to log (no secret, no personal data)."""

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
