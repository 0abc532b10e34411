"""``netverify-async preflight``: check image files against Jumio's limits, optionally writing fixed copies.

Exit status 0 when every file passes, 1 otherwise. ``--json`` prints one JSON object per file and line (in the
order given); otherwise a table is printed (with ``rich`` when it is installed, plain text if not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._constants import MAX_IMAGE_BYTES, MAX_SIDE_PX, MIN_LONGEST_SIDE_PX
from .._imagerules import FRONT, ROLES
from .._preflight_report import INTEGRITY_LEVELS

if TYPE_CHECKING:
    from .._preflight import PreflightReport

from ._common import cli_text

__all__ = ["add_parser", "run"]

#: Files read and checked at the same time; bounds memory while keeping every CPU busy.
_FILES_IN_FLIGHT = max(2, 2 * (os.cpu_count() or 1))
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``preflight`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "preflight",
        help="check image files against Jumio's image limits (and optionally fix them)",
        description=f"Check image files as performNetverify would: JPEG or PNG, at most {MAX_IMAGE_BYTES:,} "
        f"bytes, each side below {MAX_SIDE_PX} pixels, longest side above {MIN_LONGEST_SIDE_PX} pixels, and "
        "intact. Exit status 0 when every file passes.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files to check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file and line")
    parser.add_argument(
        "--fix",
        metavar="OUTDIR",
        type=Path,
        help="write a normalised, acceptable copy of every file that can be made acceptable into OUTDIR",
    )
    parser.add_argument(
        "--integrity",
        choices=INTEGRITY_LEVELS,
        default="decode",
        help="'decode' (default) decodes every image to find damaged data; 'header' only reads headers",
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        default=FRONT,
        help=f"what the images show; sets the resolution below which a warning is given (default: {FRONT})",
    )
    parser.set_defaults(func=run)
    return parser


@attrs.frozen
class FileResult:
    """The outcome for one file: its report, and where the fixed copy was written (with ``--fix``)."""

    path: str
    report: PreflightReport
    output: str | None = None

    def to_dict(self, with_fix: bool) -> dict[str, Any]:
        line: dict[str, Any] = {"path": self.path, **self.report.to_dict()}
        del line["role"]  # the same for every file: the --role given
        for key in ("errors", "warnings"):  # in command-line terms, as in the table: "--fix", not "fix=True"
            line[key] = [{**issue, "message": cli_text(str(issue["message"]))} for issue in line[key]]
        if with_fix:
            line["output"] = self.output
        else:
            del line["changes"]
        return line


def run(args: argparse.Namespace) -> int:
    """Check every file; print the results; return 0 when all pass."""
    import anyio

    if args.fix is not None:
        args.fix.mkdir(parents=True, exist_ok=True)
    results = anyio.run(_check_all, list(args.files), args)
    if not args.json:
        _print_table(results, with_fix=args.fix is not None)
    return 0 if all(r.report.ok for r in results) else 1


async def _check_all(files: list[str], args: argparse.Namespace) -> list[FileResult]:
    import anyio

    results: list[FileResult | None] = [None] * len(files)
    named = [anyio.Event() for _ in files]  # output names are handed out in the order the files were given
    printed = 0
    slots = anyio.Semaphore(_FILES_IN_FLIGHT)
    claimed: set[Path] = set()
    inputs = {_resolved(Path(f)) for f in files}

    def flush() -> None:  # print JSON lines in the order the files were given, as soon as possible
        nonlocal printed
        while printed < len(results) and results[printed] is not None:
            if args.json:
                result = results[printed]
                assert result is not None
                _write_line(sys.stdout, result.to_dict(args.fix is not None))
            printed += 1

    async def one(index: int, name: str) -> None:
        async with slots:
            report = await _check_file(name, args)
            output: Path | None = None
            if index:
                await named[index - 1].wait()
            if args.fix is not None and report.ok and report.image is not None:
                output = _output_path(Path(name), report.format, args.fix, claimed, inputs)
            named[index].set()
            if output is not None and report.image is not None:
                await anyio.Path(output).write_bytes(report.image.data)
            # keep the verdict, not the image bytes: memory stays bounded however many files there are
            written = str(output) if output is not None else None
            results[index] = FileResult(name, attrs.evolve(report, image=None), written)
        flush()

    async with anyio.create_task_group() as tg:
        for index, name in enumerate(files):
            tg.start_soon(one, index, name)
    flush()
    return [r for r in results if r is not None]


async def _check_file(name: str, args: argparse.Namespace) -> PreflightReport:
    import anyio

    from .._models import Image
    from .._preflight import PreflightIssue, PreflightReport, preflight

    try:
        data = await anyio.Path(name).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        issue = PreflightIssue("unreadable", f"the file cannot be read: {reason}")
        return PreflightReport(
            ok=False, role=args.role, format=None, width=None, height=None, bytes=0, errors=(issue,)
        )
    fix = args.fix is not None
    return await preflight(Image.from_bytes(data), role=args.role, integrity=args.integrity, fix=fix)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # pragma: no cover - unresolvable paths simply never collide
        return path.absolute()


def _output_path(source: Path, fmt: str | None, outdir: Path, claimed: set[Path], inputs: set[Path]) -> Path:
    """``OUTDIR/<name>.<ext of the output format>``; never an input file, never twice the same name."""
    suffix = _EXTENSIONS.get(fmt or "", source.suffix)
    keep = source.suffix.lower() in ((".jpg", ".jpeg") if suffix == ".jpg" else (suffix,))
    base = source.name if keep else source.stem + suffix
    candidate = outdir / base
    counter = 1
    while _resolved(candidate) in claimed or _resolved(candidate) in inputs:
        candidate = outdir / f"{Path(base).stem}-{counter}{Path(base).suffix}"
        counter += 1
    claimed.add(_resolved(candidate))
    return candidate


def _write_line(stream: TextIO, obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
    stream.flush()


def _print_table(results: Sequence[FileResult], *, with_fix: bool) -> None:
    try:
        from rich.text import Text

        from ._progress import make_console, make_table
    except ImportError:  # the cli extra is not installed: plain text
        _print_plain(results, with_fix=with_fix)
        return

    console = make_console()
    table = make_table(console, show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("result")
    table.add_column("format")
    table.add_column("size", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("problems", overflow="fold")
    if with_fix:
        table.add_column("written to / changes", overflow="fold")
    for result in results:
        r = result.report
        verdict = Text("ok", style="green") if r.ok else Text("refused", style="bold red")
        problems = Text()
        for issue in r.errors:
            problems.append(f"{issue.code}: {cli_text(issue.message)}\n", style="red")
        for issue in r.warnings:
            problems.append(f"{issue.code}: {cli_text(issue.message)}\n", style="yellow")
        problems.rstrip()
        row: list[Any] = [
            result.path,
            verdict,
            r.format or "-",
            f"{r.width}x{r.height}" if r.width is not None else "-",
            f"{r.bytes:,}",
            problems,
        ]
        if with_fix:
            row.append("\n".join(filter(None, [result.output, *r.changes])) or "-")
        table.add_row(*row)
    console.print(table, soft_wrap=not console.is_terminal)
    refused = sum(not r.report.ok for r in results)
    console.print(f"{len(results) - refused} of {len(results)} file(s) acceptable")


def _print_plain(results: Sequence[FileResult], *, with_fix: bool) -> None:
    for result in results:
        r = result.report
        size = f"{r.width}x{r.height}" if r.width is not None else "-"
        print(f"{result.path}: {'ok' if r.ok else 'REFUSED'} {r.format or '-'} {size} {r.bytes:,} bytes")
        for issue in r.errors:
            print(f"  error   {issue.code}: {cli_text(issue.message)}")
        for issue in r.warnings:
            print(f"  warning {issue.code}: {cli_text(issue.message)}")
        if with_fix:
            for change in r.changes:
                print(f"  changed {change}")
            if result.output:
                print(f"  written to {result.output}")
