"""``netverify-async batch MANIFEST``: submit every document set of a manifest, resumably.

The manifest (CSV with a header row, or JSON Lines; see :mod:`netverify_async.cli._manifest` for the columns)
is read lazily, and every row ends in exactly one outcome. A row that cannot become a request is reported as
``invalid``, naming the row and the field, and is never sent; a file that cannot be read at all stops the
command before anything is sent (one error line, exit status 1).

A SQLite journal (default ``MANIFEST.journal.sqlite3``) records every submission before it leaves, so running
the same command again resumes: references that already have a receipt are skipped, failed ones are sent
again, and those whose earlier outcome is unknown are skipped unless ``--resend-unknown`` is given.
``--no-resume`` refuses to run on a journal that already records items, so that a fresh run cannot be
confused with a resumed one.

``--resend-unresolved-after DURATION`` (``90s``, ``30m``, ``2h``, ``1d``) is the explicit horizon for unknown
outcomes: before the batch starts, each ``sent``/``unknown`` item last sent at least DURATION ago is declared
"no scan" and sent again in this run, but only when the journal recorded a callback *after* that item was
sent (proof that the callback receiver feeding this journal works, so the item's own callback would have
come). If there are such items and none qualifies, nothing is sent and the exit status is 2. See
``docs/batch.md`` for the reasoning and its limits.

``--wait`` then waits for the verification result of every scan in the journal (results from callbacks fed to
the journal first, for up to ``--callback-grace DURATION`` when given, the rest polled and stored in the
journal, so a re-run polls nothing it knows), writes
``--results PATH`` (``.csv`` or ``.jsonl``; default ``MANIFEST.results.csv``) and prints a table of the
statuses; see :mod:`netverify_async.cli._waitresults`. A scan left without a result makes the exit status 1.

Exit status: 0 when every row got a receipt (now or in an earlier run), 1 when any row failed, was refused,
was invalid or has an unknown outcome, 2 for usage errors (and for a horizon that cannot be applied). ``--json`` prints one JSON object per row and line
(reference, status, Jumio's scan reference, error type and message: never personal data), then a summary
object.

Why one module of about 700 lines: the command's options, its pre-run steps (journal, horizon), the live
display and the summary in text and JSON belong to one command; the manifest reader and the results file are in
their own modules.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import rich  # noqa: F401  # fail at import when the cli extra is missing, so the CLI can say so

from .._errors import NetverifyError
from .._outcomes import OutcomeStatus
from ._common import (
    add_connection_arguments,
    build_client,
    cli_text,
    describe_error,
    positive_int,
    print_json,
)
from ._interrupt import OUTPUT_CLOSED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from rich.console import Console

    from .._batch import BatchOutcome
    from .._journal import SqliteJournal
    from .._models import NetverifyRequest
    from ._interrupt import Interruption
    from ._manifest import InvalidRow, ManifestReader

__all__ = ["add_parser", "run"]

DEFAULT_CONCURRENCY = 8
JOURNAL_SUFFIX = ".journal.sqlite3"
#: Problem rows listed in the final table (all of them are in the --json output).
MAX_LISTED_PROBLEMS = 20
_OK_STATUSES = frozenset({"receipt", "skipped_already_done"})
_STATUS_LABELS = {
    "receipt": "receipt (sent now)",
    "skipped_already_done": "already done (journal)",
    "failed": "failed (no scan created)",
    "unknown": "unknown outcome",
    "skipped_unknown": "unknown in an earlier run (not resent)",
    "preflight_rejected": "refused by preflight",
    "invalid": "invalid row",
}


_DURATION = re.compile(r"([0-9]+)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> _dt.timedelta:
    """``90s``, ``30m``, ``2h``, ``1d`` as a timedelta (at least one second); ``ArgumentTypeError`` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            "expected a whole number and a unit: s, m, h or d (e.g. 90s, 30m, 2h, 1d)"
        )
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 1:
        raise argparse.ArgumentTypeError("must be at least 1s")
    try:
        return _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise argparse.ArgumentTypeError("too long") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand."""
    from ._manifest import COLUMNS, REQUIRED_COLUMNS

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "batch",
        help="submit every document set of a CSV / JSON Lines manifest (resumable)",
        description="Submit one verification per manifest row, under a rate limit, with a live progress bar. "
        "A journal makes re-runs resume without sending anything twice. Manifest columns: "
        f"{', '.join(COLUMNS)} (required: {', '.join(REQUIRED_COLUMNS)}); image paths are relative to the "
        "manifest's folder. Exit status 0 when every row has a receipt, 1 otherwise, 2 for usage errors.",
    )
    parser.add_argument(
        "manifest", metavar="MANIFEST", help="a .csv (with a header row), .jsonl or .ndjson file"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"uploads in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--journal",
        metavar="PATH_OR_URL",
        help=f"the SQLite journal that makes re-runs resume (default: MANIFEST{JOURNAL_SUFFIX}), or a "
        "PostgreSQL journal (postgresql://...) shared by workers: the manifest is loaded into it (loading twice "
        "adds nothing), then this command works on it like 'netverify-async worker --drain'",
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="with a PostgreSQL journal: load the manifest and exit (workers send the items)",
    )
    parser.add_argument(
        "--requeue-failed",
        action="store_true",
        help="with a PostgreSQL journal: put the items recorded 'failed' (certainly no scan) back in the queue "
        "before working, as a re-run with a SQLite journal sends them again (never 'sent' or 'unknown' ones)",
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="resume from the journal (default); --no-resume refuses to run if the journal already records "
        "items",
    )
    resend = parser.add_mutually_exclusive_group()
    resend.add_argument(
        "--resend-unknown",
        action="store_true",
        help="also resend rows whose earlier submission has an unknown outcome (may create duplicate scans)",
    )
    resend.add_argument(
        "--resend-unresolved-after",
        type=parse_duration,
        metavar="DURATION",
        help="declare 'no scan' and resend the unknown outcomes last sent at least DURATION ago (90s, 30m, 2h, "
        "1d), but only those sent before a callback that the journal recorded (proof that callbacks reach "
        "it); exit 2 without sending if there are such items and none qualifies",
    )
    parser.add_argument(
        "--fix", action="store_true", help="normalise images Jumio would refuse when possible"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per row, then a summary")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="after submitting, wait for the verification result of every scan in the journal (results from "
        "callbacks fed to the journal first, the rest polled on Jumio's schedule), write a results file and "
        "print a table of statuses; a re-run does not poll again what the journal already knows",
    )
    parser.add_argument(
        "--results",
        metavar="PATH",
        help="the results file of --wait: .csv or .jsonl (default: MANIFEST.results.csv)",
    )
    parser.add_argument(
        "--callback-grace",
        type=parse_duration,
        metavar="DURATION",
        help="with --wait and a callback receiver feeding the journal: wait up to DURATION (90s, 10m, 1h) for "
        "callbacks first, and poll only the scans still without a result after it (default: poll at once)",
    )
    add_connection_arguments(parser)
    from .worker import add_worker_arguments

    add_worker_arguments(parser.add_argument_group("with a PostgreSQL journal"))
    parser.set_defaults(func=run)
    return parser


@attrs.define
class _State:
    """What the run has seen; rows refused before submission are kept here, not in the batch."""

    #: batch input position -> manifest row number
    rows: list[int] = attrs.Factory(list)
    #: invalid rows found by the reader, not yet reported
    pending_invalid: list[InvalidRow] = attrs.Factory(list)
    #: invalid rows found by the reader (never part of the batch)
    invalid_rows: int = 0
    #: (row, reference, status, error type, message) of the rows that did not get a receipt
    problems: list[tuple[int | None, str | None, str, str | None, str]] = attrs.Factory(list)


async def _requests(reader: ManifestReader, state: _State) -> AsyncIterator[NetverifyRequest]:
    """The manifest's valid rows as requests; invalid ones go to ``state``. Files are read in worker threads."""
    import anyio.to_thread

    from ._manifest import InvalidRow, build_request

    rows = iter(reader)
    while True:
        entry = await anyio.to_thread.run_sync(next, rows, None)
        if entry is None:
            return
        if isinstance(entry, InvalidRow):
            state.invalid_rows += 1
            state.pending_invalid.append(entry)
            continue
        built = await anyio.to_thread.run_sync(build_request, entry, reader.base_dir)
        if isinstance(built, InvalidRow):
            state.invalid_rows += 1
            state.pending_invalid.append(built)
            continue
        state.rows.append(entry.row)
        yield built


def _error_text(error: BaseException | None, status: str) -> str:
    """What went wrong, in command-line terms; a validation error as its issues by manifest column."""
    from .._errors import RequestValidationError
    from ._manifest import column_of

    if error is None:
        return status
    if isinstance(error, RequestValidationError):
        return "; ".join(f"{column_of(i.path)}: {cli_text(i.message)} [{i.code}]" for i in error.errors)
    return cli_text(str(error))


def _problem_line(status: str, row: int | None, reference: str | None, text: str) -> str:
    """One line per row without a receipt, the same shape for every status: ``STATUS row N REF: what``."""
    where = f"row {row}" if row is not None else "row ?"
    return f"{status} {where}{' ' + reference if reference else ''}: {text}"


def _outcome_line(outcome: BatchOutcome, row: int | None) -> dict[str, Any]:
    error = outcome.error
    line: dict[str, Any] = {
        "type": "item",
        "row": row,
        "reference": outcome.merchant_id_scan_reference,
        "status": outcome.status.value,
        "scanReference": outcome.receipt.scan_reference if outcome.receipt is not None else None,
        "errorType": type(error).__name__ if error is not None else None,
        "error": _json_error_text(error, row),
    }
    issues = _issues_of(error)
    if issues:
        line["issues"] = issues
    return line


def _json_error_text(error: BaseException | None, row: int | None) -> str | None:
    """The ``error`` of a JSON item line. A validation error found by the batch (a repeated reference) reads
    like one found in the manifest: ``row N: column: message [code]``, not the library's wire names."""
    from .._errors import RequestValidationError

    if error is None:
        return None
    if isinstance(error, RequestValidationError):
        text = _error_text(error, "invalid")
        return f"row {row}: {text}" if row is not None else text
    return cli_text(str(error))


def _issues_of(error: BaseException | None) -> list[dict[str, str]]:
    """The broken rules of a validation or preflight error, by manifest column."""
    from .._errors import PreflightError, RequestValidationError
    from ._manifest import column_of

    if isinstance(error, RequestValidationError):
        return [
            {"field": column_of(i.path), "code": i.code, "message": cli_text(i.message)} for i in error.errors
        ]
    if isinstance(error, PreflightError):
        report = getattr(error, "report", None)
        role = str(getattr(error, "role", None) or getattr(report, "role", "") or "front")
        return [
            {"field": role, "code": str(i.code), "message": cli_text(str(i.message))}
            for i in getattr(report, "errors", ()) or ()
        ]
    return []


def invalid_line(invalid: InvalidRow) -> dict[str, Any]:
    """The JSON line of a manifest row that cannot become a request (also ``batch --journal postgresql://``)."""
    return {
        "type": "item",
        "row": invalid.row,
        "reference": invalid.reference,
        "status": "invalid",
        "scanReference": None,
        "errorType": "RequestValidationError",
        "error": invalid.message,
        "issues": [{"field": i.path, "code": i.code, "message": i.message} for i in invalid.issues],
    }


def _invalid_text(invalid: InvalidRow) -> str:
    return "; ".join(
        f"{issue.message} [{issue.code}]" if issue.path == "row" else str(issue) for issue in invalid.issues
    )


def _results_path(args: argparse.Namespace) -> Path:
    from ._waitresults import RESULTS_SUFFIX

    return Path(args.results) if args.results else Path(args.manifest + RESULTS_SUFFIX)


def _journal_path(args: argparse.Namespace) -> Path:
    return Path(args.journal) if args.journal else Path(args.manifest + JOURNAL_SUFFIX)


async def _recorded_items(journal: SqliteJournal) -> int:
    return sum((await journal.counts()).values())


@attrs.frozen
class _Horizon:
    """What ``--resend-unresolved-after`` found before the batch started."""

    #: unknown outcomes past the horizon
    candidates: int
    #: those declared "no scan" (back to pending, so this run sends them), in journal order
    declared: list[str]
    #: those past the horizon but sent after the journal's last callback (still unknown, not resent)
    unproven: list[str]
    last_callback_at: _dt.datetime | None


async def _apply_horizon(journal: SqliteJournal, horizon: _dt.timedelta) -> _Horizon:
    """Declare "no scan" the unknown outcomes past ``horizon`` that a later callback proves would have had
    theirs; the others are left as they are."""
    from .._errors import JournalError

    candidates = await journal.unresolved(older_than=horizon)
    last_callback = await journal.last_callback_at()
    declared: list[str] = []
    unproven: list[str] = []
    for entry in candidates:
        sent_at = entry.last_sent_at or entry.updated_at
        ref = entry.merchant_id_scan_reference
        if last_callback is None or sent_at is None or not last_callback > sent_at:
            unproven.append(ref)
            continue
        try:
            await journal.mark_reconciled(ref, None)
        except JournalError:  # settled meanwhile (a callback reached the receiver): not sendable, rightly
            continue
        declared.append(ref)
    return _Horizon(len(candidates), declared, unproven, last_callback)


def _horizon_refusal(found: _Horizon, horizon_text: str, journal_path: Path) -> str:
    since = (
        f"the last one was recorded at {found.last_callback_at.isoformat(timespec='seconds')}"
        if found.last_callback_at is not None
        else "it never recorded one"
    )
    return (
        f"error: {found.candidates} item(s) have had an unknown outcome for at least {horizon_text}, but no "
        f"callback reached the journal since they were sent ({since}), so their own callbacks may just be "
        f"lost, not missing: nothing was sent. Is callback_router(journal=...) running on "
        f"{str(journal_path)!r}? Check them in the Customer Portal, or resend them with --resend-unknown"
    )


async def _run_batch(
    args: argparse.Namespace, reader: ManifestReader, console: Console, interruption: Interruption
) -> int:
    import anyio.to_thread

    from .._journal import SqliteJournal
    from ._progress import BatchProgressHook, make_console, make_progress

    journal_path = _journal_path(args)
    started = time.perf_counter()
    # the client first: a bad setting is reported before the journal file is created
    client = build_client(args, preflight_fix=args.fix, max_concurrency=args.concurrency)
    async with client, SqliteJournal(journal_path) as journal:
        earlier = await _recorded_items(journal)
        if earlier and not args.resume:
            print(
                f"error: the journal {str(journal_path)!r} already records {earlier} item(s) from an earlier "
                "run; run without --no-resume to resume it, or pass another --journal",
                file=sys.stderr,
            )
            return 2
        found: _Horizon | None = None
        if args.resend_unresolved_after is not None:
            found = await _apply_horizon(journal, args.resend_unresolved_after)
            if found.candidates and not found.declared and found.unproven:
                refusal = _horizon_refusal(found, args.resend_unresolved_after_text, journal_path)
                print(refusal, file=sys.stderr)
                return 2
            _report_horizon(console, found, args.resend_unresolved_after_text)
        total = await anyio.to_thread.run_sync(reader.count_rows)
        state = _State()
        fatal: NetverifyError | None = None
        progress = make_progress(console)

        def emit(write: Callable[..., object], *what: Any) -> None:
            """Write one piece of output; a closed stdout (``| head``) stops the batch instead of failing."""
            if interruption.output_closed:
                return
            try:
                write(*what)
            except BrokenPipeError:
                interruption.lost_output()

        with progress:
            task = progress.add_task("submitting", total=total, rate_cap=_sustained_rate(client))
            hook = BatchProgressHook(progress, task, extra=lambda: state.invalid_rows)

            def report_invalid() -> None:
                while state.pending_invalid:
                    invalid = state.pending_invalid.pop(0)
                    text = _invalid_text(invalid)  # the table has a row column: no "row N:" here
                    state.problems.append((invalid.row, invalid.reference, "invalid", "RequestValidationError", text))
                    if args.json:
                        emit(print_json, invalid_line(invalid))
                    else:
                        line = _problem_line("invalid", invalid.row, invalid.reference, _invalid_text(invalid))
                        emit(_print_line, progress.console, line, "red")
                hook.refresh()

            batch = client.submit_many(
                _requests(reader, state),
                concurrency=args.concurrency,
                journal=journal,
                resend_unknown=args.resend_unknown,
                on_progress=hook,
            )
            try:
                async with batch:
                    with interruption.stoppable():  # Ctrl-C or a closed stdout ends the loop; the batch stops
                        async for outcome in batch:
                            report_invalid()
                            status = outcome.status.value
                            row = state.rows[outcome.index] if outcome.index < len(state.rows) else None
                            if args.json:
                                emit(print_json, _outcome_line(outcome, row))
                            if status not in _OK_STATUSES:
                                error = outcome.error
                                text = _error_text(error, status)
                                reference = outcome.merchant_id_scan_reference
                                state.problems.append(
                                    (row, reference, status, type(error).__name__ if error else None, text)
                                )
                                if not args.json:
                                    line = _problem_line(status, row, reference, text)
                                    emit(_print_line, progress.console, line, "yellow")
            except NetverifyError as exc:  # the manifest broke mid-way, or the journal failed
                fatal = exc
            if interruption.reason is None:
                report_invalid()  # the rest of the invalid rows read before the end
        summary = batch.summary
        stats = client.stats
        journal_counts = await journal.counts()
        unknown_in_journal = sum(n for state_, n in journal_counts.items() if state_.outcome_unknown)
        waited: dict[str, Any] | None = None
        if args.wait and fatal is None and interruption.reason is None:
            from ._waitresults import wait_and_write

            waited = await wait_and_write(
                client,
                journal,
                _results_path(args),
                interruption,
                concurrency=args.concurrency,
                console=console,
                callback_grace=getattr(args, "callback_grace", None),
            )
    elapsed = time.perf_counter() - started
    counts = {status: 0 for status in _STATUS_LABELS}
    for outcome_status, n in summary.counts.items():
        counts[outcome_status.value] = counts.get(outcome_status.value, 0) + n
    counts["invalid"] += state.invalid_rows - len(state.pending_invalid)
    rows_done = sum(counts.values())
    # stopped early: uploads cut off (their outcome is unknown) and rows read but never sent (pending)
    stopped_in_flight = max(0, len(summary.unknown) - summary.counts.get(OutcomeStatus.UNKNOWN, 0))
    not_sent = len(summary.not_sent)
    not_reached = max(0, total - rows_done - stopped_in_flight - not_sent) if total is not None else None
    interrupted = interruption.reason
    ok = (
        fatal is None
        and interrupted is None
        and summary.complete
        and all(counts[s] == 0 for s in counts if s not in _OK_STATUSES)
        and (waited is None or waited["complete"])
    )
    exit_status = interruption.exit_status or (0 if ok else 1)
    sent = summary.submitted
    figures: dict[str, Any] = {
        "type": "summary",
        "manifest": args.manifest,
        "journal": str(journal_path),
        "rows": rows_done,
        "counts": counts,
        "sent": sent,
        "retries": stats.retries,
        "throttled": stats.throttled,
        "elapsedSeconds": round(elapsed, 3),
        "rate": round(sent / summary.elapsed, 3) if summary.elapsed > 0 else 0.0,
        "unknownInJournal": unknown_in_journal,
        "complete": summary.complete and fatal is None and interrupted is None,
        "interrupted": interrupted,
        "stoppedInFlight": stopped_in_flight,
        "notSent": not_sent,
        "notReached": not_reached,
        "error": f"{type(fatal).__name__}: {cli_text(str(fatal))}" if fatal is not None else None,
        "exitStatus": exit_status,
    }
    if waited is not None:
        figures["results"] = waited
    if found is not None:
        figures["declaredNoScan"] = found.declared
        figures["unresolvedNotDeclared"] = found.unproven
    if args.json and not interruption.output_closed:
        print_json(figures)
    else:
        summary_console = console if not interruption.output_closed else make_console(stderr=True)
        _print_summary(summary_console, figures, state)
        if waited is not None:
            from ._waitresults import print_results_summary

            print_results_summary(summary_console, waited)
    if interrupted is not None:
        print(_stopped_note(figures), file=sys.stderr, flush=True)
    if fatal is not None:
        for line in describe_error(fatal, emulator=args.emulator):
            print(line, file=sys.stderr)
    return exit_status


def _report_horizon(console: Console, found: _Horizon, horizon_text: str) -> None:
    """One line per item declared "no scan", and a note on those past the horizon but not proven."""
    from rich.markup import escape

    wrap = not console.is_terminal
    if not found.candidates:
        console.print(f"no unknown outcome is older than {horizon_text}; nothing declared", soft_wrap=wrap)
    for ref in found.declared:
        console.print(
            f"[yellow]declared no scan[/] {escape(ref)}: unknown for at least {horizon_text}, and no callback "
            "for it while the journal recorded a later one; sent again in this run",
            soft_wrap=wrap,
        )
    if found.unproven:
        console.print(
            f"{len(found.unproven)} item(s) past the horizon were sent after the journal's last callback: "
            "left unknown (not resent)",
            soft_wrap=wrap,
        )


def _sustained_rate(client: Any) -> float | None:
    """Submissions per second the client's limiter allows in the long run (None: unlimited or unknown)."""
    windows = getattr(getattr(client, "submit_limiter", None), "windows", None)
    try:
        return min(float(w.rate) for w in windows) if windows else None
    except (AttributeError, TypeError, ValueError):
        return None


def _print_line(console: Console, text: str, style: str) -> None:
    from rich.text import Text

    status, _, rest = text.partition(" ")
    console.print(Text.assemble((status, style), " ", rest), soft_wrap=not console.is_terminal)


def _stopped_note(figures: dict[str, Any]) -> str:
    """The line after an interrupted run: what happened to the rows, and how to go on."""
    why = "the output was closed" if figures["interrupted"] == OUTPUT_CLOSED else "interrupted"
    counts: dict[str, int] = figures["counts"]
    parts = [f"{counts['receipt']} receipt(s) this run"]
    if figures["stoppedInFlight"]:
        parts.append(f"{figures['stoppedInFlight']} upload(s) cut off (outcome unknown)")
    if figures["notSent"] or figures["notReached"]:
        parts.append(f"{figures['notSent'] + (figures['notReached'] or 0)} row(s) not sent")
    resume = "run the same command to resume (rows with a receipt are skipped)"
    if figures["unknownInJournal"]:
        resume += "; check the unknown ones before --resend-unknown"
    return f"{why}: {', '.join(parts)}; {resume}"


def _print_summary(console: Console, figures: dict[str, Any], state: _State) -> None:
    from rich.markup import escape
    from rich.text import Text

    from ._progress import make_table

    counts: dict[str, int] = figures["counts"]
    table = make_table(console, f"Batch {escape(figures['manifest'])}")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for status, label in _STATUS_LABELS.items():
        if counts.get(status):
            style = "green" if status in _OK_STATUSES else "red"
            table.add_row(f"[{style}]{label}[/]", str(counts[status]))
    if not figures["complete"]:  # stopped early: by Ctrl-C, a closed output, or an error that ends the batch
        for label, value in (
            ("cut off while uploading (unknown)", figures["stoppedInFlight"]),
            ("not sent (pending; sent by a re-run)", figures["notSent"]),
            ("not reached", figures["notReached"]),
        ):
            if value:
                table.add_row(f"[yellow]{label}[/]", str(value))
    table.add_section()
    total = figures["rows"] + figures["stoppedInFlight"] + figures["notSent"] + (figures["notReached"] or 0)
    table.add_row("total", str(total), style="bold")
    console.print(table)

    if state.problems:
        listed = make_table(console, "Rows without a receipt")
        listed.add_column("row", justify="right")
        listed.add_column("reference", overflow="fold")
        listed.add_column("outcome")
        listed.add_column("reason", overflow="fold")
        in_row_order = sorted(state.problems, key=lambda p: (p[0] is None, p[0] or 0))
        for row, reference, status, error_type, message in in_row_order[:MAX_LISTED_PROBLEMS]:
            reason = f"{error_type}: {message}" if error_type else message
            listed.add_row(str(row) if row is not None else "-", Text(reference or "-"), status, Text(reason))
        console.print(listed)
        hidden = len(state.problems) - MAX_LISTED_PROBLEMS
        if hidden > 0:
            console.print(f"... and {hidden} more (use --json for every row)")

    wrap = not console.is_terminal
    console.print(
        f"sent {figures['sent']} in {figures['elapsedSeconds']:.1f} s ({figures['rate']:.2f}/s), "
        f"{figures['retries']} retries, {figures['throttled']} answered 429; journal {escape(figures['journal'])}",
        soft_wrap=wrap,
    )
    if figures["unknownInJournal"]:
        console.print(
            f"[yellow]{figures['unknownInJournal']} reference(s) have an unknown outcome[/]: check them "
            "(Customer Portal, callbacks) before re-running with --resend-unknown, or let "
            "--resend-unresolved-after DURATION resend those that later callbacks vouch for",
            soft_wrap=wrap,
        )


def _horizon_text(horizon: _dt.timedelta) -> str:
    """A duration as the user would type it (the largest unit that divides it)."""
    seconds = int(horizon.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _DURATION_UNITS[unit] == 0:
            return f"{seconds // _DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


def run(args: argparse.Namespace) -> int:
    """Submit the manifest; return the exit status."""
    import anyio

    from ._interrupt import run_interruptible
    from ._manifest import ManifestError, ManifestReader
    from ._progress import make_console
    from .worker import is_postgres_url

    if getattr(args, "callback_grace", None) is not None and not getattr(args, "wait", False):
        print("error: --callback-grace needs --wait", file=sys.stderr)
        return 2
    if is_postgres_url(getattr(args, "journal", None)):
        from ._distributed import run_distributed_batch

        return run_distributed_batch(args)
    for flag in ("load_only", "requeue_failed", "image_root", "name", "lease_seconds", "redis_url", "redis_key"):
        if getattr(args, flag, None):
            option = "--" + flag.replace("_", "-")
            print(f"error: {option} needs a PostgreSQL journal (--journal postgresql://...)", file=sys.stderr)
            return 2
    results = getattr(args, "results", None)
    if results is not None:
        from ._waitresults import results_format

        if not getattr(args, "wait", False):
            print("error: --results needs --wait", file=sys.stderr)
            return 2
        if results_format(results) is None:
            print("error: --results: the file name must end in .csv or .jsonl", file=sys.stderr)
            return 2
    horizon = getattr(args, "resend_unresolved_after", None)
    args.resend_unresolved_after_text = _horizon_text(horizon) if horizon is not None else None
    try:
        reader = ManifestReader(args.manifest).open()
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        console = make_console(stderr=args.json)

        async def body(interruption: Interruption) -> int:
            return await _run_batch(args, reader, console, interruption)

        status, _ = anyio.run(
            lambda: run_interruptible(body, note="stopping the batch... (Ctrl-C again to quit at once)")
        )
        return status
    finally:
        reader.close()
