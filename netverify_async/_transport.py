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

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

_CHUNK = 64 * 1024


@contextmanager
def _mapped_errors(phase: str) -> Iterator[None]:
    """Translate aiohttp failures into httpx's, keeping 'never sent' and 'maybe received' apart."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS handshake: the request never left
        raise httpx.ConnectError(f"connection failed: {type(exc).__name__}") from exc
    except aiohttp.ConnectionTimeoutError as exc:  # no connection (pool wait or connect) in time
        raise httpx.ConnectTimeout("timed out waiting for a connection") from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(f"timed out while {phase}") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(f"server disconnected while {phase}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(f"incomplete response while {phase}") from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.InvalidURL("invalid URL") from exc
    except (aiohttp.ClientError, OSError) as exc:  # connection lost after it was established
        raise httpx.ReadError(f"connection lost while {phase}: {type(exc).__name__}") from exc


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors("reading the response body"):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport backed by an ``aiohttp.ClientSession`` (asyncio only).

    ``verify`` is an ``ssl.SSLContext`` (always verifying) built by the client; ``limits`` maps httpx's pool
    limits onto aiohttp's connector. Redirects are never followed and bodies are never decompressed here.
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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        data: bytes | None = request.content or None
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "transfer-encoding"]
        with _mapped_errors("waiting for the response"):
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=False,
                chunked=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
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

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
