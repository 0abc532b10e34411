"""Configuration value objects of the emulator: :class:`EmulatorConfig` and :class:`Faults`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from .._errors import ConfigurationError
from .._ratelimit import RateWindow, parse_rate
from ._urls import callback_url_problem

__all__ = [
    "ENDPOINT_KINDS",
    "FAULT_ACTIONS",
    "LISTED_ID_TYPES",
    "REFERENCE_FAULT_ACTIONS",
    "EmulatorConfig",
    "Faults",
    "RateWindow",
    "build_config",
    "parse_rate_limit",
]

#: The kinds of API call that faults can be applied to.
ENDPOINT_KINDS = ("submit", "retrieval", "delete")
#: The status codes that can be injected at a rate.
INJECTABLE_STATUSES = (500, 502, 503, 504)
#: One-shot actions accepted in :attr:`Faults.sequence`.
FAULT_ACTIONS = ("ok", "429", "500", "502", "503", "504", "drop", "slow")
#: Actions accepted in :attr:`Faults.by_reference`: those that happen after the scan was created.
REFERENCE_FAULT_ACTIONS = ("500", "502", "504", "drop", "slow")


def parse_rate_limit(spec: str | None) -> tuple[RateWindow, ...]:
    """The windows of a rate spec in the client's grammar (:func:`netverify_async.parse_rate`); None or ``""``
    means unlimited. The emulator enforces them with its own counter, an oracle independent of the client's
    limiter, but reads them with the same grammar users type for the client."""
    if spec is None or not spec.strip():
        return ()
    return parse_rate(spec)


def _rate_spec(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Iterable):  # windows, e.g. a previous parse result
        return ",".join(str(w) for w in value) or None
    raise ConfigurationError(f"rate limit must be a string like '5/5s', not {type(value).__name__}")


def _error_rates(value: Any) -> tuple[tuple[int, float], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    rates: dict[int, float] = {}
    for status, rate in items:
        rates[int(status)] = float(rate)
    return tuple(sorted(rates.items()))


def _by_reference(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (Mapping, Iterable)):
        raise ConfigurationError(
            "Faults.by_reference must map merchant references to actions, e.g. {'ref-7': 'drop'}"
        )
    items = value.items() if isinstance(value, Mapping) else value
    chosen: dict[str, str] = {}
    for entry in items:
        try:
            reference, action = entry
        except (TypeError, ValueError):
            raise ConfigurationError(
                "Faults.by_reference: each entry is (merchant reference, action)"
            ) from None
        chosen[str(reference)] = str(action)
    return tuple(sorted(chosen.items()))


def _latency(value: Any) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    low, high = value
    return (float(low), float(high))


def _check_probability(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigurationError(f"Faults.{name} must be a probability between 0 and 1")


@attrs.frozen(kw_only=True)
class Faults:
    """The misbehaviour the emulator adds on demand; every field defaults to "none".

    Faults touch only the endpoint kinds listed in ``apply_to`` (default: performNetverify only), except the
    two rate limits, which always apply to their own endpoints. For each affected request that passed the
    authentication and header checks, the emulator picks at most one action: the next entry of ``sequence``
    if any are left, otherwise one drawn with the seeded random generator according to the rates.

    ``before``-processing actions answer without creating a scan; ``after``-processing actions answer (or
    fail to) after the request was processed, i.e. after a valid submission created its scan: the "did my
    submission go through?" case:

    ==========================  ================  =================================================
    action                      when              effect
    ==========================  ================  =================================================
    ``429`` (rate limit)        before            ``{"title":"Too Many Requests",...}``, no scan
    ``503``                     before            always before processing, no scan, ``Retry-After: 1``
    ``500`` / ``502`` / ``504``  ``error_phase``   ``before``: no scan; ``after``: the scan exists
    ``drop``                    after             connection closed without any response
    ``slow``                    after             ``slow_seconds`` of delay (``delay``) or a
                                                  response dripped byte by byte (``drip``)
    ==========================  ================  =================================================

    ``by_reference`` aims an after-processing action at one document whatever the order of arrival: the first
    submission naming that ``merchantIdScanReference`` that creates a scan gets it (once), in place of the
    action drawn for it. ``{"ref-7": "drop"}`` creates the scan of ``ref-7``, sends its callback as usual, and
    closes the connection without an answer: the client cannot know whether its submission went through.
    Injected 500/502/504 here are always after processing (whatever ``error_phase`` says).
    """

    #: Added delay in seconds before each affected request is handled: a fixed value or a ``(low, high)``
    #: range drawn uniformly.
    latency: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_latency)
    #: Server-side sliding-window limit of performNetverify, e.g. ``"5/5s"`` or ``"3/s,180/min"``.
    rate_limit: str | None = attrs.field(default=None, converter=_rate_spec)
    #: Server-side sliding-window limit of the retrieval and delete endpoints, e.g. ``"75/5s"``.
    retrieval_rate_limit: str | None = attrs.field(default=None, converter=_rate_spec)
    #: Send ``Retry-After`` (whole seconds until the window frees a slot) with each 429.
    retry_after: bool = False
    #: Probability of each injected status, e.g. ``{503: 0.1, 500: 0.05}``.
    errors: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=_error_rates)
    #: Whether injected 500/502/504 happen before the scan is created or after (503 is always before).
    error_phase: Literal["before", "after"] = "before"
    #: Probability of closing the connection without an answer after the scan was created.
    drop_rate: float = 0.0
    #: Probability of a slow answer after the scan was created.
    slow_rate: float = 0.0
    #: How long a slow answer takes (``delay``: silence, then the answer; ``drip``: the whole time spread over
    #: the body's bytes).
    slow_seconds: float = 5.0
    slow_mode: Literal["delay", "drip"] = "delay"
    #: One-shot actions (see :data:`FAULT_ACTIONS`) used in order by the next affected requests, before any
    #: rate applies.
    sequence: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: One-shot after-processing actions (see :data:`REFERENCE_FAULT_ACTIONS`) for the first submission of a
    #: merchant reference that creates a scan, e.g. ``{"ref-7": "drop"}``; stored as sorted pairs.
    by_reference: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_by_reference)
    #: Seed of the random generator that draws latencies and actions (None: unpredictable).
    seed: int | None = None
    #: Endpoint kinds the faults (other than the rate limits) apply to: ``submit``, ``retrieval``, ``delete``.
    apply_to: frozenset[str] = attrs.field(default=frozenset({"submit"}), converter=frozenset)

    def __attrs_post_init__(self) -> None:
        low, high = self.latency
        if low < 0 or high < low:
            raise ConfigurationError("Faults.latency must be non-negative, and a range must be (low, high)")
        parse_rate_limit(self.rate_limit)
        parse_rate_limit(self.retrieval_rate_limit)
        for status, rate in self.errors:
            if status not in INJECTABLE_STATUSES:
                raise ConfigurationError(
                    f"Faults.errors: status {status} cannot be injected (use 500/502/503/504)"
                )
            _check_probability(f"errors[{status}]", rate)
        _check_probability("drop_rate", self.drop_rate)
        _check_probability("slow_rate", self.slow_rate)
        if sum(rate for _, rate in self.errors) + self.drop_rate + self.slow_rate > 1.0 + 1e-9:
            raise ConfigurationError("Faults: the error, drop and slow rates add up to more than 1")
        if self.error_phase not in ("before", "after"):
            raise ConfigurationError("Faults.error_phase must be 'before' or 'after'")
        if self.slow_mode not in ("delay", "drip"):
            raise ConfigurationError("Faults.slow_mode must be 'delay' or 'drip'")
        if self.slow_seconds < 0:
            raise ConfigurationError("Faults.slow_seconds must not be negative")
        for action in self.sequence:
            if action not in FAULT_ACTIONS:
                raise ConfigurationError(
                    f"Faults.sequence: unknown action {action!r} (one of {FAULT_ACTIONS})"
                )
        for _, action in self.by_reference:
            if action not in REFERENCE_FAULT_ACTIONS:
                raise ConfigurationError(
                    f"Faults.by_reference: action {action!r} cannot be aimed at a reference "
                    f"(one of {REFERENCE_FAULT_ACTIONS}: faults after the scan was created)"
                )
        unknown = self.apply_to - set(ENDPOINT_KINDS)
        if unknown:
            raise ConfigurationError(f"Faults.apply_to: unknown endpoint kinds {sorted(unknown)}")

    @property
    def error_rates(self) -> dict[int, float]:
        """The injected statuses and their probabilities as a dict."""
        return dict(self.errors)

    @property
    def rate_windows(self) -> tuple[RateWindow, ...]:
        """The parsed performNetverify rate limit."""
        return parse_rate_limit(self.rate_limit)

    @property
    def retrieval_rate_windows(self) -> tuple[RateWindow, ...]:
        """The parsed retrieval/delete rate limit."""
        return parse_rate_limit(self.retrieval_rate_limit)

    def replace(self, **changes: Any) -> Faults:
        """A copy with some fields changed (validated again)."""
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, accepted back by :meth:`from_dict`."""
        return {
            "latency": list(self.latency),
            "rate_limit": self.rate_limit,
            "retrieval_rate_limit": self.retrieval_rate_limit,
            "retry_after": self.retry_after,
            "errors": {str(status): rate for status, rate in self.errors},
            "error_phase": self.error_phase,
            "drop_rate": self.drop_rate,
            "slow_rate": self.slow_rate,
            "slow_seconds": self.slow_seconds,
            "slow_mode": self.slow_mode,
            "sequence": list(self.sequence),
            "by_reference": dict(self.by_reference),
            "seed": self.seed,
            "apply_to": sorted(self.apply_to),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Faults | None = None) -> Faults:
        """Build from :meth:`to_dict`'s form; keys missing from ``data`` keep their value in ``base``."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigurationError(f"unknown fault settings: {sorted(unknown)}")
        try:
            if base is None:
                return cls(**data)
            return attrs.evolve(base, **data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"invalid fault settings: {exc}") from None


#: The ID types the supported/accepted lists name, with whether each needs its back side by default.
LISTED_ID_TYPES: Mapping[str, bool] = {"PASSPORT": False, "ID_CARD": True, "DRIVING_LICENSE": True}

AcceptedIdTypes = tuple[tuple[str, tuple[tuple[str, bool], ...]], ...]


def _accepted_id_types(value: Any) -> AcceptedIdTypes | None:
    """``{"AUT": ["PASSPORT", "ID_CARD"], "DEU": {"ID_CARD": False}}`` (a list of types, or types mapped to
    "back side required"), or the normalised tuple form; None means every supported type."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (Mapping, Iterable)):
        raise ConfigurationError(
            "EmulatorConfig.accepted_id_types must map country codes to ID types, e.g. {'AUT': ['PASSPORT']}"
        )
    items = value.items() if isinstance(value, Mapping) else value
    countries: dict[str, dict[str, bool]] = {}
    for entry in items:
        try:
            country, types = entry
        except (TypeError, ValueError):
            raise ConfigurationError("EmulatorConfig.accepted_id_types: each entry is (country, ID types)") from None
        if not isinstance(country, str) or len(country) != 3 or not country.isalpha() or not country.isupper():
            raise ConfigurationError("EmulatorConfig.accepted_id_types: countries are ISO 3166-1 alpha-3 codes")
        if isinstance(types, str):
            types = [types]
        pairs = types.items() if isinstance(types, Mapping) else (
            (t, None) if isinstance(t, str) else tuple(t) for t in types
        )
        chosen = countries.setdefault(country, {})
        for id_type, back in pairs:
            if id_type not in LISTED_ID_TYPES:
                raise ConfigurationError(
                    f"EmulatorConfig.accepted_id_types: unknown ID type (one of {sorted(LISTED_ID_TYPES)})"
                )
            chosen[id_type] = LISTED_ID_TYPES[id_type] if back is None else bool(back)
    return tuple((country, tuple(types.items())) for country, types in countries.items())


def _faults(value: Any) -> Faults:
    if isinstance(value, Faults):
        return value
    if isinstance(value, Mapping):
        return Faults.from_dict(value)
    raise ConfigurationError("EmulatorConfig.faults must be a Faults or a mapping of its fields")


def _positive(name: str, value: float) -> None:
    if value < 0 or math.isnan(value):
        raise ConfigurationError(f"EmulatorConfig.{name} must not be negative")


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """Everything the emulator needs to know; the defaults give a well-behaved, fast server.

    Credentials are the emulator's own (never real ones); ``api_secret`` is not shown in ``repr``.
    """

    #: The Basic-auth user id the emulator accepts.
    api_token: str = "emulator-api-token"  # noqa: S105 - the emulator's own, public test credential
    #: The Basic-auth password the emulator accepts.
    api_secret: str = attrs.field(default="emulator-api-secret", repr=False)
    #: Seconds a scan stays PENDING before its result (and its callback) is ready.
    processing_delay: float = 0.5
    #: Verification outcome of requests that ask for none (see the outcome table); e.g. ``"DENIED_FRAUD"``.
    default_outcome: str = "APPROVED_VERIFIED"
    #: Accept and call http(s) loopback callback URLs with a port (127.0.0.1, localhost, [::1]).
    allow_http_callbacks: bool = False
    #: Send every callback to this URL instead of the request's ``callbackUrl`` (like the portal setting).
    callback_url_override: str | None = None
    #: Really call non-loopback callback hosts. Off by default, so that a test request naming
    #: ``https://example.com/...`` never leaves the machine; such callbacks are counted as skipped.
    deliver_external_callbacks: bool = False
    #: Further delivery attempts after a failed callback, and the first back-off delay (doubled each time).
    callback_retries: int = 3
    callback_backoff: float = 0.5
    #: Timeout of one callback delivery, in seconds.
    callback_timeout: float = 5.0
    #: Check each image's header (format, pixel size, byte size) and answer 400 for bad images.
    check_images: bool = True
    #: Keep the uploaded images so that the image retrieval endpoints can serve them.
    store_images: bool = True
    #: Synthetic liveness images of a scan whose request had a face image (identity verification): listed as
    #: ``livenessImages`` (retrieval API and callback) and served at ``.../images/liveness/{n}``; 0: none.
    liveness_images: int = 3
    #: Largest request body accepted; larger bodies are answered 413 without reading them fully.
    max_body_bytes: int = 64 * 1024 * 1024
    #: When set, the ``/__emulator/...`` admin endpoints require the header ``X-Emulator-Admin-Token``.
    admin_token: str | None = attrs.field(default=None, repr=False)
    #: Faults active from the start (change them at run time with ``set_faults`` or the admin endpoint).
    faults: Faults = attrs.field(factory=Faults, converter=_faults)
    #: The ID documents the account accepts (``GET /acceptedIdTypes``), e.g. ``{"AUT": ["PASSPORT"]}`` or
    #: ``{"DEU": {"ID_CARD": True}}`` (type -> back side required); None: every supported one. A submission
    #: of another country or type is processed (and billed) as Jumio does, and ends DENIED_UNSUPPORTED_ID_COUNTRY
    #: or DENIED_UNSUPPORTED_ID_TYPE.
    accepted_id_types: AcceptedIdTypes | None = attrs.field(default=None, converter=_accepted_id_types)

    def __attrs_post_init__(self) -> None:
        if not self.api_token or ":" in self.api_token:
            raise ConfigurationError("EmulatorConfig.api_token must be non-empty and contain no ':'")
        if not self.api_secret:
            raise ConfigurationError("EmulatorConfig.api_secret must be non-empty")
        _positive("processing_delay", self.processing_delay)
        _positive("callback_backoff", self.callback_backoff)
        _positive("callback_timeout", self.callback_timeout)
        if self.callback_retries < 0:
            raise ConfigurationError("EmulatorConfig.callback_retries must not be negative")
        if self.max_body_bytes < 1:
            raise ConfigurationError("EmulatorConfig.max_body_bytes must be positive")
        from ._liveness import MAX_LIVENESS_FRAMES

        if (
            isinstance(self.liveness_images, bool)
            or not isinstance(self.liveness_images, int)
            or not 0 <= self.liveness_images <= MAX_LIVENESS_FRAMES
        ):
            raise ConfigurationError(
                f"EmulatorConfig.liveness_images must be an integer from 0 to {MAX_LIVENESS_FRAMES}"
            )
        from ._outcomes import Outcome

        try:
            Outcome.parse(self.default_outcome)
        except ValueError:
            raise ConfigurationError(
                f"EmulatorConfig.default_outcome: unknown outcome (one of {Outcome.names()})"
            ) from None
        if self.callback_url_override is not None:
            problem = callback_url_problem(self.callback_url_override, allow_http=self.allow_http_callbacks)
            if problem is not None:
                raise ConfigurationError(f"EmulatorConfig.callback_url_override: {problem}")

    def replace(self, **changes: Any) -> EmulatorConfig:
        """A copy with some fields changed (validated again)."""
        return attrs.evolve(self, **changes)


def build_config(config: EmulatorConfig | None = None, **settings: Any) -> EmulatorConfig:
    """An :class:`EmulatorConfig` from ``config`` plus overrides (:class:`Faults` fields may be given too).

    ``build_config(processing_delay=0, rate_limit="5/5s")`` sets a config field and a fault field.
    """
    config_fields = {f.name for f in attrs.fields(EmulatorConfig)}
    fault_fields = {f.name for f in attrs.fields(Faults)}
    unknown = set(settings) - config_fields - fault_fields
    if unknown:
        raise ConfigurationError(f"unknown emulator settings: {sorted(unknown)}")
    base = config or EmulatorConfig()
    config_changes = {k: v for k, v in settings.items() if k in config_fields}
    fault_changes = {k: v for k, v in settings.items() if k in fault_fields}
    if config_changes:
        base = base.replace(**config_changes)
    if fault_changes:
        base = base.replace(faults=base.faults.replace(**fault_changes))
    return base
