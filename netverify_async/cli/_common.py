"""Helpers shared by the CLI subcommands: building a client from the environment, printing results."""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import sys
from typing import Any

from .._client import NetverifyClient
from .._errors import ConfigurationError

#: Credentials the bundled emulator accepts by default (they are not secrets).
EMULATOR_TOKEN = "emulator-api-token"  # noqa: S105
EMULATOR_SECRET = "emulator-api-secret"  # noqa: S105
#: Polling schedule (seconds since submission) used with ``--wait`` against the emulator.
EMULATOR_POLL_SCHEDULE_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: User-Agent used against the emulator when none is configured.
EMULATOR_USER_AGENT = "Local Emulator NetverifyCLI/0.1.0"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--emulator URL`` and ``--user-agent``; credentials come only from the environment or a prompt."""
    parser.add_argument(
        "--emulator",
        metavar="URL",
        help="talk to a local emulator at URL instead of the configured region "
        "(credentials default to the emulator's own)",
    )
    parser.add_argument(
        "--user-agent",
        help="User-Agent naming your business and app with a version (default: $NETVERIFY_USER_AGENT)",
    )
    parser.add_argument(
        "--rate-limit",
        default=None,
        help="client-side submission limit, e.g. '5/5s' or '3/s,180/min', 'adaptive', or 'none' (default: 5/5s)",
    )


def build_client(args: argparse.Namespace, **overrides: Any) -> NetverifyClient:
    """A client from ``--emulator`` / the ``NETVERIFY_*`` environment variables, prompting for a missing secret
    when a terminal is attached. Secrets are never taken from the command line."""
    env = os.environ
    kwargs: dict[str, Any] = dict(overrides)
    rate = getattr(args, "rate_limit", None)
    if rate is not None:
        kwargs["rate_limit"] = None if rate.lower() == "none" else rate
    user_agent = getattr(args, "user_agent", None) or env.get("NETVERIFY_USER_AGENT")
    if args.emulator:
        return NetverifyClient(
            api_token=env.get("NETVERIFY_API_TOKEN", EMULATOR_TOKEN),
            api_secret=env.get("NETVERIFY_API_SECRET", EMULATOR_SECRET),
            user_agent=user_agent or EMULATOR_USER_AGENT,
            base_url=args.emulator,
            **kwargs,
        )
    if not env.get("NETVERIFY_API_SECRET") and sys.stdin.isatty():
        kwargs.setdefault("api_secret", getpass.getpass("Netverify API secret: "))
    if user_agent:
        kwargs["user_agent"] = user_agent
    return NetverifyClient.from_env(**kwargs)


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def print_json(data: Any) -> None:
    """One JSON object on one line on stdout."""
    print(json.dumps(data, default=_default, separators=(",", ":")))


def enum_value(value: Any) -> str:
    """The wire value of an enum member, or the raw value as text."""
    return str(value.value if isinstance(value, enum.Enum) else value)


def require_file(path: str, flag: str) -> str:
    if not os.path.isfile(path):
        raise ConfigurationError(f"{flag}: no such file")
    return path
