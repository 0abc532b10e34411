"""An httpx transport over aiohttp's connection pool, with exceptions mapped by *when* the failure happened.

Why not httpcore: httpx's default pool (httpcore) loses most of its throughput at a few hundred concurrent
requests (see ``benchmarks/transport.py``); aiohttp's pool does not. Why not an existing adapter: the ones we
found map ``aiohttp.ServerDisconnectedError`` (the server closed the connection after receiving the request) to
``httpx.ConnectTimeout``, i.e. "never sent". For performNetverify that mistake turns an ambiguous failure into a
blind resend and a possible second billed scan. Here the mapping keeps the distinction the retry logic needs:

* nothing left the machine: ``httpx.ConnectError`` / ``httpx.ConnectTimeout``;
* the request may have been received: ``httpx.ReadTimeout`` / ``httpx.RemoteProtocolError`` / ``httpx.ReadError``.

aiohttp runs on asyncio only; under trio the client uses httpx's own transport instead.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple

import aiohttp
import httpx

__all__ = ["AiohttpTransport", "RawAnswer"]

_CHUNK = 64 * 1024
#: Bodies larger than this are handed to aiohttp in slices of _UPLOAD_CHUNK: written whole, a 13 MB body costs the
#: event loop one 10-30 ms step (a join with the headers, a first send, a copy of the rest into the socket
#: buffer); in 64 KiB slices with the loop handed back between them, each step stays well under a millisecond
#: while other tasks keep running (256 KiB slices still let single sends take several milliseconds on loopback).
_STREAM_ABOVE = 1024 * 1024
_UPLOAD_CHUNK = 64 * 1024

_HeaderItems = Mapping[str, str] | Sequence[tuple[str, str]]
#: What aiohttp raises when a timeout runs out: the builtin TimeoutError from Python 3.11, its own class before.
_TOTAL_TIMEOUT = (TimeoutError, asyncio.TimeoutError)
#: What :meth:`AiohttpTransport.request_bytes` hands to :func:`_map_error`.
_FAILURES = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _map_error(exc: BaseException, phase: str, *, bounded: bool = False) -> Exception:
    """The httpx exception for an aiohttp failure, keeping 'never sent' and 'maybe received' apart. With
    ``bounded`` (a ``total`` was set, see :meth:`AiohttpTransport.request_bytes`) a bare timeout is that bound
    running out: the builtin :class:`TimeoutError`.

    A plain function rather than a context manager: it runs on every request's hot path only when it fails.
    """
    if bounded and isinstance(exc, _TOTAL_TIMEOUT) and not isinstance(exc, aiohttp.ClientError):
        return TimeoutError(f"total timeout while {phase}")
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake: the request never left
        return httpx.ConnectError(f"connection failed: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no connection (pool wait or connect) in time
        return httpx.ConnectTimeout("timed out waiting for a connection")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(f"timed out while {phase}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"server disconnected while {phase}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(f"incomplete response while {phase}")
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL("invalid URL")
    # connection lost after it was established
    return httpx.ReadError(f"connection lost while {phase}: {type(exc).__name__}")


async def _slices(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), _UPLOAD_CHUNK):
        if start:
            # aiohttp only waits when the socket buffer is full; on a fast link the kernel takes every slice at
            # once and the whole body would still be written in one step of the loop
            await asyncio.sleep(0)
        yield view[start : start + _UPLOAD_CHUNK]


def _with_content_length(headers: _HeaderItems, length: int) -> list[tuple[str, str]]:
    """The headers as pairs, with ``Content-Length`` added unless present (a sliced body has no length)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if not any(name.lower() == "content-length" for name, _ in items):
        items.append(("Content-Length", str(length)))
    return items


class RawAnswer(NamedTuple):
    """A complete answer read by :meth:`AiohttpTransport.request_bytes`."""

    status_code: int
    #: Header name/value pairs as received, in order.
    headers: tuple[tuple[bytes, bytes], ...]
    #: The body; longer than the ``max_bytes`` asked for only when the answer was larger (and not read fully).
    body: bytes


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise _map_error(exc, "reading the response body") from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport backed by an ``aiohttp.ClientSession`` (asyncio only).

    ``verify`` is an ``ssl.SSLContext`` (always verifying) built by the client; ``limits`` maps httpx's pool
    limits onto aiohttp's connector. Redirects are never followed and bodies are never decompressed here.

    Besides the httpx interface, :meth:`request_bytes` sends a request and reads the whole answer without
    building httpx ``Request``/``Response`` objects, for callers that own the transport and want the bytes.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, Any, Any, float | None], aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context,
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    def _client_timeout(self, timeout: Mapping[str, Any], total: float | None = None) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for httpx's ``timeout`` extension plus an optional ``total`` (one object per distinct
        setting). Timers are never rounded up to whole seconds (aiohttp's default above 5 s)."""
        key = (timeout.get("pool"), timeout.get("connect"), timeout.get("read"), total)
        found = self._timeouts.get(key)
        if found is None:
            if len(self._timeouts) >= 32:
                self._timeouts.clear()
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=total, connect=key[0], sock_connect=key[1], sock_read=key[2], ceil_threshold=math.inf
            )
        return found

    async def _start(
        self,
        method: str,
        url: str,
        headers: _HeaderItems,
        data: bytes | None,
        timeout: Mapping[str, Any],
        total: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Send the request and read the status line and headers."""
        body: bytes | AsyncIterator[memoryview] | None = data
        if data is not None and len(data) > _STREAM_ABOVE:
            body = _slices(data)
            headers = _with_content_length(headers, len(data))
        try:
            return await self._get_session().request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=False,
                chunked=None,
                timeout=self._client_timeout(timeout, total),
            )
        except _FAILURES as exc:
            raise _map_error(exc, "waiting for the response", bounded=total is not None) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        data: bytes | None = request.content or None
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "transfer-encoding"]
        response = await self._start(request.method, str(request.url), headers, data, timeout)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response),
            request=request,
            extensions=extensions,
        )

    async def request_bytes(
        self,
        method: str,
        url: str,
        headers: _HeaderItems,
        body: bytes | None,
        *,
        timeout: Mapping[str, Any],
        max_bytes: int,
        total: float | None = None,
    ) -> RawAnswer:
        """Send one request and read its whole answer; failures raise the same httpx exceptions as
        :meth:`handle_async_request` does.

        ``timeout`` is httpx's ``timeout`` extension (``httpx.Timeout(...).as_dict()``); its pool and connect
        timeouts raise ``httpx.ConnectTimeout`` (nothing was sent). ``total`` bounds the whole exchange (pool wait,
        connect, upload, answer): when it runs out, whatever the phase, the builtin :class:`TimeoutError` is raised
        and the request must be taken as possibly received. Reading stops once more than ``max_bytes`` arrived: a returned
        body longer than ``max_bytes`` means "too large" (the connection is then closed rather than reused).
        """
        response = await self._start(method, url, headers, body, timeout, total)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_chunked(_CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    break
        except _FAILURES as exc:
            raise _map_error(exc, "reading the response body", bounded=total is not None) from exc
        finally:
            response.release()
        return RawAnswer(response.status, response.raw_headers, b"".join(chunks))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
