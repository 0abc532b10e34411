"""A batch worker run as a separate process by the crash tests (and usable by hand).

    python tests/_batch_worker.py --base-url http://127.0.0.1:PORT --journal run.journal --count 10

Submits ``--count`` requests named ``<prefix>-0000``... with a small generated PNG, through a journal, and prints
one JSON line per outcome (``{"ref": ..., "status": ...}``) as it happens, then a ``{"summary": ...}`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

import anyio

from netverify_async import NetverifyRequest

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _batch_support import client_for, make_request


def requests(prefix: str, count: int) -> Iterator[NetverifyRequest]:
    for i in range(count):
        yield make_request(f"{prefix}-{i:04d}")


def emit(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> int:
    async with client_for(args) as client:  # args has the emulator's base_url, api_token and api_secret
        async with client.submit_many(
            requests(args.prefix, args.count),
            concurrency=args.concurrency,
            journal=args.journal,
            resend_unknown=args.resend_unknown,
        ) as batch:
            async for outcome in batch:
                emit({"ref": outcome.merchant_id_scan_reference, "status": outcome.status.value})
        summary = batch.summary
        emit(
            {
                "summary": {
                    "status": summary.status.value,
                    "counts": {k.value: v for k, v in summary.counts.items()},
                    "unknown": list(summary.unknown),
                }
            }
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="crash")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--resend-unknown", action="store_true")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--api-token", default="emulator-api-token")
    parser.add_argument("--api-secret", default="emulator-api-secret")
    arguments = parser.parse_args()
    sys.exit(anyio.run(main, arguments, backend=arguments.backend))
