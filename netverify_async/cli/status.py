"""``netverify-async status REF``: the state of a scan (and, once finished, its outcome).

``netverify-async status --journal PATH_OR_URL [--name NAME]``: the state of a batch instead: how many items of
its journal (a SQLite file or a PostgreSQL journal) are in each state, and the references whose outcome is
unknown (``sent`` or ``unknown``), oldest first. References and counts only.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from ._common import add_connection_arguments, build_client, enum_value, print_json

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show the state of a scan, or of a batch's journal",
        description="Show whether a scan is PENDING, DONE or FAILED, and its verification outcome when done; or, "
        "with --journal, how many items of a batch are in each state and which ones have an unknown outcome. "
        "Personal data is never printed.",
    )
    parser.add_argument("reference", metavar="REF", nargs="?", help="Jumio's scan reference")
    parser.add_argument(
        "--journal",
        metavar="PATH_OR_URL",
        help="show a batch's journal instead: a SQLite file or postgresql://... (no API call is made)",
    )
    parser.add_argument("--name", default=None, help="the batch's name in a PostgreSQL journal (default 'default')")
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


async def _journal_status(args: argparse.Namespace) -> int:
    from ._distributed import journal_report, print_report
    from .worker import DEFAULT_NAME, is_postgres_url, open_postgres_journal, redacted_url

    journal: Any
    if is_postgres_url(args.journal):
        name = args.name or DEFAULT_NAME
        journal = open_postgres_journal(args.journal, name)
        title = f"journal {redacted_url(args.journal)} (name {name!r})"
    else:
        from .._journal import SqliteJournal

        journal = SqliteJournal(args.journal)
        title = f"journal {args.journal}"
    async with journal:
        report = await journal_report(journal)
    if args.json:
        print_json({"journal": title.removeprefix("journal "), **report})
    else:
        print_report(report, title)
    return 0


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    if args.journal is None:
        if args.reference is None:
            print("error: give a scan reference (REF) or --journal PATH_OR_URL", file=sys.stderr)
            return 2
        return anyio.run(_status, args)
    if args.reference is not None:
        print("error: give either a scan reference (REF) or --journal, not both", file=sys.stderr)
        return 2
    if args.name is not None and not _is_url(args.journal):
        print("error: --name applies to a PostgreSQL journal only", file=sys.stderr)
        return 2
    if not _is_url(args.journal) and not os.path.isfile(args.journal):
        print(f"error: --journal: no such journal file: {args.journal!r}", file=sys.stderr)
        return 1
    status: int = anyio.run(_journal_status, args)
    return status


def _is_url(text: str) -> bool:
    from .worker import is_postgres_url

    return is_postgres_url(text)
