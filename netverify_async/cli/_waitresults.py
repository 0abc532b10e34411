"""``netverify-async batch --wait``: wait for the verification result of every scan the journal knows, write a
results file (CSV or JSON Lines, chosen by the extension) and print a table of the statuses.

Results already in the journal (from callbacks fed to it, or polled by an earlier run) are taken first; with
``--callback-grace DURATION`` the command then waits up to that long for callbacks to bring the others (the
journal is read again every second; it goes on as soon as every scan has its result); the
rest are polled on Jumio's schedule through the client's retrieval limiter, and stored in the journal, so that
running the command again polls nothing it already knows. The file holds no personal data: references, scan
references, status, reject reason code and description, times (see
:data:`netverify_async._results_wait.RESULT_COLUMNS`). It is written to a temporary file next to it and
renamed, readable by its owner only.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from .._journal import SqliteJournal
    from .._results_wait import VerificationResult
    from ._interrupt import Interruption

__all__ = ["RESULTS_SUFFIX", "print_results_summary", "results_format", "wait_and_write"]

#: The default results file: ``MANIFEST.results.csv``.
RESULTS_SUFFIX = ".results.csv"
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Label of results without a status (still pending at the end of the schedule, or a failed retrieval).
NO_RESULT = "no result yet"


def results_format(path: str | os.PathLike[str]) -> str | None:
    """``"csv"`` or ``"jsonl"`` from the file's extension; None when it is neither."""
    return _FORMATS.get(Path(path).suffix.lower())


def _render(results: list[VerificationResult], fmt: str) -> str:
    from .._results_wait import RESULT_COLUMNS, csv_cells

    rows = [result.as_row() for result in sorted(results, key=lambda r: r.merchant_id_scan_reference)]
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_cells(row))  # a cell starting with = + - @ tab or CR gets a leading apostrophe
    return out.getvalue()


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


async def wait_and_write(
    client: Any,
    journal: SqliteJournal,
    path: Path,
    interruption: Interruption,
    *,
    concurrency: int,
    console: Console | None = None,
    callback_grace: _dt.timedelta | None = None,
) -> dict[str, Any]:
    """Wait for the results of every scan of ``journal``, write them to ``path``; return the figures. With a
    ``console`` (a terminal), a progress line shows the results known so far while waiting. With
    ``callback_grace``, callbacks fed to the journal are awaited that long before the rest is polled."""
    import anyio.to_thread

    from .._results_wait import wait_for_results
    from ._progress import ResultsProgress

    collected: list[VerificationResult] = []
    waiter = wait_for_results(client, journal, concurrency=concurrency, callback_grace=callback_grace)
    description = "waiting for results"
    if callback_grace is not None:
        description = f"waiting for callbacks (up to {_duration_text(callback_grace)}), then polling"
    # Ctrl-C: what was polled is in the journal, the file gets what is known
    with ResultsProgress(console, description) as shown, interruption.stoppable():
        async with waiter:
            async for result in waiter:
                collected.append(result)
                shown.update(len(collected), waiter.total)
    fmt = results_format(path) or "csv"
    await anyio.to_thread.run_sync(_write, path, _render(collected, fmt))
    statuses = Counter(result.verification_status or NO_RESULT for result in collected)
    return {
        "file": str(path),
        "results": len(collected),
        "statuses": dict(sorted(statuses.items())),
        "fromJournal": waiter.from_journal,
        "fromCallbacks": waiter.from_callbacks,
        "polled": waiter.polled,
        "noResult": statuses.get(NO_RESULT, 0),
        "interrupted": interruption.reason is not None,
        "complete": interruption.reason is None and NO_RESULT not in statuses,
    }


def _duration_text(duration: _dt.timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_results_summary(console: Console, figures: dict[str, Any]) -> None:
    """The table of verification statuses, and where the file is."""
    from rich.markup import escape

    from ._progress import make_table

    table = make_table(console, "Verification results")
    table.add_column("status")
    table.add_column("scans", justify="right")
    for status, n in figures["statuses"].items():
        style = "green" if status == "APPROVED_VERIFIED" else "yellow" if status == NO_RESULT else "red"
        table.add_row(f"[{style}]{escape(status)}[/]", str(n))
    table.add_section()
    table.add_row("total", str(figures["results"]), style="bold")
    console.print(table)
    arrived = figures.get("fromCallbacks", 0)
    waited = f" ({arrived} arrived by callback while waiting)" if arrived else ""
    console.print(
        f"{figures['fromJournal']} from the journal{waited}, {figures['polled']} polled now; "
        f"results file {escape(figures['file'])}",
        soft_wrap=not console.is_terminal,
    )
    if figures["interrupted"]:
        console.print(
            "[yellow]waiting was stopped[/]: the file holds the results known so far; run the same command "
            "again to go on (results already known are not polled again)",
            soft_wrap=not console.is_terminal,
        )
    elif figures["noResult"]:
        console.print(
            f"[yellow]{figures['noResult']} scan(s) have no result yet[/]: run the same command again later "
            "(results already known are not polled again)",
            soft_wrap=not console.is_terminal,
        )
