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
- (c) the opening: ``rate_limit="adaptive"`` (nothing configured) against emulators enforcing 5/5s, 15/5s and
  10/s, all three at once (one emulator and one client each; together 14 requests/s, so they do not compete
  for the CPU), **without** ``Retry-After`` (only the 429s themselves tell the client anything), 90 s [45 s].
  Goals for each limit: at most 3 429s in the first 30 s, accepted rate in 20-30 s >= 80 % of the limit,
  after 30 s >= 90 %, share of requests answered 429 after 30 s < 3 %. Writes a plot of the emulators'
  per-second counts and the clients' pacing rates to ``benchmarks/out/ratelimit_adaptive.png`` and copies it to
  ``benchmarks/ratelimit_adaptive.png``.
- (d) 4 fresh processes sharing ``20/s`` through one ``RedisRateLimiter`` key (``margin=0.04``, the 4 % the
  client itself adds to a 1 s window; a redis-server started here on a free loopback port, or
  ``NETVERIFY_TEST_REDIS_URL``), 8 uploads at once each, against one emulator enforcing 20/s, 20 s [6 s]:
  aggregate steady rate (goal >= 90 %) and 429s (goal 0). Diagnostic row, 10 s [4 s]: the same, but each
  process builds its client's HTTP transport before the first request (a private call), which tells whether
  429s come from the first request of a fresh process. Baseline, 10 s [4 s]: 4 processes with
  ``rate_limit="20/s"`` each (no shared state).

- (e) random 429s are not overload: one emulator enforcing 50/s with ``Retry-After``, where 0.5 % of the
  submission attempts get a random 429 and 0.5 % a random 503 (both with ``Retry-After: 1``, a seeded fault
  sequence posted to ``/__emulator/faults``, the same for every run). The client's default limiter for
  ``"50/s"`` (adaptive under that ceiling) and a plain ``SlidingWindowLimiter("50/s")`` with the same margin
  run in turns A B B A, 30 s each [10 s]; goal: the adaptive limiter's steady rate >= 85 % of the plain
  window's.

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

Run: ``python benchmarks/ratelimit.py [--quick] [--cases a,baseline,b,c,d,e]`` (markdown tables on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
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
    redis_server,
)

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
PLOT_NAME = "ratelimit_adaptive.png"

#: Uploads at once in the single-process cases (the limits allow at most 20 at once, so demand exceeds them).
CONCURRENCY = 32
#: Processes and uploads at once per process in case (d).
REDIS_PROCESSES = 4
REDIS_CONCURRENCY = 8
#: Case (c): the unknown limits the adaptive opening is run against (at once, one emulator each), and the
#: seconds that count as the opening.
OPENING_LIMITS = ("5/5s", "15/5s", "10/s")
OPENING_JUDGE = 30
#: Case (e): the emulator's limit and the share of answers that are a random 429 (and as many a random 503),
#: each with ``Retry-After: 1``.
SOAK_LIMIT = "50/s"
SOAK_NOISE = 0.005

FULL = {
    "a": 20.0,
    "baseline": 10.0,
    "b": 60.0,
    "c": 90.0,
    "d": 20.0,
    "d_warm": 10.0,
    "d_baseline": 10.0,
    "e": 30.0,
}
QUICK = {
    "a": 5.0,
    "baseline": 4.0,
    "b": 15.0,
    "c": 45.0,
    "d": 6.0,
    "d_warm": 4.0,
    "d_baseline": 4.0,
    "e": 10.0,
}


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
    """One adaptive run against one emulator: its per-second counts and the client's pacing rate."""

    def __init__(self, limit: str, duration: float) -> None:
        self.limit = limit
        self.duration = duration
        self.per_second: list[dict[str, Any]] = []
        self.fill_rate: list[tuple[float, float | None]] = []
        self.client_429 = 0


async def _adaptive_run(base_url: str, result: AdaptiveResult, image: bytes, prefix: str) -> None:
    client = make_client(base_url, "adaptive", CONCURRENCY)
    limiter = client.submit_limiter
    async with client:
        t0 = time.monotonic()

        async def sample() -> None:
            while True:
                result.fill_rate.append((time.monotonic() - t0, limiter.current_rate))
                await anyio.sleep(0.25)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            await run_load(
                client,
                duration=result.duration,
                prefix=prefix,
                concurrency=CONCURRENCY,
                image=image,
                clock=time.monotonic,
            )
            tg.cancel_scope.cancel()
    result.client_429 = client.stats.throttled


async def opening_case(duration: float, image: bytes) -> list[AdaptiveResult]:
    """Case (c): ``rate_limit="adaptive"`` against each of OPENING_LIMITS at once, one emulator each."""
    results = [AdaptiveResult(limit, duration) for limit in OPENING_LIMITS]
    with ExitStack() as stack:
        # no --retry-after: only the 429s themselves tell the client anything
        emulators = [stack.enter_context(emulator_process("--rate-limit", r.limit)) for r in results]
        for emu in emulators:
            await warm_up_emulator(emu.base_url, image)  # ends with a reset: per-second counts from here
        async with anyio.create_task_group() as tg:
            for index, (emu, result) in enumerate(zip(emulators, results, strict=True)):
                tg.start_soon(_adaptive_run, emu.base_url, result, image, f"rl-c{index}")
        for emu, result in zip(emulators, results, strict=True):
            stats = await anyio.to_thread.run_sync(fetch_stats, emu.base_url)
            result.per_second = stats["perSecond"]
    return results


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


class OpeningFigures:
    """The judged figures of one opening run (seconds are the emulator's, from its reset)."""

    def __init__(self, result: AdaptiveResult) -> None:
        total, ok, throttled = adaptive_series(result)
        self.limit = limit_rate(result.limit)
        end = len(total)
        j = OPENING_JUDGE
        self.early_429 = sum(throttled[:j])
        self.rate_opening = sum(ok[:j]) / j / self.limit
        self.rate_by_judge = sum(ok[j - 10 : j]) / 10 / self.limit
        self.rate_after = sum(ok[j:end]) / max(1, end - j) / self.limit
        seen_after = sum(total[j:end])
        self.share_after = sum(throttled[j:end]) / seen_after if seen_after else 0.0
        self.total_429 = sum(throttled)

    @property
    def passed(self) -> bool:
        return (
            self.early_429 <= 3
            and self.rate_by_judge >= 0.80
            and self.rate_after >= 0.90
            and self.share_after < 0.03
        )


def plot_opening(results: Sequence[AdaptiveResult], path: Path) -> None:
    """One panel per limit: accepted/s (5 s average), 429s per second, the client's pacing rate, the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.2 * len(results)), dpi=110, sharex=True)
    for ax, result in zip(axes, results, strict=True):
        total, ok, throttled = adaptive_series(result)
        limit = limit_rate(result.limit)
        seconds = list(range(len(total)))
        smoothed = [sum(ok[max(0, s - 4) : s + 1]) / min(5, s + 1) for s in seconds]
        ax.axvspan(0, OPENING_JUDGE, color="0.93", zorder=0, label=f"opening (first {OPENING_JUDGE} s)")
        ax.bar(
            seconds,
            throttled,
            width=1.0,
            align="edge",
            color="tab:red",
            alpha=0.75,
            label="429s in the second",
        )
        ax.plot(
            [s + 1 for s in seconds],
            smoothed,
            color="tab:green",
            linewidth=1.8,
            label="accepted/s (last 5 s)",
        )
        rates = [(t, r) for t, r in result.fill_rate if r is not None]
        if rates:
            ax.step(
                [t for t, _ in rates],
                [r for _, r in rates],
                where="post",
                color="tab:orange",
                linewidth=1.2,
                label="client's pacing rate (/s)",
            )
        ax.axhline(
            limit, color="black", linestyle="--", linewidth=1.1, label=f"emulator limit {result.limit}"
        )
        ax.set_xlim(0, len(total))
        ax.set_ylim(0, max(3.0, limit * 1.8, *[r for _, r in rates if r <= limit * 3]) * 1.05)
        ax.set_ylabel("per second")
        ax.set_title(f'rate_limit="adaptive" against an unknown {result.limit} (no Retry-After)', fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.95)
    axes[-1].set_xlabel("seconds since the client started (emulator's count)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- random 429s: noise is not overload ---------------------------------------------------------------------


def noise_sequence(length: int, seed: int) -> list[str]:
    """One action per submission attempt: a 429 or a 503 (each with ``Retry-After: 1``) with SOAK_NOISE each."""
    rng = random.Random(seed)
    sequence = []
    for _ in range(length):
        draw = rng.random()
        sequence.append("429" if draw < SOAK_NOISE else "503" if draw < 2 * SOAK_NOISE else "ok")
    return sequence


def post_faults(base_url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(
        base_url + "/__emulator/faults",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()


class SoakRow:
    def __init__(self, label: str) -> None:
        self.label = label
        self.runs: list[tuple[int, float, int, int, int]] = []  # accepted, steady, 429 real/injected, 503

    def add(self, accepted: list[float], stats: dict[str, Any]) -> None:
        faults = stats.get("faultsInjected", {})
        self.runs.append(
            (
                len(accepted),
                steady_rate(accepted),
                int(faults.get("rate_limited", 0)),
                int(faults.get("429", 0)),
                int(faults.get("503", 0)),
            )
        )

    def mean(self, index: int) -> float:
        return sum(run[index] for run in self.runs) / len(self.runs)


async def soak_case(duration: float, image: bytes) -> tuple[SoakRow, SoakRow]:
    """Case (e): the client's default limiter for SOAK_LIMIT and a plain sliding window, in turns (ABBA), on
    one emulator enforcing SOAK_LIMIT with Retry-After and the same seeded sequence of random 429s/503s."""
    adaptive = SoakRow(f'rate_limit="{SOAK_LIMIT}" (adaptive under that ceiling, the default)')
    shortest = min(w.seconds for w in _parse(SOAK_LIMIT))
    margin = min(0.25, 0.04 * shortest)  # make_limiter's default margin, so only the adaptation differs
    plain = SoakRow(f'SlidingWindowLimiter("{SOAK_LIMIT}", margin={margin:g}) (does not adapt)')
    sequence = noise_sequence(int(limit_rate(SOAK_LIMIT) * duration * 3) + 1000, seed=11)
    from netverify_async._ratelimit import SlidingWindowLimiter

    with emulator_process("--rate-limit", SOAK_LIMIT, "--retry-after") as emu:
        await warm_up_emulator(emu.base_url, image)
        for turn, row in enumerate((adaptive, plain, plain, adaptive)):
            await anyio.to_thread.run_sync(reset_emulator, emu.base_url)
            await anyio.to_thread.run_sync(post_faults, emu.base_url, {"sequence": sequence})
            limit: Any = (
                SOAK_LIMIT
                if row is adaptive
                else SlidingWindowLimiter(SOAK_LIMIT, margin=margin, max_concurrency=CONCURRENCY)
            )
            client = make_client(emu.base_url, limit, CONCURRENCY)
            async with client:
                accepted = await run_load(
                    client,
                    duration=duration,
                    prefix=f"rl-e{turn}",
                    concurrency=CONCURRENCY,
                    image=image,
                    clock=time.monotonic,
                )
            await anyio.sleep(0.2)
            row.add(accepted, await anyio.to_thread.run_sync(fetch_stats, emu.base_url))
    return adaptive, plain


def _parse(spec: str) -> Any:
    from netverify_async._ratelimit import parse_rate

    return parse_rate(spec)


# -- several processes through Redis -----------------------------------------------------------------------


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
        client._get_exchange()
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

    opening: list[AdaptiveResult] = []
    if "c" in cases:
        opening = await opening_case(durations["c"], image)
        for result in opening:
            f = OpeningFigures(result)
            goals.append(
                [
                    f"(c) {result.limit}: 429s in the first {OPENING_JUDGE} s",
                    f.early_429,
                    "<= 3",
                    verdict(f.early_429 <= 3),
                ]
            )
            goals.append(
                [
                    f"(c) {result.limit}: accepted rate {OPENING_JUDGE - 10}-{OPENING_JUDGE} s / limit",
                    f"{f.rate_by_judge:.1%}",
                    ">= 80%",
                    verdict(f.rate_by_judge >= 0.80),
                ]
            )
            goals.append(
                [
                    f"(c) {result.limit}: accepted rate after {OPENING_JUDGE} s / limit",
                    f"{f.rate_after:.1%}",
                    ">= 90%",
                    verdict(f.rate_after >= 0.90),
                ]
            )
            goals.append(
                [
                    f"(c) {result.limit}: 429 share after {OPENING_JUDGE} s",
                    f"{f.share_after:.1%}",
                    "< 3%",
                    verdict(f.share_after < 0.03),
                ]
            )
        OUT_DIR.mkdir(exist_ok=True)
        plot_opening(opening, OUT_DIR / PLOT_NAME)
        if not args.quick:
            shutil.copyfile(OUT_DIR / PLOT_NAME, HERE / PLOT_NAME)

    if "d" in cases:
        with redis_server() as url:
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

    soak: tuple[SoakRow, SoakRow] | None = None
    if "e" in cases:
        soak = await soak_case(durations["e"], image)
        adaptive_soak, plain_soak = soak
        ratio = adaptive_soak.mean(1) / plain_soak.mean(1) if plain_soak.mean(1) else 0.0
        goals.append(
            [
                "(e) random 429s: adaptive / plain sliding window (steady rate)",
                f"{ratio:.1%}",
                ">= 85%",
                verdict(ratio >= 0.85),
            ]
        )

    print(f"## Client rate limits against the emulator's limit{' (--quick)' if args.quick else ''}\n")
    print(
        f"Emulator in its own process; {CONCURRENCY} uploads at once in one process, or {REDIS_PROCESSES} "
        f"processes x {REDIS_CONCURRENCY}; preflight off; default retry policy; machine: {load_before}.\n"
    )
    if rows:
        print(markdown_table(MAIN_HEADERS, [r.cells() for r in rows], align="lllrrrrrrrr"))
    if opening:
        print(
            f'\n### (c) rate_limit="adaptive" opening against unknown limits, no Retry-After '
            f"({', '.join(OPENING_LIMITS)} at once, one emulator each, {durations['c']:.0f} s)\n"
        )
        table = []
        for result in opening:
            f = OpeningFigures(result)
            table.append(
                [
                    result.limit,
                    f"{f.limit:g}",
                    f.early_429,
                    f"{f.rate_opening:.0%}",
                    f"{f.rate_by_judge:.0%}",
                    f"{f.rate_after:.1%}",
                    f"{f.share_after:.1%}",
                    f"{f.total_429} / {result.client_429}",
                    verdict(f.passed),
                ]
            )
        print(
            markdown_table(
                [
                    "emulator limit",
                    "limit /s",
                    f"429s 0-{OPENING_JUDGE} s (<= 3)",
                    f"accepted 0-{OPENING_JUDGE} s / limit",
                    f"accepted {OPENING_JUDGE - 10}-{OPENING_JUDGE} s / limit (>= 80%)",
                    f"accepted after {OPENING_JUDGE} s / limit (>= 90%)",
                    f"429 share after {OPENING_JUDGE} s (< 3%)",
                    "429s in all (emulator / client)",
                    "result",
                ],
                table,
                align="lrrrrrrrl",
            )
        )
        print("\nAccepted per second as a share of the limit (429s in brackets), by 10 s of the run:\n")
        spans = list(range(0, int(durations["c"]), 10))
        timeline = []
        for result in opening:
            _, ok, throttled = adaptive_series(result)
            limit = limit_rate(result.limit)
            cells: list[object] = [result.limit]
            for start in spans:
                part = slice(start, min(start + 10, len(ok)))
                width = part.stop - part.start
                cells.append(f"{sum(ok[part]) / width / limit:.0%} ({sum(throttled[part])})")
            timeline.append(cells)
        print(
            markdown_table(["limit", *[f"{s}-{min(s + 10, int(durations['c']))} s" for s in spans]], timeline)
        )
        print(
            f"\nPlot: benchmarks/out/{PLOT_NAME}"
            + ("" if args.quick else f" (copied to benchmarks/{PLOT_NAME})")
        )
    if soak is not None:
        print(
            f"\n### (e) random 429s are not overload: {SOAK_NOISE:.1%} of answers a random 429 and {SOAK_NOISE:.1%} "
            f"a random 503 (both with Retry-After: 1), emulator limit {SOAK_LIMIT} with Retry-After, "
            f"{durations['e']:.0f} s per run, runs in the order A B B A\n"
        )
        rows_e = []
        for row in soak:
            rows_e.append(
                [
                    row.label,
                    len(row.runs),
                    f"{row.mean(0) / durations['e']:.1f}",
                    f"{row.mean(1):.1f}",
                    " / ".join(f"{run[1]:.1f}" for run in row.runs),
                    f"{row.mean(2):.1f}",
                    f"{row.mean(3):.1f} / {row.mean(4):.1f}",
                ]
            )
        print(
            markdown_table(
                [
                    "client limiter",
                    "runs",
                    "accepted / run time (/s)",
                    "steady accepted rate (/s)",
                    "steady rate per run",
                    "429s of the real limit (mean)",
                    "random 429s / 503s (mean)",
                ],
                rows_e,
                align="lrrrlrr",
            )
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
    parser.add_argument("--cases", default="a,baseline,b,c,d,e", help="cases to run (default: all)")
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
