"""NetverifyClient: the pipeline request -> preflight -> encode -> admission -> send -> receipt.

The client owns one httpx.AsyncClient (or uses the caller's), one rate limiter for submissions and one for the
retrieval API, and a retry budget shared by all its calls. See :mod:`netverify_async._retry` for which failures
are retried.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json
import logging
import math
import os
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import anyio
import attrs
import httpx
import sniffio
import tenacity

from ._constants import (
    MAX_SCAN_REFERENCE_LENGTH,
    PERFORM_NETVERIFY_PATH,
    REGION_BASE_URLS,
    RETRIEVAL_POLL_SCHEDULE_S,
    SCAN_REFERENCE_PATTERN,
    SCANS_PATH,
)
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    DeadlineExceeded,
    ForbiddenError,
    NetverifyError,
    NotFoundError,
    PoolTimeoutError,
    RateLimitedError,
    ReadError,
    RequestError,
    ResponseError,
    RetryBudgetExhausted,
    ServerError,
    SubmissionOutcomeUnknown,
)
from ._models import NetverifyRequest, ScanReceipt
from ._retry import FailureKind, RetryBudget, RetryEvent, RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from ._batch import Batch, ProgressHook
    from ._journal import Journal
    from ._ratelimit import RateLimiter
    from ._retrieval import ScanDetails, ScanStatus
    from ._transport import AiohttpTransport

__all__ = ["NetverifyClient", "Region"]

logger = logging.getLogger("netverify_async")

#: Largest response body read from the API; real answers are a few kilobytes.
DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024
#: Images below this total size are encoded on the loop thread: a thread hop would cost more than the work.
_INLINE_ENCODE_LIMIT = 256 * 1024
# A retry is only started when the deadline leaves at least this long (or twice what the last attempt took) for
# it: an attempt the deadline cuts off in flight turns a failure that was safe to retry into an unknown outcome.
_MIN_ATTEMPT_WINDOW = 0.1

SleepFunc = Callable[[float], Awaitable[None]]
RetryHook = Callable[[RetryEvent], "Awaitable[None] | None"]


class Region(str, enum.Enum):
    """Jumio data centres, with their documented base URLs."""

    US = "US"
    EU = "EU"
    SGP = "SGP"

    @property
    def base_url(self) -> str:
        return REGION_BASE_URLS[self.value]


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError("base_url: not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError("base_url: must be an absolute http(s) URL")
    if url.scheme == "http" and not _is_loopback_host(url.host):
        raise ConfigurationError(
            "base_url: plain http:// is refused except for loopback hosts (127.0.0.1, ::1, localhost); "
            "use https://"
        )
    if url.userinfo:
        raise ConfigurationError("base_url: must not contain credentials; pass api_token/api_secret")
    if url.query or url.fragment:
        raise ConfigurationError("base_url: must not have a query or fragment")
    return str(url).rstrip("/")


def _check_user_agent(user_agent: str) -> str:
    from ._useragent import is_descriptive_user_agent

    if not isinstance(user_agent, str) or not is_descriptive_user_agent(user_agent):
        raise ConfigurationError(
            "user_agent: must name your business and your app with a version, e.g. 'Example Corp SampleApp/1.0.1' "
            "(Jumio refuses requests without a descriptive User-Agent with 403)"
        )
    return user_agent


def _check_credential(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name}: must be a non-empty string")
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigurationError(f"{name}: must not contain control characters")
    return value


@attrs.frozen
class _Answer:
    status_code: int
    #: header names in lower case (httpx.Headers, or a plain dict on the aiohttp path)
    headers: Mapping[str, str]
    body: bytes


def _header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw header pairs as a dict keyed by lower-case name; repeated headers are joined with ", " (as httpx does).

    A dict costs a fraction of an ``httpx.Headers`` to build and to query, on every answer.
    """
    found: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        earlier = found.get(key)
        found[key] = text if earlier is None else f"{earlier}, {text}"
    return found


class _ResponseTooLarge(httpx.DecodingError):
    """Internal: the answer's body went past ``max_response_bytes``; reading stopped there."""

    def __init__(self, status_code: int, limit: int) -> None:
        super().__init__(f"response larger than {limit} bytes")
        self.status_code = status_code
        self.limit = limit


def _tls_failure(exc: BaseException) -> str | None:
    """What went wrong in TLS, when the cause chain of a connection failure holds an ``ssl`` error; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # aiohttp's connector errors wrap the ssl error in .certificate_error or .os_error
        inner = getattr(current, "certificate_error", None) or getattr(current, "os_error", None)
        if isinstance(inner, BaseException) and inner is not current:
            current = inner
            continue
        if isinstance(current, ssl.SSLCertVerificationError) and getattr(current, "verify_message", None):
            return f"TLS certificate verification failed: {current.verify_message}"
        if isinstance(current, ssl.CertificateError):
            return f"TLS certificate verification failed: {current}"
        if isinstance(current, ssl.SSLError):
            return f"TLS handshake failed: {getattr(current, 'reason', None) or type(current).__name__}"
        current = current.__cause__ or current.__context__
    return None


class _Retry(Exception):
    """Internal: a failed attempt that may be retried after ``delay`` seconds."""

    def __init__(self, error: RequestError, kind: FailureKind, delay: float) -> None:
        super().__init__(type(error).__name__)
        self.error = error
        self.kind = kind
        self.delay = delay


@attrs.frozen
class _Call:
    operation: str
    method: str
    path: str
    body: bytes | None
    idempotent: bool
    merchant_ref: str | None = None
    limiter_kind: Literal["submit", "retrieval"] = "retrieval"
    #: awaited once, inside the first limiter slot, right before the first attempt is sent
    on_send: Callable[[], Awaitable[None]] | None = None


def _json_object(body: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
    """The body as a JSON object when the server says it is JSON and it parses as an object; else None."""
    content_type = headers.get("content-type", "").lower()
    if "json" not in content_type or not body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
}


class NetverifyClient:
    """Async client for Jumio's ID Verification API.

    Use it as an async context manager (one per application)::

        async with NetverifyClient(api_token=..., api_secret=..., user_agent="Acme KYCApp/2.1") as client:
            receipt = await client.perform_netverify(request)

    Parameters (all keyword-only):

    - ``region`` (US, EU, SGP) or ``base_url`` (https, or http on a loopback host for the emulator).
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
    - ``http_client``: your own ``httpx.AsyncClient`` (its settings are kept; it is not closed by us).
    - ``transport``: ``"auto"`` (aiohttp's pool under asyncio, httpcore under trio), ``"aiohttp"`` or
      ``"httpcore"``.
    - ``on_retry``: called (sync or async) with a :class:`RetryEvent` before each retry wait.
    - ``sleep``: the function used to wait between retries (tests pass a recorder to skip real waits).
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
        rate_limit: str | RateLimiter | None = "5/5s",
        retrieval_rate_limit: str | RateLimiter | None = "75/5s",
        max_concurrency: int = 16,
        preflight: bool = True,
        preflight_fix: bool = False,
        ca_bundle: str | os.PathLike[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: Literal["auto", "aiohttp", "httpcore"] = "auto",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_retry: RetryHook | None = None,
        sleep: SleepFunc | None = None,
    ) -> None:
        self._api_token = _check_credential("api_token", api_token)
        secret = _check_credential("api_secret", api_secret)
        self._authorization = "Basic " + base64.b64encode(f"{self._api_token}:{secret}".encode()).decode(
            "ascii"
        )
        self.user_agent = _check_user_agent(user_agent)
        if base_url is not None:
            self.base_url = _check_base_url(base_url)
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
        if transport not in ("auto", "aiohttp", "httpcore"):
            raise ConfigurationError("transport: must be 'auto', 'aiohttp' or 'httpcore'")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            raise ConfigurationError("max_response_bytes: must be an integer >= 1024")
        self.max_concurrency = max_concurrency
        self.preflight = preflight
        self.preflight_fix = preflight_fix
        self._ca_bundle = os.fspath(ca_bundle) if ca_bundle is not None else None
        if self._ca_bundle is not None and not os.path.isfile(self._ca_bundle):
            raise ConfigurationError("ca_bundle: file not found")
        self._transport_choice = transport
        self._max_response_bytes = max_response_bytes
        self._on_retry = on_retry
        self._sleep: SleepFunc = sleep or anyio.sleep
        self._user_http = http_client
        self._http: httpx.AsyncClient | None = http_client
        # The transport inside self._http when we built it: requests go to it directly (see _send_once).
        self._own_transport: httpx.AsyncBaseTransport | None = None
        self._own_aiohttp: AiohttpTransport | None = None
        self._timeout_ext: dict[str, Any] = {}
        self._urls: dict[str, httpx.URL] = {}
        self._budget = RetryBudget.from_policy(self.retry_policy)
        self._encode_limiter: anyio.CapacityLimiter | None = None
        from ._ratelimit import make_limiter

        self.submit_limiter: RateLimiter = make_limiter(rate_limit, max_concurrency=max_concurrency)
        self.retrieval_limiter: RateLimiter = make_limiter(
            retrieval_rate_limit, max_concurrency=max_concurrency
        )
        self._closed = False
        self.stats = ClientStats()

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
        if self._http is not None and self._http is not self._user_http:
            http, self._http = self._http, None
            self._own_transport = self._own_aiohttp = None
            with anyio.CancelScope(shield=True):
                await http.aclose()

    # -- transport -------------------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ca_bundle is not None:
            return ssl.create_default_context(cafile=self._ca_bundle)
        import certifi

        return ssl.create_default_context(cafile=certifi.where())

    def _timeout(self) -> httpx.Timeout:
        p = self.retry_policy
        return httpx.Timeout(p.attempt_timeout, connect=p.connect_timeout, pool=p.connect_timeout)

    def _get_http(self) -> httpx.AsyncClient:
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._http is not None:
            return self._http
        limits = httpx.Limits(
            max_connections=self.max_concurrency,
            max_keepalive_connections=self.max_concurrency,
            keepalive_expiry=4.0,
        )
        use_aiohttp = self._transport_choice == "aiohttp" or (
            self._transport_choice == "auto" and sniffio.current_async_library() == "asyncio"
        )
        transport: httpx.AsyncBaseTransport
        own_aiohttp: AiohttpTransport | None = None
        if use_aiohttp:
            from ._transport import AiohttpTransport

            transport = own_aiohttp = AiohttpTransport(ssl_context=self._ssl_context(), limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(verify=self._ssl_context(), limits=limits)
        timeout = self._timeout()
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
        )
        self._own_transport = transport
        self._own_aiohttp = own_aiohttp
        self._timeout_ext = timeout.as_dict()
        return self._http

    # -- the retry loop ----------------------------------------------------------------------------------------

    async def _call(self, call: _Call) -> _Answer:
        policy = self.retry_policy
        deadline_at = math.inf if policy.deadline is None else anyio.current_time() + policy.deadline
        try:
            # The first attempt runs on its own: most calls succeed at once, and tenacity's machinery costs
            # about as much CPU as the rest of a small call. Only a retryable failure enters the retry loop.
            answer = await self._attempt(call, 1, deadline_at)
        except _Retry as first:
            answer = await self._retry(call, first, deadline_at)
        self._budget.refund()
        return answer

    async def _retry(self, call: _Call, first: _Retry, deadline_at: float) -> _Answer:
        """Attempts 2..max_attempts after the first one failed with ``first``, driven by tenacity."""
        policy = self.retry_policy
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=lambda state: state.outcome.exception().delay if state.outcome else 0.0,  # type: ignore[union-attr]
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            # the hook keeps only what it logs: holding the body would keep it alive through tenacity's cycles
            before_sleep=self._before_sleep(call.operation, call.merchant_ref),
            reraise=True,
        )
        answer: _Answer | None = None
        maybe_processed = False  # an earlier attempt failed ambiguously (only retried with retry_ambiguous)
        try:
            try:
                async for attempt in retrying:
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        if number == 1:
                            raise first  # tenacity's attempt 1 is the one already made: it waits and logs
                        answer = await self._attempt(call, number, deadline_at)
                    failed = attempt.retry_state.outcome
                    if failed is not None and failed.failed:
                        retry = failed.exception()
                        maybe_processed |= isinstance(retry, _Retry) and retry.kind is FailureKind.AMBIGUOUS
            except _Retry as last:  # attempts exhausted on a retryable failure
                self._raise_final(call, last.error, last.kind, policy.max_attempts)
        except RequestError as error:
            if maybe_processed and not call.idempotent and call.merchant_ref is not None:
                # A later refusal (429, 503, no connection, deadline) does not undo an earlier attempt that may
                # have created the scan: the outcome is unknown, never "safe to retry".
                self.stats.outcome_unknown += 1
                raise SubmissionOutcomeUnknown(
                    call.merchant_ref,
                    f"an earlier attempt may have created a scan, then {error}",
                    attempts=error.attempts,
                ) from error
            raise
        assert answer is not None
        return answer

    def _before_sleep(
        self, operation: str, merchant_ref: str | None
    ) -> Callable[[tenacity.RetryCallState], Awaitable[None]]:
        async def hook(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if not isinstance(exc, _Retry):
                return
            error = exc.error
            status = getattr(error, "status_code", None)
            tracking = getattr(error, "tracking_id", None)
            self.stats.retries += 1
            logger.info(
                "%s retry: attempt=%d failed (%s, %s, status=%s, tracking_id=%s, ref=%s); waiting %.2fs",
                operation,
                state.attempt_number,
                exc.kind.value,
                type(error).__name__,
                status,
                tracking,
                merchant_ref,
                exc.delay,
            )
            if self._on_retry is not None:
                event = RetryEvent(
                    operation=operation,
                    attempt=state.attempt_number,
                    delay=exc.delay,
                    kind=exc.kind,
                    error_type=type(error).__name__,
                    status_code=status,
                    tracking_id=tracking,
                    merchant_id_scan_reference=merchant_ref,
                )
                result = self._on_retry(event)
                if result is not None:
                    await result

        return hook

    def _final_error(
        self, call: _Call, error: RequestError, kind: FailureKind, attempts: int
    ) -> NetverifyError:
        error.attempts = attempts
        if kind is FailureKind.AMBIGUOUS and not call.idempotent and call.merchant_ref is not None:
            self.stats.outcome_unknown += 1
            unknown = SubmissionOutcomeUnknown(call.merchant_ref, str(error), attempts=attempts)
            unknown.__cause__ = error
            return unknown
        return error

    def _raise_final(self, call: _Call, error: RequestError, kind: FailureKind, attempts: int) -> NoReturn:
        final = self._final_error(call, error, kind, attempts)
        if final is error:
            raise error from error.__cause__
        raise final from error

    async def _attempt(self, call: _Call, number: int, deadline_at: float) -> _Answer:
        """One attempt; raises _Retry for a retryable failure, a final typed error otherwise."""
        policy = self.retry_policy
        limiter = self.submit_limiter if call.limiter_kind == "submit" else self.retrieval_limiter
        error: RequestError
        retry_after: float | None = None
        # build the connection pool before taking a slot: its first creation takes tens of milliseconds, which
        # would otherwise pass between the moment the limiter counts the request and the moment it leaves
        self._get_http()
        async with limiter.slot() as slot:
            started = anyio.current_time()
            remaining = deadline_at - started
            if remaining <= 0 or (number > 1 and remaining < _MIN_ATTEMPT_WINDOW / 2):
                raise self._deadline_before(call, number)
            if number == 1 and call.on_send is not None:
                await call.on_send()
                started = anyio.current_time()
                remaining = deadline_at - started
                if remaining <= 0:
                    raise self._deadline_before(call, number)
            self.stats.attempts += 1
            try:
                limit = min(policy.attempt_timeout, remaining)
                if self._own_aiohttp is not None:
                    answer = await self._send_once(call, limit)  # aiohttp's own timer bounds the attempt
                else:
                    with anyio.fail_after(limit):
                        answer = await self._send_once(call, None)
            except TimeoutError as exc:
                slot.record(None, None)
                cut_by = "the attempt timeout" if policy.attempt_timeout <= remaining else "the deadline"
                error = ReadError(
                    f"{call.operation}: no complete answer within {cut_by}",
                    operation=call.operation,
                    merchant_id_scan_reference=call.merchant_ref,
                )
                error.__cause__ = exc
                kind = FailureKind.AMBIGUOUS
            except httpx.HTTPError as exc:
                slot.record(None, None)
                error, kind = self._classify_transport_error(call, exc)
            else:
                if answer.status_code in (429, 503):
                    retry_after = parse_retry_after(answer.headers)
                slot.record(answer.status_code, retry_after)
                self.stats.count_status(answer.status_code)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s attempt=%d status=%d elapsed=%.3fs tracking_id=%s ref=%s",
                        call.operation,
                        number,
                        answer.status_code,
                        anyio.current_time() - started,
                        answer.headers.get("x-trackingid"),
                        call.merchant_ref,
                    )
                if 200 <= answer.status_code < 300:
                    return answer
                error, kind = self._classify_status(call, answer, retry_after)
        retryable = policy.should_retry(kind, idempotent=call.idempotent)
        if not retryable or number >= policy.max_attempts:
            self._raise_final(call, error, kind, number)
        delay = policy.backoff(number)
        if retry_after is not None:
            if retry_after > policy.max_retry_after:
                rate_error = RateLimitedError(
                    f"{call.operation}: rate limited; the server asks to wait {retry_after:.0f}s, "
                    f"more than max_retry_after={policy.max_retry_after:.0f}s",
                    status_code=getattr(error, "status_code", 429),
                    body=getattr(error, "body", None),
                    tracking_id=getattr(error, "tracking_id", None),
                    retry_after=retry_after,
                    operation=call.operation,
                    merchant_id_scan_reference=call.merchant_ref,
                    attempts=number,
                )
                raise rate_error
            delay = max(delay, retry_after)
        window = min(policy.attempt_timeout, max(_MIN_ATTEMPT_WINDOW, 2 * (anyio.current_time() - started)))
        if anyio.current_time() + delay + window >= deadline_at:
            timeout = DeadlineExceeded(
                f"{call.operation}: the deadline leaves no time to retry after {type(error).__name__}",
                operation=call.operation,
                merchant_id_scan_reference=call.merchant_ref,
                attempts=number,
            )
            timeout.safe_to_retry = error.safe_to_retry
            if kind is FailureKind.AMBIGUOUS:
                self._raise_final(call, error, kind, number)
            raise timeout from error
        if not self._budget.try_spend(timeout=isinstance(error, ReadError)):
            exhausted = RetryBudgetExhausted(
                f"{call.operation}: client retry budget exhausted; not retrying {type(error).__name__}",
                operation=call.operation,
                merchant_id_scan_reference=call.merchant_ref,
                attempts=number,
            )
            exhausted.safe_to_retry = error.safe_to_retry
            if kind is FailureKind.AMBIGUOUS and not call.idempotent:
                self._raise_final(call, error, kind, number)
            raise exhausted from error
        raise _Retry(error, kind, delay)

    @staticmethod
    def _deadline_before(call: _Call, number: int) -> DeadlineExceeded:
        """The deadline ran out before attempt ``number`` was sent. An earlier attempt that may have been processed
        is reported as an unknown outcome by :meth:`_retry`, so this refusal itself is safe to retry."""
        timeout = DeadlineExceeded(
            f"{call.operation}: deadline reached before attempt {number}",
            operation=call.operation,
            merchant_id_scan_reference=call.merchant_ref,
            attempts=number - 1,
        )
        timeout.safe_to_retry = True
        return timeout

    def _classify_transport_error(
        self, call: _Call, exc: httpx.HTTPError
    ) -> tuple[RequestError, FailureKind]:
        common: dict[str, Any] = {
            "operation": call.operation,
            "merchant_id_scan_reference": call.merchant_ref,
        }
        error: RequestError
        if isinstance(exc, httpx.PoolTimeout):
            error, kind = (
                PoolTimeoutError(f"{call.operation}: no free connection in time", **common),
                (FailureKind.NOT_SENT),
            )
        elif isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            reason = _tls_failure(exc) or f"could not connect ({type(exc).__name__})"
            error, kind = (
                ConnectError(f"{call.operation}: {reason}", **common),
                (FailureKind.NOT_SENT),
            )
        elif isinstance(exc, (httpx.WriteError, httpx.WriteTimeout)):
            # the request body did not get out completely, so the server cannot have processed it
            error, kind = (
                ConnectError(f"{call.operation}: upload failed ({type(exc).__name__})", **common),
                (FailureKind.NOT_SENT),
            )
        elif isinstance(exc, _ResponseTooLarge):
            # A 4xx says the request was refused; any other status (a 200 above all) may follow a processed
            # submission. Reading the same flood again does not help a GET.
            refused = 400 <= exc.status_code < 500
            error, kind = (
                ResponseError(
                    f"{call.operation}: the answer (HTTP {exc.status_code}) is larger than "
                    f"max_response_bytes={exc.limit}",
                    status_code=exc.status_code,
                    **common,
                ),
                FailureKind.PERMANENT if call.idempotent or refused else FailureKind.AMBIGUOUS,
            )
        elif isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError)):
            error, kind = (
                ResponseError(
                    f"{call.operation}: request could not be made ({type(exc).__name__})", **common
                ),
                (FailureKind.PERMANENT),
            )
        else:
            error, kind = (
                ReadError(
                    f"{call.operation}: the request was sent but the answer was lost ({type(exc).__name__})",
                    **common,
                ),
                FailureKind.AMBIGUOUS,
            )
        error.__cause__ = exc
        return error, kind

    def _classify_status(
        self, call: _Call, answer: _Answer, retry_after: float | None
    ) -> tuple[RequestError, FailureKind]:
        status = answer.status_code
        body = _json_object(answer.body, answer.headers)
        common: dict[str, Any] = {
            "status_code": status,
            "body": body,
            "tracking_id": answer.headers.get("x-trackingid"),
            "operation": call.operation,
            "merchant_id_scan_reference": call.merchant_ref,
        }
        phrase = httpx.codes.get_reason_phrase(status) or "error"
        if status == 429:
            return RateLimitedError(f"{call.operation}: rate limited", retry_after=retry_after, **common), (
                FailureKind.REFUSED
            )
        if status == 503:
            return ServerError(f"{call.operation}: service unavailable", **common), FailureKind.REFUSED
        if status >= 500:
            return ServerError(f"{call.operation}: server error {phrase}", **common), FailureKind.AMBIGUOUS
        if 300 <= status < 400:
            error = ResponseError(
                f"{call.operation}: the server answered with a redirect (HTTP {status}), which is never followed",
                status_code=status,
                operation=call.operation,
                merchant_id_scan_reference=call.merchant_ref,
            )
            return error, FailureKind.PERMANENT
        error_type = _STATUS_ERRORS.get(status, APIError)
        return error_type(f"{call.operation}: {phrase}", **common), FailureKind.PERMANENT

    async def _send_once(self, call: _Call, total: float | None) -> _Answer:
        """Send ``call`` once and read the whole answer. ``total`` bounds the attempt on our own aiohttp pool
        (raising :class:`TimeoutError`); on the other paths the caller bounds it."""
        http = self._get_http()
        headers = {
            "Accept": "application/json",
            # bodies are read raw (never inflated, so no decompression bomb): ask for them uncompressed
            "Accept-Encoding": "identity",
            "User-Agent": self.user_agent,
            "Authorization": self._authorization,
        }
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + call.path
        fast = self._own_aiohttp
        if fast is not None:
            # Our own aiohttp pool: no httpx Request/Response objects at all (a third of the CPU of a small call).
            raw = await fast.request_bytes(
                call.method,
                url,
                headers,
                call.body,
                timeout=self._timeout_ext,
                max_bytes=self._max_response_bytes,
                total=total,
            )
            if len(raw.body) > self._max_response_bytes:
                raise _ResponseTooLarge(raw.status_code, self._max_response_bytes)
            return _Answer(raw.status_code, _header_dict(raw.headers), raw.body)
        transport = self._own_transport
        if transport is not None:
            # Our own httpcore pool: straight to the transport. httpx.AsyncClient.send would only add per-request
            # work we never use (cookie jar, auth and redirect machinery, event hooks).
            request = httpx.Request(
                call.method,
                self._url(url),
                content=call.body,
                headers=headers,
                extensions={"timeout": self._timeout_ext},
            )
            response = await transport.handle_async_request(request)
        else:  # the caller's http_client: its settings (hooks, auth, proxies...) apply
            request = http.build_request(call.method, url, content=call.body, headers=headers)
            response = await http.send(request, stream=True, follow_redirects=False)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise _ResponseTooLarge(response.status_code, self._max_response_bytes)
                chunks.append(chunk)
        finally:
            await response.aclose()
            # httpx.AsyncClient.send links the response and its stream both ways and the response holds the
            # request (and its body): break the cycle so a multi-megabyte body is freed when the call returns,
            # not at the next garbage collection
            response.stream = httpx.ByteStream(b"")
        return _Answer(response.status_code, response.headers, b"".join(chunks))

    def _url(self, url: str) -> httpx.URL:
        """Parsed URLs, cached (parsing is most of the cost of building an httpx.Request)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 256:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    # -- public API --------------------------------------------------------------------------------------------

    async def prepare(self, request: NetverifyRequest) -> NetverifyRequest:
        """Run preflight on every image of the request (in worker threads); returns the request to send.

        With ``preflight_fix`` the returned request carries the normalised images. Raises
        :class:`~netverify_async.PreflightError` for an image Jumio would refuse.
        """
        if not isinstance(request, NetverifyRequest):
            raise TypeError("request must be a NetverifyRequest")
        if not self.preflight:
            return request
        from ._preflight import preflight_request

        reports = await preflight_request(request, fix=self.preflight_fix)
        fixed = {}
        for role, report in reports.items():
            report.raise_for_errors()
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
        :class:`~netverify_async.RequestError` subclass (``safe_to_retry`` tells whether resending is harmless), or
        :class:`~netverify_async.SubmissionOutcomeUnknown` when a scan may have been created without an answer.
        """
        prepared = await self.prepare(request)
        body = await self.encode(prepared)
        return await self.send_encoded(body, merchant_id_scan_reference=request.merchant_id_scan_reference)

    async def send_encoded(
        self,
        body: bytes,
        *,
        merchant_id_scan_reference: str,
        on_send: Callable[[], Awaitable[None]] | None = None,
    ) -> ScanReceipt:
        """Send an already prepared and encoded performNetverify body (used by batches).

        ``on_send`` is awaited once the call holds a rate-limiter slot, right before the first attempt goes out
        (a batch records the item as sent there); if it raises, nothing is sent.
        """
        call = _Call(
            operation="performNetverify",
            method="POST",
            path=PERFORM_NETVERIFY_PATH,
            body=body,
            idempotent=False,
            merchant_ref=merchant_id_scan_reference,
            limiter_kind="submit",
            on_send=on_send,
        )
        answer = await self._call(call)
        parsed = _json_object(answer.body, answer.headers)
        try:
            if parsed is None:
                raise ValueError("not a JSON object")
            receipt = ScanReceipt.from_wire(parsed)
        except (ValueError, TypeError, KeyError, NetverifyError) as exc:
            # the server said yes, so a scan probably exists, but we cannot tell which
            self.stats.outcome_unknown += 1
            raise SubmissionOutcomeUnknown(
                merchant_id_scan_reference, f"success answer (HTTP {answer.status_code}) could not be read"
            ) from exc
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
        answer = await self._call(
            _Call(operation=operation, method="GET", path=path, body=None, idempotent=True)
        )
        parsed = _json_object(answer.body, answer.headers)
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

    async def delete_scan(self, scan_reference: str) -> None:
        """``DELETE /scans/{ref}``: delete the scan's images and data at Jumio."""
        await self._call(
            _Call(
                operation="deleteScan",
                method="DELETE",
                path=self._scan_path(scan_reference),
                body=None,
                idempotent=True,
            )
        )

    async def wait_for_result(
        self, scan_reference: str, *, schedule: Sequence[float] = RETRIEVAL_POLL_SCHEDULE_S
    ) -> ScanDetails:
        """Poll on Jumio's schedule (seconds since the call: 40, 60, 100, ... 940) until the scan is DONE or
        FAILED, then return its details. Raises :class:`~netverify_async.DeadlineExceeded` when the schedule
        ends first. Pass a short ``schedule`` in tests."""
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
        See :func:`netverify_async._batch.submit_many` for the details.
        """
        from ._batch import submit_many

        return submit_many(
            self,
            requests,
            concurrency=concurrency or self.max_concurrency,
            journal=journal,
            resend_unknown=resend_unknown,
            max_bytes_in_flight=max_bytes_in_flight,
            on_progress=on_progress,
        )


@attrs.define
class ClientStats:
    """Counters of what the client did (for demos, dashboards and tests)."""

    attempts: int = 0
    retries: int = 0
    receipts: int = 0
    outcome_unknown: int = 0
    status_counts: dict[int, int] = attrs.field(factory=dict)

    def count_status(self, status: int) -> None:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1

    @property
    def throttled(self) -> int:
        return self.status_counts.get(429, 0)
