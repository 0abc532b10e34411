"""What one journal state transition costs: SqliteJournal against PostgresJournal, and the PostgreSQL drivers.

Two tables, from one run on one machine (the SQLite file and the PostgreSQL data directory on the same disk):

1. **per transition** (median and p99 ms of one call, as a batch makes it; the two journals' calls alternate,
   so both see the same machine): ``begin_item`` (new reference ->
   ``pending``), ``mark_sent`` (-> ``sent``, committed and synced: the durable record before the upload),
   ``mark_receipt`` (-> ``receipt``), and for PostgreSQL ``claim`` (one queued item leased) and the fenced
   ``mark_sent`` of a claimed item;
2. **per driver**: the fenced "sent" ``UPDATE`` alone (one row, committed), through psycopg's synchronous
   connection in a worker thread (what :class:`~netverify_async.postgres.PostgresJournal` uses, on asyncio and
   trio), psycopg's ``AsyncConnection`` and asyncpg (both asyncio only; asyncpg only when it is installed: it is
   not a dependency of the library); the drivers' calls alternate too.

Import it (``from _journal_cost import measure_journal_cost, format_journal_cost``) or run it::

    python benchmarks/_journal_cost.py [--items 300] [--postgres-url URL]

Without ``--postgres-url`` (or ``NETVERIFY_TEST_POSTGRES_URL``) a throwaway PostgreSQL server is started (the
tests' ``tests/_postgres_server.py``: ``initdb`` in a temporary directory, loopback, stopped at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_load, markdown_table, percentile

from netverify_async import ScanReceipt, SqliteJournal

ROOT = Path(__file__).resolve().parents[1]
RECEIPT = ScanReceipt("00000000-0000-4000-8000-000000000000", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc))


@dataclass(frozen=True)
class JournalCost:
    """One row: ``calls`` timed calls of ``transition`` on ``journal`` (milliseconds per call)."""

    journal: str
    transition: str
    calls: int
    median_ms: float
    p99_ms: float


def _row(journal: str, transition: str, seconds: list[float]) -> JournalCost:
    ms = [s * 1000 for s in seconds]
    return JournalCost(journal, transition, len(ms), statistics.median(ms), percentile(ms, 99))


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    out: list[float] = []
    for call in calls:
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


@contextmanager
def postgres_database(url: str | None = None) -> Iterator[str]:
    """``url``, else ``NETVERIFY_TEST_POSTGRES_URL``, else a throwaway server for the duration."""
    url = url or os.environ.get("NETVERIFY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from _postgres_server import start_with_retries  # type: ignore[import-not-found, unused-ignore]

    server = start_with_retries()
    try:
        yield server.url
    finally:
        server.cleanup()


Call = Callable[[], Awaitable[Any]]


async def _interleaved(rounds: list[list[Call]]) -> list[list[float]]:
    """Times each call; call ``k`` of every round goes to column ``k``. Alternating the contenders call by call
    gives them the same machine (other processes, disk flushes) instead of one quiet and one busy period."""
    columns: list[list[float]] = [[] for _ in rounds[0]] if rounds else []
    for calls in rounds:
        for column, call in zip(columns, calls, strict=True):
            start = time.perf_counter()
            await call()
            column.append(time.perf_counter() - start)
    return columns


async def _journal_rows(items: int, directory: str, url: str) -> list[JournalCost]:
    from netverify_async.postgres import PostgresJournal

    refs = [f"item-{i:06d}" for i in range(items)]
    labels = ("SqliteJournal", "PostgresJournal")
    rows: list[JournalCost] = []
    async with (
        SqliteJournal(os.path.join(directory, "cost.journal")) as sqlite,
        PostgresJournal(url, f"cost-{uuid.uuid4().hex[:10]}") as pg,
    ):
        journals = (sqlite, pg)
        for journal in journals:
            await journal.begin_item("warm-up")
        transitions: list[tuple[str, Callable[[Any, str], Awaitable[Any]]]] = [
            ("begin_item (new -> pending)", lambda j, r: j.begin_item(r)),
            ("mark_sent (-> sent, durable)", lambda j, r: j.mark_sent(r)),
            ("mark_receipt (-> receipt)", lambda j, r: j.mark_receipt(r, RECEIPT)),
        ]
        for transition, call in transitions:
            columns = await _interleaved([[functools.partial(call, j, r) for j in journals] for r in refs])
            rows += [_row(label, transition, column) for label, column in zip(labels, columns, strict=True)]
        queued = [f"queued-{i:06d}" for i in range(items)]
        await pg.load((ref, {"n": n}) for n, ref in enumerate(queued))
        claims = await _timed([functools.partial(pg.claim, limit=1) for _ in queued])
        rows.append(_row("PostgresJournal", "claim(limit=1) (queued -> leased)", claims))
        fenced = await _timed([functools.partial(pg.mark_sent, r) for r in queued])
        rows.append(_row("PostgresJournal", "mark_sent of a claimed item (fenced)", fenced))
    return rows


# -- the drivers, on the same statement ---------------------------------------------------------------------------

_SETUP = (
    "CREATE SCHEMA IF NOT EXISTS netverify_bench_drivers",
    "DROP TABLE IF EXISTS netverify_bench_drivers.items",
    "CREATE TABLE netverify_bench_drivers.items (ref text PRIMARY KEY, state text NOT NULL, token bigint, "
    "lease_until timestamptz, sends integer NOT NULL DEFAULT 0, last_sent_at timestamptz)",
)
_SENT_PSYCOPG = (
    "UPDATE netverify_bench_drivers.items SET state = 'sent', sends = sends + 1, last_sent_at = now() "
    "WHERE ref = %s AND token = %s AND lease_until > now()"
)
_SENT_ASYNCPG = _SENT_PSYCOPG.replace("%s", "$1", 1).replace("%s", "$2", 1)


def _prepare_driver_table(url: str, refs: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in _SETUP:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO netverify_bench_drivers.items (ref, state, token, lease_until) "
            "SELECT r, 'pending', 1, now() + interval '1 hour' FROM unnest(%s::text[]) AS r",
            (refs,),
        )


async def _psycopg_thread(url: str) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import threading

    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    lock = threading.Lock()

    def sent_sync(ref: str) -> None:
        with lock, conn.transaction():
            if conn.execute(_SENT_PSYCOPG, (ref, 1)).rowcount != 1:
                raise RuntimeError("lost")

    async def sent(ref: str) -> None:
        await anyio.to_thread.run_sync(sent_sync, ref)

    async def close() -> None:
        conn.close()

    return sent, close


async def _psycopg_async(url: str) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def sent(ref: str) -> None:
        async with conn.transaction():
            if (await conn.execute(_SENT_PSYCOPG, (ref, 1))).rowcount != 1:
                raise RuntimeError("lost")

    return sent, conn.close


async def _asyncpg(url: str) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[None]]] | None:
    try:
        import asyncpg  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None
    conn = await asyncpg.connect(url)

    async def sent(ref: str) -> None:
        async with conn.transaction():
            if await conn.execute(_SENT_ASYNCPG, ref, 1) != "UPDATE 1":
                raise RuntimeError("lost")

    async def close() -> None:
        await conn.close()

    return sent, close


async def _driver_rows(items: int, url: str) -> list[JournalCost]:
    openers: list[tuple[str, Callable[[str], Awaitable[Any]]]] = [
        ("psycopg 3, sync connection in a worker thread (chosen)", _psycopg_thread),
        ("psycopg 3, AsyncConnection (asyncio only)", _psycopg_async),
        ("asyncpg (asyncio only)", _asyncpg),
    ]
    drivers: list[tuple[str, Callable[[str], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
    for label, opener in openers:
        opened = await opener(url)
        if opened is not None:
            drivers.append((label, *opened))
    refs = [[f"d{k}-{i:06d}" for k in range(len(drivers))] for i in range(items)]
    _prepare_driver_table(url, [ref for row in refs for ref in row])
    try:
        columns = await _interleaved(
            [[functools.partial(d[1], r) for d, r in zip(drivers, row, strict=True)] for row in refs]
        )
    finally:
        for _, _, close in drivers:
            await close()
    return [
        _row(label, "fenced 'sent' UPDATE, committed", column)
        for (label, _, _), column in zip(drivers, columns, strict=True)
    ]


async def measure_journal_cost(
    postgres_url: str | None = None, *, items: int = 300, drivers: bool = True
) -> list[JournalCost]:
    """Median and p99 ms per state transition of SqliteJournal and PostgresJournal (and, with ``drivers``,
    of the same fenced "sent" statement through each PostgreSQL driver). Runs on asyncio."""
    with (
        tempfile.TemporaryDirectory(prefix="netverify-journal-cost-") as directory,
        postgres_database(postgres_url) as url,
    ):
        rows = await _journal_rows(items, directory, url)
        if drivers:
            rows += await _driver_rows(items, url)
    return rows


def format_journal_cost(rows: list[JournalCost]) -> str:
    """The rows as a markdown table."""
    return markdown_table(
        ["journal / driver", "transition", "calls", "median ms", "p99 ms"],
        [(r.journal, r.transition, r.calls, f"{r.median_ms:.3f}", f"{r.p99_ms:.3f}") for r in rows],
        "llrrr",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=300, help="timed calls per row")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--no-drivers", action="store_true", help="skip the per-driver table")
    args = parser.parse_args()
    rows = anyio.run(
        lambda: measure_journal_cost(args.postgres_url, items=args.items, drivers=not args.no_drivers)
    )
    print(f"machine: {os.cpu_count()} CPUs, {machine_load()}; SQLite synchronous=FULL, PostgreSQL fsync=on, "
          "synchronous_commit=on, same disk\n")  # fmt: skip
    print(format_journal_cost(rows))


if __name__ == "__main__":
    main()
