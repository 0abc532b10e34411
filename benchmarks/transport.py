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

N workers each loop over requests; after a warm-up round (opening N connections) each worker makes ``--per-worker``
requests (about ``--seconds`` at the ceiling), or stops at a time limit. Variants are interleaved over
``--rounds`` rounds and the best round is shown (background load only ever slows a run down). The theoretical
ceiling is N / 0.2 s. CPU columns: share of one core used by this process and by the emulator process during
the measured part (100% = one core busy; 2 cores in all on the reference machine).

Run: ``/work/venv/bin/python benchmarks/transport.py [--concurrency 64 256] [--seconds 5] [--rounds 2]``.
Goal: ours (aiohttp) >= 0.9x raw aiohttp at each concurrency. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from _common import (
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


@attrs.frozen
class Run:
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


def make_request() -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference="bench-transport",
        frontside_image=Image.from_bytes(small_jpeg()),
        country="AUT",
        id_type="PASSPORT",
    )


async def drive(one: OneRequest, concurrency: int, per_worker: int, limit: float, meter: CpuMeter) -> tuple[int, int, float]:
    """Warm up with one request per worker, then let ``concurrency`` workers loop; returns (ok, errors, s)."""
    ok = errors = 0

    async def warm() -> None:
        await one()

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(warm)

    stop_at = time.perf_counter() + limit

    async def worker() -> None:
        nonlocal ok, errors
        for _ in range(per_worker):
            if time.perf_counter() >= stop_at:
                return
            if await one():
                ok += 1
            else:
                errors += 1

    meter.start()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    meter.stop()
    return ok, errors, meter.wall


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
            api_token="emulator-api-token",
            api_secret="emulator-api-secret",  # noqa: S106 - the emulator's public default
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


def measure(variant: str, emu: EmulatorProcess, n: int, args: argparse.Namespace) -> Run:
    request = make_request()
    body = encode_request_body(request)
    url = emu.base_url + PERFORM_NETVERIFY_PATH
    meter = CpuMeter(emu.pid)

    async def run(one: OneRequest) -> tuple[int, int, float]:
        return await drive(one, n, args.per_worker, args.seconds * 2.5, meter)

    backend = "asyncio"
    if variant == "raw aiohttp":
        main = with_raw_aiohttp(url, body, n, run)
    elif variant == "plain httpx":
        main = with_plain_httpx(url, body, n, run)
    elif variant == "ours, aiohttp":
        main = with_client("auto")(emu.base_url, request, n, run)
    elif variant == "ours, httpcore":
        main = with_client("httpcore")(emu.base_url, request, n, run)
    elif variant == "ours, trio":
        backend = "trio"
        main = with_client("auto")(emu.base_url, request, n, run)
    else:
        raise ValueError(variant)

    async def entry() -> tuple[int, int, float]:
        result: tuple[int, int, float] = await main
        return result

    ok, errors, seconds = anyio.run(entry, backend=backend)
    emu.reset()
    return Run(variant, n, ok, errors, seconds, meter.own_percent, meter.other_percent)


VARIANTS = ("raw aiohttp", "ours, aiohttp", "plain httpx", "ours, httpcore", "ours, trio")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a run at the ceiling")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is shown")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    args.per_worker = max(2, round(args.seconds / LATENCY))

    load_before = machine_load()
    best: dict[tuple[str, int], Run] = {}
    every: dict[tuple[str, int], list[Run]] = {}
    with emulator_process("--latency", str(LATENCY)) as emu:
        for n in args.concurrency:
            for _ in range(args.rounds):
                for variant in args.variants:
                    result = measure(variant, emu, n, args)
                    every.setdefault((variant, n), []).append(result)
                    if (variant, n) not in best or result.rate > best[(variant, n)].rate:
                        best[(variant, n)] = result
    load_after = machine_load()

    print(f"## Client throughput against the emulator ({LATENCY * 1000:.0f} ms latency, separate process)\n")
    print(f"Machine: {load_before} before, {load_after} after. Best of {args.rounds} interleaved rounds; "
          f"{args.per_worker} requests per worker after a warm-up.\n")
    failed = False
    for n in args.concurrency:
        ceiling = n / LATENCY
        base = best.get(("raw aiohttp", n))
        rows = []
        for variant in args.variants:
            r = best[(variant, n)]
            ratio = f"{r.rate / base.rate:.2f}x" if base and base.rate else "-"
            rounds = ", ".join(f"{x.rate:,.0f}" for x in every[(variant, n)])
            emu_cpu = "-" if r.emulator_cpu is None else f"{r.emulator_cpu:.0f}%"
            rows.append(
                (
                    variant,
                    f"{r.rate:,.0f}",
                    ratio,
                    f"{100 * r.rate / ceiling:.0f}%",
                    rounds,
                    r.errors,
                    f"{r.own_cpu:.0f}%",
                    emu_cpu,
                )
            )
        print(f"### Concurrency {n} (ceiling {n} / {LATENCY:g} s = {ceiling:,.0f} req/s)\n")
        headers = ("variant", "req/s", "vs raw aiohttp", "of ceiling", "each round", "errors",
                   "client CPU", "emulator CPU")
        print(markdown_table(headers, rows, "lrrrrrrr"))
        print()
        ours = best.get(("ours, aiohttp", n))
        if base and ours:
            ratio = ours.rate / base.rate
            met = ratio >= GOAL
            failed |= not met
            print(f"Goal ours (aiohttp) >= {GOAL}x raw aiohttp at {n}: {'met' if met else 'NOT met'} ({ratio:.2f}x)\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
