"""The client's one send path (httpx's public interface) against plain httpx and raw aiohttp; 200 ms servers.

The server is a raw asyncio ``Protocol`` (on uvloop when installed) in a **separate process**, so its CPU does
not count against the client: it reads each request (the head, then ``Content-Length`` bytes of body, counted
and dropped), waits, and answers ``200`` with a valid performNetverify receipt (106 bytes) whose scan reference
ends with the delay it actually applied, in microseconds (from the last body byte read to the answer written).
It honours ``Connection: close`` and keeps other connections alive. It listens on three ports:

* **jittered** (the primary measurement): each answer is delayed by a value drawn from a seeded log-normal
  distribution with a mean of 200 ms (sigma 0.32: median 190 ms, 5-95% 112-322 ms; ``--jitter uniform`` draws
  from 100-300 ms instead), as a real API's latency varies from request to request;
* **constant**: every answer after exactly 200 ms (the worst case, see below);
* **fast**: answers at once, for the uploads of part 3.

Throughput runs (parts 1 and 2): each run is a fresh event loop with a fresh client (and pool). One request
first (not measured: imports, the client's TLS context); then N workers send requests back to back, all started
at once. After 0.6 s each worker measures its next ``--cycles`` (8) cycles, a cycle being the time from one
answer to the next (the first answer after 0.6 s starts the first cycle; counting cycles, not a fixed window,
keeps long delays from being cut off at the window's end and under-counted); the workers keep sending until the
last one has its cycles. Mean server delay = the sum of the server's delays for the requests answered at the
ends of those cycles / their number; ceiling = N / mean server delay; achieved req/s = N / mean cycle; of
ceiling = (sum of those server delays) / (sum of the cycles), which is achieved / ceiling, with the server's
random draws in numerator and denominator alike (so the jitter adds no sampling noise). Client CPU = this
process's CPU time (``time.process_time``, every thread) from 0.6 s until the last worker is done, per answer
in that time; server CPU, other processes' CPU (the machine's busy time from ``/proc/stat`` minus both) and the
time the event-loop thread waited for a CPU (schedstat), as shares of one core. Each row shows the median run of ``--repeats``,
interleaved with the other rows, and against both servers.

Worst case, lock-step (the constant server): closed-loop workers against a latency that never varies fall into
step. When several answers arrive together, the loop interleaves the steps of their next requests (connect,
write, read, close take several loop iterations each), so they all leave, and come back, together; the group
grows and its cycle becomes about 200 ms + (group size) x (CPU per request). Jitter breaks the groups up: answers
arrive spread out, so each request's CPU overlaps the other requests' server time.

1. **The default transport** (``NetverifyClient(transport="httpx")``: httpx's ``AsyncHTTPTransport`` with
   ``max_keepalive_connections=0`` and ``Connection: close``, a fresh connection per request) calling
   ``client.send_encoded`` with a pre-encoded 13.7 kB body (``rate_limit=None``, ``preflight=False``,
   ``max_concurrency=N``) at 8, 16 and 32 in flight on asyncio, and at 16 on trio. Baselines: plain
   ``httpx.AsyncClient`` POSTing the same body with the same headers, with its default pool (keep-alive, at
   most 20 idle connections kept) and without keep-alive (``max_keepalive_connections=0`` plus
   ``Connection: close``). Goal: the default transport >= 95% of the ceiling (jittered server).
2. **The aiohttp extra** (``transport="aiohttp"``) at 64 in flight against raw aiohttp (an
   ``aiohttp.ClientSession`` with its default connector, keep-alive, POSTing the same body), and against raw
   aiohttp with ``force_close=True`` (a connection per request, as the extra uses). Ratios are of the shares of
   the ceiling (the same as req/s at the same mean server delay). Goal >= 0.9x raw aiohttp with keep-alive
   (jittered server). For information: the default transport at 64.
3. **Event-loop lag during uploads**: ``--uploads`` (20) concurrent ``client.send_encoded`` calls with a 10 MB
   body each on the default transport, against the no-latency listener, while a ticker task sleeps 1 ms in a
   loop and records its oversleep. Lags are pooled over ``--upload-runs`` batches: per-tick p50/p99/max, and
   the p99 with each tick weighted by its duration (a 50 ms stall counts for 50 ms, not once). The same figures
   less the time the loop thread waited for a CPU during each tick tell the process's own stalls from the
   machine's. Baseline: plain ``httpx.AsyncClient`` POSTing the same bodies with ``content=bytes``; for
   information, the aiohttp extra and the ticker alone. Goal: the default transport's p99 < 10 ms, per tick
   and time-weighted.

Before each part the script waits up to ``--load-wait`` seconds (180) for the 1-minute load average to drop
below ``--max-load`` (0.7), then runs anyway; each part's table states the load it started at.

Run: ``python benchmarks/transport.py`` (about 5 minutes plus the waits; ``--parts 1 3`` for a
subset). Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import math
import os
import random
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
    RunqueueClock,
    basic_auth,
    machine_load,
    markdown_table,
    percentile,
    process_cpu_seconds,
    runqueue_wait_seconds,
    small_jpeg,
    time_weighted_percentile,
)

#: the constant server's latency and the jittered server's mean
LATENCY = 0.2
#: sigma of the jittered server's log-normal delays (median = mean x exp(-sigma^2 / 2), about 190 ms)
JITTER_SIGMA = 0.32
JITTER_SEED = 20240601
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

#: one request; the server's delay for its answer in seconds, or None when it failed
OneRequest = Callable[[], Awaitable[float | None]]
#: one upload of part 3; whether it succeeded
Job = Callable[[], Awaitable[bool]]


# -- the server (``transport.py --serve``, in its own process) --------------------------------------------------

#: the receipt; the scan reference's last 12 characters are the delay the server applied, in microseconds
RECEIPT = b'{"timestamp":"2024-06-01T12:00:00.000Z","jumioIdScanReference":"5f1c0c7e-7d2a-4d35-9a52-%012d"}'
HEAD_KEEP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
    len(RECEIPT % 0)
)
HEAD_CLOSE = HEAD_KEEP[:-2] + b"Connection: close\r\n\r\n"
REFUSE_CHUNKED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def delay_of(answer_body: bytes) -> float:
    """The server's delay carried by a receipt body (see :data:`RECEIPT`)."""
    return int(answer_body[-14:-2]) / 1e6


def delay_of_reference(scan_reference: str) -> float:
    return int(scan_reference[-12:]) / 1e6


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies only: read the head, count the body, answer after ``delay()``."""

    def __init__(self, delay: Callable[[], float]) -> None:
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
        delay = self.delay()
        started = time.perf_counter()
        if delay:
            asyncio.get_running_loop().call_later(delay, self._respond, self.close_after, started)
        else:
            self._respond(self.close_after, started)

    def _respond(self, close: bool, started: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        applied = round(1e6 * (time.perf_counter() - started))
        transport.write((HEAD_CLOSE if close else HEAD_KEEP) + RECEIPT % applied)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def jitter_source(mean: float, kind: str, seed: int) -> Callable[[], float]:
    """Seeded random delays with the given mean: log-normal (sigma :data:`JITTER_SIGMA`) or uniform 0.5-1.5x."""
    rng = random.Random(seed)
    if kind == "uniform":
        return lambda: rng.uniform(0.5 * mean, 1.5 * mean)
    mu = math.log(mean) - JITTER_SIGMA**2 / 2
    return lambda: rng.lognormvariate(mu, JITTER_SIGMA)


def serve(latency: float, jitter: str, seed: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        draw = jitter_source(latency, jitter, seed)
        delays: tuple[Callable[[], float], ...] = (lambda: latency, draw, lambda: 0.0)
        servers = [
            await loop.create_server(lambda d=d: _Connection(d), "127.0.0.1", 0, backlog=2048)  # type: ignore[misc]
            for d in delays
        ]
        ports = [server.sockets[0].getsockname()[1] for server in servers]
        print("listening", *ports, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


#: the two latency modes of parts 1 and 2
JITTER, CONSTANT = "jitter", "constant"


@attrs.frozen
class Server:
    pid: int
    constant_url: str  # answers after the latency
    jitter_url: str  # answers after a random delay with the latency as its mean
    fast_url: str  # answers at once
    loop_name: str

    def url(self, mode: str) -> str:
        return self.jitter_url if mode == JITTER else self.constant_url


@contextmanager
def server_process(latency: float, jitter: str, seed: int) -> Iterator[Server]:
    command = [sys.executable, os.path.abspath(__file__), "--serve", "--latency", str(latency)]
    proc = subprocess.Popen(
        [*command, "--jitter", jitter, "--seed", str(seed)], stdout=subprocess.PIPE, text=True
    )
    try:
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        line = first[0].split() if first else []
        if len(line) != 4 or line[0] != "listening":
            raise RuntimeError(f"the server did not start ({line!r})")
        try:
            import uvloop  # noqa: F401

            loop_name = "uvloop"
        except ImportError:
            loop_name = "asyncio"
        constant, jittered, fast = (f"http://127.0.0.1:{port}" for port in line[1:])
        yield Server(proc.pid, constant, jittered, fast, loop_name)
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for_quiet(max_load: float, timeout: float) -> str:
    """Wait up to ``timeout`` s for the 1-minute load average to drop below ``max_load``; say what happened."""
    started = time.monotonic()
    while os.getloadavg()[0] >= max_load and time.monotonic() - started < timeout:
        print(f"  waiting: 1-minute load average {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        time.sleep(10)
    waited = time.monotonic() - started
    quiet = os.getloadavg()[0] < max_load
    outcome = "below it" if quiet else "still above it: ran anyway"
    return f"waited {waited:.0f} s for the 1-minute load average to drop below {max_load:g} ({outcome}); {machine_load()}"


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
    """One measured window of one variant; see the module doc."""

    n: int  # workers
    ok: int  # answers (2xx) inside the window
    errors: int  # failed requests inside the window
    cycles: int  # the workers' cycles inside the window (answers less one per worker)
    cycle_seconds: float  # their total length
    delay_seconds: float  # the server's delays of the requests answered at the ends of those cycles
    cpu: Cpu

    @property
    def mean_delay(self) -> float:
        return self.delay_seconds / self.cycles if self.cycles else float("nan")

    @property
    def ceiling(self) -> float:
        return self.n / self.mean_delay if self.delay_seconds else float("nan")

    @property
    def rate(self) -> float:
        return self.n * self.cycles / self.cycle_seconds if self.cycle_seconds else 0.0

    @property
    def of_ceiling(self) -> float:
        return self.delay_seconds / self.cycle_seconds if self.cycle_seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu.client / self.ok if self.ok else float("nan")


async def drive(one: OneRequest, n: int, cycles: int, server: Server) -> Run:
    """One request (not measured), then ``n`` workers sending requests back to back; see the module doc."""
    await one()
    t_open = time.perf_counter() + 3 * LATENCY
    # per worker: (time of the answer, the server's delay for it; 0.0 for a failed request)
    answers: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    ok = errors = 0
    measuring = True
    pending = n  # workers that have not yet counted their cycles
    all_counted = anyio.Event()

    async def worker(i: int) -> None:
        nonlocal ok, errors, pending
        clock = time.perf_counter
        mine = answers[i]
        while True:
            delay = await one()
            now = clock()
            if now < t_open or not measuring:
                continue
            ok += delay is not None
            errors += delay is None
            if len(mine) <= cycles:
                mine.append((now, delay or 0.0))
                if len(mine) == cycles + 1:
                    pending -= 1
                    if not pending:
                        all_counted.set()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(worker, i)
        await anyio.sleep(t_open - time.perf_counter())
        before = Cpu.snapshot(server)
        with anyio.move_on_after(60 + 10 * cycles * LATENCY):
            await all_counted.wait()
        measuring = False
        after = Cpu.snapshot(server)
        tg.cancel_scope.cancel()
    return Run(
        n,
        ok,
        errors,
        sum(max(0, len(a) - 1) for a in answers),
        sum(a[-1][0] - a[0][0] for a in answers if a),
        sum(d for a in answers for _, d in a[1:]),
        Cpu.between(before, after),
    )


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

            async def one() -> float | None:
                try:
                    receipt = await client.send_encoded(body, merchant_id_scan_reference="bench-transport")
                except NetverifyError:
                    return None
                return delay_of_reference(receipt.scan_reference)

            return await run(one)

    return runner


def plain_httpx(keep_alive: bool) -> Runner:
    async def runner(base_url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Run]]) -> Run:
        import httpx

        headers = HEADERS if keep_alive else {**HEADERS, "Connection": "close"}
        limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
        url = base_url + PATH
        async with httpx.AsyncClient(trust_env=False, timeout=60.0, limits=limits) as http:

            async def one() -> float | None:
                try:
                    response = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError:
                    return None
                return delay_of(response.content) if response.status_code == 200 else None

            return await run(one)

    return runner


def raw_aiohttp(force_close: bool) -> Runner:
    async def runner(base_url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Run]]) -> Run:
        import aiohttp

        url = base_url + PATH
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=force_close)) as session:

            async def one() -> float | None:
                try:
                    async with session.post(url, data=body, headers=HEADERS) as response:
                        answer = await response.read()
                        return delay_of(answer) if response.status == 200 else None
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return None

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


#: (part, variant, in flight, latency mode)
Key = tuple[int, str, int, str]


def measure(key: Key, server: Server, body: bytes, cycles: int) -> Run:
    _, variant, n, mode = key
    backend, runner = THROUGHPUT_VARIANTS[variant]

    async def run(one: OneRequest) -> Run:
        return await drive(one, n, cycles, server)

    async def entry() -> Run:
        return await runner(server.url(mode), body, n, run)

    return anyio.run(entry, backend=backend)


def throughput_plan(part: int, in_flight: Sequence[int], trio: bool) -> list[Key]:
    """The keys of one round of a part; the rounds repeat it, so each row's runs spread over the whole part."""
    if part == 1:
        variants = []
        for n in in_flight:
            variants += [(OURS, n), (HTTPX_KEEP, n), (HTTPX_CLOSE, n)]
            if trio and n == 16:
                variants.append((OURS_TRIO, n))
    else:
        variants = [(variant, 64) for variant in (AIOHTTP_KEEP, OURS_AIOHTTP, AIOHTTP_CLOSE, OURS)]
    return [(part, variant, n, mode) for variant, n in variants for mode in (JITTER, CONSTANT)]


@attrs.frozen
class Row:
    """The runs of one variant at one concurrency against one server; the median run (by share of the ceiling)
    for the throughput figures, medians for the CPU figures."""

    runs: tuple[Run, ...]

    @property
    def median(self) -> Run:
        return sorted(self.runs, key=lambda r: r.of_ceiling)[(len(self.runs) - 1) // 2]

    @property
    def of_ceiling(self) -> float:
        return self.median.of_ceiling

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def share(self, pick: Callable[[Cpu], float]) -> str:
        return f"{100 * statistics.median(pick(r.cpu) / r.cpu.wall for r in self.runs):.0f}%"

    def each_run(self) -> str:
        return ", ".join(
            f"{100 * r.of_ceiling:.1f}% ({share(r.cpu.loop_waiting, r.cpu.wall)})" for r in self.runs
        )

    def columns(self) -> list[str]:
        """The columns named by :data:`ROW_COLUMNS`."""
        run = self.median
        return [
            f"{run.rate:,.1f}",
            f"{1000 * run.mean_delay:.1f}",
            f"{run.ceiling:,.1f}",
            f"{100 * run.of_ceiling:.1f}%",
        ]

    def cpu_columns(self) -> list[str]:
        """The columns named by :data:`CPU_COLUMNS`."""
        return [
            self.each_run(),
            f"{statistics.median(r.cpu_ms_per_request for r in self.runs):.2f}",
            self.share(lambda c: c.client),
            self.share(lambda c: c.server),
            self.share(lambda c: c.other),
            self.share(lambda c: c.loop_waiting),
            str(self.errors),
        ]


ROW_COLUMNS = ("req/s", "mean server delay ms", "ceiling req/s", "of ceiling")
CPU_COLUMNS = (
    "each run: of ceiling (loop waiting for a CPU)",
    "client CPU ms/request",
    "client CPU",
    "server CPU",
    "other processes' CPU",
    "loop waiting for a CPU",
    "errors",
)
LOCKSTEP = "worst case, lock-step (constant 200 ms)"


# -- part 3: event-loop lag during uploads ------------------------------------------------------------------------


@attrs.frozen
class LagRun:
    lags: tuple[float, ...]
    #: per tick: the part of it the loop thread spent runnable but not running (waiting for a CPU)
    waits: tuple[float, ...]
    errors: int
    cpu: Cpu
    #: the durations of the garbage collections during the batch (all generations)
    gc_pauses: tuple[float, ...] = ()


async def lag_during(jobs: list[Job], idle_seconds: float, server: Server) -> LagRun:
    """Run ``jobs`` concurrently while a ticker records its oversleep; with no jobs, tick for ``idle_seconds``."""
    lags: list[float] = []
    waits: list[float] = []
    done = anyio.Event()
    errors = 0
    runqueue = RunqueueClock()

    async def ticker() -> None:
        clock = time.perf_counter
        while not done.is_set():
            started, waited = clock(), runqueue()
            await anyio.sleep(TICK)
            lags.append(clock() - started - TICK)
            waits.append(runqueue() - waited)

    async def guarded(job: Job) -> None:
        nonlocal errors
        try:
            good = await job()
        except Exception:
            good = False
        errors += not good

    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_started[0])

    before = Cpu.snapshot(server)
    gc.callbacks.append(on_gc)
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
        gc.callbacks.remove(on_gc)
        runqueue.close()
    cpu = Cpu.between(before, Cpu.snapshot(server))
    return LagRun(tuple(lags), tuple(waits), errors, cpu, tuple(gc_pauses))


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

                def plain_job(body: bytes) -> Job:
                    async def job() -> bool:
                        response = await http.post(url, content=body, headers=HEADERS)
                        return response.status_code == 200

                    return job

                return await lag_during([plain_job(b) for b in bodies], 0, server)
        transport = "aiohttp" if variant == OURS_AIOHTTP else "httpx"
        async with make_client(server.fast_url, transport, len(bodies)) as client:
            await client.send_encoded(warm, merchant_id_scan_reference="bench-upload-warm")

            def ours_job(body: bytes, i: int) -> Job:
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


def lockstep_note(lockstep: Row, met: bool | None) -> list[str]:
    """The worst-case columns of a row: the constant server's figures."""
    return [
        f"{100 * lockstep.of_ceiling:.1f}%" + ("" if met is None else f" ({verdict(met)})"),
        lockstep.each_run(),
        f"{statistics.median(r.cpu_ms_per_request for r in lockstep.runs):.2f}",
        lockstep.share(lambda c: c.other),
    ]


LOCKSTEP_COLUMNS = (
    f"{LOCKSTEP}: of ceiling (against the goal, for information)",
    "lock-step: each run (loop waiting for a CPU)",
    "lock-step: client CPU ms/request",
    "lock-step: other processes' CPU",
)


def report_part1(plan: list[Key], results: dict[Key, list[Run]], load: str) -> bool:
    rows, failed = [], False
    for part, variant, n, mode in plan:
        if mode != JITTER:
            continue
        row = Row(tuple(results[(part, variant, n, JITTER)]))
        lockstep = Row(tuple(results[(part, variant, n, CONSTANT)]))
        goal, lockstep_met = "-", None
        if variant in (OURS, OURS_TRIO):
            met = row.of_ceiling >= GOAL_OF_CEILING and not row.errors
            failed |= not met
            goal = verdict(met)
            lockstep_met = lockstep.of_ceiling >= GOAL_OF_CEILING and not lockstep.errors
        rows.append(
            [
                str(n),
                variant,
                *row.columns(),
                *row.cpu_columns(),
                goal,
                *lockstep_note(lockstep, lockstep_met),
            ]
        )
    headers = [
        "in flight",
        "variant",
        *ROW_COLUMNS,
        *CPU_COLUMNS,
        f"goal >= {GOAL_OF_CEILING:.0%} of ceiling",
    ]
    headers += LOCKSTEP_COLUMNS
    print("### Part 1: the default transport at 8, 16 and 32 in flight\n")
    print(f"Before this part: {load}. Server: jittered (the goal) and, in the last columns, constant.\n")
    print(markdown_table(headers, rows, align="rl" + "r" * 4 + "l" + "r" * 6 + "l" + "rlrr"))
    print()
    return failed


def report_part2(plan: list[Key], results: dict[Key, list[Run]], load: str) -> bool:
    rows, failed = [], False

    def ratios(of_ceiling: float, mode: str) -> list[str]:
        out = []
        for base in (AIOHTTP_KEEP, AIOHTTP_CLOSE):
            base_share = Row(tuple(results[(2, base, 64, mode)])).of_ceiling
            out.append(f"{of_ceiling / base_share:.2f}x" if base_share else "-")
        return out

    for part, variant, n, mode in plan:
        if mode != JITTER:
            continue
        row = Row(tuple(results[(part, variant, n, JITTER)]))
        lockstep = Row(tuple(results[(part, variant, n, CONSTANT)]))
        jitter_ratios = ratios(row.of_ceiling, JITTER)
        goal = "-"
        if variant == OURS_AIOHTTP:
            base_share = Row(tuple(results[(2, AIOHTTP_KEEP, 64, JITTER)])).of_ceiling
            met = row.of_ceiling >= GOAL_VS_AIOHTTP * base_share and not row.errors
            failed |= not met
            goal = verdict(met)
        lock = lockstep_note(lockstep, None)
        rows.append(
            [
                variant,
                *row.columns(),
                *jitter_ratios,
                *row.cpu_columns(),
                goal,
                lock[0],
                *ratios(lockstep.of_ceiling, CONSTANT),
                *lock[1:],
            ]
        )
    headers = [
        "variant",
        *ROW_COLUMNS,
        "vs raw aiohttp (keep-alive)",
        "vs raw aiohttp, force_close",
        *CPU_COLUMNS,
        f"goal >= {GOAL_VS_AIOHTTP}x raw aiohttp (keep-alive)",
        f"{LOCKSTEP}: of ceiling",
        "lock-step: vs raw aiohttp (keep-alive)",
        "lock-step: vs raw aiohttp, force_close",
        *LOCKSTEP_COLUMNS[1:],
    ]
    print("### Part 2: the aiohttp extra at 64 in flight\n")
    print(
        f"Before this part: {load}. Server: jittered (the goal) and, in the last columns, constant. The ratios "
        "are of the shares of the ceiling, each against the raw aiohttp row measured against the same server.\n"
    )
    print(markdown_table(headers, rows, align="l" + "r" * 6 + "l" + "r" * 6 + "l" + "rrrlrr"))
    print()
    return failed


def report_part3(lag_runs: dict[str, list[LagRun]], bodies: list[bytes], load: str) -> bool:
    mb = len(bodies[0]) / 1e6
    rows, failed = [], False
    for variant in UPLOAD_VARIANTS:
        runs = lag_runs[variant]
        lags = [lag for run in runs for lag in run.lags]
        waits = [wait for run in runs for wait in run.waits]
        own = [max(0.0, lag - wait) for lag, wait in zip(lags, waits, strict=True)]
        p99, weighted = percentile(lags, 99), time_weighted_percentile(lags, 99, TICK)
        pauses = [pause for run in runs for pause in run.gc_pauses]
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
                f"{len(pauses)} / {ms(max(pauses, default=0.0))}",
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
        "garbage collections: count / longest ms",
        "errors",
        f"goal p99 < {GOAL_P99_MS:g} ms (both)",
    ]
    print(f"### Part 3: event-loop lag during {len(bodies)} concurrent uploads of {mb:.1f} MB\n")
    print(
        f"Before this part: {load}. A 1 ms ticker's oversleep, pooled over {len(lag_runs[OURS])} batches per variant (interleaved); "
        "time-weighted: each tick weighted by its duration. Minus the wait for a CPU: each tick's lag less the "
        "time the loop thread was runnable but not running during it (Linux schedstat), i.e. the lag the "
        "process caused itself. Batch: wall time of the 20 uploads (median). CPU and waiting: share of one "
        "core over the batches.\n"
    )
    print(markdown_table(headers, rows, align="lrrrrrrrrrrrrrl"))
    print()
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8, 16, 32], help="part 1 concurrencies")
    parser.add_argument(
        "--cycles", type=int, default=8, help="cycles measured per worker in a throughput run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput row (median shown)")
    parser.add_argument("--no-trio", action="store_true", help="skip the trio row of part 1")
    parser.add_argument(
        "--jitter", choices=["lognormal", "uniform"], default="lognormal", help="jittered delays"
    )
    parser.add_argument("--seed", type=int, default=JITTER_SEED, help="seed of the jittered delays")
    parser.add_argument("--uploads", type=int, default=20, help="part 3: concurrent uploads per batch")
    parser.add_argument("--upload-mb", type=float, default=10.0, help="part 3: body size in MB")
    parser.add_argument("--upload-runs", type=int, default=10, help="part 3: batches per variant (pooled)")
    parser.add_argument(
        "--max-load", type=float, default=0.7, help="wait for a 1-minute load average below this"
    )
    parser.add_argument(
        "--load-wait", type=float, default=180.0, help="wait at most this long (s) before a part"
    )
    parser.add_argument("--latency", type=float, default=LATENCY, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency, args.jitter, args.seed)
        return 0

    import aiohttp
    import httpx

    started = time.perf_counter()
    body = small_body()
    failed = False
    jitter = (
        f"log-normal, sigma {JITTER_SIGMA}, median {LATENCY * math.exp(-(JITTER_SIGMA**2) / 2) * 1000:.0f} ms"
        if args.jitter == "lognormal"
        else f"uniform {LATENCY * 500:.0f}-{LATENCY * 1500:.0f} ms"
    )
    with server_process(LATENCY, args.jitter, args.seed) as server:
        print(
            f"Machine: {machine_load()} at the start; Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
            f"aiohttp {aiohttp.__version__}; server: a raw asyncio protocol on {server.loop_name} in its own "
            f"process; jittered: delays drawn from a {jitter}, mean {LATENCY * 1000:.0f} ms (seed {args.seed}); "
            f"constant: {LATENCY * 1000:.0f} ms. Throughput: body {len(body):,} bytes; the median of "
            f"{args.repeats} interleaved runs, each a fresh event loop and client, all workers started at once; "
            f"{args.cycles} cycles of each worker measured, from its first answer after {3 * LATENCY:g} s. CPU columns: share of one core (2 cores "
            "in all).\n",
            flush=True,
        )
        for part in (1, 2):
            if part not in args.parts:
                continue
            load = wait_for_quiet(args.max_load, args.load_wait)
            plan = throughput_plan(part, args.in_flight, not args.no_trio)
            results: dict[Key, list[Run]] = {}
            for round_no in range(args.repeats):
                for key in plan:
                    results.setdefault(key, []).append(measure(key, server, body, args.cycles))
                print(f"  part {part}: round {round_no + 1} done", file=sys.stderr, flush=True)
            load += f"; after it: {machine_load()}"
            report = report_part1 if part == 1 else report_part2
            failed |= report(plan, results, load)
            sys.stdout.flush()
        if 3 in args.parts:
            bodies = upload_bodies(args.uploads, int(args.upload_mb * 1_000_000))
            load = wait_for_quiet(args.max_load, args.load_wait)
            lag_runs: dict[str, list[LagRun]] = {v: [] for v in UPLOAD_VARIANTS}
            for _ in range(args.upload_runs):
                for variant in UPLOAD_VARIANTS:
                    lag_runs[variant].append(measure_upload(variant, server, bodies, body))
            load += f"; after it: {machine_load()}"
            failed |= report_part3(lag_runs, bodies, load)
    print(f"Whole run {time.perf_counter() - started:.0f} s.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
