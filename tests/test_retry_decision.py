"""The retry decision as a pure function: every row of the decision table, without I/O or a clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from netverify_async import FailureKind, RetryPolicy
from netverify_async._retry import GiveUp, GiveUpReason, RetryAfter, decide

POLICY = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_max=20.0, attempt_timeout=60.0, max_retry_after=60.0)


def _decide(policy: RetryPolicy = POLICY, **overrides: Any) -> RetryAfter | GiveUp:
    inputs: dict[str, Any] = {
        "kind": FailureKind.NOT_SENT,
        "idempotent": False,
        "attempts": 1,
        "retry_after": None,
        "last_attempt_took": 0.01,
        "time_left": math.inf,
        "budget_can_pay": True,
        "jitter": 0.5,
    }
    inputs.update(overrides)
    return decide(policy, **inputs)


@pytest.mark.parametrize(
    ("kind", "idempotent", "retry_ambiguous", "retried"),
    [
        (FailureKind.NOT_SENT, False, False, True),
        (FailureKind.REFUSED, False, False, True),
        (FailureKind.AMBIGUOUS, False, False, False),
        (FailureKind.AMBIGUOUS, False, True, True),
        (FailureKind.AMBIGUOUS, True, False, True),
        (FailureKind.PERMANENT, False, True, False),
        (FailureKind.PERMANENT, True, False, False),
    ],
)
def test_the_kind_decides_whether_a_failure_is_retried_at_all(
    kind: FailureKind, idempotent: bool, retry_ambiguous: bool, retried: bool
) -> None:
    policy = RetryPolicy(retry_ambiguous=retry_ambiguous)
    decision = _decide(policy, kind=kind, idempotent=idempotent)
    assert isinstance(decision, RetryAfter) is retried
    if not retried:
        assert decision == GiveUp(GiveUpReason.NOT_RETRYABLE)


def test_the_last_allowed_attempt_gives_up() -> None:
    assert isinstance(_decide(attempts=3), RetryAfter)
    assert _decide(attempts=4) == GiveUp(GiveUpReason.ATTEMPTS)


@pytest.mark.parametrize(("attempts", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 20.0)])
def test_full_jitter_scales_the_exponential_ceiling(attempts: int, ceiling: float) -> None:
    policy = RetryPolicy(max_attempts=10)
    assert _decide(policy, attempts=attempts, jitter=0.0) == RetryAfter(0.0)
    assert _decide(policy, attempts=attempts, jitter=0.5) == RetryAfter(ceiling / 2)


def test_retry_after_is_a_floor_for_the_wait() -> None:
    assert _decide(kind=FailureKind.REFUSED, retry_after=7.0, jitter=0.5) == RetryAfter(7.0)
    assert _decide(kind=FailureKind.REFUSED, retry_after=0.0, jitter=0.5) == RetryAfter(0.25)


def test_retry_after_beyond_the_cap_gives_up_instead_of_retrying_early() -> None:
    decision = _decide(kind=FailureKind.REFUSED, retry_after=61.0)
    assert decision == GiveUp(GiveUpReason.RETRY_AFTER_TOO_LONG)


def test_no_retry_starts_that_the_deadline_would_cut_off() -> None:
    # the wait (0.25 s) plus a window of twice the last attempt (2 x 0.35 s) must fit in what is left
    assert _decide(last_attempt_took=0.35, time_left=0.96) == RetryAfter(0.25)
    assert _decide(last_attempt_took=0.35, time_left=0.95) == GiveUp(GiveUpReason.DEADLINE)
    # a fast failure still needs the minimum window
    assert _decide(last_attempt_took=0.0, jitter=0.0, time_left=0.1) == GiveUp(GiveUpReason.DEADLINE)
    assert _decide(last_attempt_took=0.0, jitter=0.0, time_left=0.11) == RetryAfter(0.0)


def test_a_retry_after_longer_than_the_time_left_gives_up_for_the_deadline() -> None:
    assert _decide(kind=FailureKind.REFUSED, retry_after=30.0, time_left=2.0) == GiveUp(GiveUpReason.DEADLINE)


def test_an_empty_budget_gives_up() -> None:
    assert _decide(budget_can_pay=False) == GiveUp(GiveUpReason.BUDGET)


def test_the_reasons_are_checked_in_order_kind_attempts_cap_deadline_budget() -> None:
    everything_wrong: dict[str, Any] = {
        "attempts": 4,
        "retry_after": 999.0,
        "time_left": 0.0,
        "budget_can_pay": False,
    }
    assert _decide(kind=FailureKind.PERMANENT, **everything_wrong).reason is GiveUpReason.NOT_RETRYABLE  # type: ignore[union-attr]
    assert _decide(kind=FailureKind.REFUSED, **everything_wrong).reason is GiveUpReason.ATTEMPTS  # type: ignore[union-attr]
    everything_wrong["attempts"] = 1
    assert _decide(kind=FailureKind.REFUSED, **everything_wrong).reason is GiveUpReason.RETRY_AFTER_TOO_LONG  # type: ignore[union-attr]
    everything_wrong["retry_after"] = None
    assert _decide(kind=FailureKind.REFUSED, **everything_wrong).reason is GiveUpReason.DEADLINE  # type: ignore[union-attr]
    everything_wrong["time_left"] = math.inf
    assert _decide(kind=FailureKind.REFUSED, **everything_wrong).reason is GiveUpReason.BUDGET  # type: ignore[union-attr]
