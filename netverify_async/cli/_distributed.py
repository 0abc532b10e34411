"""``netverify-async batch MANIFEST --journal postgresql://...``: load a manifest into a shared journal, then
work on it like ``netverify-async worker --drain`` (unless ``--load-only``).

Loading is idempotent: each readable row becomes one item (its reference and a payload: the row's values as the
manifest reader parsed them, and the manifest's folder), and a reference already in the journal is left as it
is, so loading the same manifest twice adds nothing (``loaded 0 new, N already present``). Rows that cannot be
read, lack a required column, or repeat a reference are reported as ``invalid`` and not loaded.

The payload holds image *paths* (workers on other hosts need the same files: shared storage) and every other
value of the row, personal fields included (names, document number, date of birth): keep them out of the
manifest unless the journal's database may hold them (see ``docs/deployment.md``).

Exit status: 0 when every item of the journal has a receipt (after working; with ``--load-only``, when every row
was loaded), 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import attrs

from ._common import print_json
from .batch import invalid_line
from .worker import (
    DEFAULT_NAME,
    open_patiently,
    open_postgres_journal,
    redacted_url,
    stats_line,
    stats_text,
    work,
)

if TYPE_CHECKING:
    from ._manifest import InvalidRow, ManifestReader

__all__ = ["LoadResult", "load_manifest", "run_distributed_batch"]

#: Rows read and loaded per journal call.
LOAD_CHUNK = 500
#: Unresolved references listed in the text summary (all of them with --json).
MAX_LISTED = 20
#: Options of the SQLite batch that a PostgreSQL journal does not take (yet).
_SQLITE_ONLY = (
    ("resend_unknown", "--resend-unknown"),
    ("resend_unresolved_after", "--resend-unresolved-after"),
    ("wait", "--wait"),
    ("results", "--results"),
)


@attrs.define
class LoadResult:
    """What loading a manifest did."""

    new: int = 0
    present: int = 0
    invalid: list[InvalidRow] = attrs.Factory(list)


def _read_chunk(rows: Any, reader: ManifestReader, seen: set[str], result: LoadResult) -> list[tuple[str, Any]]:
    """Up to LOAD_CHUNK loadable rows as (reference, payload); invalid ones go to ``result`` (blocking)."""
    from .._errors import RequestValidationError, ValidationIssue
    from .._worker import manifest_row_payload
    from ._manifest import InvalidRow

    chunk: list[tuple[str, Any]] = []
    for entry in rows:
        if isinstance(entry, InvalidRow):
            result.invalid.append(entry)
        else:
            ref = entry.reference
            try:
                payload = manifest_row_payload(entry.values, base_dir=reader.base_dir, row=entry.row)
            except RequestValidationError as exc:
                result.invalid.append(InvalidRow(entry.row, ref, tuple(exc.errors)))
                continue
            assert ref is not None  # manifest_row_payload requires it
            if ref in seen:
                issue = ValidationIssue(
                    "reference", "duplicate_reference", "must be unique; an earlier row has the same value"
                )
                result.invalid.append(InvalidRow(entry.row, ref, (issue,)))
                continue
            seen.add(ref)
            chunk.append((ref, payload))
        if len(chunk) >= LOAD_CHUNK:
            break
    return chunk


async def load_manifest(journal: Any, reader: ManifestReader) -> LoadResult:
    """Load every readable row of ``reader`` into ``journal`` (idempotent)."""
    result = LoadResult()
    seen: set[str] = set()
    rows = iter(reader)
    while True:
        chunk = await anyio.to_thread.run_sync(_read_chunk, rows, reader, seen, result)
        if not chunk:
            return result
        new = int(await journal.load(chunk))
        result.new += new
        result.present += len(chunk) - new


async def journal_report(journal: Any) -> dict[str, Any]:
    """Counts by state and the unresolved references (``sent`` / ``unknown``) of a journal."""
    counts = await journal.counts()
    unresolved = await journal.unresolved()
    by_state = {getattr(state, "value", str(state)): int(n) for state, n in counts.items()}
    return {
        "counts": by_state,
        "total": sum(by_state.values()),
        "unresolved": [e.merchant_id_scan_reference for e in unresolved],
    }


def print_report(report: dict[str, Any], title: str) -> None:
    """The text form of :func:`journal_report`."""
    print(title)
    width = max(len(state) for state in report["counts"]) if report["counts"] else 7
    for state, n in report["counts"].items():
        print(f"  {state:<{width}}  {n:>8}")
    print(f"  {'total':<{width}}  {report['total']:>8}")
    unresolved = report["unresolved"]
    if unresolved:
        print(f"unresolved (sent or unknown, oldest first): {len(unresolved)}")
        for ref in unresolved[:MAX_LISTED]:
            print(f"  {ref}")
        if len(unresolved) > MAX_LISTED:
            print(f"  ... and {len(unresolved) - MAX_LISTED} more (use --json for all of them)")
    else:
        print("unresolved: none")


async def _run(args: argparse.Namespace, reader: ManifestReader) -> int:
    name = args.name or DEFAULT_NAME
    journal = open_postgres_journal(args.journal, name, args.lease_seconds)
    await open_patiently(journal)
    async with journal:
        if not args.resume:
            earlier = sum((await journal.counts()).values())
            if earlier:
                print(
                    f"error: the journal already records {earlier} item(s) under the name {name!r}; run "
                    "without --no-resume to go on with them, or pass another --name",
                    file=sys.stderr,
                )
                return 2
        loaded = await load_manifest(journal, reader)
        for invalid in loaded.invalid:
            if args.json:
                print_json(invalid_line(invalid))
            else:
                print(f"invalid {invalid.message}", flush=True)
        if args.json:
            print_json({"type": "load", "new": loaded.new, "present": loaded.present, "invalid": len(loaded.invalid)})
        else:
            print(f"loaded {loaded.new} new, {loaded.present} already present", flush=True)
        if getattr(args, "requeue_failed", False):
            requeued = await journal.requeue_failed()
            if args.json:
                print_json({"type": "requeue", "failed": requeued})
            else:
                print(f"requeued {requeued} failed item(s)", flush=True)
        if args.load_only:
            return 1 if loaded.invalid else 0
        stats = await work(args, journal, concurrency=args.concurrency, drain=True, json_lines=args.json)
        report = await journal_report(journal)
    complete = report["total"] > 0 and report["counts"].get("receipt", 0) == report["total"]
    status = 0 if complete and not loaded.invalid else 1
    if args.json:
        print_json(stats_line(stats) | {"journal": report, "invalidRows": len(loaded.invalid), "exitStatus": status})
    else:
        print(stats_text(stats), file=sys.stderr, flush=True)
        print_report(report, f"journal {redacted_url(args.journal)} (name {name!r})")
    return status


def run_distributed_batch(args: argparse.Namespace) -> int:
    """``batch`` with a PostgreSQL journal; returns the exit status."""
    from ._manifest import ManifestError, ManifestReader

    for attribute, flag in _SQLITE_ONLY:
        if getattr(args, attribute, None):
            print(f"error: {flag} is not available with a PostgreSQL journal", file=sys.stderr)
            return 2
    if getattr(args, "redis_url", None) and not getattr(args, "rate_limit", None):
        print("error: --redis-url shares a limit: give it with --rate-limit SPEC (e.g. '5/5s')", file=sys.stderr)
        return 2
    try:
        reader = ManifestReader(args.manifest).open()
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        status: int = anyio.run(_run, args, reader)
        return status
    finally:
        reader.close()
