"""A distributed batch: 1 against 4 worker processes sharing one rate limit, and what the journal costs per item.

Part 1 runs the real thing: a manifest loaded into a PostgreSQL journal (``netverify-async batch --load-only``),
then 1, then 4 ``netverify-async worker --drain`` processes sharing the submission limit through Redis
(``--rate-limit SPEC --redis-url URL``), against the emulator (its own process) enforcing that same limit. For
each run it prints:

- **rate / limit**: the aggregate submission rate the emulator saw, over the limit. The rate is measured the
  way a sliding-window limit paces requests: ``L / mean(t[i+L] - t[i])`` over the creation times ``t`` of the
  scans (``L`` the limit's count), i.e. the steady pace of "each request waits for the one L before it to
  leave the window"; ``N / (t_last - t_first)`` is shown too. Goal: >= 95 %;
- **429s** the emulator answered (goal 0) and **duplicates**, references with more than one scan (goal 0);
- wall time and the workers' journal retries.

Part 2 imports ``benchmarks/_journal_cost.py``: median and p99 ms per state transition of SqliteJournal and
PostgresJournal (``begin_item``, the durable ``mark_sent``, ``mark_receipt``; ``claim`` and the fenced
``mark_sent`` for PostgreSQL).

Run it::

    python benchmarks/distributed.py [--items 200] [--limit 50/5s] [--margin 0.1]

PostgreSQL: ``--postgres-url``, else ``NETVERIFY_TEST_POSTGRES_URL``, else a throwaway server
(``tests/_postgres_server.py``). Redis: ``--redis-url``, else ``NETVERIFY_TEST_REDIS_URL``, else a throwaway
redis-server on a free loopback port.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, machine_load, markdown_table, redis_server, small_jpeg
from _journal_cost import format_journal_cost, measure_journal_cost, postgres_database

from netverify_async import parse_rate


@contextmanager
def redis_database(url: str | None) -> Iterator[str]:
    """``url``, else ``NETVERIFY_TEST_REDIS_URL``, else a throwaway redis-server for the duration."""
    if url:
        yield url
        return
    with redis_server() as found:
        if found is None:
            raise SystemExit("redis-server is not installed (or pass --redis-url)")
        yield found


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:  # loopback emulator only
        return json.loads(resp.read())


def _parse_timestamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}


def run_workers(
    *,
    workers: int,
    manifest: Path,
    postgres: str,
    redis: str,
    emulator: Any,
    limit: str,
    margin: float,
    concurrency: int,
    folder: Path,
) -> dict[str, Any]:
    """Load the manifest under a fresh journal name, run ``workers`` worker processes to the end, and read what
    the emulator saw."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    cli = [sys.executable, "-m", "netverify_async"]
    journal = ["--journal", postgres, "--name", name]
    loaded = subprocess.run(
        [*cli, "batch", str(manifest), *journal, "--load-only"], capture_output=True, text=True, env=_env()
    )
    if loaded.returncode != 0:
        raise RuntimeError(f"loading failed: {loaded.stderr}")
    command = [
        *cli, "worker", *journal, "--drain", "--json", "--concurrency", str(concurrency),
        "--emulator", emulator.base_url, "--rate-limit", limit, "--rate-margin", str(margin),
        "--redis-url", redis, "--redis-key", f"bench-{uuid.uuid4().hex[:8]}",
    ]  # fmt: skip
    started = time.perf_counter()
    logs = [open(folder / f"{name}-{i}.log", "w+") for i in range(workers)]
    procs = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env()) for log in logs]
    codes = [proc.wait(600) for proc in procs]
    wall = time.perf_counter() - started
    retries = 0
    for log in logs:
        log.seek(0)
        for line in log:
            if line.startswith('{"type":"summary"'):
                retries += json.loads(line)["journalRetries"]
        log.close()
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}; logs in {folder}")
    stats = _get_json(emulator.base_url + "/__emulator/stats")
    scans = _get_json(emulator.base_url + "/__emulator/scans")["scans"]
    return {
        "times": sorted(_parse_timestamp(s["timestamp"]) for s in scans),
        "status429": int(stats["statusCounts"].get("429", 0)),
        "duplicates": len(stats["duplicates"]),
        "scans": len(scans),
        "wall": wall,
        "retries": retries,
    }


def pace(times: list[float], count: int) -> float | None:
    """Requests per second as a sliding-window limit of ``count`` paces them: count / mean gap to the count-th next."""
    gaps = [times[i + count] - times[i] for i in range(len(times) - count)]
    if not gaps:
        return None
    mean = statistics.fmean(gaps)
    return count / mean if mean > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=200, help="manifest rows per run (default 200)")
    parser.add_argument("--limit", default="50/5s", help="the emulator's limit and the workers' (default 50/5s)")
    parser.add_argument("--margin", type=float, default=0.1, help="the workers' --rate-margin (default 0.1)")
    parser.add_argument("--concurrency", type=int, default=4, help="each worker's --concurrency (default 4)")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--cost-items", type=int, default=300, help="timed calls per journal-cost row")
    args = parser.parse_args()
    window = parse_rate(args.limit)[0]
    limit_rate = window.limit / window.seconds

    rows: list[tuple[object, ...]] = []
    with (
        tempfile.TemporaryDirectory(prefix="netverify-bench-dist-") as tmp,
        postgres_database(args.postgres_url) as postgres,
        redis_database(args.redis_url) as redis,
        emulator_process("--rate-limit", args.limit) as emulator,
    ):
        folder = Path(tmp)
        (folder / "front.jpg").write_bytes(small_jpeg())
        for workers in (1, 4):
            manifest = folder / f"manifest-{workers}.csv"
            manifest.write_text(
                "reference,front,country,id_type\n"
                + "".join(f"w{workers}-{i:05d},front.jpg,USA,PASSPORT\n" for i in range(args.items))
            )
            emulator.reset()
            time.sleep(window.seconds + 0.5)  # the emulator's window forgets the previous run
            found = run_workers(
                workers=workers, manifest=manifest, postgres=postgres, redis=redis, emulator=emulator,
                limit=args.limit, margin=args.margin, concurrency=args.concurrency, folder=folder,
            )  # fmt: skip
            times = found["times"]
            steady = pace(times, window.limit)
            overall = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            rows.append(
                (
                    workers,
                    found["scans"],
                    f"{steady:.2f}/s" if steady else "-",
                    f"{100 * steady / limit_rate:.1f} %" if steady else "-",
                    f"{overall:.2f}/s",
                    found["status429"],
                    found["duplicates"],
                    f"{found['wall']:.1f}",
                    found["retries"],
                )
            )
        cost = anyio.run(lambda: measure_journal_cost(postgres, items=args.cost_items, drivers=False))

    print(
        f"machine: {os.cpu_count()} CPUs, {machine_load()}; emulator and workers on loopback, limit {args.limit} "
        f"({limit_rate:g}/s) at the emulator and in the shared Redis limiter (margin {args.margin:g} s), "
        f"each worker --concurrency {args.concurrency}, {args.items} items per run\n"
    )
    print(
        markdown_table(
            ["workers", "scans", "rate (sliding-window pace)", "rate / limit", "N / (last - first)", "429s",
             "duplicates", "wall s", "journal retries"],
            rows,
            "rrrrrrrrr",
        )
    )
    print()
    print("Journal cost per state transition (benchmarks/_journal_cost.py):\n")
    print(format_journal_cost(cost))


if __name__ == "__main__":
    main()
