"""Throughput of the emulator, and the cost of a 10 MB image request compared to a bare ``json.loads``.

1. Starts ``python -m netverify_async.emulator --port 0`` as a subprocess (no latency, no faults), drives it
   from this process with many concurrent aiohttp requests, and prints requests per second for small valid
   performNetverify requests (and, as a baseline measured in the same run, for the cheapest possible request:
   a 404 on an unknown path, which does no validation at all).
2. In-process: times the emulator's submission handler on a body carrying a ~10 MB JPEG against
   ``json.loads`` of the same body, with a breakdown of where the time goes.

Run: ``/work/venv/bin/python benchmarks/emulator_throughput.py [--seconds 5] [--concurrency 64]``.
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


def time_call(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def big_request_costs(repeat: int) -> tuple[int, float, float]:
    from netverify_async.emulator import EmulatorApp, EmulatorConfig

    app = EmulatorApp(EmulatorConfig(processing_delay=0, store_images=False))
    body = request_body(big_jpeg(), "bench-big")
    uri = "http://127.0.0.1/api/netverify/v2/performNetverify"

    def handle() -> None:
        result = app.submissions.handle(
            body, client_ip="127.0.0.1", base_url="http://127.0.0.1", request_uri=uri
        )
        assert result.status == 200, result.body[:300]

    handle()  # warm-up (imports, caches)
    json.loads(body)
    baseline = time_call(lambda: json.loads(body), repeat)
    emulator = time_call(handle, repeat)
    return len(body), baseline, emulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load run")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent requests")
    parser.add_argument(
        "--repeat", type=int, default=7, help="timings of the 10 MB request (median is shown)"
    )
    parser.add_argument("--http", default="auto", help="uvicorn HTTP implementation for the emulator")
    args = parser.parse_args()

    body = request_body(small_jpeg(), "bench-small")
    proc, base_url = start_emulator(["--http", args.http])
    try:
        runs = [
            ("GET unknown path (404, no work: baseline)", "/nothing-here", None),
            (f"POST performNetverify ({len(body)} B body, 200)", PERFORM, body),
        ]
        rows = []
        for label, path, payload in runs:
            count, elapsed, statuses = asyncio.run(
                drive(base_url, path, payload, args.seconds, args.concurrency)
            )
            rows.append((label, count, elapsed, statuses))
    finally:
        proc.terminate()
        proc.wait(10)

    print(
        f"## Emulator throughput ({os.cpu_count()} cores, concurrency {args.concurrency}, "
        f"{args.seconds:g} s per run)\n"
    )
    print("| request | requests | req/s | statuses |")
    print("|---|---:|---:|---|")
    for label, count, elapsed, statuses in rows:
        status_text = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        print(f"| {label} | {count} | {count / elapsed:,.0f} | {status_text} |")
    submit_rate = rows[1][1] / rows[1][2]
    print(
        f"\nGoal >= 1,500 performNetverify req/s: {'met' if submit_rate >= 1500 else 'NOT met'} ({submit_rate:,.0f})\n"
    )

    size, baseline, emulator = big_request_costs(args.repeat)
    print(f"## Cost of one large request (body {size / 1e6:.1f} MB, median of {args.repeat})\n")
    print("| step | ms | ratio |")
    print("|---|---:|---:|")
    print(f"| json.loads of the body (baseline) | {baseline * 1e3:.1f} | 1.00 |")
    print(f"| emulator submission handler | {emulator * 1e3:.1f} | {emulator / baseline:.2f} |")
    print(f"\nGoal <= 2x json.loads: {'met' if emulator <= 2 * baseline else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
