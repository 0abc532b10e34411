"""Events: what the client, a batch and the callback endpoint did, as small immutable objects for hooks.

This module is the single instrumentation point of the library. The client (``_client.py``), a batch
(``_pipeline.py``) and the callback endpoint (``fastapi.py``) emit the events below to the callables in their
``event_hooks``; :mod:`netverify_async.otel` is one such hook, which turns them into OpenTelemetry spans and
metrics.

What an event never holds: an API credential, image or body bytes, personal data (names, ID numbers, dates of
birth, addresses), a query string, or a scan reference inside a URL (``url`` shows ``REDACTED`` in its
place). The one identifier of yours an event may carry is the merchant reference
(``merchant_id_scan_reference``), which your code chose; it is left out of every event's ``repr`` and
:mod:`netverify_async.otel` records it only when asked to.

The events of one API call, in order::

    CallStarted
      (LimiterWaited, AttemptStarted, AttemptFinished, [RetryScheduled])   once per attempt
    CallFinished

A hook is a plain function or an ``async`` function taking one event. It runs in the task that makes the call,
on its send path (some events are emitted while the call holds a rate-limiter slot, just before its body
leaves), so a hook must be quick: count, record, hand off.

- A plain function is called inline and is not interrupted: it must never block.
- An ``async`` hook is awaited for at most ``hook_timeout`` seconds (:data:`DEFAULT_HOOK_TIMEOUT` unless the
  client or ``callback_router`` is given another); past that it is cancelled, a warning is logged and the
  call goes on. It is shielded from the caller's cancellation for that time only, so that the events closing
  a cancelled call still arrive: a cancellation of the call takes effect at most ``hook_timeout`` later.

Whatever a hook raises, an exception or a cancellation of its own work, is logged on the ``netverify_async``
logger (its type and stack, not its message) and otherwise ignored: a hook never breaks a submission.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ._errors import ConfigurationError, FailureKind

if TYPE_CHECKING:
    from ._exchange import Answer, Call

__all__ = [
    "DEFAULT_HOOK_TIMEOUT",
    "AttemptFinished",
    "AttemptStarted",
    "CallFinished",
    "CallOutcome",
    "CallStarted",
    "CallbackHandled",
    "Event",
    "EventHook",
    "JournalTransition",
    "LimiterWaited",
    "PreflightRejected",
    "RetryScheduled",
]

logger = logging.getLogger("netverify_async")

#: How a call ended: ``success`` (a 2xx answer, a receipt for a submission), ``error`` (a typed error; nothing
#: or a refused request at the server), ``unknown`` (a submission that may have created a scan:
#: :class:`~netverify_async.SubmissionOutcomeUnknown`), ``cancelled`` (the caller's task was cancelled).
CallOutcome = Literal["success", "error", "unknown", "cancelled"]

#: Seconds an ``async`` hook may take over one event before it is cancelled (the default ``hook_timeout``).
DEFAULT_HOOK_TIMEOUT = 1.0

_ids = itertools.count(1)

#: A scan reference in a path: replaced in ``url`` (by ``REDACTED``) and ``url_template``.
_SCAN_IN_PATH = re.compile(r"(/scans/)[^/?#]+")


def _now_ns() -> int:
    return time.time_ns()


def _hidden(value: object) -> str:
    return "<hidden>" if value is not None else "None"


@attrs.frozen(kw_only=True)
class CallStarted:
    """An API call starts (before its first limiter slot).

    ``url`` is the full URL without credentials, query or scan reference (``REDACTED`` in its place);
    ``url_template`` the path with ``{scanReference}`` for the scan reference.
    """

    #: Number of the call, unique in the process; every event of the call carries it.
    call_id: int
    #: The API operation: ``performNetverify``, ``scanStatus``, ``scanDetails``, ``downloadImage``, ...
    operation: str
    method: str
    url: str
    url_template: str
    server_address: str
    server_port: int
    #: True for retrieval and deletion; False for a submission (sending it twice can create two scans).
    idempotent: bool
    merchant_id_scan_reference: str | None = attrs.field(default=None, repr=_hidden)
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class LimiterWaited:
    """Attempt ``attempt`` of a call got its rate-limiter slot after ``seconds`` of waiting (0 when free)."""

    call_id: int
    operation: str
    attempt: int
    seconds: float
    #: ``submission`` or ``retrieval``: which of the client's limiters
    limiter: str
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class AttemptStarted:
    """An HTTP attempt leaves (it holds a limiter slot); ``body_bytes`` is the size of the request body."""

    call_id: int
    operation: str
    method: str
    #: 1 for the first attempt, 2 for the first retry, ...
    attempt: int
    body_bytes: int
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class AttemptFinished:
    """An HTTP attempt ended: with an answer (``status_code``) and/or a failure (``failure_kind``,
    ``error_type``, the class name of the error). ``bytes_sent`` counts the body bytes handed to the network;
    ``duration`` is in seconds; ``tracking_id`` is the answer's ``X-Trackingid`` when there was one."""

    call_id: int
    operation: str
    method: str
    attempt: int
    status_code: int | None
    failure_kind: FailureKind | None
    error_type: str | None
    tracking_id: str | None
    bytes_sent: int
    duration: float
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class RetryScheduled:
    """Attempt ``attempt`` failed and the call retries after ``delay`` seconds."""

    call_id: int
    operation: str
    attempt: int
    delay: float
    failure_kind: FailureKind
    error_type: str
    status_code: int | None
    tracking_id: str | None
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class CallFinished:
    """An API call ended (see :data:`CallOutcome`). ``status_code``, ``tracking_id`` are the last answer's;
    ``failure_kind`` and ``error_type`` the final error's (None on success). ``duration`` and
    ``limiter_wait`` are seconds; ``bytes_sent`` sums every attempt's."""

    call_id: int
    operation: str
    method: str
    outcome: CallOutcome
    attempts: int
    status_code: int | None
    failure_kind: FailureKind | None
    error_type: str | None
    tracking_id: str | None
    duration: float
    limiter_wait: float
    bytes_sent: int
    merchant_id_scan_reference: str | None = attrs.field(default=None, repr=_hidden)
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class PreflightRejected:
    """An image failed preflight (nothing was sent): ``role`` (front, back, face) and its error ``codes``."""

    role: str | None
    codes: tuple[str, ...]
    merchant_id_scan_reference: str | None = attrs.field(default=None, repr=_hidden)
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class JournalTransition:
    """A batch recorded an item's new state in its journal (``pending``, ``sent``, ``receipt``, ``failed``,
    ``unknown``; see :class:`~netverify_async.JournalState`)."""

    state: str
    merchant_id_scan_reference: str | None = attrs.field(default=None, repr=_hidden)
    timestamp_ns: int = attrs.field(factory=_now_ns)


@attrs.frozen(kw_only=True)
class CallbackHandled:
    """The callback endpoint answered a delivery.

    ``outcome`` is one of ``accepted``, ``duplicate``, ``invalid`` (400), ``origin_refused`` (403),
    ``body_timeout`` (408), ``body_too_large`` (413), ``journal_unavailable`` (503), ``disconnected``.
    ``scan_reference`` (Jumio's) and ``verification_status`` are set when the body was a callback;
    ``journal_effect`` is what recording it did (a :class:`~netverify_async.CallbackEffect` value).
    """

    status_code: int
    outcome: str
    duration: float
    verification_status: str | None = None
    journal_effect: str | None = None
    scan_reference: str | None = None
    timestamp_ns: int = attrs.field(factory=_now_ns)


#: Any event.
Event = (
    CallStarted
    | LimiterWaited
    | AttemptStarted
    | AttemptFinished
    | RetryScheduled
    | CallFinished
    | PreflightRejected
    | JournalTransition
    | CallbackHandled
)
#: A hook: a plain or ``async`` callable taking one event.
EventHook = Callable[[Event], Awaitable[None] | None]


def check_event_hooks(hooks: Iterable[EventHook] | None, *, name: str = "event_hooks") -> list[EventHook]:
    """The hooks as a list; :class:`~netverify_async.ConfigurationError` unless every item is callable."""
    given: object = hooks
    if given is None:
        return []
    if callable(given) or isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise ConfigurationError(f"{name}: must be a list of callables (wrap a single hook in a list)")
    found: list[EventHook] = list(given)
    for hook in found:
        if not callable(hook):
            raise ConfigurationError(f"{name}: every item must be callable, not {type(hook).__name__}")
    return found


def check_hook_timeout(value: object, *, name: str = "hook_timeout") -> float:
    """``value`` as seconds; :class:`~netverify_async.ConfigurationError` unless it is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name}: must be a finite number of seconds > 0")
    return float(value)


def _hook_name(hook: object) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__qualname__)


def _log_hook_failure(hook: object, event: Event, exc: BaseException) -> None:
    stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    logger.error(
        "event hook %s raised %s on %s (ignored; message not logged)\n%s",
        _hook_name(hook),
        type(exc).__qualname__,
        type(event).__name__,
        stack,
    )


def _cancel_requests() -> int:
    """How many cancellations of the current asyncio task are pending (0 outside asyncio; -1 when the
    Python version cannot tell, before 3.11: a cancellation is then taken as the caller's)."""
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:  # not in an asyncio event loop (trio)
        return 0
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return int(cancelling()) if cancelling is not None else -1


async def _await_hook(hook: object, event: Event, result: Awaitable[object], seconds: float) -> None:
    """Await an async hook's ``result`` for at most ``seconds``, shielded from the caller.

    Inside the shield, a cancellation that is neither the time limit's nor a pending ``task.cancel()`` of
    the caller's task (plain asyncio code can still cancel the task there) comes from the hook's own work:
    it is logged like an exception instead of ending the call.
    """
    cancelled = anyio.get_cancelled_exc_class()
    pending = _cancel_requests()
    with anyio.CancelScope(shield=True), anyio.move_on_after(seconds) as limit:
        try:
            await result
        except cancelled as exc:
            now = _cancel_requests()
            if limit.cancel_called or now < 0 or now > pending:
                raise  # the time limit's, or the caller's (or, before Python 3.11, perhaps the caller's)
            _log_hook_failure(hook, event, exc)
    if limit.cancelled_caught:
        logger.warning(
            "event hook %s did not finish on %s within %g s (hook_timeout); it was cancelled and the call "
            "went on",
            _hook_name(hook),
            type(event).__name__,
            seconds,
        )


async def dispatch(
    hooks: Sequence[EventHook], event: Event, *, hook_timeout: float = DEFAULT_HOOK_TIMEOUT
) -> None:
    """Hand ``event`` to every hook in order; whatever a hook raises is logged (type and stack) and swallowed.

    A plain function is called inline. An async hook is awaited shielded from cancellation, so that the
    events that close a cancelled call still arrive, but for at most ``hook_timeout`` seconds: a slow or stuck
    hook is cancelled then (and a warning logged), so it can neither hold the call nor keep it from being
    cancelled for longer than that.
    """
    cancelled = anyio.get_cancelled_exc_class()
    for hook in hooks:
        try:
            result = hook(event)
        except (Exception, cancelled) as exc:  # a plain call has no checkpoint: a cancellation is the hook's own
            _log_hook_failure(hook, event, exc)
            continue
        if not inspect.isawaitable(result):
            continue
        try:
            await _await_hook(hook, event, result, hook_timeout)
        except Exception as exc:
            _log_hook_failure(hook, event, exc)


async def emit_via(owner: object, event_factory: Callable[[], Event]) -> None:
    """Emit an event through ``owner.event_hooks`` (a client), when it has any, awaiting each async hook for
    at most ``owner.hook_timeout`` seconds; the event is built only when there are hooks."""
    hooks = getattr(owner, "event_hooks", None)
    if hooks:
        seconds = getattr(owner, "hook_timeout", DEFAULT_HOOK_TIMEOUT)
        await dispatch(tuple(hooks), event_factory(), hook_timeout=seconds)


def redact_path(path: str) -> tuple[str, str]:
    """``(path with REDACTED, path with {scanReference})`` in place of a scan reference."""
    return _SCAN_IN_PATH.sub(r"\1REDACTED", path), _SCAN_IN_PATH.sub(r"\1{scanReference}", path)


@functools.lru_cache(maxsize=16)
def _base_parts(base_url: str) -> tuple[str, str, str, int]:
    """``(scheme://host[:port], path, host, port)`` of a base URL, without query or credentials."""
    import httpx

    base = httpx.URL(base_url)
    prefix = base.raw_path.decode("ascii").split("?", 1)[0].rstrip("/")
    port = base.port or (443 if base.scheme == "https" else 80)
    return f"{base.scheme}://{base.netloc.decode('ascii')}", prefix, base.host, port


@attrs.define
class AttemptMeter:
    """Filled by :meth:`~netverify_async._exchange.Exchange.send`: the body bytes handed to the network."""

    bytes_sent: int = 0


class CallTrace:
    """The events of one call, sent to the hooks the client had when the call started."""

    def __init__(
        self,
        hooks: Sequence[EventHook],
        call: Call,
        *,
        base_url: str,
        limiter: str,
        hook_timeout: float = DEFAULT_HOOK_TIMEOUT,
    ) -> None:
        self.hooks = tuple(hooks)
        self.hook_timeout = hook_timeout
        self.call_id = next(_ids)
        self.operation = call.operation
        self.method = call.method
        self.merchant_ref = call.merchant_ref
        self.limiter = limiter
        self._idempotent = call.idempotent
        origin, prefix, host, port = _base_parts(base_url)
        redacted, template = redact_path(call.path)
        self._server = (host, port)
        self._url = origin + prefix + redacted
        self._template = prefix + template
        self._started = anyio.current_time()
        self.attempts = 0
        self.limiter_wait = 0.0
        self.bytes_sent = 0
        self.status_code: int | None = None
        self.tracking_id: str | None = None
        self._attempt_started = 0.0

    async def _emit(self, event: Event) -> None:
        await dispatch(self.hooks, event, hook_timeout=self.hook_timeout)

    async def started(self) -> None:
        await self._emit(
            CallStarted(
                call_id=self.call_id,
                operation=self.operation,
                method=self.method,
                url=self._url,
                url_template=self._template,
                server_address=self._server[0],
                server_port=self._server[1],
                idempotent=self._idempotent,
                merchant_id_scan_reference=self.merchant_ref,
            ),
        )

    async def limiter_waited(self, attempt: int, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.limiter_wait += seconds
        await self._emit(
            LimiterWaited(
                call_id=self.call_id,
                operation=self.operation,
                attempt=attempt,
                seconds=seconds,
                limiter=self.limiter,
            ),
        )

    async def attempt_started(self, attempt: int, body_bytes: int) -> AttemptMeter:
        self.attempts = attempt
        self._attempt_started = anyio.current_time()
        await self._emit(
            AttemptStarted(
                call_id=self.call_id,
                operation=self.operation,
                method=self.method,
                attempt=attempt,
                body_bytes=body_bytes,
            ),
        )
        return AttemptMeter()

    async def attempt_finished(
        self, attempt: int, meter: AttemptMeter, answer: Answer | None, error: BaseException | None
    ) -> None:
        status = answer.status_code if answer is not None else getattr(error, "status_code", None)
        tracking = answer.headers.get("x-trackingid") if answer is not None else getattr(error, "tracking_id", None)
        status = status if isinstance(status, int) else None
        tracking = tracking if isinstance(tracking, str) else None
        self.status_code = status
        self.tracking_id = tracking
        self.bytes_sent += meter.bytes_sent
        kind = getattr(error, "kind", None) if error is not None else None
        await self._emit(
            AttemptFinished(
                call_id=self.call_id,
                operation=self.operation,
                method=self.method,
                attempt=attempt,
                status_code=status,
                failure_kind=kind if isinstance(kind, FailureKind) else None,
                error_type=_error_type(error),
                tracking_id=tracking,
                bytes_sent=meter.bytes_sent,
                duration=anyio.current_time() - self._attempt_started,
            ),
        )

    async def retry_scheduled(self, attempt: int, error: Any, delay: float) -> None:
        status = getattr(error, "status_code", None)
        tracking = getattr(error, "tracking_id", None)
        await self._emit(
            RetryScheduled(
                call_id=self.call_id,
                operation=self.operation,
                attempt=attempt,
                delay=delay,
                failure_kind=error.kind,
                error_type=type(error).__name__,
                status_code=status if isinstance(status, int) else None,
                tracking_id=tracking if isinstance(tracking, str) else None,
            ),
        )

    async def finished(self, error: BaseException | None) -> None:
        from ._errors import SubmissionOutcomeUnknown

        outcome: CallOutcome
        if error is None:
            outcome = "success"
        elif isinstance(error, SubmissionOutcomeUnknown):
            outcome = "unknown"
        elif isinstance(error, anyio.get_cancelled_exc_class()):
            outcome = "cancelled"
        else:
            outcome = "error"
        kind = getattr(error, "kind", None) if error is not None else None
        await self._emit(
            CallFinished(
                call_id=self.call_id,
                operation=self.operation,
                method=self.method,
                outcome=outcome,
                attempts=self.attempts,
                status_code=self.status_code,
                failure_kind=kind if isinstance(kind, FailureKind) else None,
                error_type=_error_type(error),
                tracking_id=self.tracking_id,
                duration=anyio.current_time() - self._started,
                limiter_wait=self.limiter_wait,
                bytes_sent=self.bytes_sent,
                merchant_id_scan_reference=self.merchant_ref,
            ),
        )


def _error_type(error: BaseException | None) -> str | None:
    return type(error).__name__ if error is not None else None
