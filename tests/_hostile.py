"""A hostile HTTP/1.1 server on a real loopback socket, for tests that need answers no sane server gives.

Each connection carries one request: the server reads it (head and ``Content-Length`` body), records it, then
hands the socket to a *behaviour*, a coroutine that writes whatever it likes (or nothing) and returns; the
server then closes the connection. Written with anyio, so it runs on asyncio and trio::

    async with serve_hostile(respond(200, b"not json", content_type="text/plain")) as server:
        ...  # point a client at server.base_url; server.requests, server.connections, server.bytes_sent
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs

__all__ = [
    "RECEIPT_BODY",
    "HostileRequest",
    "HostileServer",
    "drip",
    "endless_headers",
    "gzip_bomb",
    "huge_body",
    "respond",
    "serve_hostile",
    "truncated",
]

#: A well-formed performNetverify answer, used where a behaviour needs a body the client would accept.
RECEIPT_BODY = json.dumps(
    {"timestamp": "2024-05-01T09:30:00.000Z", "jumioIdScanReference": "4bd9b5cf-0a5d-4d39-a5a4-4d1f0c3c1e11"}
).encode()

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_CHUNK = b"x" * (64 * 1024)


@attrs.frozen
class HostileRequest:
    """What the server received: request line, headers (lower-cased names) and body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class HostileServer:
    """Counters and records of one running hostile server."""

    def __init__(self) -> None:
        self.base_url = ""
        #: Connections accepted (including ones that never sent a complete request).
        self.connections = 0
        self.requests: list[HostileRequest] = []
        #: Body bytes the behaviours managed to write before the client went away.
        self.bytes_sent = 0

    async def write(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        await stream.send(data)
        self.bytes_sent += len(data)


Behaviour = Callable[[HostileServer, HostileRequest, anyio.abc.ByteStream], Awaitable[None]]


async def _read_request(stream: anyio.abc.ByteStream) -> HostileRequest | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            return None
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return None
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0") or 0), _MAX_BODY)
    while len(body) < length:
        try:
            body += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            break
    return HostileRequest(method, target, headers, body)


@asynccontextmanager
async def serve_hostile(behaviour: Behaviour) -> AsyncIterator[HostileServer]:
    """Serve ``behaviour`` on a free port of 127.0.0.1 for the duration of the block."""
    server = HostileServer()

    async def handle(stream: anyio.abc.SocketStream) -> None:
        server.connections += 1
        try:
            async with stream:
                request = await _read_request(stream)
                if request is None:
                    return
                server.requests.append(request)
                await behaviour(server, request, stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass  # the client went away, which is what most of these tests expect it to do

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.base_url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- behaviours --------------------------------------------------------------------------------------------


def respond(
    status: int,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    headers: Iterable[tuple[str, str]] = (),
) -> Behaviour:
    """A complete answer with a correct ``Content-Length``."""
    extra = list(headers)

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        head = [("Content-Length", str(len(body))), *extra]
        if content_type is not None:
            head.insert(0, ("Content-Type", content_type))
        await stream.send(_head(status, head))
        await server.write(stream, body)

    return behaviour


def huge_body(total: int | None, *, status: int = 200) -> Behaviour:
    """``total`` bytes of body with a ``Content-Length``, or with ``total=None`` an endless chunked stream."""

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        if total is None:
            await stream.send(
                _head(status, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
            )
            frame = f"{len(_CHUNK):x}\r\n".encode() + _CHUNK + b"\r\n"
            while True:
                await server.write(stream, frame)
        await stream.send(
            _head(status, [("Content-Type", "application/json"), ("Content-Length", str(total))])
        )
        sent = 0
        while sent < total:
            piece = _CHUNK[: total - sent]
            await server.write(stream, piece)
            sent += len(piece)

    return behaviour


def drip(*, phase: str, interval: float = 0.1) -> Behaviour:
    """One byte per ``interval`` seconds, forever: of the status line (``phase="head"``) or of the body."""

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        if phase == "body":
            await stream.send(
                _head(200, [("Content-Type", "application/json"), ("Content-Length", str(10**9))])
            )
            text = b'{"timestamp":"' + b"9" * 10**6
        else:
            text = b"HTTP/1.1 200 OK" + b" " * 10**6
        for index in range(len(text)):
            await anyio.sleep(interval)
            await server.write(stream, text[index : index + 1])

    return behaviour


def truncated(body: bytes, *, declared: int) -> Behaviour:
    """Announce ``declared`` bytes of body, send ``body`` (fewer), then close the connection."""

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        await stream.send(
            _head(200, [("Content-Type", "application/json"), ("Content-Length", str(declared))])
        )
        await server.write(stream, body)

    return behaviour


def endless_headers() -> Behaviour:
    """A status line followed by header lines that never end."""

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"HTTP/1.1 200 OK\r\n")
        index = 0
        while True:
            index += 1
            await server.write(stream, f"X-Filler-{index}: {'a' * 1000}\r\n".encode())

    return behaviour


def gzip_bomb(*, expanded: int = 200 * 1024 * 1024, honour_accept_encoding: bool = False) -> Behaviour:
    """A 200 whose gzip body expands to ``expanded`` bytes of zeros (about 200 KB on the wire).

    With ``honour_accept_encoding`` the server behaves like a well-mannered compressing proxy instead: it
    gzips a valid receipt only when the request's ``Accept-Encoding`` allows gzip, else sends it plain.
    """
    bomb_cache: list[bytes] = []

    def bomb() -> bytes:
        if not bomb_cache:
            compressor = gzip.compress(b"\0" * (1024 * 1024), compresslevel=9)
            # concatenated gzip members decode to the concatenation of their contents
            bomb_cache.append(compressor * (expanded // (1024 * 1024)))
        return bomb_cache[0]

    async def behaviour(server: HostileServer, request: HostileRequest, stream: anyio.abc.ByteStream) -> None:
        accepted = request.headers.get("accept-encoding", "")
        codings = {part.split(";")[0].strip().lower() for part in accepted.split(",")}
        if honour_accept_encoding:
            body = gzip.compress(RECEIPT_BODY) if "gzip" in codings else RECEIPT_BODY
            encoded = "gzip" in codings
        else:
            body, encoded = bomb(), True
        head = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if encoded:
            head.append(("Content-Encoding", "gzip"))
        await stream.send(_head(200, head))
        await server.write(stream, body)

    return behaviour
