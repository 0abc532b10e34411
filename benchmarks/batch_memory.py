"""Peak memory of a large batch: ``client.submit_many`` (lazy input, bounded pipeline) against a naive
``asyncio.gather`` of ``client.perform_netverify`` over a list of requests.

Each variant runs in a fresh child process (its peak RSS is ``getrusage(RUSAGE_SELF).ru_maxrss``, so peaks never
mix) and submits ``--count`` requests of one noisy ~4 MB JPEG to an emulator served by another process (no rate
limit, images not stored, preflight on). Every item gets its own copy of the bytes, as if each were read from
its own file: the naive variant builds all the requests up front, the pipeline reads them from a generator.

The ``:gc`` pipeline run calls ``gc.collect()`` after each outcome. It shows how much of the peak is made of
upload bodies that are already finished but still reachable through reference cycles (so freed only by the
cyclic garbage collector instead of at once): when the two runs agree, no body outlives its upload.

    python benchmarks/batch_memory.py [--count 500] [--image-mb 4] [--concurrency 16] [--pipelines 256,64:gc]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

USER_AGENT = "Example Corp BatchBenchmark/1.0"
TOKEN, SECRET = "emulator-api-token", "emulator-api-secret"
MB = 1024 * 1024


def make_jpeg(target_bytes: int) -> bytes:
    """A JPEG of random noise (it compresses like fine photo detail) of about ``target_bytes``."""
    from PIL import Image as PILImage

    rng = random.Random(4)

    def encode(width: int, height: int) -> bytes:
        im = PILImage.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    width, height = 1000, 750
    sample = encode(width, height)
    scale = (target_bytes / len(sample)) ** 0.5
    return encode(int(width * scale), int(height * scale))


# -- child processes --------------------------------------------------------------------------------------


def serve_emulator() -> None:
    """Serve the emulator until stdin closes; print its URL first."""
    from netverify_async.emulator import EmulatorThread

    with EmulatorThread(processing_delay=0, store_images=False, max_body_bytes=64 * MB) as emu:
        print(emu.base_url, flush=True)
        sys.stdin.read()


def peak_rss_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (MB if sys.platform == "darwin" else 1024)


async def run_variant(
    variant: str, url: str, image_path: str, count: int, concurrency: int
) -> dict[str, Any]:
    from netverify_async._client import NetverifyClient
    from netverify_async._models import Image, NetverifyRequest

    with open(image_path, "rb") as fh:
        data = fh.read()

    def request(i: int) -> NetverifyRequest:
        own_copy = bytes(bytearray(data))  # as if every item were read from its own file
        return NetverifyRequest(
            merchant_id_scan_reference=f"{variant}-{i:05d}",
            frontside_image=Image.from_bytes(own_copy),
            country="USA",
            id_type="PASSPORT",
        )

    baseline = peak_rss_mb()
    started = time.perf_counter()
    receipts = 0
    async with NetverifyClient(
        api_token=TOKEN,
        api_secret=SECRET,
        user_agent=USER_AGENT,
        base_url=url,
        rate_limit=None,
        max_concurrency=concurrency,
        preflight=True,
    ) as client:
        if variant == "naive":
            requests = [request(i) for i in range(count)]
            results = await asyncio.gather(
                *(client.perform_netverify(r) for r in requests), return_exceptions=True
            )
            receipts = sum(1 for r in results if not isinstance(r, BaseException))
        else:
            _, budget_mb, *extra = variant.split(":")
            budget = int(budget_mb) * MB
            collect = "gc" in extra

            def lazy() -> Iterator[NetverifyRequest]:
                for i in range(count):
                    yield request(i)

            from netverify_async._batch import OutcomeStatus, submit_many

            async with submit_many(
                client, lazy(), concurrency=concurrency, max_bytes_in_flight=budget
            ) as batch:
                async for outcome in batch:
                    receipts += outcome.status is OutcomeStatus.RECEIPT
                    if collect:
                        gc.collect()
    return {
        "variant": variant,
        "receipts": receipts,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "start_rss_mb": baseline,
    }


# -- the parent ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--image-mb", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--pipelines",
        default="256,256:gc",
        help="pipeline runs: BUDGET_MIB[:gc] separated by commas (gc: collect garbage after each outcome)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="do not run the naive variant")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_emulator:
        serve_emulator()
        return
    if args.child:
        result = asyncio.run(run_variant(args.child, args.url, args.image, args.count, args.concurrency))
        print(json.dumps(result), flush=True)
        return

    image = make_jpeg(int(args.image_mb * 1_000_000))
    variants = [f"pipeline:{spec.strip()}" for spec in args.pipelines.split(",") if spec.strip()]
    variants += [] if args.skip_naive else ["naive"]
    with tempfile.TemporaryDirectory() as tmp:
        image_path = os.path.join(tmp, "noise.jpg")
        with open(image_path, "wb") as fh:
            fh.write(image)
        emulator = subprocess.Popen(
            [sys.executable, __file__, "--serve-emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert emulator.stdout is not None
            url = emulator.stdout.readline().strip()
            rows = []
            for variant in variants:
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        variant,
                        "--url",
                        url,
                        "--image",
                        image_path,
                        "--count",
                        str(args.count),
                        "--concurrency",
                        str(args.concurrency),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        finally:
            if emulator.stdin is not None:
                emulator.stdin.close()
            emulator.wait(timeout=30)

    print(
        f"\n{args.count} submissions of one {len(image) / 1e6:.1f} MB JPEG (own copy per item), "
        f"concurrency {args.concurrency}, preflight on, no rate limit, emulator in another process\n"
    )
    print("| variant | receipts | peak RSS (MB) | RSS before the batch (MB) | wall time (s) | items/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        name = row["variant"]
        if name.startswith("pipeline:"):
            _, budget_mb, *extra = name.split(":")
            name = f"`submit_many`, generator input, `max_bytes_in_flight={budget_mb} MiB`"
            if "gc" in extra:
                name += ", `gc.collect()` after each outcome"
        else:
            name = "naive: list of requests + `asyncio.gather(perform_netverify)`"
        print(
            f"| {name} | {row['receipts']} | {row['peak_rss_mb']:.0f} | {row['start_rss_mb']:.0f} "
            f"| {row['seconds']:.1f} | {row['receipts'] / row['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
