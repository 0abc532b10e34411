"""OpenTelemetry: spans and metrics of a batch with faults, exported by the SDK's in-memory exporters.

The batch runs against the bundled emulator over real HTTP with 429s, a 503, a 500 after processing and a
cut connection injected; the spans and metrics must agree with the client's own ``stats``, and no credential,
personal value, Jumio scan reference or (unless asked for) merchant reference may appear anywhere in them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from _fastapi_support import FORM, serve
from _support import SAMPLE_APPROVED, SleepRecorder, emulator_client, make_jpeg
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from netverify_async import ConfigurationError, Image, NetverifyRequest
from netverify_async.callbacks import CallbackOriginVerifier
from netverify_async.emulator import RunningEmulator, run_emulator
from netverify_async.fastapi import callback_router
from netverify_async.otel import OpenTelemetryHooks, instrument

pytestmark = pytest.mark.anyio

RequestFactory = Callable[..., NetverifyRequest]

SECRET = "sentinel-api-secret-5c1e"  # a test value that must never be exported
FIRST_NAME = "Sentinelfirstname"
LAST_NAME = "Sentinellastname"
CUSTOMER_ID = "sentinel-customer-77"
REFERENCES = [f"mref-sentinel-{n}" for n in range(5)]
TINY = "mref-sentinel-tiny"
#: performNetverify faults, used in order by whichever attempts come first: two refusals that are retried
#: (429, 429, 503 with Retry-After), then two failures after processing that leave the outcome unknown.
FAULTS = ["429", "429", "503", "drop", "500"]


@attrs.frozen
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[Any]]:
        """Data points by metric name."""
        found: dict[str, list[Any]] = {}
        data = self.metrics.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def everything_exported(self) -> str:
        """Every name, attribute key and value, status and resource of what was exported, as one text."""
        parts: list[Any] = []
        for span in self.finished():
            parts += [span.name, dict(span.attributes or {}), span.status.description, dict(span.resource.attributes)]
            parts += [[event.name, dict(event.attributes or {})] for event in span.events]
        data = self.metrics.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            parts.append(dict(resource.resource.attributes))
            for scope in resource.scope_metrics:
                parts.append(scope.scope.name)
                for metric in scope.metrics:
                    parts += [metric.name, metric.description, metric.unit]
                    parts += [dict(point.attributes or {}) for point in metric.data.data_points]
        return json.dumps(parts, default=str)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    resource = Resource.create({"service.name": "otel-test"})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[metrics])
    yield Telemetry(spans, metrics, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    async with run_emulator(processing_delay=0.0, api_secret=SECRET) as running:
        yield running


def sums(points: list[Any], key: str | None = None) -> dict[Any, int]:
    """The values of counter points, added up by one attribute (or in all)."""
    found: Counter[Any] = Counter()
    for point in points:
        found[point.attributes.get(key) if key else None] += point.value
    return dict(found)


SUBMIT_ATTEMPT = "POST /api/netverify/v2/performNetverify"
STATUS_ATTEMPT = "GET /api/netverify/v2/scans/{scanReference}"


def children(parent: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans whose parent is ``parent``, by start time."""
    assert parent.context is not None
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    assert all(s.context is not None and s.context.trace_id == parent.context.trace_id for s in found)
    return sorted(found, key=lambda s: s.start_time or 0)


def batch_requests(make_request: RequestFactory) -> list[NetverifyRequest]:
    requests = [make_request(ref) for ref in REFERENCES]
    requests[0] = make_request(REFERENCES[0], first_name=FIRST_NAME, last_name=LAST_NAME, customer_id=CUSTOMER_ID)
    requests.append(make_request(TINY, frontside_image=Image.from_bytes(make_jpeg(100, 80))))
    return requests


async def run_batch(
    emu: RunningEmulator, telemetry: Telemetry, make_request: RequestFactory, tmp_path: Path, **options: Any
) -> tuple[Any, list[str], list[str]]:
    """The faulty batch, then one status query; (client stats, receipts' scan references, outcome statuses)."""
    emu.set_faults(sequence=FAULTS, error_phase="after")
    async with emulator_client(emu, SleepRecorder()) as client:
        instrument(
            client, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, **options
        )
        async with client.submit_many(batch_requests(make_request), journal=tmp_path / "b.journal") as batch:
            outcomes = [outcome async for outcome in batch]
        scans = [o.receipt.scan_reference for o in outcomes if o.receipt is not None]
        await client.scan_status(scans[0])
    return client.stats, scans, sorted(o.status.value for o in outcomes)


async def test_a_faulty_batch_exports_spans_and_metrics_that_match_the_stats(
    emu: RunningEmulator, telemetry: Telemetry, make_request: RequestFactory, tmp_path: Path
) -> None:
    stats, scans, statuses = await run_batch(emu, telemetry, make_request, tmp_path)
    assert statuses == ["preflight_rejected", "receipt", "receipt", "receipt", "unknown", "unknown"]
    assert (stats.attempts, stats.retries, stats.throttled, stats.receipts) == (9, 3, 2, 3)
    assert stats.status_counts == {200: 4, 429: 2, 503: 1, 500: 1}

    # -- spans ---------------------------------------------------------------------------------------------
    spans = telemetry.finished()
    assert Counter(s.name for s in spans) == {
        "netverify.submit": 5,
        "netverify.retrieve scanStatus": 1,
        SUBMIT_ATTEMPT: 8,
        STATUS_ATTEMPT: 1,
    }
    calls = [s for s in spans if s.name.startswith("netverify.")]
    attempts = [s for s in spans if not s.name.startswith("netverify.")]
    assert {s.kind for s in calls} == {SpanKind.INTERNAL}
    assert {s.kind for s in attempts} == {SpanKind.CLIENT}  # one CLIENT span per physical request
    assert len(attempts) == stats.attempts
    port = httpx.URL(emu.base_url).port
    submits = [s for s in calls if s.name == "netverify.submit"]
    for span in submits:
        attributes = dict(span.attributes or {})
        assert attributes["netverify.operation"] == "performNetverify"
        assert not {key for key in attributes if key.split(".")[0] in ("http", "server", "url")}
        assert "netverify.merchant_reference" not in attributes
        mine = children(span, attempts)
        assert attributes["netverify.attempts"] == len(mine) >= 1
        assert [c.attributes.get("http.request.resend_count") for c in mine] == [None, *range(1, len(mine))]
        assert attributes["netverify.bytes_sent"] == sum(c.attributes["netverify.bytes_sent"] for c in mine)
        for child in mine:
            assert child.attributes["http.request.method"] == "POST"
            assert (child.attributes["server.address"], child.attributes["server.port"]) == ("127.0.0.1", port)
            assert child.attributes["url.full"] == emu.base_url + "/api/netverify/v2/performNetverify"
            assert child.attributes["url.template"] == "/api/netverify/v2/performNetverify"
            assert span.start_time <= child.start_time <= child.end_time <= span.end_time
            assert (child.status.status_code is StatusCode.ERROR) == ("error.type" in child.attributes)
        last = mine[-1]
        if attributes["netverify.outcome"] == "success":
            assert span.status.status_code is StatusCode.UNSET
            assert attributes["netverify.status_code"] == last.attributes["http.response.status_code"] == 200
            assert len(str(attributes["netverify.tracking_id"])) == 36
            assert last.attributes["netverify.tracking_id"] == attributes["netverify.tracking_id"]
            assert "error.type" not in attributes
        else:
            assert span.status.status_code is StatusCode.ERROR
            assert attributes["netverify.failure_kind"] == last.attributes["netverify.failure_kind"] == "ambiguous"
            assert attributes["error.type"] == "SubmissionOutcomeUnknown"
    outcomes = Counter(s.attributes["netverify.outcome"] for s in submits)
    assert outcomes == {"success": 3, "unknown": 2}
    failed = [children(s, attempts)[-1] for s in submits if s.status.status_code is StatusCode.ERROR]
    # the 500's status; the cut connection's class (no status)
    assert sorted(str(s.attributes.get("http.response.status_code")) for s in failed) == ["500", "None"]
    assert {str(s.attributes["error.type"]) for s in failed} - {"500"} <= {"ReadError", "RemoteProtocolError"}
    retry_events = [e for s in calls for e in s.events if e.name == "netverify.retry"]
    assert len(retry_events) == stats.retries
    assert Counter(s.attributes.get("http.response.status_code") for s in attempts) == {
        200: 4, 429: 2, 503: 1, 500: 1, None: 1
    }
    assert sorted(e.attributes["error.type"] for e in retry_events) == ["429", "429", "503"]
    [status_span] = [s for s in calls if s.name == "netverify.retrieve scanStatus"]
    [status_attempt] = children(status_span, attempts)
    assert status_attempt.name == STATUS_ATTEMPT and status_attempt.attributes["http.request.method"] == "GET"
    assert status_attempt.attributes["url.full"] == emu.base_url + "/api/netverify/v2/scans/REDACTED"
    assert status_attempt.attributes["url.template"] == "/api/netverify/v2/scans/{scanReference}"
    assert status_attempt.attributes["http.response.status_code"] == 200

    # -- metrics -------------------------------------------------------------------------------------------
    points = telemetry.metric_points()
    assert sums(points["netverify.submissions"], "netverify.outcome") == {"receipt": 3, "unknown": 2}
    assert sums(points["netverify.attempts"], "netverify.operation") == {"performNetverify": 8, "scanStatus": 1}
    assert sums(points["netverify.attempts"]) == {None: stats.attempts}
    assert sums(points["netverify.retries"], "netverify.failure_kind") == {"refused": stats.retries}
    assert sums(points["netverify.throttled"]) == {None: stats.throttled}
    assert sum(p.count for p in points["netverify.limiter.wait"]) == stats.attempts
    assert {p.attributes["netverify.limiter"] for p in points["netverify.limiter.wait"]} == {"submission", "retrieval"}
    assert sum(p.count for p in points["http.client.request.duration"]) == stats.attempts
    by_status = Counter()
    for point in points["http.client.request.duration"]:
        by_status[point.attributes.get("http.response.status_code")] += point.count
    assert by_status == {200: 4, 429: 2, 503: 1, 500: 1, None: 1}
    assert {p.value for p in points["http.client.active_requests"]} == {0}  # every attempt that started ended
    exported_bytes = sum(s.attributes["netverify.bytes_sent"] for s in calls)
    assert sums(points["netverify.bytes_sent"]) == {None: exported_bytes}
    assert exported_bytes >= 5 * len(make_request("x").frontside_image.data)
    rejections = points["netverify.preflight.rejections"]
    assert [(dict(p.attributes), p.value) for p in rejections] == [
        ({"netverify.preflight.code": "too_small", "netverify.image.role": "front"}, 1)
    ]
    assert sums(points["netverify.journal.transitions"], "netverify.journal.state") == {
        "pending": 6,
        "sent": 5,
        "receipt": 3,
        "unknown": 2,
        "failed": 1,
    }

    # -- nothing private, anywhere -------------------------------------------------------------------------
    exported = telemetry.everything_exported()
    basic = base64.b64encode(f"{emu.api_token}:{SECRET}".encode()).decode()
    for private in (SECRET, basic, FIRST_NAME, LAST_NAME, CUSTOMER_ID, "mref-sentinel", *scans):
        assert private not in exported, private


async def test_the_merchant_reference_is_recorded_on_spans_only_when_asked(
    emu: RunningEmulator, telemetry: Telemetry, make_request: RequestFactory, tmp_path: Path
) -> None:
    await run_batch(emu, telemetry, make_request, tmp_path, record_merchant_reference=True)
    submits = [s for s in telemetry.finished() if s.name == "netverify.submit"]
    assert sorted(s.attributes["netverify.merchant_reference"] for s in submits) == REFERENCES
    # never a metric attribute: one time series per document would be of no use
    points = telemetry.metric_points()
    metric_attributes = json.dumps([dict(p.attributes) for found in points.values() for p in found])
    assert "mref-sentinel" not in metric_attributes
    assert SECRET not in telemetry.everything_exported() and FIRST_NAME not in telemetry.everything_exported()


@pytest.mark.both_loops
async def test_a_submission_span_on_each_loop(telemetry: Telemetry, make_request: RequestFactory) -> None:
    async with run_emulator(processing_delay=0.0) as running:
        hooks = OpenTelemetryHooks(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
        tracer = telemetry.tracer_provider.get_tracer("app")
        async with emulator_client(running, event_hooks=[hooks]) as client:
            with tracer.start_as_current_span("app.request") as app_span:
                await client.perform_netverify(make_request("loop-1"))
    attempt, span, app = telemetry.finished()
    assert (span.name, span.kind) == ("netverify.submit", SpanKind.INTERNAL)
    assert span.parent is not None and span.parent.span_id == app_span.get_span_context().span_id == app.context.span_id
    assert span.attributes["netverify.outcome"] == "success"
    assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    assert children(span, [attempt]) == [attempt]
    assert (attempt.name, attempt.kind) == (SUBMIT_ATTEMPT, SpanKind.CLIENT)
    assert attempt.attributes["http.response.status_code"] == 200
    assert "http.request.resend_count" not in attempt.attributes  # the first attempt is no resend
    assert sums(telemetry.metric_points()["netverify.submissions"], "netverify.outcome") == {"receipt": 1}


async def test_callback_deliveries_get_a_span_and_a_count(telemetry: Telemetry) -> None:
    hooks = OpenTelemetryHooks(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)

    async def handler(callback: Any) -> None:
        pass

    app = FastAPI()
    verifier = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    app.include_router(callback_router(handler, verifier=verifier, event_hooks=[hooks]))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        for body in (SAMPLE_APPROVED, SAMPLE_APPROVED, "not=a-callback"):
            await http.post("/netverify/callback", content=body, headers=FORM)

    spans = telemetry.finished()
    assert [s.name for s in spans] == ["netverify.callback"] * 3
    assert {s.kind for s in spans} == {SpanKind.INTERNAL}
    answered = [(s.attributes["netverify.callback.outcome"], s.attributes["http.response.status_code"]) for s in spans]
    assert answered == [
        ("accepted", 200),
        ("duplicate", 200),
        ("invalid", 400),
    ]
    assert spans[0].attributes["netverify.verification_status"] == "APPROVED_VERIFIED"
    points = telemetry.metric_points()["netverify.callbacks"]
    assert sums(points, "netverify.callback.outcome") == {"accepted": 1, "duplicate": 1, "invalid": 1}
    exported = telemetry.everything_exported()
    for private in ("FIRSTNAME", "LASTNAME", "P1234", "1990-01-01", "xxxxxxxx-xxxx", "YOURIDSCANREFERENCE"):
        assert private not in exported, private


async def test_a_callback_without_a_status_has_no_status_attribute(telemetry: Telemetry) -> None:
    hooks = OpenTelemetryHooks(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)

    async def handler(callback: Any) -> None:
        pass

    app = FastAPI()
    verifier = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    app.include_router(callback_router(handler, verifier=verifier, event_hooks=[hooks]))
    without_status = SAMPLE_APPROVED.replace("&verificationStatus=APPROVED_VERIFIED", "")
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        answer = await http.post("/netverify/callback", content=without_status, headers=FORM)
    assert answer.status_code == 200
    [span] = telemetry.finished()
    assert span.attributes["netverify.callback.outcome"] == "accepted"
    assert "netverify.verification_status" not in span.attributes


def test_instrument_checks_its_client() -> None:
    with pytest.raises(ConfigurationError, match="NetverifyClient"):
        instrument(object())  # type: ignore[arg-type]


def _loaded_after(code: str) -> tuple[set[str], str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return (set(json.loads(out.stdout.strip().splitlines()[-1])) if out.returncode == 0 else set()), out.stderr


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    # (netverify_async.fastapi is left out: FastAPI itself imports the OpenTelemetry API when it is installed)
    loaded, _ = _loaded_after("import netverify_async, netverify_async.callbacks, netverify_async._events")
    assert "netverify_async" in loaded
    assert not {name for name in loaded if name.split(".")[0] == "opentelemetry"}


def test_without_the_extra_the_module_says_what_to_install() -> None:
    _, stderr = _loaded_after("sys.modules['opentelemetry'] = None\nimport netverify_async.otel")
    assert "pip install 'netverify-async[otel]'" in stderr
