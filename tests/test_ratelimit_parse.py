"""Rate specifications: every accepted form, and a clear error naming the rule for every bad one."""

from __future__ import annotations

import pytest

from netverify_async import (
    AdaptiveLimiter,
    ConfigurationError,
    NetverifyClient,
    RateLimiter,
    RateWindow,
    SlidingWindowLimiter,
    UnlimitedLimiter,
    make_limiter,
    parse_rate,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("5/5s", [(5, 5.0)]),
        ("15/5s", [(15, 5.0)]),
        ("3/s", [(3, 1.0)]),
        ("3/sec", [(3, 1.0)]),
        ("3/second", [(3, 1.0)]),
        ("3/seconds", [(3, 1.0)]),
        ("180/min", [(180, 60.0)]),
        ("180/m", [(180, 60.0)]),
        ("180/minute", [(180, 60.0)]),
        ("180/minutes", [(180, 60.0)]),
        ("1000/h", [(1000, 3600.0)]),
        ("1000/hour", [(1000, 3600.0)]),
        ("1000/2hours", [(1000, 7200.0)]),
        ("10/0.5s", [(10, 0.5)]),
        ("  15 / 5 SECONDS ", [(15, 5.0)]),
        ("3/s,180/min", [(3, 1.0), (180, 60.0)]),
        ("180/min, 3/s", [(3, 1.0), (180, 60.0)]),
        ("75/5s,", [(75, 5.0)]),
    ],
)
def test_accepted_forms(spec: str, expected: list[tuple[int, float]]) -> None:
    assert [(w.limit, w.seconds) for w in parse_rate(spec)] == expected


def test_windows_and_mixed_iterables_are_accepted() -> None:
    assert parse_rate(RateWindow(5, 5)) == (RateWindow(5, 5.0),)
    assert parse_rate([RateWindow(180, 60), "3/s"]) == (RateWindow(3, 1.0), RateWindow(180, 60.0))


def test_implied_and_duplicate_windows_are_dropped() -> None:
    assert parse_rate("5/s,3/s") == (RateWindow(3, 1.0),)
    assert parse_rate("3/s,3/s") == (RateWindow(3, 1.0),)
    # 10 per second is implied by 5 per minute: any second lies inside some minute.
    assert parse_rate("10/s,5/min") == (RateWindow(5, 60.0),)
    # Neither implies the other: both stay.
    assert parse_rate("3/s,180/min") == (RateWindow(3, 1.0), RateWindow(180, 60.0))


def test_window_text_round_trips() -> None:
    for spec in ("5/5s", "3/s", "180/min", "1000/h", "10/0.5s"):
        (window,) = parse_rate(spec)
        assert str(window) == spec
        assert parse_rate(str(window)) == (window,)
    assert RateWindow(15, 5).rate == 3.0


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("0/s", "limit must be a whole number >= 1"),
        ("-3/s", "limit must be a whole number >= 1"),
        ("2.5/s", "limit must be a whole number >= 1"),
        ("x/s", "limit must be a whole number >= 1"),
        ("/s", "limit must be a whole number >= 1"),
        ("5/0s", "window length must be > 0"),
        ("5/-5s", "window length must be > 0"),
        ("5/.s", "window length is not a number"),
        ("5/5", "time unit is missing"),
        ("5/5 parsecs", "unknown time unit 'parsecs'"),
        ("5/5ms", "unknown time unit 'ms'"),
        ("five per second", "expected LIMIT/[COUNT]UNIT"),
        ("5/5s/2", "expected LIMIT/[COUNT]UNIT"),
    ],
)
def test_bad_rules_name_the_rule_and_the_broken_rule(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_rate(f"3/s, {spec}")
    message = str(info.value)
    assert f"rate rule {spec.strip()!r}" in message
    assert fragment in message


@pytest.mark.parametrize("spec", ["", " ", ",", [], ()])
def test_empty_specs_are_refused(spec: object) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        parse_rate(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [5, 2.5, None, [5], [None]])
def test_wrong_types_are_refused(spec: object) -> None:
    with pytest.raises(ConfigurationError, match="expected"):
        parse_rate(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "seconds"),
    [(0, 1), (-1, 1), (True, 1), (1.5, 1), (1, 0), (1, -1), (1, float("inf")), (1, float("nan")), (1, "5")],
)
def test_rate_window_validates_its_fields(limit: object, seconds: object) -> None:
    with pytest.raises(ConfigurationError, match="rate window"):
        RateWindow(limit, seconds)  # type: ignore[arg-type]


def test_configuration_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_rate("nonsense")


def test_make_limiter_maps_client_settings() -> None:
    windowed = make_limiter("3/s,180/min", max_concurrency=4)
    assert isinstance(windowed, AdaptiveLimiter)
    assert windowed.ceiling == (RateWindow(3, 1.0), RateWindow(180, 60.0))
    assert windowed.max_concurrency == 4
    assert windowed.current_rate is None  # the exact windows alone until the server disagrees
    adaptive = make_limiter(" Adaptive ")
    assert isinstance(adaptive, AdaptiveLimiter)
    assert adaptive.ceiling == ()
    unlimited = make_limiter(None, max_concurrency=2)
    assert isinstance(unlimited, UnlimitedLimiter)
    assert unlimited.max_concurrency == 2
    mine = SlidingWindowLimiter("5/5s")
    assert make_limiter(mine) is mine
    assert isinstance(mine, RateLimiter)
    with pytest.raises(ConfigurationError, match="rate rule"):
        make_limiter("fast")
    with pytest.raises(ConfigurationError, match="rate limit"):
        make_limiter(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "4"])
def test_concurrency_cap_is_validated(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        SlidingWindowLimiter("5/5s", max_concurrency=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        UnlimitedLimiter(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_rate": 0}, "min_rate"),
        ({"max_rate": -1}, "max_rate"),
        ({"min_rate": 5, "max_rate": 1}, "max_rate"),
        ({"initial_rate": 0}, "initial_rate"),
        ({"initial_rate": 100, "max_rate": 10}, "initial_rate"),
        ({"burst": 0.5}, "burst"),
        ({"beta": 1.0}, "beta"),
        ({"beta": 0}, "beta"),
        ({"recovery_time": float("nan")}, "recovery_time"),
        ({"max_pause": 0}, "max_pause"),
        ({"ceiling": "0/s"}, "rate rule"),
    ],
)
def test_adaptive_settings_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        AdaptiveLimiter(**kwargs)  # type: ignore[arg-type]


def test_sliding_window_margin_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="margin"):
        SlidingWindowLimiter("5/5s", margin=-0.1)


def test_reprs_show_the_configuration() -> None:
    assert repr(SlidingWindowLimiter("180/min,3/s", max_concurrency=2)) == (
        "SlidingWindowLimiter(rates='3/s,180/min', max_concurrency=2)"
    )
    assert repr(UnlimitedLimiter()) == "UnlimitedLimiter(max_concurrency=None)"
    assert repr(AdaptiveLimiter(ceiling="20/s")) == (
        "AdaptiveLimiter(ceiling='20/s', current_rate=off, max_concurrency=None)"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("99999999999999999999999/s", "at most 1,000,000"),
        ("1000001/min", "at most 1,000,000"),
        ("5/99999999999999999999999999h", "at most 86400 seconds"),
        ("5/25h", "at most 86400 seconds"),
    ],
)
def test_absurdly_large_specs_get_the_typed_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_rate(spec)
    with pytest.raises(ConfigurationError, match=message):
        NetverifyClient(api_token="t", api_secret="s", user_agent="Example Corp Tests/1.0", rate_limit=spec)
