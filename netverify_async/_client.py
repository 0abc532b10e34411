"""NetverifyClient: the pipeline request -> preflight -> encode -> admission -> send -> receipt.

The client wires the stages together; each stage lives in its own module:

* preflight: :mod:`netverify_async._preflight` (worker threads); encode: :mod:`netverify_async._wire`;
* admission: the rate limiters of :mod:`netverify_async._ratelimit`, one slot per attempt;
* send and classify: :class:`netverify_async._exchange.Exchange` over the transports of
  :mod:`netverify_async._transport`;
* retry: :func:`netverify_async._retry.run_with_retries` (tenacity, driven by the pure :func:`~._retry.decide`).

The nesting is retry(admission + send): every attempt takes its own limiter slot.

Why one module of about 850 lines: it is the client's public surface, one short method per API endpoint
(submission, status, details and its parts, images, ID types, deletion, polling, batches) plus the retry
orchestration they share; the work itself lives in the stage modules named above.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import ssl
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import httpx

from ._config import Region, check_base_url, check_credential, check_user_agent, is_loopback_host
from ._constants import (
    INITIATE_RATE_LIMIT,
    LOOPBACK_POLL_SCHEDULE_S,
    MAX_SCAN_REFERENCE_LENGTH,
    PERFORM_NETVERIFY_PATH,
    RETRIEVAL_POLL_SCHEDULE_S,
    RETRIEVAL_RATE_LIMIT,
    SCAN_REFERENCE_PATTERN,
    SCANS_PATH,
)
from ._errors import (
    ConfigurationError,
    DeadlineExceeded,
    NetverifyError,
    PreflightError,
    RequestError,
    ResponseError,
    SubmissionOutcomeUnknown,
)
from ._events import (
    DEFAULT_HOOK_TIMEOUT,
    AttemptMeter,
    CallTrace,
    EventHook,
    PreflightRejected,
    check_event_hooks,
    check_hook_timeout,
    emit_via,
)
from ._exchange import Answer, BasicAuth, Call, Exchange, trusted_image_path
from ._images import FileSink, ImageStream, ImageStreamContext, StreamSink, image_classifier
from ._models import NetverifyRequest, ScanReceipt
from ._retry import AttemptHistory, RetryBudget, RetryEvent, RetryPolicy, run_with_retries
from ._transport import TransportName, build_http_client, check_transport_name

if TYPE_CHECKING:

    from ._batch import Batch, ProgressHook
    from ._idtypes import AcceptedIdTypes, IdTypeCatalog, SupportedIdTypes
    from ._journal import Journal
    from ._ratelimit import RateLimiter, Slot
    from ._retrieval import (
        DownloadedImage,
        ScanDetails,
        ScanDocumentData,
        ScanImage,
        ScanImages,
        ScanStatus,
        ScanTransactionData,
        ScanVerificationData,
    )

__all__ = ["ClientStats", "ImageStream", "NetverifyClient", "Region"]

logger = logging.getLogger("netverify_async")

#: Largest response body read from the API; real answers are a few kilobytes.
DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024
#: Requests in flight at once by default. Jumio's limits (5 to 15 submissions per 5 s) never need more, and
#: httpx's own pool, with a fresh connection per request, spends about a millisecond of CPU on each: at 16 in
#: flight that is a few percent of a 200 ms round trip (benchmarks/transport.py has the figures).
DEFAULT_MAX_CONCURRENCY = 16
#: Images below this total size are encoded on the loop thread: a thread hop would cost more than the work.
_INLINE_ENCODE_LIMIT = 256 * 1024
#: Largest image downloaded by default (Jumio's images are a few megabytes at most).
DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024
#: How long the supported and accepted ID types are kept by default, in seconds.
DEFAULT_ID_TYPES_TTL = 3600.0
#: What an image download accepts.
_IMAGE_ACCEPT = "image/jpeg, image/png"
_CatalogT = TypeVar("_CatalogT", bound="IdTypeCatalog")

SleepFunc = Callable[[float], Awaitable[None]]
RetryHook = Callable[[RetryEvent], "Awaitable[None] | None"]
#: Awaited once, inside the first limiter slot, right before the first attempt is sent.
OnSend = Callable[[], Awaitable[None]]


class NetverifyClient:
    """Async client for Jumio's ID Verification API.

    Use it as an async context manager (one per application)::

        async with NetverifyClient(api_token=..., api_secret=..., user_agent="Acme KYCApp/2.1") as client:
            receipt = await client.perform_netverify(request)

    Parameters (all keyword-only):

    - ``region`` (US, EU, SGP) or ``base_url`` (https, or http on a loopback address for the emulator).
    - ``retry``: a :class:`RetryPolicy`.
    - ``rate_limit``: the submission limit: a spec such as ``"5/5s"`` or ``"3/s,180/min"`` (sliding windows,
      self-correcting on 429), ``"adaptive"`` (no known limit: discover it from 429s), ``None`` (no limit), or a
      limiter object (e.g. :class:`netverify_async.redis.RedisRateLimiter` shared by several processes).
      Default ``"5/5s"``, the lowest limit Jumio publishes.
    - ``retrieval_rate_limit``: the same for the retrieval API (default ``"75/5s"``).
    - ``max_concurrency``: requests in flight at once (default 16).
    - ``preflight``: check every image before sending (default True); ``preflight_fix``: normalise images
      (rotate, downscale, convert, strip metadata) instead of failing when possible (default False).
    - ``ca_bundle``: path of a CA bundle to trust instead of the system's; TLS verification is always on.
    - ``transport``: ``"httpx"`` (httpx's own transport, asyncio and trio; the default) or ``"aiohttp"``
      (asyncio only; ``pip install 'netverify-async[aiohttp]'``). Neither reuses connections.
    - ``http_client``: your own ``httpx.AsyncClient`` instead (its settings are kept; it is not closed by us).
      Every request carries ``Connection: close``, so no connection of yours is kept after one of our calls.
    - ``on_retry``: called (sync or async) with a :class:`RetryEvent` before each retry wait.
    - ``sleep``: the function used to wait between retries (tests pass a recorder to skip real waits).
    - ``id_types_ttl``: seconds the supported and accepted ID types are kept once fetched (default 3600; 0:
      fetched every time).
    - ``check_accepted_id_types``: before a submission, refuse a country + ID type (+ back side) the account
      does not accept (:class:`~netverify_async.IdTypeNotAcceptedError`, nothing sent); default False.
    - ``event_hooks``: callables (sync or async) that receive every event of the client (call started, limiter
      wait, attempt, retry, call finished, preflight rejection, journal state; see ``docs/observability.md``).
      The list is kept as :attr:`event_hooks` and may be changed later; an exception in a hook is logged and
      ignored. :mod:`netverify_async.otel` turns the events into OpenTelemetry spans and metrics.
    - ``hook_timeout``: seconds an ``async`` event hook may take over one event before it is cancelled and the
      call goes on (default 1). Plain-function hooks are called inline and must be quick.
    """

    def __init__(
        self,
        *,
        api_token: str,
        api_secret: str,
        user_agent: str,
        region: Region | str = Region.US,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: str | RateLimiter | None = INITIATE_RATE_LIMIT,
        retrieval_rate_limit: str | RateLimiter | None = RETRIEVAL_RATE_LIMIT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        preflight: bool = True,
        preflight_fix: bool = False,
        ca_bundle: str | os.PathLike[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: TransportName = "httpx",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_retry: RetryHook | None = None,
        sleep: SleepFunc | None = None,
        id_types_ttl: float = DEFAULT_ID_TYPES_TTL,
        check_accepted_id_types: bool = False,
        event_hooks: Sequence[EventHook] | None = None,
        hook_timeout: float = DEFAULT_HOOK_TIMEOUT,
    ) -> None:
        self._auth = BasicAuth(check_credential("api_token", api_token), check_credential("api_secret", api_secret))
        self.user_agent = check_user_agent(user_agent)
        if base_url is not None:
            self.base_url = check_base_url(base_url)
        else:
            try:
                self.region = Region(region.upper() if isinstance(region, str) else region)
            except ValueError:
                raise ConfigurationError("region: must be one of US, EU, SGP") from None
            self.base_url = self.region.base_url
        self.retry_policy = retry if retry is not None else RetryPolicy()
        if not isinstance(self.retry_policy, RetryPolicy):
            raise ConfigurationError("retry: must be a RetryPolicy")
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise ConfigurationError("max_concurrency: must be an integer >= 1")
        self._transport: TransportName = check_transport_name(transport)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client: must be an httpx.AsyncClient")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            raise ConfigurationError("max_response_bytes: must be an integer >= 1024")
        self.max_concurrency = max_concurrency
        self.preflight = preflight
        self.preflight_fix = preflight_fix
        self._ca_bundle = os.fspath(ca_bundle) if ca_bundle is not None else None
        if self._ca_bundle is not None and not os.path.isfile(self._ca_bundle):
            raise ConfigurationError("ca_bundle: file not found")
        self._max_response_bytes = max_response_bytes
        self._on_retry = on_retry
        self._sleep: SleepFunc = sleep or anyio.sleep
        self._user_http = http_client
        self._exchange: Exchange | None = None
        self._budget = RetryBudget.from_policy(self.retry_policy)
        self._encode_limiter: anyio.CapacityLimiter | None = None
        from ._ratelimit import make_limiter

        self.submit_limiter: RateLimiter = make_limiter(rate_limit, max_concurrency=max_concurrency)
        self.retrieval_limiter: RateLimiter = make_limiter(
            retrieval_rate_limit, max_concurrency=max_concurrency
        )
        self._closed = False
        self.stats = ClientStats()
        #: the callables that receive the client's events (see :mod:`netverify_async._events`)
        self.event_hooks: list[EventHook] = check_event_hooks(event_hooks)
        #: seconds an async hook may take over one event (see :func:`~netverify_async._events.dispatch`)
        self.hook_timeout: float = check_hook_timeout(hook_timeout)
        if isinstance(id_types_ttl, bool) or not isinstance(id_types_ttl, (int, float)) or not id_types_ttl >= 0:
            raise ConfigurationError("id_types_ttl: must be a number of seconds >= 0")
        self.id_types_ttl = float(id_types_ttl)
        self.check_accepted_id_types = bool(check_accepted_id_types)
        self._id_types: dict[str, tuple[float, IdTypeCatalog]] = {}
        self._id_type_locks: dict[str, anyio.Lock] = {}

    # -- construction helpers -------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> NetverifyClient:
        """Build a client from ``NETVERIFY_API_TOKEN``, ``NETVERIFY_API_SECRET``, ``NETVERIFY_USER_AGENT`` and
        ``NETVERIFY_REGION`` or ``NETVERIFY_BASE_URL``; keyword arguments override or complete them."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for param, var in (
            ("api_token", "NETVERIFY_API_TOKEN"),
            ("api_secret", "NETVERIFY_API_SECRET"),
            ("user_agent", "NETVERIFY_USER_AGENT"),
        ):
            value = env.get(var)
            if value:
                kwargs[param] = value
            elif param not in overrides:
                raise ConfigurationError(f"{var} is not set")
        if env.get("NETVERIFY_BASE_URL"):
            kwargs["base_url"] = env["NETVERIFY_BASE_URL"]
        elif env.get("NETVERIFY_REGION"):
            kwargs["region"] = env["NETVERIFY_REGION"]
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"NetverifyClient(base_url={self.base_url!r}, user_agent={self.user_agent!r}, api_secret=<hidden>)"

    async def __aenter__(self) -> NetverifyClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (a caller-supplied ``http_client`` is left open)."""
        self._closed = True
        exchange, self._exchange = self._exchange, None
        if exchange is not None and exchange.http is not self._user_http:
            with anyio.CancelScope(shield=True):
                await exchange.http.aclose()

    # -- the send path -----------------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ca_bundle is not None:
            return ssl.create_default_context(cafile=self._ca_bundle)
        import certifi

        return ssl.create_default_context(cafile=certifi.where())

    def _get_exchange(self) -> Exchange:
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._exchange is None:
            http = self._user_http
            if http is None:
                policy = self.retry_policy
                http = build_http_client(
                    self._transport,
                    ssl_context=self._ssl_context(),
                    max_connections=self.max_concurrency,
                    connect_timeout=policy.connect_timeout,
                    attempt_timeout=policy.attempt_timeout,
                )
            self._exchange = Exchange(
                http,
                base_url=self.base_url,
                user_agent=self.user_agent,
                auth=self._auth,
                max_response_bytes=self._max_response_bytes,
            )
        return self._exchange

    def _trace(self, call: Call, limiter: RateLimiter) -> CallTrace | None:
        """The events of one call, or None when nobody listens."""
        if not self.event_hooks:
            return None
        kind = "submission" if limiter is self.submit_limiter else "retrieval"
        return CallTrace(
            self.event_hooks, call, base_url=self.base_url, limiter=kind, hook_timeout=self.hook_timeout
        )

    async def _call(
        self, call: Call, limiter: RateLimiter, on_send: OnSend | None = None, trace: CallTrace | None = None
    ) -> tuple[Answer, int]:
        """:meth:`_retrying` with the call's events; a caller that passes its own ``trace`` starts and finishes
        it itself."""
        own = trace is None
        if own:
            trace = self._trace(call, limiter)
            if trace is None:
                return await self._retrying(call, limiter, on_send, None)
            await trace.started()
        assert trace is not None
        try:
            result = await self._retrying(call, limiter, on_send, trace)
        except BaseException as error:
            if own:
                await trace.finished(error)
            raise
        if own:
            await trace.finished(None)
        return result

    async def _retrying(
        self, call: Call, limiter: RateLimiter, on_send: OnSend | None, trace: CallTrace | None
    ) -> tuple[Answer, int]:
        """Run ``call`` with retries. A submission that may have been processed ends only in an answer or in
        :class:`~netverify_async.SubmissionOutcomeUnknown`, whatever fails after (a refusal, the limiter, the
        deadline, a closed client)."""
        policy = self.retry_policy
        now = anyio.current_time()
        history = AttemptHistory(deadline_at=now + policy.deadline if policy.deadline is not None else float("inf"))
        # build the connection pool before taking a slot: its first creation takes tens of milliseconds, which
        # would otherwise pass between the moment the limiter counts the request and the moment it leaves
        self._get_exchange()

        async def attempt(number: int) -> Answer:
            return await self._attempt(call, limiter, number, history, on_send if number == 1 else None, trace)

        async def before_sleep(number: int, error: RequestError, delay: float) -> None:
            await self._before_sleep(call, number, error, delay)
            if trace is not None:
                await trace.retry_scheduled(number, error, delay)

        try:
            answer = await run_with_retries(
                attempt,
                policy=policy,
                idempotent=call.idempotent,
                budget=self._budget,
                history=history,
                sleep=self._sleep,
                before_sleep=before_sleep,
            )
        except NetverifyError as error:
            if history.maybe_processed and not call.idempotent and call.merchant_ref is not None:
                self.stats.outcome_unknown += 1
                raise SubmissionOutcomeUnknown(
                    call.merchant_ref, str(error), attempts=history.attempts
                ) from error
            raise
        self._budget.refund()
        return answer, history.attempts

    async def _attempt(
        self,
        call: Call,
        limiter: RateLimiter,
        number: int,
        history: AttemptHistory,
        on_send: OnSend | None,
        trace: CallTrace | None = None,
    ) -> Answer:
        exchange = self._get_exchange()
        async with contextlib.AsyncExitStack() as stack:
            waited_from = anyio.current_time()
            slot = await self._admit(call, limiter, number, history, stack)
            if trace is not None:
                await trace.limiter_waited(number, anyio.current_time() - waited_from)
            remaining = history.deadline_at - anyio.current_time()
            if on_send is not None and remaining > 0:
                await on_send()
                remaining = history.deadline_at - anyio.current_time()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{call.operation}: deadline reached before attempt {number}",
                    operation=call.operation,
                    merchant_id_scan_reference=call.merchant_ref,
                    attempts=number - 1,
                )
            self.stats.attempts += 1
            meter: AttemptMeter | None = None
            if trace is not None:
                meter = await trace.attempt_started(number, len(call.body or b""))
            received: Answer | None = None
            failure: BaseException | None = None
            try:
                answer = received = await exchange.send(
                    call, within=min(self.retry_policy.attempt_timeout, remaining), meter=meter
                )
            except RequestError as error:
                failure = error
                status = getattr(error, "status_code", None)
                slot.record(status, getattr(error, "retry_after", None))
                if status is not None:
                    self.stats.count_status(status)
                logger.debug(
                    "%s attempt=%d failed: %s (%s) status=%s ref=%s",
                    call.operation,
                    number,
                    type(error).__name__,
                    error.kind.value,
                    status,
                    call.merchant_ref,
                )
                raise
            except BaseException as error:
                failure = error
                raise
            finally:
                if trace is not None and meter is not None:
                    await trace.attempt_finished(number, meter, received, failure)
            slot.record(answer.status_code, None)
            self.stats.count_status(answer.status_code)
            return answer

    async def _admit(
        self,
        call: Call,
        limiter: RateLimiter,
        number: int,
        history: AttemptHistory,
        stack: contextlib.AsyncExitStack,
    ) -> Slot:
        """A limiter slot for attempt ``number``, waited for no longer than the call's deadline allows.

        A call whose deadline ends before the limiter can let it start fails at once, or when its deadline
        comes, with :class:`~netverify_async.DeadlineExceeded` (``NOT_SENT``): a ``Retry-After`` pause or a long
        queue never holds a caller past its own deadline.
        """
        remaining = history.deadline_at - anyio.current_time()
        pause = getattr(limiter, "pause_remaining", None)
        paused_for = pause() if callable(pause) else 0.0
        if remaining <= 0 or (isinstance(paused_for, (int, float)) and paused_for >= remaining):
            raise self._no_slot(call, number, f"the limiter is paused for {paused_for:.1f}s by a Retry-After")
        context = limiter.slot()
        slot: Slot | None = None
        with anyio.move_on_after(remaining):
            slot = await context.__aenter__()
        if slot is None:
            raise self._no_slot(call, number, "no rate-limit slot came free before the deadline")
        stack.push_async_exit(context)
        return slot

    @staticmethod
    def _no_slot(call: Call, number: int, why: str) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{call.operation}: deadline reached before attempt {number} could start ({why}); nothing was sent",
            operation=call.operation,
            merchant_id_scan_reference=call.merchant_ref,
            attempts=number - 1,
        )

    async def _before_sleep(self, call: Call, number: int, error: RequestError, delay: float) -> None:
        status = getattr(error, "status_code", None)
        tracking = getattr(error, "tracking_id", None)
        self.stats.retries += 1
        logger.info(
            "%s retry: attempt=%d failed (%s, %s, status=%s, tracking_id=%s, ref=%s); waiting %.2fs",
            call.operation,
            number,
            error.kind.value,
            type(error).__name__,
            status,
            tracking,
            call.merchant_ref,
            delay,
        )
        if self._on_retry is not None:
            event = RetryEvent(
                operation=call.operation,
                attempt=number,
                delay=delay,
                kind=error.kind,
                error_type=type(error).__name__,
                status_code=status,
                tracking_id=tracking,
                merchant_id_scan_reference=call.merchant_ref,
            )
            result = self._on_retry(event)
            if result is not None:
                await result

    # -- public API --------------------------------------------------------------------------------------------

    async def prepare(self, request: NetverifyRequest) -> NetverifyRequest:
        """Run preflight on every image of the request (in worker threads); returns the request to send.

        With ``preflight_fix`` the returned request carries the normalised images. Raises
        :class:`~netverify_async.PreflightError` for an image Jumio would refuse.
        """
        if not isinstance(request, NetverifyRequest):
            raise TypeError("request must be a NetverifyRequest")
        if self.check_accepted_id_types:
            await self.check_id_type_accepted(request)
        if not self.preflight:
            return request
        from ._preflight import preflight_request

        reports = await preflight_request(request, fix=self.preflight_fix)
        fixed = {}
        for role, report in reports.items():
            try:
                report.raise_for_errors()
            except PreflightError:
                await emit_via(
                    self,
                    functools.partial(
                        PreflightRejected,
                        role=str(role),
                        codes=tuple(sorted(report.error_codes)),
                        merchant_id_scan_reference=request.merchant_id_scan_reference,
                    ),
                )
                raise
            if (
                self.preflight_fix
                and report.image is not None
                and report.image is not request.images.get(role)
            ):
                fixed[role] = report.image
        return request.replace_images(**fixed) if fixed else request

    async def encode(self, request: NetverifyRequest) -> bytes:
        """The request body as JSON bytes; large images are encoded in a worker thread."""
        from ._wire import encode_request_body

        if sum(img.size for img in request.images.values()) < _INLINE_ENCODE_LIMIT:
            return encode_request_body(request)
        # One encoder thread per client: the heavy parts (pybase64, the final join) run without the GIL, so
        # concurrent encodes would only compete with the event loop for the machine's cores and memory bandwidth.
        if self._encode_limiter is None:
            self._encode_limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(encode_request_body, request, limiter=self._encode_limiter)

    async def perform_netverify(self, request: NetverifyRequest) -> ScanReceipt:
        """Submit one verification; returns Jumio's :class:`ScanReceipt`.

        Raises :class:`~netverify_async.PreflightError` (nothing sent), a
        :class:`~netverify_async.RequestError` subclass (``kind`` and ``safe_to_retry`` say whether the server
        may have processed it), or :class:`~netverify_async.SubmissionOutcomeUnknown` when a scan may have been
        created without a usable answer.
        """
        prepared = await self.prepare(request)
        body = await self.encode(prepared)
        return await self.send_encoded(body, merchant_id_scan_reference=request.merchant_id_scan_reference)

    async def send_encoded(
        self,
        body: bytes,
        *,
        merchant_id_scan_reference: str,
        on_send: OnSend | None = None,
        on_body_sent: Callable[[], None] | None = None,
    ) -> ScanReceipt:
        """Send an already prepared and encoded performNetverify body (used by batches).

        ``on_send`` is awaited once the call holds a rate-limiter slot, right before the first attempt goes out
        (a batch records the item as sent there); if it raises, nothing is sent. ``on_body_sent`` is called each
        time an attempt handed the last byte of the body to the network: until it is, no scan can exist.
        """
        call = Call(
            operation="performNetverify",
            method="POST",
            path=PERFORM_NETVERIFY_PATH,
            body=body,
            idempotent=False,
            merchant_ref=merchant_id_scan_reference,
            on_body_sent=on_body_sent,
        )
        del body
        trace = self._trace(call, self.submit_limiter)
        if trace is None:
            return await self._send_call(call, on_send, None)
        await trace.started()
        try:
            receipt = await self._send_call(call, on_send, trace)
        except BaseException as error:
            await trace.finished(error)
            raise
        await trace.finished(None)
        return receipt

    async def _send_call(self, call: Call, on_send: OnSend | None, trace: CallTrace | None) -> ScanReceipt:
        merchant_id_scan_reference = call.merchant_ref
        assert merchant_id_scan_reference is not None
        answer, attempts = await self._call(call, self.submit_limiter, on_send, trace)
        receipt: ScanReceipt | None = None
        parsed = answer.json_object()
        if parsed is not None:
            try:
                receipt = ScanReceipt.from_wire(parsed)
            except (ValueError, TypeError, KeyError, NetverifyError):
                receipt = None
        if receipt is None:
            # the server said yes, so a scan probably exists, but we cannot tell which
            self.stats.outcome_unknown += 1
            raise SubmissionOutcomeUnknown(
                merchant_id_scan_reference,
                f"the success answer (HTTP {answer.status_code}) is not a receipt",
                attempts=attempts,
            )
        self.stats.receipts += 1
        logger.info(
            "performNetverify accepted: ref=%s scan=%s tracking_id=%s",
            merchant_id_scan_reference,
            receipt.scan_reference,
            answer.headers.get("x-trackingid"),
        )
        return receipt

    def _scan_path(self, scan_reference: str, suffix: str = "") -> str:
        if (
            not isinstance(scan_reference, str)
            or not scan_reference
            or len(scan_reference) > MAX_SCAN_REFERENCE_LENGTH
        ):
            raise ConfigurationError(
                f"scan_reference: must be a non-empty string of at most {MAX_SCAN_REFERENCE_LENGTH} characters"
            )
        if SCAN_REFERENCE_PATTERN.fullmatch(scan_reference) is None:
            raise ConfigurationError("scan_reference: may contain only ASCII letters, digits, '-' and '_'")
        return f"{SCANS_PATH}/{scan_reference}{suffix}"

    async def _get_json(self, operation: str, path: str) -> dict[str, Any]:
        answer, _ = await self._call(
            Call(operation=operation, method="GET", path=path, body=None, idempotent=True), self.retrieval_limiter
        )
        parsed = answer.json_object()
        if parsed is None:
            raise ResponseError(
                f"{operation}: the answer is not a JSON object",
                status_code=answer.status_code,
                operation=operation,
            )
        return parsed

    async def scan_status(self, scan_reference: str) -> ScanStatus:
        """``GET /scans/{ref}``: whether the scan is PENDING, DONE or FAILED."""
        from ._retrieval import parse_scan_status

        return parse_scan_status(await self._get_json("scanStatus", self._scan_path(scan_reference)))

    async def scan_details(self, scan_reference: str) -> ScanDetails:
        """``GET /scans/{ref}/data``: document, transaction and verification data."""
        from ._retrieval import parse_scan_details

        return parse_scan_details(
            await self._get_json("scanDetails", self._scan_path(scan_reference, "/data"))
        )

    async def scan_document(self, scan_reference: str) -> ScanDocumentData:
        """``GET /scans/{ref}/data/document``: the document data only."""
        from ._retrieval import parse_scan_document

        return parse_scan_document(
            await self._get_json("scanDocument", self._scan_path(scan_reference, "/data/document"))
        )

    async def scan_transaction(self, scan_reference: str) -> ScanTransactionData:
        """``GET /scans/{ref}/data/transaction``: the transaction data only."""
        from ._retrieval import parse_scan_transaction

        return parse_scan_transaction(
            await self._get_json("scanTransaction", self._scan_path(scan_reference, "/data/transaction"))
        )

    async def scan_verification(self, scan_reference: str) -> ScanVerificationData:
        """``GET /scans/{ref}/data/verification``: the verification data only."""
        from ._retrieval import parse_scan_verification

        return parse_scan_verification(
            await self._get_json("scanVerification", self._scan_path(scan_reference, "/data/verification"))
        )

    async def list_images(self, scan_reference: str) -> ScanImages:
        """``GET /scans/{ref}/images``: the scan's images (front, back, face) and liveness images."""
        from ._retrieval import parse_scan_images

        return parse_scan_images(await self._get_json("scanImages", self._scan_path(scan_reference, "/images")))

    def _image_target(self, source: str | ScanImage, classifier: str | int | None) -> tuple[str, str, str]:
        """``(path, scan_reference, classifier)`` of an image, checked before anything is sent: a URL must be
        one of the configured host's scan images (:class:`~netverify_async.ForeignImageURLError`)."""
        from ._retrieval import ScanImage

        url: str | None = None
        if isinstance(source, ScanImage):
            if source.href is None:
                raise ConfigurationError("source: the listed image has no URL")
            url = source.href
        elif isinstance(source, str) and "://" in source:
            url = source
        if url is not None:
            path, reference, found = trusted_image_path(self.base_url, url, operation="downloadImage")
            if classifier is not None and image_classifier(classifier) != found:
                raise ConfigurationError("classifier: does not match the image URL (leave it out for a URL)")
            return path, reference, found
        if not isinstance(source, str):
            raise ConfigurationError("source: must be a scan reference, an image URL or a ScanImage")
        if classifier is None:
            raise ConfigurationError("classifier: required with a scan reference (front, back, face, liveness/N)")
        name = image_classifier(classifier)
        return self._scan_path(source, f"/images/{name}"), source, name

    def _image_call(self, path: str, sink: Any, max_bytes: int) -> Call:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ConfigurationError("max_bytes: must be a positive integer")
        return Call(
            operation="downloadImage",
            method="GET",
            path=path,
            body=None,
            idempotent=True,
            accept=_IMAGE_ACCEPT,
            sink=sink,
            max_sink_bytes=max_bytes,
        )

    async def download_image(
        self,
        source: str | ScanImage,
        classifier: str | int | None = None,
        *,
        to: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> DownloadedImage:
        """Download one image of a scan into the file ``to``; returns a :class:`DownloadedImage`.

        ``source`` is a scan reference with a ``classifier`` (``"front"``, ``"back"``, ``"face"``,
        ``"liveness/N"`` or the liveness number ``N``), an image URL (``href`` of :meth:`list_images`,
        ``idScanImage`` and friends of a callback), or a :class:`~netverify_async.ScanImage`. A URL that is
        not a scan image of the configured host raises :class:`~netverify_async.ForeignImageURLError` before
        any connection is made: the credentials go nowhere else.

        The image is streamed into a temporary file (owner-only permissions) next to ``to`` and renamed to
        ``to`` once complete, so a failure leaves no partial file. An image over ``max_bytes`` (default
        32 MiB) raises :class:`~netverify_async.ImageTooLargeError`; an answer that is not JPEG or PNG a
        :class:`~netverify_async.ResponseError`. A local write failure (a full disk) is raised as the
        ``OSError`` it is.
        """
        from ._retrieval import DownloadedImage

        path, reference, name = self._image_target(source, classifier)
        destination = Path(os.fspath(to))
        sink = FileSink(destination)
        call = self._image_call(path, sink, max_bytes)
        try:
            await self._call(call, self.retrieval_limiter)
            await sink.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sink.discard()
            raise
        return DownloadedImage(
            scan_reference=reference,
            classifier=name,
            path=str(destination),
            size=sink.size,
            content_type=sink.content_type,
        )

    def stream_image(
        self,
        source: str | ScanImage,
        classifier: str | int | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> contextlib.AbstractAsyncContextManager[ImageStream]:
        """Stream one image of a scan as an async iterator of byte chunks::

            async with client.stream_image(ref, "front") as image:
                print(image.content_type)
                async for chunk in image:
                    ...

        ``source`` and ``classifier`` as for :meth:`download_image` (foreign URLs are refused the same way,
        before any connection). Entering waits for the answer's headers: an error status, a type that is not
        JPEG or PNG, or a declared size over ``max_bytes`` is raised there. Going over ``max_bytes`` while
        reading raises :class:`~netverify_async.ImageTooLargeError` from the iteration. A failure before the
        first chunk is retried like any GET; once chunks were handed to you, it is raised, never retried.
        Leaving the block early stops the download.
        """
        path, reference, name = self._image_target(source, classifier)
        send, receive = anyio.create_memory_object_stream[bytes](0)
        stream = ImageStream(receive, scan_reference=reference, classifier=name)
        call = self._image_call(path, StreamSink(send, stream), max_bytes)
        return ImageStreamContext(lambda: self._call(call, self.retrieval_limiter), send, stream)

    async def _id_type_catalog(
        self, operation: str, parse: Callable[[dict[str, Any]], _CatalogT], refresh: bool
    ) -> _CatalogT:
        from ._idtypes import ID_TYPES_PATHS

        lock = self._id_type_locks.get(operation)
        if lock is None:
            lock = self._id_type_locks[operation] = anyio.Lock()
        async with lock:  # one fetch at a time; the others find it cached
            cached = self._id_types.get(operation)
            if not refresh and cached is not None and time.monotonic() < cached[0]:
                return cached[1]  # type: ignore[return-value]
            catalog = parse(await self._get_json(operation, ID_TYPES_PATHS[operation]))
            if self.id_types_ttl > 0:
                self._id_types[operation] = (time.monotonic() + self.id_types_ttl, catalog)
            return catalog

    async def supported_id_types(self, *, refresh: bool = False) -> SupportedIdTypes:
        """``GET /supportedIdTypes``: every ID document Jumio verifies, by country.

        Kept for ``id_types_ttl`` seconds (default one hour); ``refresh=True`` fetches it again.
        """
        from ._idtypes import parse_supported_id_types

        return await self._id_type_catalog("supportedIdTypes", parse_supported_id_types, refresh)

    async def accepted_id_types(self, *, refresh: bool = False) -> AcceptedIdTypes:
        """``GET /acceptedIdTypes``: the ID documents this account accepts (Customer Portal > Settings >
        Accepted IDs), by country. Kept for ``id_types_ttl`` seconds; ``refresh=True`` fetches it again."""
        from ._idtypes import parse_accepted_id_types

        return await self._id_type_catalog("acceptedIdTypes", parse_accepted_id_types, refresh)

    async def check_id_type_accepted(self, request: NetverifyRequest) -> None:
        """Raise :class:`~netverify_async.IdTypeNotAcceptedError` when the account does not accept the
        request's country and ID type, or needs the back side the request lacks; nothing is sent but (at most
        once per ``id_types_ttl``) the ``acceptedIdTypes`` query. Run by :meth:`prepare` (so by
        :meth:`perform_netverify` and batches) when ``check_accepted_id_types`` is on. VISA is not checked
        (the lists do not name it)."""
        from ._idtypes import IdTypeNotAcceptedError, acceptance_problem

        accepted = await self.accepted_id_types()
        problem = acceptance_problem(
            accepted, request.country, request.id_type, has_back_side=request.backside_image is not None
        )
        if problem is not None:
            raise IdTypeNotAcceptedError([problem], country=request.country, id_type=request.id_type.value)

    async def delete_scan(self, scan_reference: str) -> None:
        """``DELETE /scans/{ref}``: delete the scan's images and data at Jumio."""
        await self._call(
            Call(
                operation="deleteScan",
                method="DELETE",
                path=self._scan_path(scan_reference),
                body=None,
                idempotent=True,
            ),
            self.retrieval_limiter,
        )

    async def wait_for_result(
        self, scan_reference: str, *, schedule: Sequence[float] | None = None
    ) -> ScanDetails:
        """Poll until the scan is DONE or FAILED, then return its details.

        The default schedule is Jumio's (seconds since the call: 40, 60, 100, ... 940). Against a loopback base
        URL (the emulator) it is a fast one (0.2, 0.5, 1, 2, ... s), so that a first try does not look hung;
        production is unaffected. Raises :class:`~netverify_async.DeadlineExceeded` when the schedule ends first.
        """
        if schedule is None:
            loopback = is_loopback_host(httpx.URL(self.base_url).host)
            schedule = LOOPBACK_POLL_SCHEDULE_S if loopback else RETRIEVAL_POLL_SCHEDULE_S
        started = anyio.current_time()
        for offset in schedule:
            delay = started + offset - anyio.current_time()
            if delay > 0:
                await self._sleep(delay)
            status = await self.scan_status(scan_reference)
            if status.is_final:
                return await self.scan_details(scan_reference)
        raise DeadlineExceeded(
            f"scan {scan_reference} still pending after the polling schedule ({schedule[-1] if schedule else 0}s)",
            operation="waitForResult",
        )

    def submit_many(
        self,
        requests: Iterable[NetverifyRequest] | AsyncIterable[NetverifyRequest],
        *,
        concurrency: int | None = None,
        journal: Journal | str | os.PathLike[str] | None = None,
        resend_unknown: bool = False,
        max_bytes_in_flight: int = 256 * 1024 * 1024,
        on_progress: ProgressHook | None = None,
    ) -> Batch:
        """Submit many requests; a :class:`~netverify_async.Batch`, an async iterator of per-item
        :class:`~netverify_async.BatchOutcome` in completion order (use it with ``async with``).

        ``requests`` may be any iterable or async iterable and is read lazily. ``journal`` (a path or a journal
        object) makes the batch resumable: a re-run sends only items without a receipt and never resends an
        item whose outcome is unknown unless ``resend_unknown=True``. ``max_bytes_in_flight`` caps the image and
        body bytes the pipeline holds. ``on_progress`` receives a :class:`~netverify_async.BatchProgress`.
        Use it as ``async with client.submit_many(...) as batch: async for outcome in batch: ...``; see
        :class:`~netverify_async.Batch` and :class:`~netverify_async.BatchOutcome`.
        """
        from ._batch import submit_many

        return submit_many(
            self,
            requests,
            concurrency=self.max_concurrency if concurrency is None else concurrency,
            journal=journal,
            resend_unknown=resend_unknown,
            max_bytes_in_flight=max_bytes_in_flight,
            on_progress=on_progress,
        )


@attrs.define
class ClientStats:
    """Counters of what the client did (for demos, dashboards and tests), as ``client.stats``.

    For a hook on every step, or OpenTelemetry spans and metrics that agree with these counters, see the
    client's ``event_hooks`` and :mod:`netverify_async.otel`.
    """

    #: HTTP attempts made (each holds a limiter slot)
    attempts: int = 0
    #: attempts that were retries of an earlier one
    retries: int = 0
    #: submissions that ended in a receipt
    receipts: int = 0
    #: submissions that ended in ``SubmissionOutcomeUnknown``
    outcome_unknown: int = 0
    #: answers by HTTP status
    status_counts: dict[int, int] = attrs.field(factory=dict)

    def count_status(self, status: int) -> None:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1

    @property
    def throttled(self) -> int:
        """429 answers (from ``status_counts``)."""
        return self.status_counts.get(429, 0)
