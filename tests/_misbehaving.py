"""Raw-socket HTTP/1.1 servers that misbehave in the ways that test the send path's promises.

Unlike ``tests/_hostile.py`` (one request per connection, closed afterwards), a connection here may carry
several requests when a behaviour keeps it open, answers can be sent in pieces, late, twice or not at all, and
a connection can be closed or reset at any point of the upload. Written with anyio: runs on asyncio and trio.

The server keeps what the promises are checked against:

- ``requests``: every request whose body arrived *complete* (what could have created a scan);
- ``incomplete``: requests whose upload was cut before the body was complete;
- ``connections``: TCP connections accepted.

A behaviour is a coroutine ``async def behaviour(exchange: Exchange) -> None`` called once per request head::

    async with serve(answer(Reply(502), Reply(200))) as server:
        ...  # point a client at server.base_url, then count server.bodies("ref-1")
"""

from __future__ import annotations

import json
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import attrs

from netverify_async._constants import PERFORM_NETVERIFY_PATH, SCANS_PATH

__all__ = [
    "Behaviour",
    "Exchange",
    "MisbehavingServer",
    "Received",
    "Reply",
    "answer",
    "answer_by_reference",
    "answer_with_stray",
    "cut_off",
    "garbage_status_line",
    "hang_up",
    "http_response",
    "keep_alive_receipts",
    "never_answer",
    "scan_for",
    "serve",
    "stale_keep_alive",
    "unbufferable_size",
]

SCANS_PREFIX = SCANS_PATH + "/"
TIMESTAMP = "2024-05-01T09:30:00.000Z"
_NAMESPACE = uuid.UUID("6f1c1d1e-3b1a-4c55-9d57-0c1f2a3b4c5d")
_MAX_HEAD = 64 * 1024
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def unbufferable_size() -> int:
    """A byte count larger than what a client's kernel can accept for a peer that reads nothing: the largest
    send buffer Linux autotunes to (``tcp_wmem``), plus 2 MiB for the (small, see ``serve``) receive side."""
    try:
        largest = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        largest = 4 * 1024 * 1024
    return largest + 2 * 1024 * 1024


def scan_for(reference: str) -> str:
    """The scan the server creates for a ``merchantIdScanReference`` (or names in a stray answer)."""
    return str(uuid.uuid5(_NAMESPACE, reference))


@attrs.frozen
class Received:
    """A request whose body arrived complete."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = attrs.field(repr=False)
    connection: int
    #: when the body was complete (``anyio.current_time()``: virtual time in tests that run on it)
    at: float = attrs.field(factory=anyio.current_time, eq=False, kw_only=True)
    #: the ``merchantIdScanReference`` of a submission (None for anything else)
    reference: str | None = attrs.field(
        default=attrs.Factory(lambda self: _reference_of(self.body), takes_self=True)
    )


def _reference_of(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("merchantIdScanReference")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@attrs.frozen
class Reply:
    """One scripted answer. ``status=200`` (and any 2xx without ``body``) answers with the right receipt or
    scan status for the request; other statuses get a small JSON error body unless ``body`` is given."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


def http_response(
    status: int,
    body: bytes = b"",
    *,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str | None = "application/json",
    close: bool = True,
) -> bytes:
    """Bytes of a complete answer; ``status`` is written as three digits whatever its value (``099``)."""
    lines = [f"HTTP/1.1 {status:03d} Whatever"]
    if 100 <= status < 200:
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if content_type is not None and status != 304:
        lines.append(f"Content-Type: {content_type}")
    if status != 304:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    payload = b"" if status == 304 else body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def receipt_body(scan: str) -> bytes:
    return json.dumps({"timestamp": TIMESTAMP, "jumioIdScanReference": scan}).encode()


def status_body(scan: str) -> bytes:
    return json.dumps({"timestamp": TIMESTAMP, "scanReference": scan, "status": "DONE"}).encode()


class MisbehavingServer:
    """Counters and records of one running server."""

    def __init__(self) -> None:
        self.base_url = ""
        self.connections = 0
        self.requests: list[Received] = []
        self.incomplete = 0

    def bodies(self, reference: str | None = None) -> int:
        """Complete performNetverify bodies received (for one reference, or in all)."""
        return sum(
            1
            for r in self.requests
            if r.target == PERFORM_NETVERIFY_PATH and (reference is None or r.reference == reference)
        )

    def bodies_by_reference(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests:
            if r.target == PERFORM_NETVERIFY_PATH and r.reference is not None:
                counts[r.reference] = counts.get(r.reference, 0) + 1
        return counts


class _Connection:
    def __init__(self, stream: anyio.abc.SocketStream, number: int, tg: anyio.abc.TaskGroup) -> None:
        self.stream = stream
        self.number = number
        self.tg = tg
        self.buffer = bytearray()
        self.closed = False
        #: requests read on this connection so far
        self.count = 0

    async def fill(self) -> bool:
        """Receive more bytes into the buffer; False when the client is gone."""
        try:
            self.buffer += await self.stream.receive()
        except _GONE:
            return False
        return True

    async def read_head(self) -> tuple[str, str, dict[str, str]] | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD or not await self.fill():
                return None
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.count += 1
        return method, target, headers


class Exchange:
    """One request on a connection, as seen by a behaviour."""

    def __init__(
        self, server: MisbehavingServer, conn: _Connection, head: tuple[str, str, dict[str, str]]
    ) -> None:
        self.server = server
        self._conn = conn
        self.method, self.target, self.headers = head
        self.length = int(self.headers.get("content-length", "0") or 0)
        self.body: bytes | None = None
        self.body_done = self.length == 0 and "transfer-encoding" not in self.headers
        #: leave the connection open for another request after this one (default: close it)
        self.keep_open = False
        if self.body_done:
            self.body = b""
            self._record()

    @property
    def connection(self) -> int:
        """Number of this request's connection (1 = the first the server accepted)."""
        return self._conn.number

    @property
    def nth_on_connection(self) -> int:
        """1 for the first request of its connection, 2 for a request on a reused connection, ..."""
        return self._conn.count

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def _record(self) -> None:
        self.server.requests.append(
            Received(self.method, self.target, self.headers, self.body or b"", self._conn.number)
        )

    async def read_body(self) -> bytes | None:
        """The whole body (``Content-Length``), or None when the client went away first."""
        if self.body_done:
            return self.body
        while len(self._conn.buffer) < self.length:
            if not await self._conn.fill():
                self.server.incomplete += 1
                self._conn.closed = True
                return None
        self.body = bytes(self._conn.buffer[: self.length])
        del self._conn.buffer[: self.length]
        self.body_done = True
        self._record()
        return self.body

    async def read_some(self, count: int) -> None:
        """Wait until at least ``count`` body bytes (or the whole body, if shorter) have arrived."""
        while len(self._conn.buffer) < min(count, self.length):
            if not await self._conn.fill():
                return

    def has_whole_body(self) -> bool:
        return self.body_done or len(self._conn.buffer) >= self.length

    async def send(self, data: bytes) -> None:
        try:
            await self._conn.stream.send(data)
        except _GONE:
            self._conn.closed = True

    def send_later(self, delay: float, data: bytes) -> None:
        """Write ``data`` after ``delay`` seconds, whatever happens on the connection meanwhile."""

        async def later() -> None:
            await anyio.sleep(delay)
            if not self._conn.closed:
                await self.send(data)

        self._conn.tg.start_soon(later)

    async def reply(self, reply: Reply, *, close: bool = True) -> None:
        """Send a scripted answer; a 2xx without a body names the right scan for this request."""
        body = reply.body
        if body is None and 200 <= reply.status < 300 and reply.status != 204:
            body = self.right_answer()
        elif body is None:
            body = json.dumps({"message": f"status {reply.status}"}).encode()
        headers = list(reply.headers)
        if reply.status == 101:
            headers += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
        await self.send(http_response(reply.status, body, headers=headers, close=close))

    def right_answer(self) -> bytes:
        """The receipt (submission) or scan status (retrieval) that belongs to this very request."""
        if self.target.startswith(SCANS_PREFIX):
            return status_body(self.target[len(SCANS_PREFIX) :].split("/")[0])
        return receipt_body(scan_for(_reference_of(self.body or b"") or "?"))

    def wrong_answer(self) -> bytes:
        """An answer of the right shape that names another scan."""
        if self.target.startswith(SCANS_PREFIX):
            return status_body(scan_for("stray:" + self.target))
        return receipt_body(scan_for(f"stray:{_reference_of(self.body or b'')}"))

    async def close(self) -> None:
        """Close the connection (an orderly FIN, or a reset if unread data is pending)."""
        self._conn.closed = True
        await self._conn.stream.aclose()

    async def reset(self) -> None:
        """Abort the connection with a TCP reset."""
        raw = self._conn.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.close()

    async def wait_for_more(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the client to send more on this connection."""
        with anyio.move_on_after(timeout):
            while not self._conn.buffer:
                if not await self._conn.fill():
                    return False
        return bool(self._conn.buffer)

    async def wait_for_client_to_leave(self) -> None:
        while await self._conn.fill():
            pass
        self._conn.closed = True


Behaviour = Callable[[Exchange], Awaitable[None]]


@asynccontextmanager
async def serve(
    behaviour: Behaviour, *, receive_buffer: int | None = None
) -> AsyncIterator[MisbehavingServer]:
    """Serve ``behaviour`` on a free port of 127.0.0.1 for the duration of the block.

    ``receive_buffer`` shrinks the kernel's receive buffer of accepted connections, so that a client cannot
    push a large body into the kernel before the server has read it.
    """
    server = MisbehavingServer()

    async def handle(stream: anyio.abc.SocketStream) -> None:
        server.connections += 1
        number = server.connections
        try:
            async with stream, anyio.create_task_group() as tg:
                conn = _Connection(stream, number, tg)
                while not conn.closed:
                    head = await conn.read_head()
                    if head is None:
                        break
                    exchange = Exchange(server, conn, head)
                    await behaviour(exchange)
                    if conn.closed or not exchange.keep_open:
                        break
                    if not exchange.body_done and await exchange.read_body() is None:
                        break
        except _GONE:
            pass

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    listener = await anyio.abc.SocketListener.from_socket(sock)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


# -- behaviours ------------------------------------------------------------------------------------------------


def answer(*plan: Reply | int, after: float = 0.0) -> Behaviour:
    """Answer the n-th request with ``plan[n]`` (the last entry repeats), ``after`` seconds after its body
    arrived, then close the connection.

    1xx answers are sent alone and the connection is closed after them (no final answer ever comes).
    """
    replies = [p if isinstance(p, Reply) else Reply(p) for p in plan]
    seen = [0]

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        if after:
            await anyio.sleep(after)
        reply = replies[min(seen[0], len(replies) - 1)]
        seen[0] += 1
        await ex.reply(reply)

    return behaviour


def answer_by_reference(plan: dict[str, Reply | int], default: Reply | int = 200) -> Behaviour:
    """Answer each submission according to its ``merchantIdScanReference``."""

    async def behaviour(ex: Exchange) -> None:
        body = await ex.read_body()
        if body is None:
            return
        chosen = plan.get(_reference_of(body) or "", default)
        await ex.reply(chosen if isinstance(chosen, Reply) else Reply(chosen))

    return behaviour


def answer_with_stray(*, delay: float | None, latency: float = 0.0) -> Behaviour:
    """Answer right (after ``latency``), then send one unsolicited answer naming another scan: in the same
    write (``delay=None``) or ``delay`` seconds later. The connection is never closed by the server."""

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        ex.keep_open = True
        if latency:
            await anyio.sleep(latency)
        right = http_response(200, ex.right_answer(), close=False)
        stray = http_response(200, ex.wrong_answer(), close=False)
        if delay is None:
            await ex.send(right + stray)
        else:
            await ex.send(right)
            ex.send_later(delay, stray)

    return behaviour


def keep_alive_receipts() -> Behaviour:
    """Right answers, without ``Connection: close``: the server would gladly serve more on the connection."""

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        ex.keep_open = True
        await ex.send(http_response(200, ex.right_answer(), close=False))

    return behaviour


def stale_keep_alive(*, idle: float = 0.1) -> Behaviour:
    """Answer the first request of a connection and keep the connection (no ``Connection: close``). A second
    request on the same connection finds it closed just as it is written (the idle-timeout race); an idle
    connection is closed after ``idle`` seconds."""

    async def behaviour(ex: Exchange) -> None:
        if ex.nth_on_connection > 1:
            await ex.close()  # the server's idle timer fired just as this request came in
            return
        if await ex.read_body() is None:
            return
        await ex.send(http_response(200, ex.right_answer(), close=False))
        if await ex.wait_for_more(idle):
            ex.keep_open = True  # a second request is coming in on this connection
        else:
            await ex.close()

    return behaviour


def cut_off(*, after_body_bytes: int, connections: int = 1, then: Behaviour | None = None) -> Behaviour:
    """On the first ``connections`` connections: wait for ``after_body_bytes`` of the body, then reset the
    connection (0: right after the request head). Later connections get ``then`` (default: right answers)."""
    rest = then or answer(200)

    async def behaviour(ex: Exchange) -> None:
        if ex.connection <= connections:
            if after_body_bytes:
                await ex.read_some(after_body_bytes)
            if ex.has_whole_body():
                await ex.read_body()  # too late to cut it: recorded as received, so a test will notice
            else:
                ex.server.incomplete += 1
            await ex.reset()
            return
        await rest(ex)

    return behaviour


def never_answer() -> Behaviour:
    """Read the request, then say nothing until the client gives up."""

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        await ex.wait_for_client_to_leave()

    return behaviour


def hang_up() -> Behaviour:
    """Read the whole request, then close the connection without a word."""

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        await ex.close()

    return behaviour


def garbage_status_line() -> Behaviour:
    """Read the whole request, then answer with a line that is not HTTP."""

    async def behaviour(ex: Exchange) -> None:
        if await ex.read_body() is None:
            return
        await ex.send(b"HELLO THERE\r\n\r\n")

    return behaviour
