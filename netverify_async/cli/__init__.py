"""The ``netverify-async`` command line.

Each subcommand lives in its own module of this package, which provides ``add_parser(subparsers)``; the parser it
adds sets ``func`` to a callable taking the parsed arguments and returning the exit status. Only the module of
the command being run is imported (``netverify-async --help`` lists the commands from :data:`SUBCOMMANDS`
without importing any of them), so the help stays fast and a missing optional extra only matters to the
commands that need it.

Exit status: what the command returns; 1 for an error reported in one line; 2 for usage errors and a missing
extra; 130 after Ctrl-C; 141 when the output pipe was closed (e.g. ``| head``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence

from ._common import EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED

__all__ = ["main"]

#: subcommand name -> (module relative to this package, one-line help, extras it needs, modules of those extras)
SUBCOMMANDS: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "demo": (
        ".demo",
        "run the whole pipeline against a local emulator with synthetic documents",
        "cli,emulator",
        ("rich", "uvicorn"),
    ),
    "submit": (".submit", "submit one verification from image files", None, ()),
    "batch": (
        ".batch",
        "submit every document set of a CSV / JSON Lines manifest (resumable)",
        "cli",
        ("rich",),
    ),
    "worker": (
        ".worker",
        "work on the items of a distributed batch (PostgreSQL journal)",
        "postgres",
        ("psycopg",),
    ),
    "status": (".status", "show the state of a scan, or of a batch's journal", None, ()),
    "preflight": (
        ".preflight",
        "check image files against Jumio's image limits (and optionally fix them)",
        None,
        (),
    ),
    "emulator": (".emulator", "serve a local Netverify emulator for tests and demos", "emulator", ("uvicorn",)),
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not a global option), if any."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def _missing_modules(modules: Sequence[str]) -> list[str]:
    missing = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a module blocked or half-imported
            missing.append(name)
    return missing


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its full parser, the others are listed."""
    parser = argparse.ArgumentParser(
        prog="netverify-async",
        description="Submit identity documents to Jumio Netverify (or the bundled local emulator).",
        epilog="Logging: -v shows debug logging and full tracebacks; NETVERIFY_LOG=debug|info|warning|error "
        "sends the library's log records to stderr.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show details and debug logging on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text, extra, modules) in SUBCOMMANDS.items():
        if name == command:
            try:
                module = importlib.import_module(module_name, __name__)
            except ImportError as exc:  # an optional extra is missing
                if (exc.name or "").startswith("netverify_async"):
                    raise  # not a missing extra: a broken installation or a bug, shown as it is
                sub = subparsers.add_parser(name, help=help_text, add_help=False)
                sub.set_defaults(func=_missing_extra(name, extra, exc), any_arguments=True)
                continue
            module.add_parser(subparsers)
        else:
            missing = _missing_modules(modules)
            note = f" [needs the extra: {extra}]" if missing else ""
            subparsers.add_parser(name, help=help_text + note, add_help=False)
    return parser


def _missing_extra(name: str, extra: str | None, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        what = f"the optional dependency {exc.name!r}" if exc.name else f"an optional dependency ({exc})"
        install = f"pip install 'netverify-async[{extra or 'all'}]'"
        print(f"error: the '{name}' command needs {what}; install it with: {install}", file=sys.stderr)
        return 2

    return run


def _configure_logging(verbose: bool) -> None:
    from .._logging import environment_handler

    if environment_handler() is not None:  # NETVERIFY_LOG already sends the library's records to stderr
        if verbose:
            logging.getLogger("netverify_async").setLevel(logging.DEBUG)
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netverify-async`` script; returns the exit status."""
    from .._errors import NetverifyError
    from ._common import describe_error, silence_stdout

    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(arguments))
    args, unknown = parser.parse_known_args(arguments)
    if unknown and not getattr(args, "any_arguments", False):  # a command whose extra is missing takes any
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (e.g. | head): nothing more to say there
        silence_stdout()
        return EXIT_OUTPUT_CLOSED
    except NetverifyError as exc:
        if args.verbose:
            raise
        for line in describe_error(exc, emulator=getattr(args, "emulator", None)):
            print(line, file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
