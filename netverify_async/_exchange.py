"""One HTTP exchange: send one attempt of a call through httpx, read the answer, classify what happened.

This is the only place where a failure is classified. Every failure leaves as a
:class:`~netverify_async.RequestError` carrying its :class:`~netverify_async.FailureKind`; the retry loop, the
batch and the journal read that kind and never re-derive it.

The rule for a submission (performNetverify creates a billed scan and has no idempotency key):

* Before the last byte of the body was handed to the network, nothing can have been processed: a failure there
  is ``NOT_SENT``, whatever the transport says. The body is streamed by :class:`_Body`, which knows whether it
  was read to its end, so the rule holds for any transport behind httpx, the caller's included.
* After the complete body, only answers that certainly mean "refused before processing" are refusals
  (:data:`PERMANENT_REFUSALS`, 429, and a 503 that carries ``Retry-After``, see :func:`classify_status`).
  Anything else is ``AMBIGUOUS``: redirects, 1xx, 408, unknown codes, 5xx, a lost or garbled answer.

The exchange builds no error that holds an httpx object: the library's errors are made from status, headers
and the parsed JSON error body only, and raised outside the ``except`` block that caught the transport's
exception, so neither ``__cause__`` nor ``__context__`` leads back to a request (which carries the
``Authorization`` header and the body).

Why one module of over 600 lines: sending, reading (with its caps and sinks) and classifying are one decision,
"what does this attempt say about the request's effect", and keeping them together keeps it in one place.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import attrs
import httpx

from ._constants import SCANS_PATH
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    FailureKind,
    ForbiddenError,
    NotFoundError,
    PoolTimeoutError,
    RateLimitedError,
    ReadError,
    RequestError,
    ResponseError,
    ServerError,
)
from ._events import AttemptMeter
from ._retry import parse_retry_after

__all__ = [
    "PERMANENT_REFUSALS",
    "Answer",
    "BasicAuth",
    "Call",
    "Exchange",
    "ForeignImageURLError",
    "ImageTooLargeError",
    "Sink",
    "classify_status",
    "trusted_image_path",
]

logger = logging.getLogger("netverify_async")

#: Request bodies are handed to the transport in slices of this size, with the event loop handed back between
#: them: a 13 MB body written whole costs the loop one step of tens of milliseconds.
UPLOAD_SLICE = 64 * 1024

#: Statuses that certainly mean "refused before processing, and the same request will be refused again". A
#: redirect, a 1xx, 408 and anything not listed here are not certain refusals.
PERMANENT_REFUSALS: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    405: APIError,  # method not allowed
    406: APIError,  # not acceptable
    410: APIError,  # gone
    411: APIError,  # length required
    413: APIError,  # body too large
    414: APIError,  # URI too long
    415: APIError,  # unsupported media type
    421: APIError,  # misdirected request
    431: APIError,  # header fields too large
}


@attrs.frozen
class Call:
    """One API call: what to send, and whether sending it twice is harmless."""

    operation: str
    method: str
    path: str
    body: bytes | None
    idempotent: bool
    merchant_ref: str | None = None
    #: called (synchronously) each time the last byte of the body was handed to the network: from then on the
    #: server may hold the whole request
    on_body_sent: Callable[[], None] | None = attrs.field(default=None, eq=False)
    #: the ``Accept`` header; for a call with a ``sink``, also the media types a 2xx answer may have
    accept: str = "application/json"
    #: for a download: where a 2xx body goes, chunk by chunk, as it arrives (the :class:`Answer` then has an
    #: empty body); None: the body is read whole into the answer
    sink: Sink | None = attrs.field(default=None, eq=False)
    #: the cap on a 2xx body streamed into ``sink`` (None: the exchange's ``max_response_bytes``); error
    #: answers are always read under the exchange's own cap
    max_sink_bytes: int | None = None


class Sink(Protocol):
    """Where a download's 2xx body goes (see :attr:`Call.sink`).

    ``start`` is awaited once per attempt that got a 2xx answer, before its first chunk: a sink that can start
    again (a temporary file) truncates there. ``replayable`` is False for a sink whose bytes are handed on and
    cannot be taken back (an iterator the caller reads): a failure after its first byte is then not retried.
    An exception raised by the sink (a full disk, say) ends the call as it is; a
    :class:`~netverify_async.RequestError` it raises keeps its kind.
    """

    @property
    def replayable(self) -> bool: ...

    async def start(self, content_type: str | None, content_length: int | None) -> None: ...

    async def write(self, chunk: bytes) -> None: ...


class ImageTooLargeError(ResponseError):
    """An image (a download's answer) is larger than the cap it was fetched with; nothing of it was kept.

    ``max_bytes`` is the cap; ``declared_size`` the ``Content-Length`` the server announced (None when it gave
    none and the cap was hit while reading). ``kind`` is ``PERMANENT``: the same image is as large next time.
    """

    def __init__(
        self, message: str, *, max_bytes: int, declared_size: int | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("kind", FailureKind.PERMANENT)
        super().__init__(message, **kwargs)
        self.max_bytes = max_bytes
        self.declared_size = declared_size


class ForeignImageURLError(RequestError):
    """An image URL (from a callback or a listing) that is not an image of the configured Jumio host: another
    scheme, host or port, credentials or a query in the URL, or a path that is not a scan image. Refused before
    any connection is made, so the API credentials never go anywhere else (a spoofed callback cannot harvest
    them). ``reason`` is a short code: ``invalid_url``, ``scheme``, ``host``, ``port``, ``userinfo``,
    ``query``, ``path``. Messages name the configured host, never the URL (image URLs count as personal data).
    ``kind`` is ``PERMANENT``: nothing was sent, and the same URL is refused again.
    """

    default_kind = FailureKind.PERMANENT

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


@attrs.frozen
class Answer:
    """A successful (2xx) answer, read whole."""

    status_code: int
    #: header names in lower case; repeated headers joined with ", "
    headers: Mapping[str, str]
    body: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object when the server says it is JSON and it parses as one; else None."""
        return json_object(self.body, self.headers)


def json_object(body: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
    content_type = headers.get("content-type", "").lower()
    if "json" not in content_type or not body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


class BasicAuth(httpx.Auth):
    """HTTP Basic credentials, built once; the header lives here only, never in a local of the send path."""

    def __init__(self, token: str, secret: str) -> None:
        self._header = "Basic " + base64.b64encode(f"{token}:{secret}".encode()).decode("ascii")

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BasicAuth(<hidden>)"


#: The path of a scan image, after the base URL's own path: front, back, face, or liveness image N.
_IMAGE_PATH = re.compile(
    re.escape(SCANS_PATH) + r"/(?P<ref>[A-Za-z0-9_-]{1,100})/images/(?P<classifier>front|back|face|liveness/[0-9]{1,6})"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def trusted_image_path(base_url: str, url: str, *, operation: str) -> tuple[str, str, str]:
    """``(path, scan_reference, classifier)`` of an image URL that points at the configured API (``base_url``:
    same scheme, host and port, under its path), for a :class:`Call` (the exchange puts the base URL back in
    front); :class:`ForeignImageURLError` for any other URL, before anything is sent.

    The path is rebuilt from the parts that matched, never copied from the URL.
    """
    base = httpx.URL(base_url)

    def refuse(reason: str, what: str) -> ForeignImageURLError:
        return ForeignImageURLError(
            f"{operation}: refused an image URL that {what}; credentials are sent only to "
            f"{base.scheme}://{base.netloc.decode('ascii')}",
            reason=reason,
            operation=operation,
        )

    if not isinstance(url, str):
        raise refuse("invalid_url", "is not a string")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError):
        raise refuse("invalid_url", "is not a valid URL") from None
    if parsed.userinfo:
        raise refuse("userinfo", "carries credentials")
    if parsed.scheme != base.scheme:
        raise refuse("scheme", "uses another scheme")
    if not parsed.host or parsed.host != base.host:
        raise refuse("host", "points to another host")
    if (parsed.port or _DEFAULT_PORTS.get(parsed.scheme)) != (base.port or _DEFAULT_PORTS.get(base.scheme)):
        raise refuse("port", "points to another port")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise refuse("query", "has a query or fragment")
    prefix = base.raw_path.decode("ascii").rstrip("/")
    path = parsed.raw_path.decode("ascii")
    match = _IMAGE_PATH.fullmatch(path[len(prefix) :]) if path.startswith(prefix) else None
    if match is None:
        raise refuse("path", "is not the URL of a scan image of the API")
    reference, classifier = match["ref"], match["classifier"]
    return f"{SCANS_PATH}/{reference}/images/{classifier}", reference, classifier


class _Body(httpx.AsyncByteStream):
    """A request body handed out in slices, which knows whether it was read to its end.

    A transport asks for the next slice only after it wrote the previous one, so ``complete`` becomes True once
    every byte was handed to the network: until then the server cannot hold the whole body.
    """

    def __init__(self, data: bytes, on_complete: Callable[[], None] | None = None) -> None:
        self._data = data
        self._on_complete = on_complete
        self.complete = not data
        #: bytes the transport took (it asks for the next slice once it wrote the previous one)
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = self._data
        for start in range(0, len(data), UPLOAD_SLICE):
            if start:
                await anyio.lowlevel.checkpoint()
            piece = data[start : start + UPLOAD_SLICE]
            yield piece
            self.sent += len(piece)
        self.complete = True
        self._data = b""  # the request object may outlive the call (httpx keeps it on the response)
        if self._on_complete is not None:
            self._on_complete()


def _header_dict(headers: httpx.Headers) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        earlier = found.get(key)
        found[key] = value if earlier is None else f"{earlier}, {value}"
    return found


def _tls_failure(exc: BaseException) -> str | None:
    """What went wrong in TLS, when the cause chain of a connection failure holds an ``ssl`` error; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
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


#: What to check after a 401 or 403: Jumio answers 403 for bad Basic credentials, a User-Agent it does not
#: accept, missing or suspicious headers, and credentials of another data centre.
_AUTH_HINT = (
    "; check api_token and api_secret (Customer Portal > Settings > API credentials), that they belong to this "
    "region's data centre, and that user_agent names your business and app with a version"
)
#: The longest server reason quoted in a message.
_MAX_REASON = 160


def _server_reason(body: Mapping[str, Any] | None) -> str | None:
    """The short reason a JSON error body gives (``message``, ``detail``, ``title`` or ``error``), printable and
    cut to a line; None without one. Used for 401/403, whose reasons quote no request data."""
    if not body:
        return None
    for key in ("message", "detail", "title", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
            return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
    return None


def classify_status(
    call: Call, status: int, headers: Mapping[str, str], body: bytes, *, body_complete: bool = True
) -> RequestError:
    """The error for a non-2xx answer, with its kind.

    A 503 is attributed to the API's front door (a refusal, safe to retry) only when it carries a valid
    ``Retry-After``: an overloaded server that says when to come back. A bare 503 is what gateways and service
    meshes answer after an upstream reset, when the request may already have been forwarded: ambiguous.
    """
    retry_after = parse_retry_after(headers) if status in (429, 503) else None
    common: dict[str, Any] = {
        "status_code": status,
        "body": json_object(body, headers),
        "tracking_id": headers.get("x-trackingid"),
        "operation": call.operation,
        "merchant_id_scan_reference": call.merchant_ref,
    }
    phrase = httpx.codes.get_reason_phrase(status) or "unexpected status"
    wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
    if status == 429:
        return RateLimitedError(f"{call.operation}: rate limited{wait}", retry_after=retry_after, **common)
    refusal = PERMANENT_REFUSALS.get(status)
    if refusal is not None:
        message = f"{call.operation}: {phrase}"
        if status in (401, 403):
            reason = _server_reason(common["body"])
            message += (f": the server says {reason!r}" if reason else "") + _AUTH_HINT
        return refusal(message, kind=FailureKind.PERMANENT, **common)
    if status == 503 and retry_after is not None:
        return ServerError(
            f"{call.operation}: service unavailable{wait}", kind=FailureKind.REFUSED, retry_after=retry_after, **common
        )
    if not body_complete:
        # an early answer to a body the server never got whole: whatever it says, nothing was processed
        kind = FailureKind.REFUSED if status >= 500 else FailureKind.PERMANENT
    elif call.idempotent:
        kind = FailureKind.AMBIGUOUS if status >= 500 or status == 408 else FailureKind.PERMANENT
    else:
        kind = FailureKind.AMBIGUOUS
    if 500 <= status < 600:
        return ServerError(f"{call.operation}: server error {phrase}", kind=kind, retry_after=retry_after, **common)
    if 300 <= status < 400:
        what = f"a redirect (HTTP {status}), which is never followed"
    else:
        what = f"an unexpected status (HTTP {status} {phrase})"
    return ResponseError(
        f"{call.operation}: the server answered with {what}",
        kind=kind,
        status_code=status,
        operation=call.operation,
        merchant_id_scan_reference=call.merchant_ref,
    )


class Exchange:
    """Sends one attempt of a :class:`Call` over an ``httpx.AsyncClient`` and classifies the result.

    Every request carries ``Connection: close``: the library's own transports open a fresh connection for each
    request, so no answer can be read from a connection that holds an earlier exchange's leftovers (an
    unsolicited or late response would otherwise be taken as the next request's answer).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        user_agent: str,
        auth: httpx.Auth,
        max_response_bytes: int,
    ) -> None:
        self.http = http
        self._base_url = base_url
        self._auth = auth
        self._max_response_bytes = max_response_bytes
        self._headers = {
            "Accept": "application/json",
            # bodies are read raw (never inflated, so no decompression bomb): ask for them uncompressed
            "Accept-Encoding": "identity",
            "User-Agent": user_agent,
            "Connection": "close",
        }

    async def send(self, call: Call, *, within: float, meter: AttemptMeter | None = None) -> Answer:
        """Send ``call`` once, bounded by ``within`` seconds in all; a 2xx :class:`Answer` or a raised
        :class:`~netverify_async.RequestError` with its kind. ``meter`` receives the body bytes sent."""
        body = _Body(call.body or b"", call.on_body_sent if call.body else None)
        failure: RequestError | None = None
        sink_error: BaseException | None = None
        delivery = _Delivery()
        try:
            with anyio.fail_after(within):
                try:
                    status, headers, content = await self._round_trip(call, body, delivery)
                finally:
                    if meter is not None:
                        meter.bytes_sent = body.sent
        except httpx.PoolTimeout:
            failure = PoolTimeoutError(f"{call.operation}: no free connection in time", **_where(call))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = f"could not connect to {self._base_url} ({_tls_failure(exc) or _describe(exc)})"
            failure = ConnectError(f"{call.operation}: {reason}", **_where(call))
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            failure = ConnectError(
                f"{call.operation}: the request could not be made ({type(exc).__name__})",
                kind=FailureKind.PERMANENT,
                **_where(call),
            )
        except _TooLarge as exc:
            failure = self._too_large(call, exc.status_code)
        except _TooLargeDownload as exc:
            failure = _download_too_large(call, exc)
        except _NotAccepted as exc:
            failure = ResponseError(
                f"{call.operation}: the answer (HTTP {exc.status_code}) is {exc.media_type or 'untyped'}, "
                f"not one of {call.accept}",
                kind=FailureKind.PERMANENT,
                status_code=exc.status_code,
                **_where(call),
            )
        except _SinkFailed as exc:
            sink_error = exc.error
        except TimeoutError:
            failure = _lost(call, body, f"no complete answer within {within:g}s")
        except Exception as exc:  # any transport, the caller's included: classified by what was sent
            failure = _lost(call, body, _describe(exc))
        if sink_error is not None:
            raise sink_error
        if failure is not None:
            sink = call.sink
            if sink is not None and not sink.replayable and delivery.handed_on and failure.kind is not FailureKind.PERMANENT:
                # the caller holds part of the answer already: another attempt would hand it the start again
                raise ReadError(
                    f"{failure} (after {delivery.handed_on} bytes were handed on; not retried)",
                    kind=FailureKind.PERMANENT,
                    **_where(call),
                )
            raise failure
        if 200 <= status < 300:
            return Answer(status, headers, content)
        raise classify_status(call, status, headers, content, body_complete=body.complete)

    async def _round_trip(
        self, call: Call, body: _Body, delivery: _Delivery
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self._headers)
        headers["Accept"] = call.accept
        if call.body is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(call.body))
        built = self.http.build_request(call.method, self._base_url + call.path, headers=headers)
        # the same request (the client's defaults merged in) with the body that knows when it was sent whole
        request = httpx.Request(
            built.method, built.url, headers=built.headers, stream=body, extensions=built.extensions
        )
        del built
        response = await self.http.send(request, stream=True, auth=self._auth, follow_redirects=False)
        del request
        try:
            if call.sink is not None and 200 <= response.status_code < 300:
                await self._stream_into(call, call.sink, response, delivery)
                content = b""
            elif response.is_stream_consumed:
                # a response hook, or a transport such as httpx.MockTransport, has read it already
                content = response.content
                if len(content) > self._max_response_bytes:
                    raise _TooLarge(response.status_code)
            else:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > self._max_response_bytes:
                        raise _TooLarge(response.status_code)
                    chunks.append(chunk)
                content = b"".join(chunks)
        finally:
            await response.aclose()
            # AsyncClient.send links the response and its stream both ways, and the response holds the request
            # (its headers, Authorization included): unlink them so that both go when the call returns, not at
            # the next garbage collection
            response.stream = httpx.ByteStream(b"")
        return response.status_code, _header_dict(response.headers), content

    async def _stream_into(self, call: Call, sink: Sink, response: httpx.Response, delivery: _Delivery) -> None:
        """A 2xx answer streamed into ``sink`` under the call's cap: refused before its first byte when its type
        is not accepted or its declared length is over the cap, cut off as soon as it grows over the cap."""
        status = response.status_code
        cap = call.max_sink_bytes if call.max_sink_bytes is not None else self._max_response_bytes
        content_type = response.headers.get("content-type")
        media_type = content_type.split(";", 1)[0].strip().lower() if content_type else ""
        accepted = {part.split(";", 1)[0].strip().lower() for part in call.accept.split(",")}
        if media_type not in accepted:
            raise _NotAccepted(status, media_type)
        declared_text = response.headers.get("content-length")
        declared = int(declared_text) if declared_text is not None and declared_text.strip().isdigit() else None
        if declared is not None and declared > cap:
            raise _TooLargeDownload(status, cap, declared)
        try:
            await sink.start(media_type, declared)
        except Exception as exc:
            raise _SinkFailed(exc) from None
        size = 0
        chunks = [response.content] if response.is_stream_consumed else None
        source = _each_of(chunks) if chunks is not None else response.aiter_raw()
        async for chunk in source:
            if not chunk:
                continue
            size += len(chunk)
            if size > cap:
                raise _TooLargeDownload(status, cap, declared)
            try:
                await sink.write(chunk)
            except Exception as exc:
                raise _SinkFailed(exc) from None
            delivery.handed_on += len(chunk)

    def _too_large(self, call: Call, status: int) -> RequestError:
        # A certain refusal stays one; any other status (a 200 above all) may follow a processed submission.
        # Reading the same flood again does not help a GET.
        refused = status in PERMANENT_REFUSALS or status == 429
        return ResponseError(
            f"{call.operation}: the answer (HTTP {status}) is larger than "
            f"max_response_bytes={self._max_response_bytes}",
            kind=FailureKind.PERMANENT if call.idempotent or refused else FailureKind.AMBIGUOUS,
            status_code=status,
            **_where(call),
        )


class _Delivery:
    """How many bytes of a download the sink took in the current attempt."""

    __slots__ = ("handed_on",)

    def __init__(self) -> None:
        self.handed_on = 0


class _TooLargeDownload(Exception):
    def __init__(self, status_code: int, max_bytes: int, declared: int | None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.max_bytes = max_bytes
        self.declared = declared


class _NotAccepted(Exception):
    def __init__(self, status_code: int, media_type: str) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.media_type = media_type


class _SinkFailed(Exception):
    """The sink's own failure, carried out of the exchange unchanged."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


async def _each_of(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _download_too_large(call: Call, exc: _TooLargeDownload) -> ImageTooLargeError:
    if exc.declared is not None and exc.declared > exc.max_bytes:
        what = f"announces {exc.declared} bytes"
    else:
        what = "grew larger than that while it was read"
    return ImageTooLargeError(
        f"{call.operation}: the answer (HTTP {exc.status_code}) is over the cap of {exc.max_bytes} bytes: it {what}",
        max_bytes=exc.max_bytes,
        declared_size=exc.declared,
        status_code=exc.status_code,
        **_where(call),
    )


class _TooLarge(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def _where(call: Call) -> dict[str, Any]:
    return {"operation": call.operation, "merchant_id_scan_reference": call.merchant_ref}


def _describe(exc: BaseException) -> str:
    """A failure's class name and, for OS-level errors, its strerror: never the exception's own text, which can
    quote a URL with credentials or a server's bytes."""
    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            break
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # the errno's own text ("connection refused"), not asyncio's wording of it, which quotes addresses;
            # the resolver's errors (socket.gaierror) have negative numbers of their own, with their own text
            if current.errno and current.errno > 0 and not isinstance(current, socket.gaierror):
                reason = os.strerror(current.errno)
            else:
                reason = str(current.strerror or f"error {current.errno}")
            return f"{type(exc).__name__}: {reason.lower()}"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def _lost(call: Call, body: _Body, what: str) -> RequestError:
    if not body.complete:
        return ConnectError(
            f"{call.operation}: the connection failed before the whole request was sent ({what})", **_where(call)
        )
    return ReadError(
        f"{call.operation}: the request was sent but no usable answer came back ({what})", **_where(call)
    )
