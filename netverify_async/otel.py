"""OpenTelemetry spans and metrics for the client, batches and the callback endpoint (``pip install
'netverify-async[otel]'``).

::

    from netverify_async.otel import instrument

    hooks = instrument(client)                      # the global tracer and meter providers
    app.include_router(callback_router(handler, event_hooks=[hooks]))

:class:`OpenTelemetryHooks` is an event hook (see :mod:`netverify_async._events`): everything it records comes
from the library's events, which never hold a credential, image bytes, a query string or personal data. The
merchant reference is recorded (as ``netverify.merchant_reference`` on spans) only with
``record_merchant_reference=True``; it is never a metric attribute (one time series per document would be of no
use). Jumio's scan references are not recorded: ``url.full`` carries ``REDACTED`` in their place.

Spans:

====================================  ========  =============================================================
``netverify.submit``                  INTERNAL  a performNetverify call: limiter waits, retry waits, attempts
``netverify.retrieve {operation}``    INTERNAL  a retrieval or deletion call (``scanStatus``, ...)
``{method} {url.template}``           CLIENT    one HTTP attempt (a child of its call's span), e.g.
                                                ``POST /api/netverify/v2/performNetverify``
``netverify.callback``                INTERNAL  a callback delivery handled by ``callback_router``
====================================  ========  =============================================================

A call span carries ``netverify.operation``, ``netverify.outcome``, ``netverify.attempts``,
``netverify.limiter.wait`` (s, all attempts), ``netverify.bytes_sent``, ``netverify.failure_kind``,
``netverify.tracking_id`` (the last ``X-Trackingid``), ``error.type`` (the final error's class name) and a
``netverify.retry`` span event per scheduled retry. An attempt span follows the HTTP client semantic
conventions (one span per physical request): ``http.request.method``, ``server.address``, ``server.port``,
``url.full``, ``url.template``, ``http.response.status_code``, ``error.type`` (the status code of an error
answer, else the error's class name), ``http.request.resend_count`` (from the second attempt on), plus
``netverify.tracking_id``, ``netverify.failure_kind``, ``netverify.bytes_sent`` and ``netverify.limiter.wait``.

Metrics (see ``docs/observability.md`` for their attributes): ``netverify.submissions``,
``netverify.attempts``, ``netverify.retries``, ``netverify.throttled``, ``netverify.limiter.wait``,
``http.client.active_requests``, ``http.client.request.duration``, ``netverify.bytes_sent``,
``netverify.preflight.rejections``, ``netverify.journal.transitions``, ``netverify.callbacks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._client import NetverifyClient
from ._errors import ConfigurationError
from ._events import (
    AttemptFinished,
    AttemptStarted,
    CallbackHandled,
    CallFinished,
    CallStarted,
    Event,
    JournalTransition,
    LimiterWaited,
    PreflightRejected,
    RetryScheduled,
)

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "netverify_async.otel needs the OpenTelemetry API: pip install 'netverify-async[otel]'"
    ) from exc

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryHooks", "instrument"]

#: The instrumentation scope's name.
SCOPE = "netverify_async"
#: The semantic conventions the attributes follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
#: Bucket boundaries (s) of ``http.client.request.duration``: the conventions' advice, plus room for uploads.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
#: Bucket boundaries (s) of ``netverify.limiter.wait``.
WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: ``netverify.submissions`` outcome by :data:`~netverify_async._events.CallOutcome`.
SUBMISSION_OUTCOMES = {"success": "receipt", "error": "failed", "unknown": "unknown", "cancelled": "cancelled"}
_SUBMIT = "performNetverify"


def span_name(operation: str) -> str:
    """The name of an API call's span."""
    return "netverify.submit" if operation == _SUBMIT else f"netverify.retrieve {operation}"


def attempt_span_name(method: str, url_template: str) -> str:
    """The name of an HTTP attempt's span: ``{method} {url.template}``, as the HTTP conventions advise."""
    return f"{method} {url_template}" if url_template else method


def _error_type(status: int | None, error_type: str | None) -> str | None:
    if error_type is None:
        return None
    return str(status) if status is not None and status >= 400 else error_type


@attrs.define
class _CallState:
    span: Span
    #: ``http.request.method``, ``server.address``, ``server.port``: the attributes of the HTTP metrics
    server: dict[str, Any]
    url_full: str
    url_template: str
    #: the limiter wait of the attempt that comes next
    limiter_wait: float = 0.0
    #: the span of the attempt in flight
    attempt: Span | None = None


class OpenTelemetryHooks:
    """An event hook that records spans and metrics; pass it in ``event_hooks`` (of a client, of
    ``callback_router``) or use :func:`instrument`.

    ``tracer_provider`` / ``meter_provider``: the providers to use (default: the global ones).
    ``record_merchant_reference``: add the merchant reference to submission spans (off by default).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        record_merchant_reference: bool = False,
    ) -> None:
        from . import __version__

        self.record_merchant_reference = bool(record_merchant_reference)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self._submissions = meter.create_counter(
            "netverify.submissions", unit="{submission}", description="performNetverify calls, by outcome"
        )
        self._attempts = meter.create_counter(
            "netverify.attempts", unit="{attempt}", description="HTTP attempts made (each holds a limiter slot)"
        )
        self._retries = meter.create_counter(
            "netverify.retries", unit="{retry}", description="Retries scheduled after a failed attempt"
        )
        self._throttled = meter.create_counter(
            "netverify.throttled", unit="{response}", description="Answers 429 Too Many Requests"
        )
        self._limiter_wait = meter.create_histogram(
            "netverify.limiter.wait",
            unit="s",
            description="Time an attempt waited for its rate-limiter slot",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self._active = meter.create_up_down_counter(
            "http.client.active_requests", unit="{request}", description="HTTP requests in flight"
        )
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._bytes_sent = meter.create_counter(
            "netverify.bytes_sent", unit="By", description="Request body bytes handed to the network"
        )
        self._preflight = meter.create_counter(
            "netverify.preflight.rejections",
            unit="{rejection}",
            description="Images refused by preflight (nothing sent), by error code",
        )
        self._journal = meter.create_counter(
            "netverify.journal.transitions",
            unit="{transition}",
            description="States recorded in a batch journal, by state",
        )
        self._callbacks = meter.create_counter(
            "netverify.callbacks", unit="{callback}", description="Callback deliveries answered, by outcome"
        )
        self._calls: dict[int, _CallState] = {}

    def __repr__(self) -> str:
        return f"OpenTelemetryHooks(record_merchant_reference={self.record_merchant_reference})"

    def __call__(self, event: Event) -> None:
        """Record one event (a synchronous hook; it never awaits)."""
        if isinstance(event, CallStarted):
            self._call_started(event)
        elif isinstance(event, LimiterWaited):
            self._limiter_waited(event)
        elif isinstance(event, AttemptStarted):
            self._attempt_started(event)
        elif isinstance(event, AttemptFinished):
            self._attempt_finished(event)
        elif isinstance(event, RetryScheduled):
            self._retry_scheduled(event)
        elif isinstance(event, CallFinished):
            self._call_finished(event)
        elif isinstance(event, PreflightRejected):
            for code in event.codes:
                self._preflight.add(1, {"netverify.preflight.code": code, "netverify.image.role": event.role or ""})
        elif isinstance(event, JournalTransition):
            self._journal.add(1, {"netverify.journal.state": event.state})
        elif isinstance(event, CallbackHandled):
            self._callback_handled(event)

    # -- calls ---------------------------------------------------------------------------------------------

    def _call_started(self, event: CallStarted) -> None:
        server = {
            "http.request.method": event.method,
            "server.address": event.server_address,
            "server.port": event.server_port,
        }
        attributes: dict[str, Any] = {"netverify.operation": event.operation}
        if self.record_merchant_reference and event.merchant_id_scan_reference is not None:
            attributes["netverify.merchant_reference"] = event.merchant_id_scan_reference
        span = self._tracer.start_span(
            span_name(event.operation), kind=SpanKind.INTERNAL, attributes=attributes, start_time=event.timestamp_ns
        )
        self._calls[event.call_id] = _CallState(span, server, event.url, event.url_template)

    def _limiter_waited(self, event: LimiterWaited) -> None:
        self._limiter_wait.record(
            event.seconds, {"netverify.operation": event.operation, "netverify.limiter": event.limiter}
        )
        state = self._calls.get(event.call_id)
        if state is not None:
            state.limiter_wait = event.seconds

    def _server(self, call_id: int, method: str) -> dict[str, Any]:
        state = self._calls.get(call_id)
        return dict(state.server) if state is not None else {"http.request.method": method}

    def _attempt_started(self, event: AttemptStarted) -> None:
        self._active.add(1, self._server(event.call_id, event.method))
        state = self._calls.get(event.call_id)
        if state is None:
            return
        attributes: dict[str, Any] = {
            **state.server,
            "url.full": state.url_full,
            "url.template": state.url_template,
            "netverify.limiter.wait": state.limiter_wait,
        }
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        if state.attempt is not None:  # an attempt that never reported its end
            state.attempt.end(end_time=event.timestamp_ns)
        state.attempt = self._tracer.start_span(
            attempt_span_name(event.method, state.url_template),
            context=set_span_in_context(state.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=event.timestamp_ns,
        )

    def _attempt_finished(self, event: AttemptFinished) -> None:
        server = self._server(event.call_id, event.method)
        self._active.add(-1, server)
        operation = {"netverify.operation": event.operation}
        self._attempts.add(1, operation)
        if event.bytes_sent:
            self._bytes_sent.add(event.bytes_sent, operation)
        if event.status_code == 429:
            self._throttled.add(1, operation)
        measured = dict(server)
        if event.status_code is not None:
            measured["http.response.status_code"] = event.status_code
        error_type = _error_type(event.status_code, event.error_type)
        if error_type is not None:
            measured["error.type"] = error_type
        self._duration.record(event.duration, measured)
        state = self._calls.get(event.call_id)
        if state is None or state.attempt is None:
            return
        span, state.attempt = state.attempt, None
        attributes: dict[str, Any] = {"netverify.bytes_sent": event.bytes_sent}
        if event.status_code is not None:
            attributes["http.response.status_code"] = event.status_code
        if error_type is not None:
            attributes["error.type"] = error_type
        if event.failure_kind is not None:
            attributes["netverify.failure_kind"] = event.failure_kind.value
        if event.tracking_id is not None:
            attributes["netverify.tracking_id"] = event.tracking_id
        span.set_attributes(attributes)
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=event.timestamp_ns)

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        kind = event.failure_kind.value
        self._retries.add(1, {"netverify.operation": event.operation, "netverify.failure_kind": kind})
        state = self._calls.get(event.call_id)
        if state is None:
            return
        attributes: dict[str, Any] = {
            "http.request.resend_count": event.attempt,
            "netverify.retry.delay": event.delay,
            "netverify.failure_kind": kind,
            "error.type": _error_type(event.status_code, event.error_type) or event.error_type,
        }
        if event.status_code is not None:
            attributes["http.response.status_code"] = event.status_code
        state.span.add_event("netverify.retry", attributes, timestamp=event.timestamp_ns)

    def _call_finished(self, event: CallFinished) -> None:
        if event.operation == _SUBMIT:
            self._submissions.add(1, {"netverify.outcome": SUBMISSION_OUTCOMES.get(event.outcome, event.outcome)})
        state = self._calls.pop(event.call_id, None)
        if state is None:
            return
        span = state.span
        if state.attempt is not None:  # an attempt that never reported its end
            state.attempt.end(end_time=event.timestamp_ns)
        attributes: dict[str, Any] = {
            "netverify.outcome": event.outcome,
            "netverify.attempts": event.attempts,
            "netverify.limiter.wait": event.limiter_wait,
            "netverify.bytes_sent": event.bytes_sent,
        }
        if event.status_code is not None:
            attributes["netverify.status_code"] = event.status_code
        if event.tracking_id is not None:
            attributes["netverify.tracking_id"] = event.tracking_id
        if event.failure_kind is not None:
            attributes["netverify.failure_kind"] = event.failure_kind.value
        if event.error_type is not None:
            attributes["error.type"] = event.error_type
        span.set_attributes(attributes)
        if event.outcome != "success":
            # the class name only: a message may quote what the server said
            span.set_status(Status(StatusCode.ERROR, event.error_type))
        span.end(end_time=event.timestamp_ns)

    # -- callbacks -----------------------------------------------------------------------------------------

    def _callback_handled(self, event: CallbackHandled) -> None:
        labels: dict[str, Any] = {
            "netverify.callback.outcome": event.outcome,
            "http.response.status_code": event.status_code,
        }
        self._callbacks.add(1, labels)
        attributes: dict[str, Any] = dict(labels)
        if event.verification_status is not None:
            attributes["netverify.verification_status"] = event.verification_status
        if event.journal_effect is not None:
            attributes["netverify.journal.effect"] = event.journal_effect
        if event.status_code >= 500:
            attributes["error.type"] = str(event.status_code)
        start = event.timestamp_ns - max(0, int(event.duration * 1e9))
        span = self._tracer.start_span(
            "netverify.callback", kind=SpanKind.INTERNAL, attributes=attributes, start_time=start
        )
        if event.status_code >= 500:
            span.set_status(Status(StatusCode.ERROR, str(event.status_code)))
        span.end(end_time=event.timestamp_ns)


def instrument(
    client: NetverifyClient,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    record_merchant_reference: bool = False,
) -> OpenTelemetryHooks:
    """Add an :class:`OpenTelemetryHooks` to ``client.event_hooks`` and return it (pass the same object to
    ``callback_router(event_hooks=[...])`` to record callbacks too). Remove it with
    ``client.event_hooks.remove(hooks)``."""
    if not isinstance(client, NetverifyClient):
        raise ConfigurationError(f"client: must be a NetverifyClient, not {type(client).__name__}")
    hooks = OpenTelemetryHooks(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        record_merchant_reference=record_merchant_reference,
    )
    client.event_hooks.append(hooks)
    return hooks
