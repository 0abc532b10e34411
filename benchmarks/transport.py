"""Throughput of NetverifyClient.perform_netverify against raw aiohttp and plain httpx, on a 200 ms server.

The emulator runs as a separate process (``python -m netverify_async.emulator --latency 0.2``); the load is
generated here, one variant at a time, each in a fresh event loop with its own connection pool:

* ``raw aiohttp`` (the baseline): an ``aiohttp.ClientSession`` POSTing the pre-encoded body with the client's
  headers; the emulator's reachable ceiling in practice;
* ``ours, aiohttp``: ``NetverifyClient(rate_limit=None, preflight=False, max_concurrency=N)`` under asyncio
  (default transport: aiohttp's pool), doing ``perform_netverify`` with a small valid image;
* ``plain httpx``: ``httpx.AsyncClient`` (httpcore pool, limits sized to N) POSTing the same body;
* ``ours, httpcore``: the client with ``transport="httpcore"`` under asyncio;
* ``ours, trio``: the client under trio (httpcore on trio: what trio users get).

N workers each loop over requests. After a warm-up round (one request per worker, opening the connections),
the requests answered within a ``--seconds`` window are counted; those still in flight when it closes are
cancelled. Round 1 runs every variant; further rounds (``--rounds``) alternate raw aiohttp and ours (aiohttp),
and the best run of each is shown (background load only ever slows a run down). The theoretical ceiling is
N / 0.2 s. CPU columns: this process's CPU time per answered request (median of the runs; less sensitive to
background load than req/s), and the share of one core used by this process and by the emulator process during
the best run's window.

Run: ``/work/venv/bin/python benchmarks/transport.py [--concurrency 64 256] [--seconds 5] [--rounds 3]``.
Goal: ours (aiohttp) >= 0.9x raw aiohttp at each concurrency. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from _common import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    USER_AGENT,
    CpuMeter,
    EmulatorProcess,
    basic_auth,
    emulator_process,
    machine_load,
    markdown_table,
    small_jpeg,
)

from netverify_async import Image, NetverifyRequest
from netverify_async._client import NetverifyClient
from netverify_async._constants import PERFORM_NETVERIFY_PATH
from netverify_async._wire import encode_request_body

LATENCY = 0.2
GOAL = 0.9
HEADERS = {
    "Accept": "application/json",
    "User-Agent": USER_AGENT,
    "Authorization": basic_auth(),
    "Content-Type": "application/json",
}

OneRequest = Callable[[], Awaitable[bool]]
VARIANTS = ("raw aiohttp", "ours, aiohttp", "plain httpx", "ours, httpcore", "ours, trio")
GOAL_VARIANTS = ("raw aiohttp", "ours, aiohttp")


@attrs.frozen
class Run:
    """One measured window of one variant."""

    variant: str
    concurrency: int
    done: int
    errors: int
    seconds: float
    own_cpu: float
    emulator_cpu: float | None

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return 1e6 * self.own_cpu / self.done if self.done else 0.0

    @property
    def own_percent(self) -> float:
        return 100 * self.own_cpu / self.seconds if self.seconds else 0.0

    @property
    def emulator_percent(self) -> float | None:
        return (
            None if self.emulator_cpu is None or not self.seconds else 100 * self.emulator_cpu / self.seconds
        )


def make_request() -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference="bench-transport",
        frontside_image=Image.from_bytes(small_jpeg()),
        country="AUT",
        id_type="PASSPORT",
    )


async def drive(one: OneRequest, concurrency: int, seconds: float, meter: CpuMeter) -> tuple[int, int]:
    """Warm up with one request per worker (at most ``seconds``), then let ``concurrency`` workers loop for
    ``seconds``; returns (answers, errors) completed inside that window. Requests still in flight when the
    window closes are cancelled and not counted."""
    ok = errors = 0
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(one)

    async def worker() -> None:
        nonlocal ok, errors
        while True:
            if await one():
                ok += 1
            else:
                errors += 1

    meter.start()
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    meter.stop()
    return ok, errors


async def with_raw_aiohttp(url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Any]]) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> bool:
            try:
                async with session.post(url, data=body, headers=HEADERS) as resp:
                    await resp.read()
                    return resp.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False

        return await run(one)


async def with_plain_httpx(url: str, body: bytes, n: int, run: Callable[[OneRequest], Awaitable[Any]]) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False) as http:

        async def one() -> bool:
            try:
                resp = await http.post(url, content=body, headers=HEADERS)
                return resp.status_code == 200
            except httpx.HTTPError:
                return False

        return await run(one)


def with_client(transport: str) -> Callable[..., Awaitable[Any]]:
    async def runner(
        base_url: str, request: NetverifyRequest, n: int, run: Callable[[OneRequest], Awaitable[Any]]
    ) -> Any:
        from netverify_async import NetverifyError

        client = NetverifyClient(
            api_token=EMULATOR_TOKEN,
            api_secret=EMULATOR_SECRET,
            user_agent=USER_AGENT,
            base_url=base_url,
            rate_limit=None,
            preflight=False,
            max_concurrency=n,
            transport=transport,  # type: ignore[arg-type]
        )
        async with client:

            async def one() -> bool:
                try:
                    await client.perform_netverify(request)
                except NetverifyError:
                    return False
                return True

            return await run(one)

    return runner


def measure(variant: str, emu: EmulatorProcess, n: int, seconds: float) -> Run:
    """One run of one variant in a fresh event loop (and pool); the emulator forgets its scans afterwards."""
    request = make_request()
    body = encode_request_body(request)
    url = emu.base_url + PERFORM_NETVERIFY_PATH
    meter = CpuMeter(emu.pid)

    async def run(one: OneRequest) -> tuple[int, int]:
        return await drive(one, n, seconds, meter)

    backend = "trio" if variant == "ours, trio" else "asyncio"

    async def entry() -> tuple[int, int]:
        result: tuple[int, int]
        if variant == "raw aiohttp":
            result = await with_raw_aiohttp(url, body, n, run)
        elif variant == "plain httpx":
            result = await with_plain_httpx(url, body, n, run)
        elif variant == "ours, httpcore":
            result = await with_client("httpcore")(emu.base_url, request, n, run)
        else:  # "ours, aiohttp" under asyncio, "ours, trio" under trio: the default transport of each
            result = await with_client("auto")(emu.base_url, request, n, run)
        return result

    ok, errors = anyio.run(entry, backend=backend)
    emu.reset()
    return Run(variant, n, ok, errors, meter.wall, meter.own, meter.other)


def plan(variants: list[str], rounds: int) -> list[list[str]]:
    """Round 1 runs every variant; further rounds repeat only the two the goal compares (httpcore's numbers are
    far from the goal either way, and repeating them would cost minutes)."""
    repeated = [v for v in variants if v in GOAL_VARIANTS]
    return [variants] + [repeated] * (rounds - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window of each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two goal variants; best shown")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()

    load_before = machine_load()
    runs: dict[tuple[str, int], list[Run]] = {}
    with emulator_process("--latency", str(LATENCY)) as emu:
        for n in args.concurrency:
            for variants in plan(args.variants, args.rounds):
                for variant in variants:
                    runs.setdefault((variant, n), []).append(measure(variant, emu, n, args.seconds))
    load_after = machine_load()

    print(f"## Client throughput against the emulator ({LATENCY * 1000:.0f} ms latency, separate process)\n")
    print(
        f"Machine: {load_before} before, {load_after} after. Each run: a warm-up request per worker, then "
        f"{args.seconds:g} s measured; raw aiohttp and ours (aiohttp) alternate over {args.rounds} rounds, best "
        "shown. CPU: share of one core used by this process / by the emulator process during the window; "
        "CPU/request: this process's CPU time per answered request (median of the runs).\n"
    )
    failed = False
    for n in args.concurrency:
        ceiling = n / LATENCY
        best = {v: max(runs[(v, n)], key=lambda r: r.rate) for v in args.variants}
        base = best.get("raw aiohttp")
        rows = []
        for variant in args.variants:
            r = best[variant]
            rows.append(
                (
                    variant,
                    f"{r.rate:,.0f}",
                    f"{r.rate / base.rate:.2f}x" if base and base.rate else "-",
                    f"{100 * r.rate / ceiling:.0f}%",
                    ", ".join(f"{x.rate:,.0f}" for x in runs[(variant, n)]),
                    r.errors,
                    f"{statistics.median(x.cpu_per_request_us for x in runs[(variant, n)]):,.0f} us",
                    f"{r.own_percent:.0f}%",
                    "-" if r.emulator_percent is None else f"{r.emulator_percent:.0f}%",
                )
            )
        print(f"### Concurrency {n} (ceiling {n} / {LATENCY:g} s = {ceiling:,.0f} req/s)\n")
        headers = (
            "variant",
            "req/s",
            "vs raw aiohttp",
            "of ceiling",
            "each run (req/s)",
            "errors",
            "client CPU/request",
            "client CPU",
            "emulator CPU",
        )
        print(markdown_table(headers, rows))
        print()
        ours = best.get("ours, aiohttp")
        if base and ours and base.rate:
            ratio = ours.rate / base.rate
            met = ratio >= GOAL
            failed |= not met
            print(
                f"Goal ours (aiohttp) >= {GOAL}x raw aiohttp at {n}: {'met' if met else 'NOT met'} "
                f"({ratio:.2f}x); the emulator reached {base.rate:,.0f} req/s "
                f"({100 * base.rate / ceiling:.0f}% of its ceiling) with raw aiohttp.\n"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
