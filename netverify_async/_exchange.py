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
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx

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
from ._retry import parse_retry_after

__all__ = ["PERMANENT_REFUSALS", "Answer", "BasicAuth", "Call", "Exchange", "classify_status"]

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


class _Body(httpx.AsyncByteStream):
    """A request body handed out in slices, which knows whether it was read to its end.

    A transport asks for the next slice only after it wrote the previous one, so ``complete`` becomes True once
    every byte was handed to the network: until then the server cannot hold the whole body.
    """

    def __init__(self, data: bytes, on_complete: Callable[[], None] | None = None) -> None:
        self._data = data
        self._on_complete = on_complete
        self.complete = not data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = self._data
        for start in range(0, len(data), UPLOAD_SLICE):
            if start:
                await anyio.lowlevel.checkpoint()
            yield data[start : start + UPLOAD_SLICE]
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

    async def send(self, call: Call, *, within: float) -> Answer:
        """Send ``call`` once, bounded by ``within`` seconds in all; a 2xx :class:`Answer` or a raised
        :class:`~netverify_async.RequestError` with its kind."""
        body = _Body(call.body or b"", call.on_body_sent if call.body else None)
        failure: RequestError | None = None
        try:
            with anyio.fail_after(within):
                status, headers, content = await self._round_trip(call, body)
        except httpx.PoolTimeout:
            failure = PoolTimeoutError(f"{call.operation}: no free connection in time", **_where(call))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = _tls_failure(exc) or f"could not connect to {self._base_url} ({_describe(exc)})"
            failure = ConnectError(f"{call.operation}: {reason}", **_where(call))
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            failure = ConnectError(
                f"{call.operation}: the request could not be made ({type(exc).__name__})",
                kind=FailureKind.PERMANENT,
                **_where(call),
            )
        except _TooLarge as exc:
            failure = self._too_large(call, exc.status_code)
        except TimeoutError:
            failure = _lost(call, body, f"no complete answer within {within:g}s")
        except Exception as exc:  # any transport, the caller's included: classified by what was sent
            failure = _lost(call, body, _describe(exc))
        if failure is not None:
            raise failure
        if 200 <= status < 300:
            return Answer(status, headers, content)
        raise classify_status(call, status, headers, content, body_complete=body.complete)

    async def _round_trip(self, call: Call, body: _Body) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self._headers)
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
            if response.is_stream_consumed:
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
            # the errno's own text ("connection refused"), not asyncio's wording of it, which quotes addresses
            reason = os.strerror(current.errno) if current.errno else str(current.strerror)
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
