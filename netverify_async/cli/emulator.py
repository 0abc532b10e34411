"""``netverify-async emulator``: serve the local Netverify emulator (needs the ``emulator`` extra)."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn  # noqa: F401  # fail at import when the emulator extra is missing, so the CLI can say so

from ..emulator._cli import add_arguments, serve

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``emulator`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        usage="netverify-async emulator [options]  (--help lists them)",
        help="serve a local Netverify emulator for tests and demos",
        description="Serve a local emulator of Jumio's Netverify API, with faults on demand. Prints one line, "
        "'listening on URL', once ready; Ctrl-C or SIGTERM stops it (exit status 0). It accepts the "
        "credentials emulator-api-token / emulator-api-secret unless --api-token / --api-secret say otherwise.",
    )
    add_arguments(parser)
    parser.set_defaults(func=serve)
    return parser
