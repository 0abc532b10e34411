"""An httpx transport over aiohttp (the ``aiohttp`` extra; asyncio only).

It reports failures as httpx exceptions, keeping the one distinction that matters for a billed POST: a
connection that was never made (``httpx.ConnectError`` / ``httpx.ConnectTimeout``: nothing left the machine)
against everything after it (``httpx.ReadError`` and friends: the exchange then asks the request body whether it
was sent whole). Existing adapters map ``aiohttp.ServerDisconnectedError`` to a connect timeout, which would turn
a request the server may have processed into a blind resend.

Connections are never reused (``force_close``): each request gets a fresh one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

_CHUNK = 64 * 1024
#: What aiohttp raises, besides its own errors: socket errors, and its timeouts before Python 3.11.
_FAILURES = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _mapped(exc: BaseException, phase: str) -> httpx.TransportError:
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake: the request never left
        failure = httpx.ConnectError(f"connection failed: {type(exc).__name__}")
        failure.__cause__ = exc  # holds the ssl / OS error (no request data): the exchange reads the TLS reason
        return failure
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no connection in time
        return httpx.ConnectTimeout("timed out waiting for a connection")
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(f"timed out while {phase}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"server disconnected while {phase}")
    return httpx.ReadError(f"connection failed while {phase}: {type(exc).__name__}")


class _Stream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except _FAILURES as exc:
            failure = _mapped(exc, "reading the answer")
        else:
            return
        raise failure

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport backed by an ``aiohttp.ClientSession``: TLS verified with ``ssl_context``, at most
    ``max_connections`` at once, redirects never followed, bodies never decompressed, no connection reuse."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int = 100) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context, limit=self._max_connections, force_close=True, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        client_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout.get("pool"),
            sock_connect=timeout.get("connect"),
            sock_read=timeout.get("read"),
            ceil_threshold=float("inf"),
        )
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "transfer-encoding"]
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        failure: httpx.TransportError | None = None
        try:
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.stream if has_body else None,
                allow_redirects=False,
                compress=False,
                chunked=None,
                timeout=client_timeout,
            )
        except _FAILURES as exc:
            failure = _mapped(exc, "waiting for the answer")
        if failure is not None:
            raise failure
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Stream(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
