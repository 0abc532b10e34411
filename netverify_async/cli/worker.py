"""``netverify-async worker --journal postgresql://...``: one worker of a distributed batch.

Any number of workers, on any hosts, take items from the same PostgreSQL journal (loaded by ``netverify-async
batch MANIFEST --journal postgresql://...``): each claims a few items with a lease, submits them under the rate
limit (shared by every worker with ``--rate-limit SPEC --redis-url URL``), and records their outcomes. See
:mod:`netverify_async._worker` for what a worker guarantees when it is killed, and ``docs/deployment.md``.

The first SIGTERM or Ctrl-C stops the worker gently (nothing new is sent, uploads in flight finish and are
recorded, unsent items are handed back); a second one stops it at once (uploads cut off stay ``sent``, which
means "unknown": never resent). ``--drain`` makes the worker exit once no item is pending; without it the
worker keeps polling for new items.

Output: one line per item (``receipt REF``, ``failed REF: ErrorType``, ...; ``--json``: one JSON object per
line), then a summary. References are printed, never payloads.

This module also holds what ``batch --journal postgresql://...`` and ``status --journal`` share with it: the
journal URL check, opening the journal, and the shared limiter.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import ConfigurationError
from ._common import add_connection_arguments, build_client, cli_text, positive_int, print_json

if TYPE_CHECKING:
    from .._client import NetverifyClient
    from .._outcomes import BatchOutcome
    from .._worker import WorkerStats
    from ..postgres import PostgresJournal

__all__ = [
    "DEFAULT_NAME",
    "add_parser",
    "add_worker_arguments",
    "is_postgres_url",
    "open_postgres_journal",
    "redacted_url",
    "run",
    "work",
]

DEFAULT_CONCURRENCY = 4
#: The journal name used when ``--name`` is not given.
DEFAULT_NAME = "default"
#: Seconds added to every window of a shared (Redis) limit by default.
DEFAULT_RATE_MARGIN = 0.1
#: Seconds a command waits for the journal's database at start (it may be restarting).
OPEN_TIMEOUT = 60.0
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(text: str | None) -> bool:
    """True for ``postgresql://...`` / ``postgres://...`` (a journal in PostgreSQL, not a SQLite file)."""
    if not text:
        return False
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    return scheme in _POSTGRES_SCHEMES


def _secret_parameter(name: str) -> bool:
    return "password" in name.lower()  # password, sslpassword, ...


def redacted_url(url: str) -> str:
    """The URL without its passwords (for messages and output): the one after the user name and any query
    parameter naming a password (``password``, ``sslpassword``) show ``***``; an IPv6 host keeps its brackets."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return "postgresql://..."
    netloc = parts.netloc
    if parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{port}" if port else "")
    text_query = parts.query
    if any(_secret_parameter(key) for key, _ in query):
        text_query = "&".join(
            f"{urllib.parse.quote(key, safe='')}=" + ("***" if _secret_parameter(key) else urllib.parse.quote(value, safe=""))
            for key, value in query
        )
    elif ";" in text_query and "password" in text_query.lower():
        return "postgresql://..."  # a query this function does not read: shown not at all rather than unredacted
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, text_query, parts.fragment))


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds > 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0")
    return value


def add_worker_arguments(parser: Any) -> None:
    """The options of a worker that ``batch --journal postgresql://...`` shares (not ``--concurrency``)."""
    parser.add_argument(
        "--name",
        default=None,
        help=f"the batch's name in a PostgreSQL journal (one database can hold several; default {DEFAULT_NAME!r})",
    )
    parser.add_argument(
        "--lease-seconds",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="how long a claimed item stays this worker's without a renewal (default: the journal's, 120)",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the --rate-limit between every worker through this Redis (redis://host:port/db)",
    )
    parser.add_argument(
        "--rate-margin",
        type=_seconds,
        default=None,
        metavar="S",
        help=f"with --redis-url: seconds added to every window of the shared limit, for the jitter between "
        f"booking a slot and the request reaching the server (default {DEFAULT_RATE_MARGIN})",
    )
    parser.add_argument(
        "--redis-key",
        default=None,
        metavar="KEY",
        help="the limit's name in Redis: one per account (default: the library's)",
    )
    parser.add_argument(
        "--image-root",
        default=None,
        metavar="DIR",
        help="refuse (item failed, outside_image_root) any image path of a stored payload that resolves outside "
        "this folder (payloads come from the shared database; a worker reads the files they name)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``worker`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="work on the items of a distributed batch (PostgreSQL journal)",
        description="Claim items of a batch loaded into a PostgreSQL journal (netverify-async batch MANIFEST "
        "--journal postgresql://...), submit them, record the outcomes. Run any number of workers on any "
        "hosts; share the rate limit with --rate-limit SPEC --redis-url URL. The first SIGTERM or Ctrl-C stops "
        "gently (uploads in flight finish), a second one at once.",
    )
    parser.add_argument(
        "--journal", required=True, metavar="URL", help="the journal: postgresql://user@host/database"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"uploads in flight at once; about as many items are claimed at a time (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--drain", action="store_true", help="exit once no item is pending (default: keep polling for new items)"
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=1.0,
        metavar="S",
        help="seconds between claims while there is nothing to claim (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per item, then a summary")
    add_worker_arguments(parser)
    add_connection_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def open_postgres_journal(url: str, name: str | None, lease_seconds: float | None = None) -> PostgresJournal:
    """A :class:`~netverify_async.postgres.PostgresJournal` (not opened yet) for a command's options."""
    name = name or DEFAULT_NAME
    try:
        from ..postgres import PostgresJournal
    except ImportError as exc:
        if (exc.name or "").startswith("netverify_async"):
            raise
        raise ConfigurationError(
            "a PostgreSQL journal needs the postgres extra: pip install 'netverify-async[postgres]'"
        ) from None
    if lease_seconds is None:
        return PostgresJournal(url, name=name)
    return PostgresJournal(url, name=name, lease_seconds=lease_seconds)


def _client(args: argparse.Namespace, concurrency: int) -> tuple[NetverifyClient, Any]:
    """The client, and the shared Redis limiter it uses (None without ``--redis-url``)."""
    redis_url = getattr(args, "redis_url", None)
    fix = bool(getattr(args, "fix", False))
    if not redis_url:
        return build_client(args, max_concurrency=concurrency, preflight_fix=fix), None
    spec = getattr(args, "rate_limit", None) or "5/5s"
    if spec.strip().lower() in ("none", "adaptive"):
        raise ConfigurationError(
            "--redis-url shares a known limit: give --rate-limit as a rate such as '5/5s' (not none/adaptive)"
        )
    try:
        from ..redis import RedisRateLimiter
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            f"--redis-url needs the redis extra ({exc.name}): pip install 'netverify-async[redis]'"
        ) from None
    margin = getattr(args, "rate_margin", None)
    options: dict[str, Any] = {
        "rates": spec,
        "max_concurrency": concurrency,
        "margin": DEFAULT_RATE_MARGIN if margin is None else margin,
    }
    if getattr(args, "redis_key", None):
        options["key"] = args.redis_key
    limiter = RedisRateLimiter(redis_url, **options)
    plain = argparse.Namespace(**{**vars(args), "rate_limit": None})
    return build_client(plain, rate_limit=limiter, max_concurrency=concurrency, preflight_fix=fix), limiter


def outcome_line(outcome: BatchOutcome) -> dict[str, Any]:
    """One item's outcome as a JSON object (no personal data: references, statuses, error types)."""
    error = outcome.error
    return {
        "type": "item",
        "reference": outcome.merchant_id_scan_reference,
        "status": outcome.status.value,
        "scanReference": outcome.receipt.scan_reference if outcome.receipt is not None else None,
        "errorType": type(error).__name__ if error is not None else None,
        "error": cli_text(str(error)) if error is not None else None,
    }


def outcome_text(outcome: BatchOutcome) -> str:
    line = f"{outcome.status.value} {outcome.merchant_id_scan_reference or '-'}"
    if outcome.receipt is not None:
        return f"{line} {outcome.receipt.scan_reference}"
    if outcome.error is not None:
        return f"{line}: {type(outcome.error).__name__}: {cli_text(str(outcome.error))}"
    return line


def stats_line(stats: WorkerStats) -> dict[str, Any]:
    return {
        "type": "summary",
        "claimed": stats.claimed,
        "outcomes": dict(stats.outcomes),
        "leaseLost": stats.lease_lost,
        "released": stats.released,
        "requeued": stats.requeued,
        "journalRetries": stats.journal_retries,
        "restarts": stats.restarts,
    }


def stats_text(stats: WorkerStats) -> str:
    done = ", ".join(f"{n} {status}" for status, n in stats.outcomes.items() if n) or "nothing done"
    return (
        f"worker: {done}; claimed {stats.claimed}, lease lost {stats.lease_lost}, handed back {stats.released}, "
        f"requeued after limiter failures {stats.requeued}, "
        f"journal retries {stats.journal_retries}"
    )


def _can_watch_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM")


async def _watch_signals(stop: anyio.Event, hard: anyio.CancelScope) -> None:
    """The first SIGTERM/SIGINT stops gently, the second at once."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            if not stop.is_set():
                print("stopping: finishing the uploads in flight... (again to stop at once)", file=sys.stderr, flush=True)
                stop.set()
            else:
                hard.cancel()
                return


async def work(
    args: argparse.Namespace, journal: Any, *, concurrency: int, drain: bool, json_lines: bool
) -> WorkerStats:
    """Run a worker on an open journal with the command's client, printing each outcome; returns its stats."""
    from .._worker import run_worker

    client, limiter = _client(args, concurrency)
    stop = anyio.Event()

    def show(outcome: BatchOutcome) -> None:
        if json_lines:
            print_json(outcome_line(outcome))
        else:
            print(outcome_text(outcome), flush=True)

    stats: WorkerStats | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as hard:
            if _can_watch_signals():
                group.start_soon(_watch_signals, stop, hard)
            try:
                async with client:
                    stats = await run_worker(
                        client,
                        journal,
                        concurrency=concurrency,
                        drain=drain,
                        poll_interval=getattr(args, "poll_interval", 1.0),
                        stop=stop,
                        on_outcome=show,
                        image_root=getattr(args, "image_root", None),
                    )
            except Exception as exc:  # raised below, outside the task group, so that it is not wrapped in a group
                error = exc
            finally:
                if limiter is not None:
                    with anyio.CancelScope(shield=True):
                        await limiter.aclose()
        group.cancel_scope.cancel()
    if error is not None:
        raise error
    if stats is None:
        raise KeyboardInterrupt  # stopped at once by a second signal
    return stats


async def open_patiently(journal: Any, within: float = OPEN_TIMEOUT) -> None:
    """Open the journal, trying again while its database does not answer (it may be restarting)."""
    from .._errors import JournalError

    deadline = anyio.current_time() + within
    delay = 0.1
    while True:
        try:
            await journal.open()
            return
        except JournalError:
            if anyio.current_time() + delay > deadline:
                raise
        await anyio.sleep(delay)
        delay = min(2.0, delay * 2)


async def _run(args: argparse.Namespace) -> int:
    journal = open_postgres_journal(args.journal, args.name, args.lease_seconds)
    await open_patiently(journal)
    async with journal:
        stats = await work(args, journal, concurrency=args.concurrency, drain=args.drain, json_lines=args.json)
    if args.json:
        print_json(stats_line(stats))
    else:
        print(stats_text(stats), file=sys.stderr, flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the worker; return the exit status."""
    if not is_postgres_url(args.journal):
        print("error: --journal: a worker needs a PostgreSQL journal (postgresql://...)", file=sys.stderr)
        return 2
    if args.redis_url and not args.rate_limit:
        print("error: --redis-url shares a limit: give it with --rate-limit SPEC (e.g. '5/5s')", file=sys.stderr)
        return 2
    result: int = anyio.run(_run, args)
    return result
