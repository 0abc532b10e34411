"""Helpers shared by the CLI subcommands: building a client from the environment, printing results and errors."""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from .._client import NetverifyClient

#: Credentials the bundled emulator accepts by default (they are not secrets). ``--emulator URL`` always uses
#: these: the NETVERIFY_API_* variables hold production credentials and are never sent to an emulator.
EMULATOR_TOKEN = "emulator-api-token"  # noqa: S105
EMULATOR_SECRET = "emulator-api-secret"  # noqa: S105
#: Polling schedule (seconds since submission) used with ``--wait`` against the emulator.
EMULATOR_POLL_SCHEDULE_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: User-Agent used against the emulator when none is configured.
EMULATOR_USER_AGENT = "Local Emulator NetverifyCLI/0.1.0"
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Exit status when the reader of the output went away, e.g. ``| head`` (128 + SIGPIPE, as shells report it).
EXIT_OUTPUT_CLOSED = 141
#: Library wording (Python keyword arguments) -> what a command-line user types instead.
_CLI_WORDING = (
    ("fix=True", "--fix"),
    # the hint after a 401/403: on the command line these settings come from the environment (or --user-agent)
    ("check api_token and api_secret", "check NETVERIFY_API_TOKEN and NETVERIFY_API_SECRET"),
    ("that user_agent names", "that the User-Agent (NETVERIFY_USER_AGENT or --user-agent) names"),
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--concurrency``, ``--size``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_connection_arguments(parser: argparse.ArgumentParser, *, submission_rate_limit: bool = True) -> None:
    """``--emulator URL``, ``--user-agent`` and (for commands that submit) ``--rate-limit``; credentials come
    only from the environment or a prompt."""
    parser.add_argument(
        "--emulator",
        metavar="URL",
        help="talk to a local emulator at URL instead of the configured region, with the emulator's default "
        "credentials (NETVERIFY_API_TOKEN and NETVERIFY_API_SECRET are never sent there; for an emulator "
        "started with other credentials, set NETVERIFY_BASE_URL and the NETVERIFY_API_* variables instead)",
    )
    parser.add_argument(
        "--user-agent",
        help="User-Agent naming your business and app with a version (default: $NETVERIFY_USER_AGENT)",
    )
    if submission_rate_limit:
        parser.add_argument(
            "--rate-limit",
            default=None,
            help="client-side submission limit, e.g. '5/5s' or '3/s,180/min', 'adaptive', or 'none' "
            "(default: 5/5s)",
        )


def build_client(args: argparse.Namespace, **overrides: Any) -> NetverifyClient:
    """A client for ``--emulator URL`` (the emulator's own credentials), or from the ``NETVERIFY_*`` environment
    variables, asking for a missing secret when a terminal is attached. Secrets are never taken from the
    command line, and every other setting is checked before the secret is asked for."""
    from .._client import NetverifyClient

    env = os.environ
    kwargs: dict[str, Any] = dict(overrides)
    rate = getattr(args, "rate_limit", None)
    if rate is not None:
        kwargs["rate_limit"] = None if rate.lower() == "none" else rate
    user_agent = getattr(args, "user_agent", None) or env.get("NETVERIFY_USER_AGENT")
    if args.emulator:
        return NetverifyClient(
            api_token=EMULATOR_TOKEN,
            api_secret=EMULATOR_SECRET,
            user_agent=user_agent or EMULATOR_USER_AGENT,
            base_url=args.emulator,
            **kwargs,
        )
    if not env.get("NETVERIFY_API_TOKEN"):
        raise ConfigurationError(
            "NETVERIFY_API_TOKEN is not set (export your API token and secret, or use --emulator URL to talk "
            "to a local emulator)"
        )
    if user_agent:
        kwargs["user_agent"] = user_agent
    elif not env.get("NETVERIFY_USER_AGENT"):
        raise ConfigurationError(
            "NETVERIFY_USER_AGENT is not set (or pass --user-agent 'Your Company YourApp/1.0')"
        )
    if not env.get("NETVERIFY_API_SECRET"):
        if not sys.stdin.isatty():
            raise ConfigurationError(
                "NETVERIFY_API_SECRET is not set (export it, or run on a terminal to be asked for it)"
            )
        # every other setting (region, base URL, User-Agent, rate limit) is checked before asking
        NetverifyClient.from_env(api_secret="not-asked-yet", **kwargs)  # noqa: S106
        kwargs["api_secret"] = getpass.getpass("Netverify API secret: ")
    return NetverifyClient.from_env(**kwargs)


def cli_text(text: str) -> str:
    """A library message in command-line terms: ``fix=True`` becomes ``--fix``, ``api_token`` the variable
    ``NETVERIFY_API_TOKEN``."""
    for keyword, flag in _CLI_WORDING:
        text = text.replace(keyword, flag)
    return text


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 8 and current not in found:
        found.append(current)
        current = current.__cause__
    return found


def describe_error(exc: BaseException, *, emulator: str | None = None) -> list[str]:
    """The lines that report a failed command: ``error: Type: message``, then a hint when one helps.

    The library's messages already say where and why (``could not connect to URL (...)``); nothing here needs
    ``-v``.
    """
    from .._errors import ConnectError

    lines = [f"error: {type(exc).__name__}: {cli_text(str(exc))}"]
    if any(isinstance(e, ConnectError) for e in _chain(exc)):
        if emulator:
            lines.append(
                f"hint: is the emulator running at {emulator}? Start one with: netverify-async emulator --port PORT"
            )
        else:
            lines.append(
                "hint: check the network, and NETVERIFY_REGION (US, EU, SGP) or NETVERIFY_BASE_URL"
            )
    return lines


def silence_stdout() -> None:
    """Point stdout at the null device after its reader went away (``| head``), so that nothing written later,
    including the flush at exit, fails again."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor behind sys.stdout
        pass


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def print_json(data: Any) -> None:
    """One JSON object on one line on stdout, flushed at once (readers of a pipe see each line as it comes)."""
    print(json.dumps(data, default=_default, separators=(",", ":")), flush=True)


def enum_value(value: Any) -> str:
    """The wire value of an enum member, or the raw value as text."""
    return str(value.value if isinstance(value, enum.Enum) else value)


def require_file(path: str, flag: str) -> str:
    if not os.path.isfile(path):
        raise ConfigurationError(f"{flag}: no such file")
    return path
