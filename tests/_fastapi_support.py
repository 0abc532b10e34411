"""Helpers of the FastAPI tests: serve an app with uvicorn on a loopback socket, the guide's sample callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def loopback_socket() -> socket.socket:
    """A listening TCP socket on a free port of 127.0.0.1 (so its URL is known before the app starts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn without signal handling (the test runner owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan on) with uvicorn in this asyncio loop; yields its base URL.

    When the block ends the server shuts down gracefully, which waits for the requests in progress and
    their background tasks: after it, every callback handler that was started has finished.
    """
    sock = sock or loopback_socket()
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during startup")
            await asyncio.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
