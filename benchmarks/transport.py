"""The client's one send path (httpx's public interface) against plain httpx and raw aiohttp, on a 200 ms server.

The server is a raw asyncio ``Protocol`` (on uvloop when installed) in a **separate process**, so its CPU does
not count against the client: it reads each request (the head, then ``Content-Length`` bytes of body, counted
and dropped), waits 200 ms, and answers ``200`` with a fixed, valid performNetverify receipt (106 bytes). It
honours ``Connection: close`` and keeps other connections alive. A second listener of the same process answers
at once, for the uploads of part 3.

Throughput runs (parts 1 and 2): each run is a fresh event loop with a fresh client (and pool). One request
first (not measured: imports, the client's TLS context); then N workers send requests back to back, all started
at once; after 0.6 s the measured window (``--seconds``) opens. Achieved req/s = the sum over workers of each
worker's rate inside the window ((answers - 1) / time between its first and last answer); ceiling = N / 0.2 s.
Client CPU = this process's CPU time (``time.process_time``, every thread) inside the window, per answer; server
CPU, other processes' CPU (the machine's busy time from ``/proc/stat`` minus both) and the time the event-loop
thread waited for a CPU (schedstat), as shares of one core. Each row is the median of ``--repeats`` runs,
interleaved with the other rows.

Why all at once: against a server whose latency never varies, closed-loop workers fall into step. When several
answers arrive together, the loop interleaves the steps of their next requests (connect, write, read, close
take several loop iterations each), so they all leave, and come back, together; the group grows and its cycle
becomes about 200 ms + (group size) x (CPU per request). Workers whose starts are spread evenly over 200 ms
(rows marked "starts spread") begin near the ceiling but drift into that state within 5-15 s; starting them
together measures the state they end in, in a short window. The spread rows show the transient, not the goal.

1. **The default transport** (``NetverifyClient(transport="httpx")``: httpx's ``AsyncHTTPTransport`` with
   ``max_keepalive_connections=0`` and ``Connection: close``, a fresh connection per request) calling
   ``client.send_encoded`` with a pre-encoded 13.7 kB body (``rate_limit=None``, ``preflight=False``,
   ``max_concurrency=N``) at 8, 16 and 32 in flight on asyncio, and at 16 on trio. Baselines: plain
   ``httpx.AsyncClient`` POSTing the same body with the same headers, with its default pool (keep-alive, at
   most 20 idle connections kept) and without keep-alive (``max_keepalive_connections=0`` plus
   ``Connection: close``). Goal: the default transport >= 95% of the ceiling.
2. **The aiohttp extra** (``transport="aiohttp"``) at 64 in flight against raw aiohttp (an
   ``aiohttp.ClientSession`` with its default connector, keep-alive, POSTing the same body). Goal >= 0.9x raw
   aiohttp. For information: raw aiohttp with ``force_close=True`` (what a connection per request costs
   aiohttp itself), and the default transport at 64.
3. **Event-loop lag during uploads**: ``--uploads`` (20) concurrent ``client.send_encoded`` calls with a 10 MB
   body each on the default transport, against the no-latency listener, while a ticker task sleeps 1 ms in a
   loop and records its oversleep. Lags are pooled over ``--upload-runs`` batches: per-tick p50/p99/max, and
   the p99 with each tick weighted by its duration (a 50 ms stall counts for 50 ms, not once). The same figures
   less the time the loop thread waited for a CPU during each tick tell the process's own stalls from the
   machine's. Baseline: plain ``httpx.AsyncClient`` POSTing the same bodies with ``content=bytes``; for
   information, the aiohttp extra and the ticker alone. Goal: the default transport's p99 < 10 ms, per tick
   and time-weighted.

Run: ``/work/venv/bin/python benchmarks/transport.py`` (about 2.5 minutes; ``--parts 1 3`` for a subset).
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import attrs
from _common import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    USER_AGENT,
    basic_auth,
    machine_load,
    markdown_table,
    percentile,
    process_cpu_seconds,
    runqueue_wait_seconds,
    small_jpeg,
    time_weighted_percentile,
)

LATENCY = 0.2
GOAL_OF_CEILING = 0.95
GOAL_VS_AIOHTTP = 0.9
GOAL_P99_MS = 10.0
TICK = 0.001
PATH = "/api/netverify/v2/performNetverify"
#: What the client sends besides Content-Length (and Connection: close); the baselines send the same.
HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": USER_AGENT,
    "Authorization": basic_auth(),
    "Content-Type": "application/json",
}

OneRequest = Callable[[], Awaitable[bool]]


# -- the server (``transport.py --serve``, in its own process) --------------------------------------------------

RECEIPT = (
    b'{"timestamp":"2024-06-01T12:00:00.000Z","jumioIdScanReference":"5f1c0c7e-7d2a-4d35-9a52-0c8a6f0b1e2d"}'
)


def _answer(close: bool) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(RECEIPT)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode("ascii") + RECEIPT


ANSWER_KEEP, ANSWER_CLOSE = _answer(False), _answer(True)
REFUSE_CHUNKED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies only: read the head, count the body, answer after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.head = bytearray()
        self.body_left = 0
        self.close_after = False
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.body_left:
                take = min(self.body_left, len(view))
                self.body_left -= take
                view = view[take:]
                if not self.body_left:
                    self._complete()
                continue
            self.head += view
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            rest = bytes(self.head[end + 4 :])
            lines = bytes(self.head[:end]).decode("latin-1").lower().split("\r\n")[1:]
            self.head.clear()
            fields = dict(line.split(":", 1) for line in lines if ":" in line)
            if "chunked" in fields.get("transfer-encoding", ""):  # nothing here sends chunked bodies
                self.transport.write(REFUSE_CHUNKED)
                self.transport.close()
                return
            self.close_after = "close" in fields.get("connection", "")
            self.body_left = int(fields.get("content-length", "0"))
            if not self.body_left:
                self._complete()
            view = memoryview(rest)

    def _complete(self) -> None:
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self._respond, self.close_after)
        else:
            self._respond(self.close_after)

    def _respond(self, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(ANSWER_CLOSE if close else ANSWER_KEEP)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(latency: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        slow = await loop.create_server(lambda: _Connection(latency), "127.0.0.1", 0, backlog=2048)
        fast = await loop.create_server(lambda: _Connection(0.0), "127.0.0.1", 0, backlog=2048)
        ports = [server.sockets[0].getsockname()[1] for server in (slow, fast)]
        print(f"listening {ports[0]} {ports[1]}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


@attrs.frozen
class Server:
    pid: int
    slow_url: str  # answers after the latency
    fast_url: str  # answers at once
    loop_name: str


@contextmanager
def server_process(latency: float) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        line = first[0].split() if first else []
        if len(line) != 3 or line[0] != "listening":
            raise RuntimeError(f"the server did not start ({line!r})")
        try:
            import uvloop  # noqa: F401

            loop_name = "uvloop"
        except ImportError:
            loop_name = "asyncio"
        yield Server(proc.pid, f"http://127.0.0.1:{line[1]}", f"http://127.0.0.1:{line[2]}", loop_name)
    finally:
        proc.terminate()
        proc.wait(10)


# -- CPU readings -------------------------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores; Linux ``/proc/stat``; 0.0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Cpu:
    """CPU seconds used between two snapshots: this process, the server, the rest of the machine; and the time
    this process's main thread (the event loop) was runnable but waiting for a CPU."""

    wall: float
    client: float
    server: float
    other: float
    loop_waiting: float

    @staticmethod
    def snapshot(server: Server) -> tuple[float, ...]:
        return (
            time.perf_counter(),
            time.process_time(),
            process_cpu_seconds(server.pid) or 0.0,
            machine_busy_seconds(),
            runqueue_wait_seconds() or 0.0,
        )

    @classmethod
    def between(cls, a: tuple[float, ...], b: tuple[float, ...]) -> Cpu:
        wall, client, server, busy, waiting = (y - x for x, y in zip(a, b, strict=True))
        # /proc/stat counts in clock ticks: the rest of the machine is only meaningful over a second or more
        return cls(wall, client, server, max(0.0, busy - client - server), waiting)


def share(seconds: float, wall: float) -> str:
    return f"{100 * seconds / wall:.0f}%" if wall else "-"


# -- throughput runs (parts 1 and 2) ------------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One measured window of one variant."""

    ok: int  # answers (2xx) inside the window
    errors: int  # failed requests inside the window
    rate: float  # the sum over workers of each worker's rate inside the window
    cpu: Cpu

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu.client / self.ok if self.ok else float("nan")


async def drive(one: OneRequest, n: int, seconds: float, server: Server, *, burst: bool = False) -> Run:
    """One request (not measured), then ``n`` workers sending requests back to back; see the module doc."""
    await one()
    t_open = time.perf_counter() + 3 * LATENCY
    t_close = t_open + seconds
    answers: list[list[float]] = [[] for _ in range(n)]
    ok = errors = 0

    async def worker(i: int) -> None:
        nonlocal ok, errors
        if not burst:
            await anyio.sleep(i * LATENCY / n)
        clock = time.perf_counter
        while True:
            good = await one()
            now = clock()
            if t_open <= now <= t_close:
                answers[i].append(now)
                if good:
                    ok += 1
                else:
                    errors += 1

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(worker, i)
        await anyio.sleep(t_open - time.perf_counter())
        before = Cpu.snapshot(server)
        await anyio.sleep(t_close - time.perf_counter())
        after = Cpu.snapshot(server)
        tg.cancel_scope.cancel()
    rate = sum((len(a) - 1) / (a[-1] - a[0]) for a in answers if len(a) >= 2 and a[-1] > a[0])
    return Run(ok, errors, rate, Cpu.between(before, after))


def small_body() -> bytes:
    from netverify_async import Image, NetverifyRequest
    from netverify_async._wire import encode_request_body

    request = NetverifyRequest(
        merchant_id_scan_reference="bench-transport",
        frontside_image=Image.from_bytes(small_jpeg()),
        country="AUT",
        id_type="PASSPORT",
    )
    return encode_request_body(request)


def make_client(base_url: str, transport: str, n: int) -> Any:
    from netverify_async import NetverifyClient

    return NetverifyClient(
        api_token=EMULATOR_TOKEN,
        api_secret=EMULATOR_SECRET,
        user_agent=USER_AGENT,
        base_url=base_url,
        rate_limit=None,
        preflight=False,
        max_concurrency=n,
        transport=transport,  # type: ignore[arg-type]
    )


Runner = Callable[[str, bytes, int, Callable[[OneRequest], Awaitable[Run]]], Awaitable[Run]]


def ours(transport: str) -> Runner:
    async def runner(base_url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Run]]) -> Run:
        from netverify_async import NetverifyError

        async with make_client(base_url, transport, n) as client:

            async def one() -> bool:
                try:
                    await client.send_encoded(body, merchant_id_scan_reference="bench-transport")
                except NetverifyError:
                    return False
                return True

            return await run(one)

    return runner


def plain_httpx(keep_alive: bool) -> Runner:
    async def runner(base_url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Run]]) -> Run:
        import httpx

        headers = HEADERS if keep_alive else {**HEADERS, "Connection": "close"}
        limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
        url = base_url + PATH
        async with httpx.AsyncClient(trust_env=False, timeout=60.0, limits=limits) as http:

            async def one() -> bool:
                try:
                    response = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            return await run(one)

    return runner


def raw_aiohttp(force_close: bool) -> Runner:
    async def runner(base_url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Run]]) -> Run:
        import aiohttp

        url = base_url + PATH
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=force_close)) as session:

            async def one() -> bool:
                try:
                    async with session.post(url, data=body, headers=HEADERS) as response:
                        await response.read()
                        return response.status == 200
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return False

            return await run(one)

    return runner


OURS = "ours: httpx transport (default)"
OURS_TRIO = "ours: httpx transport (default), trio"
HTTPX_KEEP = "plain httpx, default pool (keep-alive)"
HTTPX_CLOSE = "plain httpx, no keep-alive"
OURS_AIOHTTP = "ours: aiohttp extra"
AIOHTTP_KEEP = "raw aiohttp (keep-alive)"
AIOHTTP_CLOSE = "raw aiohttp, force_close"

#: variant -> (backend, runner)
THROUGHPUT_VARIANTS: dict[str, tuple[str, Runner]] = {
    OURS: ("asyncio", ours("httpx")),
    OURS_TRIO: ("trio", ours("httpx")),
    HTTPX_KEEP: ("asyncio", plain_httpx(True)),
    HTTPX_CLOSE: ("asyncio", plain_httpx(False)),
    OURS_AIOHTTP: ("asyncio", ours("aiohttp")),
    AIOHTTP_KEEP: ("asyncio", raw_aiohttp(False)),
    AIOHTTP_CLOSE: ("asyncio", raw_aiohttp(True)),
}


#: a variant name ending with this starts its workers spread over one latency period instead of all at once
SPREAD = ", starts spread (transient)"


def measure(variant: str, server: Server, body: bytes, n: int, seconds: float) -> Run:
    backend, runner = THROUGHPUT_VARIANTS[variant.removesuffix(SPREAD)]
    burst = not variant.endswith(SPREAD)

    async def run(one: OneRequest) -> Run:
        return await drive(one, n, seconds, server, burst=burst)

    async def entry() -> Run:
        return await runner(server.slow_url, body, n, run)

    return anyio.run(entry, backend=backend)


def throughput_plan(parts: Sequence[int], in_flight: Sequence[int], trio: bool) -> list[tuple[int, str, int]]:
    """(part, variant, in flight) of one round; the rounds repeat it, so each variant's runs spread over the
    whole benchmark."""
    plan: list[tuple[int, str, int]] = []
    if 1 in parts:
        for n in in_flight:
            plan += [(1, variant, n) for variant in (OURS, HTTPX_KEEP, HTTPX_CLOSE)]
            if trio and n == 16:
                plan.append((1, OURS_TRIO, n))
            plan.append((1, OURS + SPREAD, n))
    if 2 in parts:
        variants = (
            AIOHTTP_KEEP,
            OURS_AIOHTTP,
            AIOHTTP_CLOSE,
            OURS,
            AIOHTTP_KEEP + SPREAD,
            OURS_AIOHTTP + SPREAD,
        )
        plan += [(2, variant, 64) for variant in variants]
    return plan


#: the columns of :meth:`Row.columns` after req/s
ROW_COLUMNS = (
    "of ceiling",
    "each run: req/s (loop waiting for a CPU)",
    "client CPU ms/request",
    "client CPU",
    "server CPU",
    "other processes' CPU",
    "loop waiting for a CPU",
    "errors",
)


@attrs.frozen
class Row:
    """The runs of one variant at one concurrency; medians."""

    runs: tuple[Run, ...]
    n: int

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    @property
    def of_ceiling(self) -> float:
        return self.rate / (self.n / LATENCY)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def columns(self) -> dict[str, str]:
        def median_share(pick: Callable[[Cpu], float]) -> str:
            return f"{100 * statistics.median(pick(r.cpu) / r.cpu.wall for r in self.runs):.0f}%"

        return {
            "req/s": f"{self.rate:,.1f}",
            "of ceiling": f"{100 * self.of_ceiling:.1f}%",
            "each run: req/s (loop waiting for a CPU)": ", ".join(
                f"{r.rate:,.1f} ({share(r.cpu.loop_waiting, r.cpu.wall)})" for r in self.runs
            ),
            "client CPU ms/request": f"{statistics.median(r.cpu_ms_per_request for r in self.runs):.2f}",
            "client CPU": median_share(lambda c: c.client),
            "server CPU": median_share(lambda c: c.server),
            "other processes' CPU": median_share(lambda c: c.other),
            "loop waiting for a CPU": median_share(lambda c: c.loop_waiting),
            "errors": str(self.errors),
        }


# -- part 3: event-loop lag during uploads ------------------------------------------------------------------------


@attrs.frozen
class LagRun:
    lags: tuple[float, ...]
    #: per tick: the part of it the loop thread spent runnable but not running (waiting for a CPU)
    waits: tuple[float, ...]
    errors: int
    cpu: Cpu


class _RunqueueClock:
    """Seconds this thread has waited for a CPU so far (Linux schedstat; always 0.0 elsewhere), cheap to read."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        return 0.0 if self._fd is None else int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


async def lag_during(jobs: list[OneRequest], idle_seconds: float, server: Server) -> LagRun:
    """Run ``jobs`` concurrently while a ticker records its oversleep; with no jobs, tick for ``idle_seconds``."""
    lags: list[float] = []
    waits: list[float] = []
    done = anyio.Event()
    errors = 0
    runqueue = _RunqueueClock()

    async def ticker() -> None:
        clock = time.perf_counter
        while not done.is_set():
            started, waited = clock(), runqueue()
            await anyio.sleep(TICK)
            lags.append(clock() - started - TICK)
            waits.append(runqueue() - waited)

    async def guarded(job: OneRequest) -> None:
        nonlocal errors
        try:
            good = await job()
        except Exception:
            good = False
        errors += not good

    before = Cpu.snapshot(server)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            if jobs:
                async with anyio.create_task_group() as batch:
                    for job in jobs:
                        batch.start_soon(guarded, job)
            else:
                await anyio.sleep(idle_seconds)
            done.set()
    finally:
        runqueue.close()
    return LagRun(tuple(lags), tuple(waits), errors, Cpu.between(before, Cpu.snapshot(server)))


IDLE = "idle (ticker alone)"
HTTPX_BYTES = "plain httpx, content=bytes"
UPLOAD_VARIANTS = (IDLE, OURS, HTTPX_BYTES, OURS_AIOHTTP)


def measure_upload(variant: str, server: Server, bodies: list[bytes], warm: bytes) -> LagRun:
    import httpx

    from netverify_async import NetverifyError

    async def entry() -> LagRun:
        if variant == IDLE:
            return await lag_during([], 0.5, server)
        if variant == HTTPX_BYTES:
            url = server.fast_url + PATH
            async with httpx.AsyncClient(trust_env=False, timeout=120.0) as http:
                await http.post(url, content=warm, headers=HEADERS)

                def plain_job(body: bytes) -> OneRequest:
                    async def job() -> bool:
                        response = await http.post(url, content=body, headers=HEADERS)
                        return response.status_code == 200

                    return job

                return await lag_during([plain_job(b) for b in bodies], 0, server)
        transport = "aiohttp" if variant == OURS_AIOHTTP else "httpx"
        async with make_client(server.fast_url, transport, len(bodies)) as client:
            await client.send_encoded(warm, merchant_id_scan_reference="bench-upload-warm")

            def ours_job(body: bytes, i: int) -> OneRequest:
                async def job() -> bool:
                    try:
                        await client.send_encoded(body, merchant_id_scan_reference=f"bench-upload-{i}")
                    except NetverifyError:
                        return False
                    return True

                return job

            return await lag_during([ours_job(b, i) for i, b in enumerate(bodies)], 0, server)

    return anyio.run(entry)


def upload_bodies(count: int, size: int) -> list[bytes]:
    """``count`` distinct bodies of ``size`` bytes shaped like a submission (the server only counts them)."""
    bodies = []
    for i in range(count):
        prefix = b'{"merchantIdScanReference":"bench-upload-%03d","frontsideImage":"' % i
        text = base64.b64encode(os.urandom(size * 3 // 4 + 3))[: size - len(prefix) - 2]
        bodies.append(prefix + text + b'"}')
    return bodies


# -- report ---------------------------------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def report_part1(plan: list[tuple[int, str, int]], results: dict[tuple[int, str, int], list[Run]]) -> bool:
    rows, failed = [], False
    for part, variant, n in plan:
        if part != 1:
            continue
        row = Row(tuple(results[(part, variant, n)]), n)
        met = row.of_ceiling >= GOAL_OF_CEILING and not row.errors
        goal = "-"
        if variant in (OURS, OURS_TRIO):
            failed |= not met
            goal = verdict(met)
        elif variant == OURS + SPREAD:
            goal = f"({verdict(met)}, not the goal)"
        cols = row.columns()
        rows.append([str(n), variant, cols.pop("req/s"), f"{n / LATENCY:,.0f}", *cols.values(), goal])
    headers = ["in flight", "variant", "req/s", "ceiling", *ROW_COLUMNS]
    headers.append(f"goal >= {GOAL_OF_CEILING:.0%} of ceiling")
    print("### Part 1: the default transport at 8, 16 and 32 in flight\n")
    print(markdown_table(headers, rows, align="rlrrrlrrrrrrl"))
    print()
    return failed


def report_part2(plan: list[tuple[int, str, int]], results: dict[tuple[int, str, int], list[Run]]) -> bool:
    rows, failed = [], False
    for part, variant, n in plan:
        if part != 2:
            continue
        row = Row(tuple(results[(part, variant, n)]), n)
        # each row against raw aiohttp started the same way
        base = Row(
            tuple(results[(2, AIOHTTP_KEEP + SPREAD if variant.endswith(SPREAD) else AIOHTTP_KEEP, 64)]), 64
        )
        ratio = row.rate / base.rate if base.rate else 0.0
        met = ratio >= GOAL_VS_AIOHTTP and not row.errors
        goal = "-"
        if variant == OURS_AIOHTTP:
            failed |= not met
            goal = verdict(met)
        elif variant == OURS_AIOHTTP + SPREAD:
            goal = f"({verdict(met)}, not the goal)"
        cols = row.columns()
        rows.append([variant, cols.pop("req/s"), f"{ratio:.2f}x", *cols.values(), goal])
    headers = ["variant", "req/s", "vs raw aiohttp", *ROW_COLUMNS]
    headers.append(f"goal >= {GOAL_VS_AIOHTTP}x raw aiohttp")
    print(f"### Part 2: the aiohttp extra at 64 in flight (ceiling {64 / LATENCY:,.0f} req/s)\n")
    print(markdown_table(headers, rows, align="lrrrlrrrrrrl"))
    print()
    return failed


def report_part3(lag_runs: dict[str, list[LagRun]], bodies: list[bytes]) -> bool:
    mb = len(bodies[0]) / 1e6
    rows, failed = [], False
    for variant in UPLOAD_VARIANTS:
        runs = lag_runs[variant]
        lags = [lag for run in runs for lag in run.lags]
        waits = [wait for run in runs for wait in run.waits]
        own = [max(0.0, lag - wait) for lag, wait in zip(lags, waits, strict=True)]
        p99, weighted = percentile(lags, 99), time_weighted_percentile(lags, 99, TICK)
        goal = "-"
        errors = sum(run.errors for run in runs)
        if variant == OURS:
            met = p99 * 1000 < GOAL_P99_MS and weighted * 1000 < GOAL_P99_MS and not errors
            failed |= not met
            goal = verdict(met)
        wall = sum(run.cpu.wall for run in runs)
        batch = statistics.median(run.cpu.wall for run in runs)
        idle = variant == IDLE
        cpu = (sum(run.cpu.client for run in runs), sum(run.cpu.server for run in runs))
        rows.append(
            [
                variant,
                ms(percentile(lags, 50)),
                ms(p99),
                ms(weighted),
                ms(max(lags, default=0.0)),
                f"{ms(percentile(own, 99))} / {ms(time_weighted_percentile(own, 99, TICK))} / "
                f"{ms(max(own, default=0.0))}",
                str(len(lags)),
                "-" if idle else f"{batch:.2f}",
                "-" if idle else f"{len(bodies) * mb / batch:,.0f}",
                " / ".join(share(x, wall) for x in cpu),
                share(sum(waits), wall),
                share(sum(run.cpu.other for run in runs), wall),
                str(errors),
                goal,
            ]
        )
    headers = [
        "variant",
        "p50 ms",
        "p99 ms",
        "p99 time-weighted ms",
        "max ms",
        "minus the wait for a CPU: p99 / time-weighted / max ms",
        "ticks",
        "batch s",
        "MB/s",
        "CPU client / server",
        "loop waiting for a CPU",
        "other processes' CPU",
        "errors",
        f"goal p99 < {GOAL_P99_MS:g} ms (both)",
    ]
    print(f"### Part 3: event-loop lag during {len(bodies)} concurrent uploads of {mb:.1f} MB\n")
    print(
        f"A 1 ms ticker's oversleep, pooled over {len(lag_runs[OURS])} batches per variant (interleaved); "
        "time-weighted: each tick weighted by its duration. Minus the wait for a CPU: each tick's lag less the "
        "time the loop thread was runnable but not running during it (Linux schedstat), i.e. the lag the "
        "process caused itself. Batch: wall time of the 20 uploads (median). CPU and waiting: share of one "
        "core over the batches.\n"
    )
    print(markdown_table(headers, rows, align="lrrrrrrrrrrrrl"))
    print()
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8, 16, 32], help="part 1 concurrencies")
    parser.add_argument("--seconds", type=float, default=1.5, help="measured window of each throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput row (median shown)")
    parser.add_argument("--no-trio", action="store_true", help="skip the trio row of part 1")
    parser.add_argument("--uploads", type=int, default=20, help="part 3: concurrent uploads per batch")
    parser.add_argument("--upload-mb", type=float, default=10.0, help="part 3: body size in MB")
    parser.add_argument("--upload-runs", type=int, default=10, help="part 3: batches per variant (pooled)")
    parser.add_argument("--latency", type=float, default=LATENCY, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return 0

    import aiohttp
    import httpx

    started = time.perf_counter()
    body = small_body()
    plan = throughput_plan(args.parts, args.in_flight, not args.no_trio)
    bodies = upload_bodies(args.uploads, int(args.upload_mb * 1_000_000)) if 3 in args.parts else []
    load_before = machine_load()
    results: dict[tuple[int, str, int], list[Run]] = {}
    lag_runs: dict[str, list[LagRun]] = {v: [] for v in UPLOAD_VARIANTS}
    with server_process(LATENCY) as server:
        rounds = max(args.repeats if plan else 0, args.upload_runs if bodies else 0)
        for round_no in range(rounds):
            if round_no < args.repeats:
                for key in plan:
                    run = measure(key[1], server, body, key[2], args.seconds)
                    results.setdefault(key, []).append(run)
            if bodies and round_no < args.upload_runs:
                for variant in UPLOAD_VARIANTS:
                    lag_runs[variant].append(measure_upload(variant, server, bodies, body))
    load_after = machine_load()

    print(
        f"Machine: {load_before} before, {load_after} after; Python {sys.version.split()[0]}, httpx "
        f"{httpx.__version__}, aiohttp {aiohttp.__version__}; server: a raw asyncio protocol on {server.loop_name} "
        f"in its own process ({LATENCY * 1000:.0f} ms latency). Throughput: body {len(body):,} bytes; median of "
        f"{args.repeats} interleaved runs, each a fresh event loop and client; workers all started at once "
        f"(steady state) unless the row says 'starts spread'; measured over {args.seconds:g} s after "
        f"{3 * LATENCY:g} s. CPU columns: share of one core (2 cores in all). Whole run "
        f"{time.perf_counter() - started:.0f} s.\n"
    )
    failed = False
    if 1 in args.parts:
        failed |= report_part1(plan, results)
    if 2 in args.parts:
        failed |= report_part2(plan, results)
    if 3 in args.parts:
        failed |= report_part3(lag_runs, bodies)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
