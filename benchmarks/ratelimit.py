"""Client-side rate limits against the emulator's server-side limit, over real loopback HTTP.

Every case starts its own emulator (``python -m netverify_async.emulator --port 0 --rate-limit SPEC``, a separate
process that counts requests in a sliding window and answers 429 beyond it) and drives it with
``client.submit_many`` over a lazy generator of small valid requests (one 320x240 JPEG each), with more
uploads at once than the limit allows, so the demand always exceeds it. Preflight is off so that the CPU goes to
the measurement (the images are known to be valid). Retries use the client's default policy.

Cases (durations with ``--quick`` in brackets):

- (a) ``rate_limit="20/s"`` against an emulator enforcing 20/s, 20 s [5 s]: 429s (goal 0), steady accepted
  rate (goal >= 95 % of 20/s).
- baseline: the same load with ``rate_limit=None`` against the same 20/s emulator, 10 s [4 s].
- (b) ``rate_limit="5/5s"`` against ``5/5s``, 60 s [15 s]: 429s (goal 0), steady rate (goal >= 95 % of 1/s).
- (c) ``rate_limit="adaptive"`` (nothing configured) against an emulator enforcing 10/s **without**
  ``Retry-After`` (the hard case: only the 429s themselves tell the client anything), 60 s [20 s]: share of
  requests answered 429 after the first 10 s (goal < 5 %) and accepted rate after the first 10 s (goal >= 85 %
  of 10/s). Writes a plot of the emulator's per-second counts to ``benchmarks/out/ratelimit_adaptive.png``
  and copies it to ``benchmarks/ratelimit_adaptive.png``.
- (d) 4 fresh processes sharing ``20/s`` through one ``RedisRateLimiter`` key (``margin=0.04``, the 4 % the
  client itself adds to a 1 s window; a redis-server started here on a free loopback port, or
  ``NETVERIFY_TEST_REDIS_URL``), 8 uploads at once each, against one emulator enforcing 20/s, 20 s [6 s]:
  aggregate steady rate (goal >= 90 %) and 429s (goal 0). Diagnostic row, 10 s [4 s]: the same, but each
  process builds its client's HTTP transport before the first request (a private call), which tells whether
  429s come from the first request of a fresh process. Baseline, 10 s [4 s]: 4 processes with
  ``rate_limit="20/s"`` each (no shared state).

Each emulator gets one submission from a throwaway client before the measurement and is then reset: its first
request pays for lazy imports (about 0.1 s) that a production server has long paid, and would otherwise
delay the measured client's first requests. The measured clients themselves are fresh: they build their HTTP
transport during their first request, as in real use.

The 429s are counted twice: by the emulator (``GET /__emulator/stats``, every attempt it answered) and by the
clients (``client.stats.status_counts``). The *steady rate* is the least-squares slope of the cumulative
number of accepted scans (receipts) against the time they arrived: a sliding window lets the first N
requests through at once, so a plain "accepted / duration" over a short run overstates the long-run rate; that
plain figure is printed too. "429s in the first 2 s" separates start-up effects from the steady state. A run
stops at its duration: uploads still in flight are cut and not counted.

Run: ``python benchmarks/ratelimit.py [--quick] [--cases a,baseline,b,c,d]`` (markdown tables on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _common import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    USER_AGENT,
    emulator_process,
    machine_load,
    markdown_table,
)

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
PLOT_NAME = "ratelimit_adaptive.png"

#: Uploads at once in the single-process cases (the limits allow at most 20 at once, so demand exceeds them).
CONCURRENCY = 32
#: Processes and uploads at once per process in case (d).
REDIS_PROCESSES = 4
REDIS_CONCURRENCY = 8
#: The adaptive case is judged after this many seconds (the limit is unknown at the start).
ADAPTIVE_WARMUP = 10

FULL = {"a": 20.0, "baseline": 10.0, "b": 60.0, "c": 60.0, "d": 20.0, "d_warm": 10.0, "d_baseline": 10.0}
QUICK = {"a": 5.0, "baseline": 4.0, "b": 15.0, "c": 20.0, "d": 6.0, "d_warm": 4.0, "d_baseline": 4.0}


# -- requests ------------------------------------------------------------------------------------------------


def small_image() -> bytes:
    """A small real JPEG (320x240, a few kB) that passes the emulator's image checks."""
    import io

    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (320, 240), (200, 210, 190))
    draw = ImageDraw.Draw(img)
    draw.rectangle([12, 12, 110, 130], outline=(30, 30, 30), width=3)
    for y in range(150, 230, 16):
        draw.line([(12, y), (300, y)], fill=(60, 60, 90), width=2)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=60)
    return out.getvalue()


def request_stream(prefix: str, image: bytes) -> Iterator[Any]:
    """An endless, lazy stream of small valid requests with distinct merchant references."""
    from netverify_async._models import Image, NetverifyRequest

    frontside = Image.from_bytes(image)
    index = 0
    while True:
        yield NetverifyRequest(
            merchant_id_scan_reference=f"{prefix}-{index:07d}",
            frontside_image=frontside,
            country="USA",
            id_type="PASSPORT",
        )
        index += 1


def make_client(base_url: str, rate_limit: Any, concurrency: int) -> Any:
    from netverify_async._client import NetverifyClient

    return NetverifyClient(
        api_token=EMULATOR_TOKEN,
        api_secret=EMULATOR_SECRET,
        user_agent=USER_AGENT,
        base_url=base_url,
        rate_limit=rate_limit,
        max_concurrency=concurrency,
        preflight=False,
    )


async def run_load(
    client: Any, *, duration: float, prefix: str, concurrency: int, image: bytes, clock: Callable[[], float]
) -> list[float]:
    """Submit for ``duration`` seconds; returns the ``clock()`` readings at which receipts arrived."""
    from netverify_async._batch import OutcomeStatus

    accepted: list[float] = []
    async with client.submit_many(request_stream(prefix, image), concurrency=concurrency) as batch:
        with anyio.move_on_after(duration):
            async for outcome in batch:
                if outcome.status is OutcomeStatus.RECEIPT:
                    accepted.append(clock())
    # leaving the block closes the batch: uploads still in flight are cut and not counted
    return accepted


# -- measurements ------------------------------------------------------------------------------------------


def steady_rate(times: Sequence[float]) -> float:
    """Least-squares slope of the cumulative count of accepted scans against their arrival times (per second)."""
    n = len(times)
    if n < 2:
        return 0.0
    ordered = sorted(times)
    mean_t = sum(ordered) / n
    mean_k = (n - 1) / 2
    num = sum((t - mean_t) * (k - mean_k) for k, t in enumerate(ordered))
    den = sum((t - mean_t) ** 2 for t in ordered)
    return num / den if den > 0 else 0.0


def fetch_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + "/__emulator/stats", timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


async def warm_up_emulator(base_url: str, image: bytes) -> None:
    """One submission through a throwaway client, then forget it (``POST /__emulator/reset``).

    The emulator's first submission pays for lazy imports (about 0.1 s) that a running production server has
    long paid: without this, the first requests of the measured client would reach it late.
    """
    async with make_client(base_url, None, 1) as client:
        await client.perform_netverify(next(request_stream("warm-up", image)))
    await anyio.to_thread.run_sync(reset_emulator, base_url)


def reset_emulator(base_url: str) -> None:
    req = urllib.request.Request(base_url + "/__emulator/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def status_count(counts: dict[str, int] | dict[int, int], status: int) -> int:
    return int(counts.get(status, 0) or counts.get(str(status), 0))  # type: ignore[call-overload]


def early_429s(stats: dict[str, Any], seconds: int = 2) -> int:
    """429s the emulator answered in its first ``seconds`` seconds since the last reset."""
    return sum(status_count(e["statusCounts"], 429) for e in stats["perSecond"] if e["second"] < seconds)


def limit_rate(spec: str) -> float:
    from netverify_async._ratelimit import parse_rate

    return min(w.rate for w in parse_rate(spec))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class Row:
    """One line of the main table."""

    def __init__(self, case: str, client: str, server: str, duration: float) -> None:
        self.case, self.client, self.server, self.duration = case, client, server, duration
        self.requests = self.emulator_429 = self.client_429 = self.accepted = self.early_429 = 0
        self.steady = 0.0

    def cells(self) -> list[object]:
        allowed = limit_rate(self.server)
        return [
            self.case,
            self.client,
            self.server,
            f"{self.duration:.0f} s",
            self.requests,
            f"{self.emulator_429} / {self.client_429}",
            self.early_429,
            self.accepted,
            f"{self.accepted / self.duration:.2f}",
            f"{self.steady:.2f}",
            f"{self.steady / allowed:.1%}",
        ]


MAIN_HEADERS = [
    "case",
    "client rate_limit",
    "emulator limit",
    "run",
    "requests seen by emulator",
    "429s (emulator / client)",
    "429s in the first 2 s",
    "accepted scans",
    "accepted / run time (/s)",
    "steady accepted rate (/s)",
    "steady rate / limit",
]


# -- single-process cases ----------------------------------------------------------------------------------


async def single_process_case(
    case: str, client_spec: str | None, server_spec: str, duration: float, image: bytes
) -> Row:
    with emulator_process("--rate-limit", server_spec) as emu:
        await warm_up_emulator(emu.base_url, image)
        client = make_client(emu.base_url, client_spec, CONCURRENCY)
        async with client:
            accepted = await run_load(
                client,
                duration=duration,
                prefix=f"rl-{case}",
                concurrency=CONCURRENCY,
                image=image,
                clock=time.monotonic,
            )
        await anyio.sleep(0.2)  # let the emulator count the last cut uploads
        stats = await anyio.to_thread.run_sync(fetch_stats, emu.base_url)
    row = Row(case, "None (no limiter)" if client_spec is None else f'"{client_spec}"', server_spec, duration)
    row.requests = stats["requests"]
    row.emulator_429 = status_count(stats["statusCounts"], 429)
    row.early_429 = early_429s(stats)
    row.client_429 = client.stats.throttled
    row.accepted = len(accepted)
    row.steady = steady_rate(accepted)
    return row


class AdaptiveResult:
    def __init__(self) -> None:
        self.per_second: list[dict[str, Any]] = []
        self.fill_rate: list[tuple[float, float | None]] = []
        self.client_429 = 0
        self.duration = 0.0


async def adaptive_case(duration: float, image: bytes) -> AdaptiveResult:
    result = AdaptiveResult()
    result.duration = duration
    with emulator_process("--rate-limit", "10/s") as emu:  # no --retry-after: 429s carry no hint
        await warm_up_emulator(emu.base_url, image)
        client = make_client(emu.base_url, "adaptive", CONCURRENCY)
        limiter = client.submit_limiter
        async with client:
            t0 = time.monotonic()

            async def sample() -> None:
                while True:
                    await anyio.sleep(0.25)
                    result.fill_rate.append((time.monotonic() - t0, limiter.current_rate))

            async with anyio.create_task_group() as tg:
                tg.start_soon(sample)
                await run_load(
                    client,
                    duration=duration,
                    prefix="rl-c",
                    concurrency=CONCURRENCY,
                    image=image,
                    clock=time.monotonic,
                )
                tg.cancel_scope.cancel()
        stats = await anyio.to_thread.run_sync(fetch_stats, emu.base_url)
    result.per_second = stats["perSecond"]
    result.client_429 = client.stats.throttled
    return result


def adaptive_series(result: AdaptiveResult) -> tuple[list[int], list[int], list[int]]:
    """Per whole second of the run: (all requests, accepted, 429s), from the emulator's per-second stats."""
    seconds = int(result.duration)
    total = [0] * seconds
    ok = [0] * seconds
    throttled = [0] * seconds
    for entry in result.per_second:
        s = entry["second"]
        if 0 <= s < seconds:
            total[s] = entry["requests"]
            ok[s] = status_count(entry["statusCounts"], 200)
            throttled[s] = status_count(entry["statusCounts"], 429)
    return total, ok, throttled


def plot_adaptive(result: AdaptiveResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total, ok, throttled = adaptive_series(result)
    seconds = list(range(len(total) + 1))  # step edges: the last second is drawn to its end
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    ax.axvspan(0, ADAPTIVE_WARMUP, color="0.92", zorder=0, label=f"first {ADAPTIVE_WARMUP} s (not judged)")
    ax.bar(seconds[:-1], throttled, width=1.0, align="edge", color="tab:red", alpha=0.7, label="429s/s")
    ax.step(
        seconds,
        [*total, total[-1]],
        where="post",
        color="tab:blue",
        linewidth=3.5,
        alpha=0.45,
        label="requests/s (all answers)",
    )
    ax.step(seconds, [*ok, ok[-1]], where="post", color="tab:green", linewidth=1.6, label="accepted/s (200)")
    ax.axhline(10, color="black", linestyle="--", linewidth=1.2, label="emulator limit: 10/s")
    rates = [(t, r) for t, r in result.fill_rate if r is not None]
    if rates:
        ax.plot(
            [t for t, _ in rates],
            [r for _, r in rates],
            color="tab:orange",
            linewidth=1.2,
            label="client's adaptive rate (/s)",
        )
    ax.set_xlim(0, len(total))
    top = max([*total, 12])
    ax.set_ylim(0, min(top * 1.1, 60))
    if top > 60:
        ax.annotate(
            f"first second: {total[0]} requests (off scale)",
            xy=(0.5, 58),
            xytext=(3, 52),
            arrowprops={"arrowstyle": "->"},
            fontsize=9,
        )
    ax.set_xlabel("seconds since the client started")
    ax.set_ylabel("requests per second (emulator's count)")
    ax.set_title(
        'rate_limit="adaptive" (no limit configured) against an emulator enforcing 10/s, no Retry-After'
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.95)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- several processes through Redis -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_url() -> Iterator[str | None]:
    """``NETVERIFY_TEST_REDIS_URL``, or a throwaway redis-server on a free loopback port (None: no Redis)."""
    external = os.environ.get("NETVERIFY_TEST_REDIS_URL")
    if external:
        yield external
        return
    executable = shutil.which("redis-server")
    if executable is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="netverify-bench-redis-") as workdir:
        port = _free_port()
        proc = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not _ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def worker_main(args: argparse.Namespace) -> None:
    """One process of case (d): wait for "go" on stdin, submit for ``--duration`` s, print a JSON line."""
    limiter: Any
    if args.redis:
        from netverify_async.redis import RedisRateLimiter

        limiter = RedisRateLimiter(
            args.redis,
            rates=args.limit,
            key=args.key,
            margin=args.margin,
            max_concurrency=args.concurrency,
        )
    else:
        limiter = args.limit  # the client's own in-process limiter for this spec
    client = make_client(args.emulator, limiter, args.concurrency)
    image = small_image()
    if args.build_transport_first:
        # diagnostic only (private method): what the client would do if it built its HTTP transport before
        # taking its first rate-limiter slot instead of inside it
        client._get_http()
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    async with client:
        accepted = await run_load(
            client,
            duration=args.duration,
            prefix=f"rl-d{args.index}-{args.key[-6:]}",
            concurrency=args.concurrency,
            image=image,
            clock=time.time,
        )
    if args.redis:
        await limiter.aclose()
    print(
        json.dumps(
            {
                "accepted": accepted,
                "status_counts": {str(k): v for k, v in client.stats.status_counts.items()},
                "attempts": client.stats.attempts,
            }
        ),
        flush=True,
    )


async def multi_process_case(
    case: str,
    redis: str | None,
    duration: float,
    label: str,
    *,
    margin: float,
    image: bytes,
    build_transport_first: bool = False,
) -> Row:
    """Case (d): worker processes of this script against one emulator (blocking waits: nothing else runs)."""
    key = f"netverify-bench:{os.getpid()}:{time.time_ns()}"
    with emulator_process("--rate-limit", "20/s") as emu:
        await warm_up_emulator(emu.base_url, image)
        workers = []
        for index in range(REDIS_PROCESSES):
            cmd = [sys.executable, __file__, "--worker", "--emulator", emu.base_url, "--limit", "20/s"]
            cmd += ["--key", key, "--index", str(index), "--duration", str(duration)]
            cmd += ["--concurrency", str(REDIS_CONCURRENCY), "--margin", str(margin)]
            if redis:
                cmd += ["--redis", redis]
            if build_transport_first:
                cmd.append("--build-transport-first")
            workers.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        try:
            for proc in workers:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"worker did not start: {line!r}")
            reset_emulator(emu.base_url)  # per-second counts from "go"
            for proc in workers:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = []
            for proc in workers:
                out, _ = proc.communicate(timeout=duration + 60)
                if proc.returncode != 0:
                    raise RuntimeError(f"worker failed with exit code {proc.returncode}")
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        time.sleep(0.2)
        stats = fetch_stats(emu.base_url)
    accepted = sorted(t for r in results for t in r["accepted"])
    row = Row(case, label, "20/s", duration)
    row.requests = stats["requests"]
    row.emulator_429 = status_count(stats["statusCounts"], 429)
    row.early_429 = early_429s(stats)
    row.client_429 = sum(status_count(r["status_counts"], 429) for r in results)
    row.accepted = len(accepted)
    row.steady = steady_rate(accepted)
    return row


# -- the report ----------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    durations = QUICK if args.quick else FULL
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    image = small_image()
    began = time.perf_counter()
    load_before = machine_load()
    rows: list[Row] = []
    goals: list[list[object]] = []
    notes: list[str] = []

    if "a" in cases:
        row = await single_process_case("(a)", "20/s", "20/s", durations["a"], image)
        rows.append(row)
        goals.append(
            [
                "(a) 429s with 20/s configured",
                f"{row.emulator_429} / {row.client_429}",
                "0",
                verdict(row.emulator_429 == 0 and row.client_429 == 0),
            ]
        )
        goals.append(
            ["(a) steady rate / 20/s", f"{row.steady / 20:.1%}", ">= 95%", verdict(row.steady >= 19.0)]
        )
    if "baseline" in cases:
        rows.append(await single_process_case("baseline", None, "20/s", durations["baseline"], image))
    if "b" in cases:
        row = await single_process_case("(b)", "5/5s", "5/5s", durations["b"], image)
        rows.append(row)
        goals.append(
            [
                "(b) 429s with 5/5s configured",
                f"{row.emulator_429} / {row.client_429}",
                "0",
                verdict(row.emulator_429 == 0 and row.client_429 == 0),
            ]
        )
        goals.append(["(b) steady rate / 1/s", f"{row.steady:.1%}", ">= 95%", verdict(row.steady >= 0.95)])

    adaptive: AdaptiveResult | None = None
    if "c" in cases:
        adaptive = await adaptive_case(durations["c"], image)
        total, ok, throttled = adaptive_series(adaptive)
        judged = slice(ADAPTIVE_WARMUP, len(total))
        seen = sum(total[judged])
        share = sum(throttled[judged]) / seen if seen else 0.0
        rate = sum(ok[judged]) / max(1, len(total) - ADAPTIVE_WARMUP)
        goals.append(
            [
                f"(c) 429 share after {ADAPTIVE_WARMUP} s, adaptive vs 10/s",
                f"{share:.1%}",
                "< 5%",
                verdict(share < 0.05),
            ]
        )
        goals.append(
            [
                f"(c) accepted rate after {ADAPTIVE_WARMUP} s / 10/s",
                f"{rate / 10:.1%}",
                ">= 85%",
                verdict(rate >= 8.5),
            ]
        )
        OUT_DIR.mkdir(exist_ok=True)
        plot_adaptive(adaptive, OUT_DIR / PLOT_NAME)
        if not args.quick:
            shutil.copyfile(OUT_DIR / PLOT_NAME, HERE / PLOT_NAME)

    if "d" in cases:
        with redis_url() as url:
            if url is None:
                notes.append(
                    "(d) not measured: redis-server is not installed and NETVERIFY_TEST_REDIS_URL is unset"
                )
            else:
                margin = 0.04  # the client's own default for a 1 s window: 4 % of the shortest window
                row = await multi_process_case(
                    "(d)",
                    url,
                    durations["d"],
                    f'RedisRateLimiter(rates="20/s", margin={margin}) x4',
                    margin=margin,
                    image=image,
                )
                rows.append(row)
                goals.append(
                    [
                        "(d) 429s, 4 processes through Redis",
                        f"{row.emulator_429} / {row.client_429}",
                        "0",
                        verdict(row.emulator_429 == 0 and row.client_429 == 0),
                    ]
                )
                goals.append(
                    [
                        "(d) aggregate steady rate / 20/s",
                        f"{row.steady / 20:.1%}",
                        ">= 90%",
                        verdict(row.steady >= 18.0),
                    ]
                )
                rows.append(
                    await multi_process_case(
                        "(d) diagnostic",
                        url,
                        durations["d_warm"],
                        "as (d), HTTP transport built before the first slot",
                        margin=margin,
                        image=image,
                        build_transport_first=True,
                    )
                )
                rows.append(
                    await multi_process_case(
                        "(d) baseline",
                        None,
                        durations["d_baseline"],
                        '"20/s" in each of 4 processes',
                        margin=margin,
                        image=image,
                    )
                )

    print(f"## Client rate limits against the emulator's limit{' (--quick)' if args.quick else ''}\n")
    print(
        f"Emulator in its own process; {CONCURRENCY} uploads at once in one process, or {REDIS_PROCESSES} "
        f"processes x {REDIS_CONCURRENCY}; preflight off; default retry policy; machine: {load_before}.\n"
    )
    if rows:
        print(markdown_table(MAIN_HEADERS, [r.cells() for r in rows], align="lllrrrrrrrr"))
    if adaptive is not None:
        total, ok, throttled = adaptive_series(adaptive)
        print(
            f'\n### (c) rate_limit="adaptive" against an unknown 10/s limit, no Retry-After '
            f"({adaptive.client_429} 429s seen by the client in all)\n"
        )
        table = []
        for start in range(0, len(total), 5):
            part = slice(start, min(start + 5, len(total)))
            width = part.stop - part.start
            seen = sum(total[part])
            fills = [r for t, r in adaptive.fill_rate if start <= t < part.stop and r is not None]
            table.append(
                [
                    f"{start}-{part.stop} s",
                    f"{seen / width:.1f}",
                    f"{sum(ok[part]) / width:.1f}",
                    f"{sum(throttled[part]) / width:.1f}",
                    f"{sum(throttled[part]) / seen:.1%}" if seen else "-",
                    f"{sum(fills) / len(fills):.2f}" if fills else "off",
                ]
            )
        print(
            markdown_table(
                ["seconds", "requests/s", "accepted/s", "429s/s", "429 share", "mean adaptive rate /s"], table
            )
        )
        print(
            f"\nPlot: benchmarks/out/{PLOT_NAME}"
            + ("" if args.quick else f" (copied to benchmarks/{PLOT_NAME})")
        )
    if goals:
        print("\n### Goals\n")
        print(markdown_table(["goal", "measured", "target", "result"], goals, align="lrrl"))
    for note in notes:
        print(f"\n{note}")
    print(f"\n(run took {time.perf_counter() - began:.0f} s; machine afterwards: {machine_load()})")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short durations, for a smoke run")
    parser.add_argument("--cases", default="a,baseline,b,c,d", help="cases to run (default: all)")
    worker = parser.add_argument_group("worker process of case (d) (internal)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--emulator", help=argparse.SUPPRESS)
    worker.add_argument("--redis", help=argparse.SUPPRESS)
    worker.add_argument("--limit", help=argparse.SUPPRESS)
    worker.add_argument("--key", help=argparse.SUPPRESS)
    worker.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    worker.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    worker.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--margin", type=float, default=0.0, help=argparse.SUPPRESS)
    worker.add_argument("--build-transport-first", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        asyncio.run(worker_main(arguments))
    else:
        sys.exit(asyncio.run(main(arguments)))
