"""A distributed batch under fire: four ``netverify-async worker`` processes share one PostgreSQL journal and one
Redis rate limit against an emulator that enforces that limit; workers are SIGKILLed and restarted at random
moments, and PostgreSQL is restarted once in the middle of the run.

Afterwards every item has exactly one state that is not ``pending`` (``receipt``, ``failed``, or ``sent``/
``unknown`` for an upload cut off by a kill), none is lost, and the emulator, which records every scan it
created by merchant reference, never created two scans for one reference: a killed worker's item is either
claimed again (nothing had been sent) or left unknown (never resent blindly). Every receipt the journal holds is
the scan the emulator created for that reference.

Real parts over loopback: the worker processes (the command line), a throwaway PostgreSQL server of this
module's own (``postgres_server``, restarted in place), redis-server, the bundled emulator served from a thread.
The random schedule is seeded (``SEED``); the assertions hold for any schedule.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_support import GOOD_PNG
from _postgres_support import journal_name

from netverify_async import JournalState

pytest.importorskip("psycopg")
pytest.importorskip("redis")

from netverify_async.postgres import PostgresJournal

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
    pytest.mark.slow,
]

ITEMS = 150
WORKERS = 4
LIMIT = "20/1s"
SEED = 17
#: Kills spread over the run (each killed worker is started again at once).
KILLS = 6
LEASE_SECONDS = "2"
RUN_TIMEOUT_S = 90.0


@pytest.fixture
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0, rate_limit=LIMIT) as running:
        yield running


def write_manifest(folder: Path, refs: list[str]) -> Path:
    (folder / "front.png").write_bytes(GOOD_PNG)
    path = folder / "manifest.csv"
    path.write_text(
        "reference,front,country,id_type\n" + "".join(f"{ref},front.png,USA,PASSPORT\n" for ref in refs)
    )
    return path


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}


class Workers:
    """The worker processes: started, killed and started again; their output goes to files."""

    def __init__(self, command: list[str], folder: Path) -> None:
        self.command = command
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.exit_codes: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.folder / f"worker-{self.started}.log", "wb")
        process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=environment(), stdin=subprocess.DEVNULL
        )
        log.close()  # the child holds its own copy
        self.processes.append(process)
        return process

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def kill_one(self, rng: random.Random) -> bool:
        alive = self.running()
        if not alive:
            return False
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.processes.remove(victim)
        return True

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for process in list(self.processes):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                self.exit_codes.append(process.wait(timeout=remaining))
            except subprocess.TimeoutExpired:
                pass

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted(self.folder.glob("worker-*.log"))
        )


def test_killed_workers_and_a_database_restart_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, postgres_server: Any, redis_server: str, emulator: Any
) -> None:
    refs = [f"dist-{i:04d}" for i in range(ITEMS)]
    manifest = write_manifest(tmp_path, refs)
    url = postgres_server.url
    name = journal_name("dist")
    journal_args = ["--journal", url, "--name", name]

    loaded = subprocess.run(
        [sys.executable, "-m", "netverify_async", "batch", str(manifest), *journal_args, "--load-only"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded {ITEMS} new, 0 already present" in loaded.stdout

    command = [
        sys.executable,
        "-m",
        "netverify_async",
        "worker",
        *journal_args,
        "--drain",
        "--json",
        "--concurrency",
        "4",
        "--lease-seconds",
        LEASE_SECONDS,
        "--poll-interval",
        "0.2",
        "--emulator",
        emulator.base_url,
        "--rate-limit",
        LIMIT,
        "--redis-url",
        redis_server,
        "--redis-key",
        f"test-dist-{uuid.uuid4().hex[:8]}",
    ]
    workers = Workers(command, tmp_path)
    rng = random.Random(SEED)
    kill_points = sorted(rng.sample(range(10, ITEMS - 20), KILLS))  # scans created when each kill happens
    restart_point = ITEMS // 2
    restarted_database = False
    kills = 0
    try:
        for _ in range(WORKERS):
            workers.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and (kill_points or not restarted_database):
            created = emulator.stats.scans_created
            if kill_points and created >= kill_points[0]:
                kill_points.pop(0)
                time.sleep(rng.uniform(0.0, 0.05))  # not always at the same instant of an upload
                if workers.kill_one(rng):
                    kills += 1
                    workers.start()
            if not restarted_database and created >= restart_point:
                postgres_server.restart("fast")
                restarted_database = True
            if not workers.running():
                break
            time.sleep(0.01)
        workers.wait_all(max(1.0, deadline - time.monotonic()))
        alive = workers.running()
    finally:
        workers.stop_all()
    assert not alive, "workers still running at the deadline\n" + workers.logs()
    assert kills == KILLS and restarted_database, workers.logs()
    assert workers.exit_codes and all(code == 0 for code in workers.exit_codes), workers.logs()

    async def read_journal() -> tuple[dict[str, JournalState], dict[str, str | None]]:
        async with PostgresJournal(url, name) as journal:
            entries = await journal.entries()
        return (
            {e.merchant_id_scan_reference: e.state for e in entries},
            {e.merchant_id_scan_reference: e.scan_reference for e in entries},
        )

    states, scan_refs = anyio.run(read_journal)
    scans = {ref: list(found) for ref, found in emulator.stats.scans_by_merchant_reference.items()}

    print(  # shown with -s: what the run went through
        f"kills={kills} unresolved={sum(s.outcome_unknown for s in states.values())} "
        f"statuses={dict(emulator.stats.status_counts)} workers_started={workers.started}"
    )
    # none lost, none extra, none left unsent
    assert sorted(states) == refs
    assert set(scans) <= set(refs)
    assert [ref for ref, state in states.items() if state is JournalState.PENDING] == []
    # the emulator never created two scans for one reference (unknown ones included: they are never resent)
    assert {ref: found for ref, found in scans.items() if len(found) > 1} == {}
    for ref, state in states.items():
        if state is JournalState.RECEIPT:
            assert scans.get(ref) == [scan_refs[ref]], ref  # the scan the emulator made, exactly once
        elif state is JournalState.FAILED:
            assert ref not in scans, ref  # "failed" means no scan was created
        else:
            assert state in (JournalState.SENT, JournalState.UNKNOWN), (ref, state)
    # the kills cut off at most a few uploads each; the rest went through
    unresolved = [ref for ref, state in states.items() if state.outcome_unknown]
    assert len(unresolved) <= KILLS * 4, unresolved
    assert sum(state is JournalState.RECEIPT for state in states.values()) >= ITEMS - KILLS * 4
