"""RetryPolicy as a value object, Retry-After parsing, and the retry budget."""

from __future__ import annotations

import datetime as dt
import random

import attrs
import pytest

from netverify_async import ConfigurationError, FailureKind, RetryPolicy
from netverify_async._retry import RetryBudget, parse_retry_after


def test_policy_is_immutable_and_evolvable() -> None:
    policy = RetryPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert attrs.evolve(policy, max_attempts=2).max_attempts == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 1.5),
        ("backoff_base", 0),
        ("backoff_max", -1.0),
        ("deadline", 0),
        ("attempt_timeout", float("nan")),
        ("max_retry_after", -1),
        ("budget_capacity", -5),
    ],
)
def test_policy_refuses_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RetryPolicy(**{field: value})


def test_full_jitter_backoff_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    rng = random.Random(7)
    for retry in range(1, 8):
        ceiling = min(4.0, 0.5 * 2 ** (retry - 1))
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # full jitter spreads over the whole range


def test_which_failures_may_be_retried() -> None:
    default = RetryPolicy()
    assert default.should_retry(FailureKind.NOT_SENT, idempotent=False)
    assert default.should_retry(FailureKind.REFUSED, idempotent=False)
    assert not default.should_retry(FailureKind.AMBIGUOUS, idempotent=False)
    assert default.should_retry(FailureKind.AMBIGUOUS, idempotent=True)
    assert not default.should_retry(FailureKind.PERMANENT, idempotent=True)
    assert RetryPolicy(retry_ambiguous=True).should_retry(FailureKind.AMBIGUOUS, idempotent=False)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5), ("-3", None), ("soon", None), ("inf", None), ("\xb2", None), ("9" * 400, None)],
)
def test_retry_after_seconds(header: str, expected: float | None) -> None:
    assert parse_retry_after({"retry-after": header}) == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, now=now) == 30.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 11:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({}) is None


def test_budget_spends_refunds_and_refuses_when_empty() -> None:
    budget = RetryBudget(12, retry_cost=5, timeout_retry_cost=10, success_refund=1)
    assert budget.try_spend(timeout=False)
    assert budget.available == 7
    assert not budget.try_spend(timeout=True)  # 10 > 7: nothing taken
    assert budget.available == 7
    assert budget.try_spend(timeout=False)
    assert not budget.try_spend(timeout=False)
    for _ in range(20):
        budget.refund()
    assert budget.available == 12  # never above capacity


def test_zero_capacity_disables_the_budget() -> None:
    budget = RetryBudget(0, retry_cost=5, timeout_retry_cost=10, success_refund=1)
    assert all(budget.try_spend(timeout=True) for _ in range(100))
