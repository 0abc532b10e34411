"""Throughput of the emulator, and the cost of a 10 MB image request compared to a bare ``json.loads``.

1. Starts ``python -m netverify_async.emulator --port 0`` as a subprocess (no latency, no faults), drives it
   from this process with many concurrent aiohttp requests, and prints requests per second for small valid
   performNetverify requests (and, as a baseline measured in the same run, for the cheapest possible request:
   a 404 on an unknown path, which does no validation at all).
2. In-process: times the emulator's submission handler on a body carrying a ~10 MB JPEG against
   ``json.loads`` of the same body, with a breakdown of where the time goes.

Run: ``python benchmarks/emulator_throughput.py [--seconds 5] [--concurrency 64]``.
Goals: >= 1,500 small performNetverify requests per second; 10 MB request <= 2x json.loads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

import aiohttp
import psutil
from PIL import Image as PILImage

HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": "Example Corp EmulatorBenchmark/1.0",
}
PERFORM = "/api/netverify/v2/performNetverify"


def small_jpeg() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (320, 200), (90, 140, 200)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def big_jpeg(target_bytes: int = 10_000_000) -> bytes:
    """A real JPEG of about ``target_bytes``: random noise at high quality barely compresses."""
    side = 2600
    while True:
        noise = PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buf = io.BytesIO()
        noise.save(buf, "JPEG", quality=95)
        if buf.tell() >= target_bytes or side >= 7900:
            return buf.getvalue()
        side = min(7900, int(side * (target_bytes / buf.tell()) ** 0.5) + 50)


def request_body(image: bytes, reference: str) -> bytes:
    body = {
        "merchantIdScanReference": reference,
        "frontsideImage": base64.b64encode(image).decode("ascii"),
        "frontsideImageMimeType": "image/jpeg",
        "country": "AUT",
        "idType": "PASSPORT",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def start_emulator(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "netverify_async.emulator", "--port", "0", "--processing-delay", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


async def drive(
    base_url: str, path: str, body: bytes | None, seconds: float, concurrency: int
) -> tuple[int, float, Counter[int]]:
    token = base64.b64encode(b"emulator-api-token:emulator-api-secret").decode()
    headers = {**HEADERS, "Authorization": f"Basic {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector) as session:
        # warm-up: open the connections
        async def one() -> None:
            if body is None:
                async with session.get(path) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
            else:
                async with session.post(path, data=body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
        statuses.clear()
        stop_at = time.perf_counter() + seconds
        count = 0

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop_at:
                await one()
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return count, elapsed, statuses


def big_request_costs(repeat: int) -> tuple[int, list[tuple[str, float]]]:
    """Median times of the submission handler and of its parts on a ~10 MB image request, json.loads first."""
    from netverify_async import _preflight, _wire
    from netverify_async.emulator import EmulatorApp, EmulatorConfig
    from netverify_async.emulator._submit import b64decode_strict

    app = EmulatorApp(EmulatorConfig(processing_delay=0, store_images=False))
    image = big_jpeg()
    body = request_body(image, "bench-big")
    parsed = json.loads(body)
    encoded = parsed["frontsideImage"]
    stand_in = {**parsed, "frontsideImage": "AA=="}
    uri = "http://127.0.0.1/api/netverify/v2/performNetverify"

    def handle() -> None:
        result = app.submissions.handle(
            body, client_ip="127.0.0.1", base_url="http://127.0.0.1", request_uri=uri
        )
        assert result.status == 200, result.body[:300]

    steps = [
        ("json.loads of the body (baseline)", lambda: json.loads(body)),
        ("  part: strict base64 decode of the image", lambda: b64decode_strict(encoded)),
        (
            "  part: preflight, header only",
            lambda: _preflight.check_image_sync(image, "image/jpeg", role="front", integrity="header"),
        ),
        ("  part: field validation (request_from_wire)", lambda: _wire.request_from_wire(stand_in)),
        ("emulator submission handler (all of it)", handle),
    ]
    for _, fn in steps:
        fn()  # warm-up (imports, caches)
    # Interleaved, so that a burst of load from elsewhere on the machine hits every step alike.
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for index, (_, fn) in enumerate(steps):
            started = time.perf_counter()
            fn()
            times[index].append(time.perf_counter() - started)
    return len(body), [(label, statistics.median(t)) for (label, _), t in zip(steps, times, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each load run")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent requests")
    parser.add_argument(
        "--repeat", type=int, default=9, help="timings of the 10 MB request (median is shown)"
    )
    parser.add_argument(
        "--no-h11", action="store_true", help="skip the comparison run with uvicorn's pure-Python stack"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    body = request_body(small_jpeg(), "bench-small")
    stacks = [("auto", "auto")] if args.no_h11 else [("auto", "auto"), ("h11", "asyncio")]
    rows = []
    for http, loop in stacks:
        proc, base_url = start_emulator(["--http", http, "--loop", loop])
        try:
            runs = [
                ("GET unknown path (404, no work: baseline)", "/nothing-here", None),
                (f"POST performNetverify ({len(body)} B body, 200)", PERFORM, body),
            ]
            server = psutil.Process(proc.pid)
            for label, path, payload in runs:
                cpu_before = server.cpu_times()
                count, elapsed, statuses = asyncio.run(
                    drive(base_url, path, payload, args.seconds, args.concurrency)
                )
                cpu_after = server.cpu_times()
                cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
                rows.append((stack_name(http, loop), label, count, elapsed, statuses, cpu))
        finally:
            proc.terminate()
            proc.wait(10)

    print(
        f"## Emulator throughput ({os.cpu_count()} cores, load from a separate process, "
        f"concurrency {args.concurrency}, {args.seconds:g} s per run)\n"
    )
    print(
        "| server stack | request | requests | req/s | emulator CPU per request | req/s per busy core | statuses |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for stack, label, count, elapsed, statuses, cpu in rows:
        status_text = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        per_request = cpu / count
        print(
            f"| {stack} | {label} | {count} | {count / elapsed:,.0f} | {per_request * 1e6:,.0f} µs "
            f"| {1 / per_request:,.0f} | {status_text} |"
        )
    print(
        "\n(The emulator is one process, so it can use one core; the load generator uses the other. On a shared "
        "machine req/s moves with other people's load; CPU per request moves much less.)"
    )
    submit_rate = rows[1][2] / rows[1][3]
    capacity = rows[1][2] / rows[1][5]
    verdict = "met" if submit_rate >= 1500 else "NOT met"
    print(
        f"\nGoal >= 1,500 performNetverify req/s (default stack): {verdict} on the wall clock "
        f"({submit_rate:,.0f} req/s; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after); "
        f"{capacity:,.0f} req/s per core by the emulator's CPU time.\n"
    )

    size, timings = big_request_costs(args.repeat)
    baseline = timings[0][1]
    print(
        f"## Cost of one large request (body {size / 1e6:.1f} MB, image {size * 3 / 4e6:.1f} MB, median of {args.repeat})\n"
    )
    print("| step | ms | x json.loads |")
    print("|---|---:|---:|")
    for label, seconds in timings:
        print(f"| {label} | {seconds * 1e3:.1f} | {seconds / baseline:.2f} |")
    total = timings[-1][1]
    verdict = "met" if total <= 2 * baseline else "NOT met"
    print(f"\nGoal: handler <= 2x json.loads: {verdict} ({total / baseline:.2f}x)")
    return 0


def stack_name(http: str, loop: str) -> str:
    if http == "auto":
        try:
            import httptools  # noqa: F401
            import uvloop  # noqa: F401
        except ImportError:
            return "uvicorn default (h11 and asyncio: httptools/uvloop not installed)"
        return "uvicorn + httptools + uvloop"
    return f"uvicorn + {http} + {loop}"


if __name__ == "__main__":
    sys.exit(main())
