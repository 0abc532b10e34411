"""The emulator's memory: scans, counters, the active faults and the rate-limit windows.

Everything here is touched by the server's event loop; readers in other threads (the thread-based runner,
tests) take snapshots under :attr:`EmulatorState.lock`.
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .. import _convert as convert
from ._config import LISTED_ID_TYPES, EmulatorConfig, Faults, RateWindow
from ._outcomes import Outcome

__all__ = [
    "CallbackRecord",
    "EmulatorState",
    "EmulatorStats",
    "Scan",
    "SecondStats",
    "SlidingWindowLimiter",
    "format_timestamp",
    "id_type_catalog",
]

#: How many seconds of per-second statistics are kept.
MAX_SERIES_SECONDS = 3600
#: How many callback deliveries are remembered for inspection.
MAX_CALLBACK_RECORDS = 10_000


_second_text: tuple[int, str] = (-1, "")


def format_timestamp(moment: _dt.datetime | None = None) -> str:
    """``YYYY-MM-DDThh:mm:ss.SSSZ`` in UTC (now, by default), the API's timestamp format."""
    global _second_text
    if moment is not None:
        return convert.format_timestamp(moment)
    now = time.time()
    second = int(now)
    if _second_text[0] != second:  # strftime once per second, not once per request
        _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_text[1]}.{int((now - second) * 1000):03d}Z"


@functools.cache
def _country_names() -> dict[str, str]:
    import pycountry

    names = {c.alpha_3: str(getattr(c, "common_name", None) or c.name) for c in pycountry.countries}
    names["XKX"] = "Kosovo"
    return dict(sorted(names.items()))


def _catalog_entry(country: str, types: Iterable[tuple[str, bool]]) -> dict[str, Any]:
    return {
        "countryCode": country,
        "countryName": _country_names().get(country, country),
        "idTypes": [{"acquisitionConfig": {"backSide": back}, "idType": id_type} for id_type, back in types],
    }


def id_type_catalog(config: EmulatorConfig, *, accepted: bool) -> list[dict[str, Any]]:
    """The ``supportedIdTypes`` list (every country, with PASSPORT, ID_CARD and DRIVING_LICENSE), or the
    ``acceptedIdTypes`` list (``config.accepted_id_types``, or the supported list when that is None)."""
    if accepted and config.accepted_id_types is not None:
        return [_catalog_entry(country, types) for country, types in config.accepted_id_types]
    return [_catalog_entry(country, LISTED_ID_TYPES.items()) for country in _country_names()]


def unaccepted_outcome(config: EmulatorConfig, country: str, id_type: str) -> Outcome | None:
    """How Jumio ends a scan of a country or ID type the account does not accept (None: accepted). VISA, which
    the lists do not name, is not checked."""
    if config.accepted_id_types is None or id_type not in LISTED_ID_TYPES:
        return None
    for code, types in config.accepted_id_types:
        if code == country:
            return None if any(t == id_type for t, _ in types) else Outcome.UNSUPPORTED_TYPE
    return Outcome.UNSUPPORTED_COUNTRY


@attrs.frozen
class Scan:
    """One scan the emulator accepted. Holds no secret; image bytes are kept only for the image endpoints."""

    reference: str
    merchant_reference: str
    customer_id: str | None
    reporting_criteria: str | None
    country: str
    id_type: str
    enabled_fields: tuple[str, ...] | None
    #: The request's own values of the extractable fields (echoed back as "read from the ID").
    wire_fields: Mapping[str, Any] = attrs.field(repr=False)
    face_match: bool
    callback_url: str | None
    on_all_steps: bool
    outcome: Outcome
    created_timestamp: str
    created_monotonic: float
    ready_monotonic: float
    client_ip: str = attrs.field(repr=False)
    base_url: str
    image_roles: frozenset[str]
    images: Mapping[str, tuple[bytes, str]] = attrs.field(repr=False, eq=False)
    #: How many synthetic liveness images the scan has (numbered from 1; see ``_liveness.py``).
    liveness_count: int = 0

    def status(self, now: float | None = None) -> str:
        """PENDING until the processing delay has passed, then DONE (FAILED when no ID was uploaded)."""
        if (time.monotonic() if now is None else now) < self.ready_monotonic:
            return "PENDING"
        return self.outcome.transaction_status

    def image_url(self, role: str) -> str:
        """Where the retrieval API serves the image of ``role`` (front, back, face)."""
        return f"{self.base_url}/api/netverify/v2/scans/{self.reference}/images/{role}"

    def liveness_urls(self) -> list[str]:
        """The URLs of the scan's liveness images, in the order the API lists them."""
        from ._liveness import liveness_numbers

        return [self.image_url(f"liveness/{n}") for n in liveness_numbers(self.liveness_count)]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description without personal data or images."""
        return {
            "scanReference": self.reference,
            "merchantIdScanReference": self.merchant_reference,
            "customerId": self.customer_id,
            "outcome": self.outcome.value,
            "verificationStatus": self.outcome.verification_status,
            "status": self.status(),
            "timestamp": self.created_timestamp,
            "images": sorted(self.image_roles),
            "callbackUrl": self.callback_url,
        }


@attrs.frozen
class CallbackRecord:
    """The fate of one callback (all its attempts): ``delivered``, ``failed``, ``skipped`` or ``rejected``."""

    scan_reference: str
    kind: str  # "final" or "images_received"
    url: str | None
    result: str
    attempts: int
    status_code: int | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return attrs.asdict(self)


@attrs.frozen
class SecondStats:
    """Requests answered during one second since the emulator started, by status code (0 = dropped)."""

    second: int
    requests: int
    status_counts: Mapping[int, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "second": self.second,
            "requests": self.requests,
            "statusCounts": {str(k): v for k, v in sorted(self.status_counts.items())},
        }


@attrs.frozen
class EmulatorStats:
    """A snapshot of what the emulator has seen since it started (or was reset)."""

    requests: int
    status_counts: Mapping[int, int]
    dropped: int
    scans_created: int
    scans_deleted: int
    scans_by_merchant_reference: Mapping[str, tuple[str, ...]]
    faults_injected: Mapping[str, int]
    callbacks_delivered: int
    callbacks_failed: int
    callbacks_skipped: int
    callbacks_rejected: int
    callback_attempts: int
    per_second: tuple[SecondStats, ...]

    @property
    def duplicates(self) -> dict[str, tuple[str, ...]]:
        """Merchant references that created more than one scan, with their scan references."""
        return {k: v for k, v in self.scans_by_merchant_reference.items() if len(v) > 1}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the body of ``GET /__emulator/stats``)."""
        return {
            "requests": self.requests,
            "statusCounts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "dropped": self.dropped,
            "scansCreated": self.scans_created,
            "scansDeleted": self.scans_deleted,
            "scansByMerchantReference": {k: list(v) for k, v in self.scans_by_merchant_reference.items()},
            "duplicates": {k: list(v) for k, v in self.duplicates.items()},
            "faultsInjected": dict(self.faults_injected),
            "callbacks": {
                "delivered": self.callbacks_delivered,
                "failed": self.callbacks_failed,
                "skipped": self.callbacks_skipped,
                "rejected": self.callbacks_rejected,
                "attempts": self.callback_attempts,
            },
            "perSecond": [s.to_dict() for s in self.per_second],
        }


class SlidingWindowLimiter:
    """Admits a request only if every window still has room; remembers the admitted requests' times."""

    def __init__(self, windows: tuple[RateWindow, ...]) -> None:
        self.windows = windows
        self._admitted: list[collections.deque[float]] = [collections.deque() for _ in windows]

    def try_admit(self, now: float) -> float | None:
        """None if admitted (and counted); else the seconds until the fullest window frees a slot."""
        wait = 0.0
        for window, times in zip(self.windows, self._admitted, strict=True):
            horizon = now - window.seconds
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= window.limit:
                wait = max(wait, times[0] - horizon)
        if wait > 0:
            return wait
        for times in self._admitted:
            times.append(now)
        return None


class EmulatorState:
    """Scans, counters, faults and limiters of one emulator instance."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.default_outcome = Outcome.parse(config.default_outcome)
        self.started = time.monotonic()
        self.scans: dict[str, Scan] = {}
        self.callback_records: collections.deque[CallbackRecord] = collections.deque(
            maxlen=MAX_CALLBACK_RECORDS
        )
        self._reset_counters()
        self.set_faults(config.faults)

    # -- faults ----------------------------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Make ``faults`` active: new random generator (seeded), sequence and limiter windows."""
        with self.lock:
            self.faults = faults
            self.rng = random.Random(faults.seed)
            self.sequence: collections.deque[str] = collections.deque(faults.sequence)
            self.by_reference: dict[str, str] = dict(faults.by_reference)
            self.submit_limiter = SlidingWindowLimiter(faults.rate_windows)
            self.retrieval_limiter = SlidingWindowLimiter(faults.retrieval_rate_windows)
            self._cumulative = self._action_table(faults)

    @staticmethod
    def _action_table(faults: Faults) -> tuple[tuple[float, str], ...]:
        table = []
        total = 0.0
        for status, rate in faults.errors:
            total += rate
            table.append((total, str(status)))
        total += faults.drop_rate
        table.append((total, "drop"))
        total += faults.slow_rate
        table.append((total, "slow"))
        return tuple((edge, action) for edge, action in table if edge > 0)

    def latency(self) -> float:
        """The delay to add to one affected request."""
        low, high = self.faults.latency
        if high <= 0:
            return 0.0
        return low if high == low else self.rng.uniform(low, high)

    def next_action(self) -> str | None:
        """The fault action for one affected request (``None`` or ``"ok"``: behave)."""
        if self.sequence:
            return self.sequence.popleft()
        if not self._cumulative:
            return None
        draw = self.rng.random()
        for edge, action in self._cumulative:
            if draw < edge:
                return action
        return None

    def take_reference_action(self, merchant_reference: str) -> str | None:
        """The action aimed at this merchant reference by :attr:`Faults.by_reference`, once; None otherwise."""
        if not self.by_reference:
            return None
        with self.lock:
            return self.by_reference.pop(merchant_reference, None)

    def note_fault(self, action: str) -> None:
        """Count an injected fault."""
        with self.lock:
            self.faults_injected[action] += 1

    # -- scans -----------------------------------------------------------------------------------------------

    def add_scan(self, scan: Scan) -> None:
        """Remember a new scan; one of a country or ID type the account does not accept is denied, as Jumio
        does (after creating, and billing, it)."""
        refused = unaccepted_outcome(self.config, scan.country, scan.id_type)
        if refused is not None:
            scan = attrs.evolve(scan, outcome=refused)
        with self.lock:
            self.scans[scan.reference] = scan
            self.scans_created += 1
            self.by_merchant_reference[scan.merchant_reference].append(scan.reference)

    def delete_scan(self, reference: str) -> bool:
        """Forget a scan (images and data); False when there was none."""
        with self.lock:
            if self.scans.pop(reference, None) is None:
                return False
            self.scans_deleted += 1
            return True

    # -- statistics ------------------------------------------------------------------------------------------

    def record_response(self, status: int, now: float) -> None:
        """Count one answered request (status 0: the connection was dropped)."""
        second = int(now - self.started)
        with self.lock:
            self.requests += 1
            self.status_counts[status] += 1
            bucket = self.series.get(second)
            if bucket is None:
                bucket = self.series[second] = collections.Counter()
                while len(self.series) > MAX_SERIES_SECONDS:
                    del self.series[next(iter(self.series))]
            bucket[status] += 1

    def record_callback(self, record: CallbackRecord) -> None:
        """Remember the fate of one callback."""
        with self.lock:
            self.callback_records.append(record)
            self.callback_counts[record.result] += 1
            self.callback_attempts += record.attempts

    def _reset_counters(self) -> None:
        self.requests = 0
        self.status_counts: collections.Counter[int] = collections.Counter()
        self.series: dict[int, collections.Counter[int]] = {}
        self.scans_created = 0
        self.scans_deleted = 0
        self.by_merchant_reference: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
        self.faults_injected: collections.Counter[str] = collections.Counter()
        self.callback_counts: collections.Counter[str] = collections.Counter()
        self.callback_attempts = 0

    def reset(self) -> None:
        """Forget every scan and counter, and restore the configured faults."""
        with self.lock:
            self.scans.clear()
            self.callback_records.clear()
            self.started = time.monotonic()
            self._reset_counters()
        self.set_faults(self.config.faults)

    def snapshot(self) -> EmulatorStats:
        """A consistent copy of the counters."""
        with self.lock:
            return EmulatorStats(
                requests=self.requests,
                status_counts=dict(self.status_counts),
                dropped=self.status_counts.get(0, 0),
                scans_created=self.scans_created,
                scans_deleted=self.scans_deleted,
                scans_by_merchant_reference={k: tuple(v) for k, v in self.by_merchant_reference.items()},
                faults_injected=dict(self.faults_injected),
                callbacks_delivered=self.callback_counts["delivered"],
                callbacks_failed=self.callback_counts["failed"],
                callbacks_skipped=self.callback_counts["skipped"],
                callbacks_rejected=self.callback_counts["rejected"],
                callback_attempts=self.callback_attempts,
                per_second=tuple(
                    SecondStats(second, sum(counts.values()), dict(counts))
                    for second, counts in sorted(self.series.items())
                ),
            )

    def scan_summaries(self) -> list[dict[str, Any]]:
        """JSON-ready summaries of the stored scans, oldest first."""
        with self.lock:
            scans = list(self.scans.values())
        return [s.summary() for s in scans]

    def callback_log(self) -> list[CallbackRecord]:
        """The remembered callback deliveries, oldest first."""
        with self.lock:
            return list(self.callback_records)
