"""The transports behind the one send path: httpx's own (the default) and aiohttp's (the ``aiohttp`` extra).

Both sit behind an ``httpx.AsyncClient`` and neither keeps a connection alive: each request gets a fresh
connection, so an answer can never be read from a connection that still holds bytes of an earlier exchange.
At Jumio's rates (a few submissions a second) a new TLS connection per request costs nothing a user would feel;
what it costs in client CPU at higher loads is measured in ``benchmarks/transport.py``.
"""

from __future__ import annotations

import importlib.util
import ssl
from typing import Literal

import httpx

from ._errors import ConfigurationError

__all__ = ["TransportName", "build_http_client", "check_transport_name"]

TransportName = Literal["httpx", "aiohttp"]


def check_transport_name(name: object) -> TransportName:
    """The transport setting, checked at construction (an absent extra is named here, not at the first call)."""
    if name == "httpx":
        return "httpx"
    if name == "aiohttp":
        if importlib.util.find_spec("aiohttp") is None:
            raise ConfigurationError(
                "transport: 'aiohttp' needs the aiohttp extra: pip install 'netverify-async[aiohttp]'"
            )
        return "aiohttp"
    raise ConfigurationError("transport: must be 'httpx' (the default) or 'aiohttp'")


def build_http_client(
    name: TransportName,
    *,
    ssl_context: ssl.SSLContext,
    max_connections: int,
    connect_timeout: float,
    attempt_timeout: float,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on the named transport: TLS always verified, redirects never followed, no
    environment proxies, no connection reuse."""
    transport: httpx.AsyncBaseTransport
    if name == "aiohttp":
        from ._aiohttp import AiohttpTransport

        transport = AiohttpTransport(ssl_context=ssl_context, max_connections=max_connections)
    else:
        transport = httpx.AsyncHTTPTransport(
            verify=ssl_context,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
        )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(attempt_timeout, connect=connect_timeout, pool=connect_timeout),
        follow_redirects=False,
        trust_env=False,
    )
