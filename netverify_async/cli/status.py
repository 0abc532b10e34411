"""``netverify-async status REF``: the state of a scan (and, once finished, its outcome)."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from ._common import add_connection_arguments, build_client, enum_value, print_json

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show the state of a scan",
        description="Show whether a scan is PENDING, DONE or FAILED, and its verification outcome when done. "
        "Personal data from the scan is never printed.",
    )
    parser.add_argument("reference", metavar="REF", help="Jumio's scan reference")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_connection_arguments(parser, submission_rate_limit=False)  # status submits nothing
    parser.set_defaults(func=run)
    return parser


async def _status(args: argparse.Namespace) -> int:
    async with build_client(args) as client:
        status = await client.scan_status(args.reference)
        result: dict[str, Any] = {"scanReference": status.scan_reference, "status": enum_value(status.status)}
        if status.is_final:
            details = await client.scan_details(args.reference)
            result["verificationStatus"] = enum_value(details.verification_status)
            result["rejectReasonCodes"] = list(details.reject_reason_codes)
    if args.json:
        print_json(result)
    else:
        line = f"{result['scanReference']}: {result['status']}"
        if "verificationStatus" in result:
            line += f", {result['verificationStatus']}"
            if result["rejectReasonCodes"]:
                line += f" (reject reasons: {', '.join(result['rejectReasonCodes'])})"
        print(line)
    return 0


def run(args: argparse.Namespace) -> int:
    return anyio.run(_status, args)
