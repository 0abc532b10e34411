"""The ``netverify-async`` command line.

Each subcommand lives in its own module of this package, which provides ``add_parser(subparsers)``; the parser it
adds sets ``func`` to a callable taking the parsed arguments and returning the exit status. Subcommand modules are
imported only when needed, so ``netverify-async --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: subcommand name -> module (relative to this package) that defines it
SUBCOMMANDS: dict[str, str] = {
    "demo": ".demo",
    "submit": ".submit",
    "batch": ".batch",
    "status": ".status",
    "preflight": ".preflight",
    "emulator": ".emulator",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netverify-async",
        description="Submit identity documents to Jumio Netverify (or the bundled local emulator).",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show details and debug logging on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name, __name__)
        except ImportError as exc:  # an optional extra is missing
            sub = subparsers.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(func=_missing_extra(name, exc))
            continue
        module.add_parser(subparsers)
    return parser


def _missing_extra(name: str, exc: ImportError) -> object:
    def run(args: argparse.Namespace) -> int:
        print(
            f"error: the '{name}' command needs an optional dependency ({exc}); "
            "install it with: pip install 'netverify-async[all]'",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netverify-async`` script; returns the exit status."""
    from .._errors import NetverifyError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NetverifyError as exc:
        if args.verbose:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
