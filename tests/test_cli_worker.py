"""Workers of a distributed batch, one at a time: loading a manifest into a PostgreSQL journal (idempotent), the
``worker`` and ``status --journal`` commands, a worker on trio, a lost lease, ``process_one``, bad payloads.

Real parts over loopback: a throwaway PostgreSQL (``tests/_postgres_support.py``), the bundled emulator served
from a thread, the command line as a subprocess. The many-workers-with-kills test is
``test_distributed_workers.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_support import GOOD_PNG, USER_AGENT, client_for, scans_per_reference
from _postgres_support import journal_name

from netverify_async import JournalState, NetverifyRequest, OutcomeStatus, SqliteJournal

pytest.importorskip("psycopg")

from netverify_async._worker import (
    manifest_row_payload,
    process_one,
    request_from_payload,
    run_worker,
)
from netverify_async.postgres import PostgresJournal


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as running:
        yield running


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "front.png").write_bytes(GOOD_PNG)
    return folder


def manifest(folder: Path, refs: list[str]) -> Path:
    rows = [f"{ref},img/front.png,USA,PASSPORT" for ref in refs]
    path = folder / "m.csv"
    path.write_text("reference,front,country,id_type\n" + "\n".join(rows) + "\n")
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def payloads(folder: Path, refs: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (ref, manifest_row_payload({"reference": ref, "front": "front.png", "country": "USA", "id_type": "PASSPORT"}, base_dir=folder))
        for ref in refs
    ]


# ----------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------


def test_batch_loads_idempotently_then_a_worker_drains_it(
    tmp_path: Path, images: Path, postgres_url: str, emu: Any
) -> None:
    emu.reset()
    refs = [f"load-{i}" for i in range(4)]
    path = manifest(tmp_path, refs)
    name = journal_name("cli")
    common = ["--journal", postgres_url, "--name", name]

    first = cli("batch", str(path), *common, "--load-only")
    assert first.returncode == 0, first.stderr
    assert "loaded 4 new, 0 already present" in first.stdout
    again = cli("batch", str(path), *common, "--load-only")
    assert again.returncode == 0, again.stderr
    assert "loaded 0 new, 4 already present" in again.stdout

    status = cli("status", *common, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["counts"]["pending"] == 4 and report["total"] == 4 and report["unresolved"] == []
    assert "@" not in report["journal"] or "***" in report["journal"] or ":" not in report["journal"].split("@")[0][13:]

    worker = cli("worker", *common, "--drain", "--emulator", emu.base_url, "--rate-limit", "none", "--json")
    assert worker.returncode == 0, worker.stderr
    lines = [json.loads(line) for line in worker.stdout.splitlines()]
    items = [line for line in lines if line["type"] == "item"]
    assert sorted(line["reference"] for line in items) == refs
    assert {line["status"] for line in items} == {"receipt"}
    assert lines[-1]["type"] == "summary" and lines[-1]["outcomes"]["receipt"] == 4
    assert scans_per_reference(emu) == dict.fromkeys(refs, 1)

    status = cli("status", *common)
    assert status.returncode == 0, status.stderr
    assert "receipt" in status.stdout and "unresolved: none" in status.stdout
    counts = {line.split()[0]: int(line.split()[1]) for line in status.stdout.splitlines()[1:6]}
    assert counts == {"pending": 0, "sent": 0, "receipt": 4, "failed": 0, "unknown": 0}

    # the same manifest again: nothing new, nothing sent, every item already has its receipt
    rerun = cli("batch", str(path), *common, "--emulator", emu.base_url, "--rate-limit", "none")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "loaded 0 new, 4 already present" in rerun.stdout
    assert scans_per_reference(emu) == dict.fromkeys(refs, 1)


def test_requeue_failed_puts_failed_items_back_and_never_unknown_ones(
    tmp_path: Path, images: Path, postgres_url: str, emu: Any
) -> None:
    from netverify_async import ConfigurationError

    emu.reset()
    refs = [f"requeue-{i}" for i in range(4)]
    path = manifest(tmp_path, refs)
    name = journal_name("requeue")
    common = ["--journal", postgres_url, "--name", name]
    assert cli("batch", str(path), *common, "--load-only").returncode == 0

    async def fail_two_and_leave_one_unknown() -> None:
        async with PostgresJournal(postgres_url, name) as journal:
            leases = {lease.ref: lease for lease in await journal.claim(limit=4)}
            for ref in refs[:2]:
                await journal.mark_failed(ref, ConfigurationError("refused before sending"))
            await journal.mark_sent(refs[2])
            await journal.mark_unknown([refs[2]], "ReadError")
            await journal.release(leases[refs[3]])

    anyio.run(fail_two_and_leave_one_unknown)
    requeue = cli("batch", str(path), *common, "--load-only", "--requeue-failed")
    assert requeue.returncode == 0, requeue.stderr
    assert "requeued 2 failed item(s)" in requeue.stdout
    worker = cli("worker", *common, "--drain", "--emulator", emu.base_url, "--rate-limit", "none", "--json")
    assert worker.returncode == 0, worker.stderr
    assert scans_per_reference(emu) == {refs[0]: 1, refs[1]: 1, refs[3]: 1}  # never the unknown one
    report = json.loads(cli("status", *common, "--json").stdout)
    assert report["counts"]["receipt"] == 3 and report["counts"]["unknown"] == 1
    # the option belongs to PostgreSQL journals only
    sqlite = cli("batch", str(path), "--requeue-failed")
    assert sqlite.returncode == 2 and "--requeue-failed needs a PostgreSQL journal" in sqlite.stderr


def test_batch_reports_invalid_and_repeated_rows_and_does_not_load_them(
    tmp_path: Path, images: Path, postgres_url: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "reference,front,country,id_type\n"
        "ok-1,img/front.png,USA,PASSPORT\n"
        "ok-1,img/front.png,USA,PASSPORT\n"
        ",img/front.png,USA,PASSPORT\n"
        "ok-2,img/front.png,USA,PASSPORT\n"
    )
    done = cli("batch", str(path), "--journal", postgres_url, "--name", journal_name("inv"), "--load-only")
    assert done.returncode == 1
    assert "loaded 2 new, 0 already present" in done.stdout
    invalid = [line for line in done.stdout.splitlines() if line.startswith("invalid")]
    assert len(invalid) == 2
    assert "row 3" in invalid[0] and "duplicate_reference" in invalid[0]
    assert "row 4" in invalid[1] and "reference" in invalid[1]


def test_postgres_only_options_are_refused_elsewhere(tmp_path: Path, images: Path, postgres_url: str) -> None:
    path = manifest(tmp_path, ["x-1"])
    sqlite_only = cli("batch", str(path), "--load-only")
    assert sqlite_only.returncode == 2 and "--load-only needs a PostgreSQL journal" in sqlite_only.stderr
    with_wait = cli("batch", str(path), "--journal", postgres_url, "--wait")
    assert with_wait.returncode == 2 and "--wait is not available" in with_wait.stderr
    not_pg = cli("worker", "--journal", str(tmp_path / "j.sqlite3"))
    assert not_pg.returncode == 2 and "PostgreSQL" in not_pg.stderr
    redis_alone = cli("worker", "--journal", postgres_url, "--redis-url", "redis://127.0.0.1:1/0")
    assert redis_alone.returncode == 2 and "--rate-limit" in redis_alone.stderr


def test_status_of_a_sqlite_journal(tmp_path: Path) -> None:
    from netverify_async import ScanReceipt

    path = tmp_path / "b.journal.sqlite3"

    async def fill() -> None:
        async with SqliteJournal(path) as journal:
            for ref in ("a", "b", "c", "d"):
                await journal.begin_item(ref)
            await journal.mark_sent("b")
            await journal.mark_sent("c")
            await journal.mark_unknown(["c"], "ReadError")
            await journal.mark_sent("d")
            receipt = ScanReceipt.from_wire({"jumioIdScanReference": "scan-d", "timestamp": "2026-01-01T00:00:00.000Z"})
            await journal.mark_receipt("d", receipt)

    anyio.run(fill)
    text = cli("status", "--journal", str(path))
    assert text.returncode == 0, text.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in text.stdout.splitlines()[1:7]}
    assert counts == {"pending": 1, "sent": 1, "receipt": 1, "failed": 0, "unknown": 1, "total": 4}
    assert "unresolved (sent or unknown, oldest first): 2" in text.stdout
    listed = text.stdout.split("oldest first): 2", 1)[1].split()
    assert sorted(listed) == ["b", "c"]

    as_json = json.loads(cli("status", "--journal", str(path), "--json").stdout)
    assert as_json["counts"] == {"pending": 1, "sent": 1, "receipt": 1, "failed": 0, "unknown": 1}
    assert sorted(as_json["unresolved"]) == ["b", "c"]

    missing = cli("status", "--journal", str(tmp_path / "nope.sqlite3"))
    assert missing.returncode == 1 and "no such journal file" in missing.stderr
    assert not (tmp_path / "nope.sqlite3").exists()
    both = cli("status", "REF", "--journal", str(path))
    assert both.returncode == 2
    neither = cli("status")
    assert neither.returncode == 2


# ----------------------------------------------------------------------------------------------------------
# The API
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_a_worker_drains_the_journal(images: Path, postgres_url: str, emu: Any) -> None:
    emu.reset()
    refs = [f"api-{i}" for i in range(6)]
    seen: list[str] = []
    async with PostgresJournal(postgres_url, journal_name("api")) as journal:
        assert await journal.load(payloads(images, refs)) == 6
        async with client_for(emu) as client:
            stats = await run_worker(
                client,
                journal,
                concurrency=3,
                on_outcome=lambda outcome: seen.append(outcome.merchant_id_scan_reference or ""),
            )
        counts = await journal.counts()
    assert sorted(seen) == refs
    assert stats.outcomes["receipt"] == 6 and stats.claimed == 6 and stats.lease_lost == 0
    assert counts[JournalState.RECEIPT] == 6 and sum(counts.values()) == 6
    assert scans_per_reference(emu) == dict.fromkeys(refs, 1)


@pytest.mark.anyio
async def test_process_one_takes_one_item_at_a_time(images: Path, postgres_url: str, emu: Any) -> None:
    emu.reset()
    async with PostgresJournal(postgres_url, journal_name("one")) as journal:
        await journal.load(payloads(images, ["one-a", "one-b"]))
        async with client_for(emu) as client:
            first = await process_one(client, journal)
            second = await process_one(client, journal)
            third = await process_one(client, journal)
        states = await journal.states()
    assert first is not None and second is not None and third is None
    assert first.status is OutcomeStatus.RECEIPT and second.status is OutcomeStatus.RECEIPT
    assert {first.merchant_id_scan_reference, second.merchant_id_scan_reference} == {"one-a", "one-b"}
    assert states == {"one-a": JournalState.RECEIPT, "one-b": JournalState.RECEIPT}


@pytest.mark.anyio
async def test_a_payload_that_cannot_become_a_request_is_recorded_failed(
    images: Path, postgres_url: str, emu: Any
) -> None:
    emu.reset()
    missing = manifest_row_payload(
        {"reference": "bad-1", "front": "no-such.png", "country": "USA", "id_type": "PASSPORT"}, base_dir=images
    )
    outcomes: list[Any] = []
    async with PostgresJournal(postgres_url, journal_name("bad")) as journal:
        await journal.load([("bad-1", missing), *payloads(images, ["good-1"])])
        async with client_for(emu) as client:
            stats = await run_worker(client, journal, concurrency=2, on_outcome=outcomes.append)
        entry = await journal.get("bad-1")
    assert stats.outcomes["invalid"] == 1 and stats.outcomes["receipt"] == 1
    bad = next(o for o in outcomes if o.merchant_id_scan_reference == "bad-1")
    assert bad.status is OutcomeStatus.INVALID
    assert [issue.code for issue in bad.error.errors] == ["file_not_found"]
    assert entry is not None and entry.state is JournalState.FAILED and entry.sends == 0
    assert "bad-1" not in scans_per_reference(emu)


def test_payload_round_trip_and_refusals(images: Path) -> None:
    from netverify_async import RequestValidationError

    payload = manifest_row_payload(
        {"reference": "p-1", "front": "front.png", "country": "USA", "id_type": "passport", "enabled_fields": ["idNumber", "idDob"]},
        base_dir=images,
        row=7,
    )
    assert json.loads(json.dumps(payload)) == payload  # JSON as it is stored
    request = request_from_payload("p-1", payload)
    assert isinstance(request, NetverifyRequest) and request.merchant_id_scan_reference == "p-1"
    assert request.frontside_image is not None and request.frontside_image.size == len(GOOD_PNG)
    with pytest.raises(RequestValidationError) as other:
        request_from_payload("p-2", payload)
    assert other.value.errors[0].code == "mismatch"
    with pytest.raises(RequestValidationError) as unknown:
        manifest_row_payload({"reference": "p", "front": "f", "country": "USA", "id_type": "PASSPORT", "shoe_size": "9"})
    assert unknown.value.errors[0].code == "unknown_column"
    with pytest.raises(RequestValidationError) as required:
        manifest_row_payload({"reference": "p", "front": "f"})
    assert {i.path for i in required.value.errors} == {"country", "id_type"}


@pytest.mark.anyio
async def test_an_item_whose_lease_was_lost_is_skipped_not_sent(
    images: Path, postgres_url: str, emu: Any
) -> None:
    """The worker stalls (its event loop blocked, so no renewal) past its lease; another worker claims the item
    meanwhile. The stalled worker's ``mark_sent`` is refused: it skips the item and goes on with the next."""
    emu.reset()
    name = journal_name("lost")
    stolen: list[str] = []
    claimed, done = threading.Event(), threading.Event()

    def other_worker() -> None:
        async def hold() -> None:
            async with PostgresJournal(postgres_url, name) as other:  # closing it would give the item back
                stolen.extend(lease.ref for lease in await other.claim(limit=1))
                claimed.set()
                await anyio.to_thread.run_sync(done.wait)

        anyio.run(hold)

    thread = threading.Thread(target=other_worker)

    async def stalled_build(ref: str, payload: Any) -> NetverifyRequest:
        if ref == "lost-0":
            import time

            time.sleep(2.0)  # blocks the event loop: the 1 s lease runs out unrenewed
            thread.start()
            assert claimed.wait(10)  # still blocked: the other worker's claim lands before anything runs here
        return await anyio.to_thread.run_sync(request_from_payload, ref, payload)

    try:
        async with PostgresJournal(postgres_url, name, lease_seconds=1.0) as journal:
            await journal.load(payloads(images, ["lost-0", "lost-1"]))
            async with client_for(emu, user_agent=USER_AGENT) as client:
                with anyio.fail_after(30):
                    first = await process_one(client, journal, build=stalled_build)
                    assert first is None  # its only item was taken over
                    after = await process_one(client, journal, build=stalled_build)
            entry = await journal.get("lost-0")
    finally:
        done.set()
        if thread.is_alive():
            thread.join()
    assert stolen == ["lost-0"]
    assert after is not None and after.merchant_id_scan_reference == "lost-1"
    assert after.status is OutcomeStatus.RECEIPT
    assert entry is not None and entry.state is JournalState.PENDING and entry.sends == 0
    assert scans_per_reference(emu) == {"lost-1": 1}


@pytest.mark.anyio
async def test_a_failing_shared_limiter_sends_nothing_and_requeues_the_item(
    images: Path, postgres_url: str, emu: Any
) -> None:
    """Redis away: no slot can be booked, so nothing is sent; the item goes back to the queue, not to ``failed``."""
    pytest.importorskip("redis")
    from _support import closed_port_url

    from netverify_async.redis import RedisRateLimiter

    emu.reset()
    redis_url = closed_port_url().replace("http://", "redis://") + "/0"
    limiter = RedisRateLimiter(redis_url, rates="5/5s", operation_timeout=0.5, outage_timeout=0.5)
    async with PostgresJournal(postgres_url, journal_name("redis")) as journal:
        await journal.load(payloads(images, ["r-1"]))
        async with limiter, client_for(emu, rate_limit=limiter) as client:
            outcome = await process_one(client, journal)
        entry = await journal.get("r-1")
        queued = await journal.queued_count()
    assert outcome is None  # no outcome: handed back
    assert entry is not None and entry.state is JournalState.PENDING and entry.sends == 0
    assert queued == 1  # claimable again at once
    assert scans_per_reference(emu) == {}


def test_sigterm_lets_uploads_in_flight_finish_and_hands_the_rest_back(
    tmp_path: Path, images: Path, postgres_url: str
) -> None:
    """SIGTERM while uploads are in flight (the emulator takes 1.5 s per request): those finish and are recorded
    ``receipt``; nothing is left ``sent``/``unknown``; items not sent go back to the queue at once."""
    import signal
    import time

    from netverify_async.emulator import run_emulator_in_thread

    refs = [f"term-{i}" for i in range(8)]
    path = manifest(tmp_path, refs)
    name = journal_name("term")
    common = ["--journal", postgres_url, "--name", name]
    assert cli("batch", str(path), *common, "--load-only").returncode == 0

    async def read() -> tuple[dict[str, JournalState], int]:
        async with PostgresJournal(postgres_url, name) as journal:
            return await journal.states(), await journal.queued_count()

    with run_emulator_in_thread(processing_delay=0.0, latency=1.5) as slow:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
        worker = subprocess.Popen(
            [sys.executable, "-m", "netverify_async", "worker", *common, "--concurrency", "2", "--json",
             "--emulator", slow.base_url, "--rate-limit", "none"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while JournalState.SENT not in anyio.run(read)[0].values():
                assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        scans = scans_per_reference(slow)
    assert worker.returncode == 0, err
    states, queued = anyio.run(read)
    receipts = sorted(ref for ref, state in states.items() if state is JournalState.RECEIPT)
    assert receipts and receipts == sorted(scans) and set(scans.values()) == {1}
    assert {state for state in states.values()} <= {JournalState.RECEIPT, JournalState.PENDING}
    pending = [ref for ref, state in states.items() if state is JournalState.PENDING]
    assert pending and queued == len(pending)  # handed back, not left leased
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["outcomes"]["receipt"] == len(receipts)


@pytest.mark.anyio
async def test_callbacks_from_any_replica_settle_the_workers_unknown_items(images: Path, postgres_url: str) -> None:
    """A worker leaves two items ``unknown`` (their answers were dropped after the scans were created); the
    emulator's callbacks reach two receivers in turn (a round-robin "load balancer" over two replicas, each
    with its own connection to the journal), and every item ends ``receipt`` with the scan the emulator made."""
    from fastapi import FastAPI

    from netverify_async.callbacks import CallbackOriginVerifier
    from netverify_async.emulator import run_emulator, serve_asgi
    from netverify_async.fastapi import callback_router

    name = journal_name("replicas")
    refs = [f"cb-{i}" for i in range(4)]
    loopback = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
    journals = [PostgresJournal(postgres_url, name) for _ in range(2)]
    replicas = []
    for journal in journals:
        app = FastAPI()
        app.include_router(callback_router(journal=journal, verifier=loopback))
        replicas.append(app)
    served = [0, 0]
    held = anyio.Event()

    async def balancer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: nothing to start (the journals are opened below)
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        await held.wait()  # callbacks wait until the worker is done, so that "unknown" is seen first
        turn = sum(served) % 2
        served[turn] += 1
        await replicas[turn](scope, receive, send)

    async with journals[0] as worker_journal, journals[1]:
        await worker_journal.load(payloads(images, refs))
        async with (
            serve_asgi(balancer) as url,
            run_emulator(
                processing_delay=0,
                allow_http_callbacks=True,
                callback_url_override=url + "/netverify/callback",
                callback_timeout=30,
                sequence=["ok", "drop", "ok", "drop"],
            ) as emu,
        ):
            async with client_for(emu) as client:
                stats = await run_worker(client, worker_journal, concurrency=1)
            before = await worker_journal.states()
            held.set()
            records = await emu.wait_for_callbacks(4, timeout=30)
            created = emu.stats.scans_by_merchant_reference
        entries = {e.merchant_id_scan_reference: e for e in await worker_journal.entries()}
    assert stats.outcomes["receipt"] == 2 and stats.outcomes["unknown"] == 2
    unknown = sorted(ref for ref, state in before.items() if state is JournalState.UNKNOWN)
    assert len(unknown) == 2
    assert {(r.result, r.status_code) for r in records} == {("delivered", 200)}
    assert served == [2, 2]  # both replicas recorded callbacks
    for ref in refs:
        entry = entries[ref]
        assert entry.state is JournalState.RECEIPT and not entry.duplicate_scan, ref
        assert entry.scan_references == created[ref] and len(created[ref]) == 1
        assert entry.result is not None
        assert (entry.reconciled_at is not None) is (ref in unknown)


@pytest.mark.anyio
async def test_refused_credentials_stop_the_worker_with_a_plain_error_and_hand_the_items_back(
    images: Path, postgres_url: str, emu: Any
) -> None:
    from netverify_async import BatchStoppedError

    emu.reset()
    refs = [f"auth-{i}" for i in range(6)]
    async with PostgresJournal(postgres_url, journal_name("auth")) as journal:
        await journal.load(payloads(images, refs))
        async with client_for(emu, api_secret="not-the-secret") as client:
            with pytest.raises(BatchStoppedError, match="authentication refusals"):
                await run_worker(client, journal, concurrency=1)
        states = await journal.states()
        queued = await journal.queued_count()
    # the refused ones are failed (nothing was processed); the rest went back to the queue, claimable at once
    failed = [ref for ref, state in states.items() if state is JournalState.FAILED]
    assert len(failed) == 3
    assert queued == len(refs) - len(failed)
    assert scans_per_reference(emu) == {}


@pytest.mark.anyio
async def test_a_database_away_longer_than_the_retry_timeout_restarts_the_pipeline(
    images: Path, postgres_server: Any
) -> None:
    """PostgreSQL stops while uploads are in flight and stays away longer than ``journal_retry_timeout``: the
    receipts that could not be written leave their items ``sent`` (unknown, never resent), the worker starts
    over once the database is back, and every other item is sent exactly once."""
    from netverify_async.emulator import run_emulator

    name = journal_name("outage")
    refs = [f"out-{i}" for i in range(6)]
    url = postgres_server.url
    async with (
        run_emulator(processing_delay=0, latency=1.0) as slow,
        PostgresJournal(url, name, lease_seconds=3.0) as journal,
    ):
        await journal.load(payloads(images, refs))

        async def outage() -> None:
            async with PostgresJournal(url, name) as watcher:
                while JournalState.SENT not in (await watcher.states()).values():
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(postgres_server.stop)
            await anyio.sleep(2.0)  # longer than the worker's journal_retry_timeout below
            await anyio.to_thread.run_sync(postgres_server.start)

        async with anyio.create_task_group() as group, client_for(slow) as client:
            group.start_soon(outage)
            with anyio.fail_after(60):
                stats = await run_worker(client, journal, concurrency=2, journal_retry_timeout=0.5, poll_interval=0.1)
        states = await journal.states()
        scans = scans_per_reference(slow)
    assert stats.restarts >= 1 and stats.journal_retries >= 1
    assert JournalState.PENDING not in states.values()
    assert set(scans.values()) == {1} and set(scans) <= set(refs)
    receipts = {ref for ref, state in states.items() if state is JournalState.RECEIPT}
    assert receipts <= set(scans)
    assert all(states[ref] in (JournalState.SENT, JournalState.UNKNOWN) for ref in set(refs) - receipts)


@pytest.mark.anyio
async def test_batch_stop_lets_uploads_in_flight_finish(tmp_path: Path) -> None:
    """``Batch.stop()`` (what a worker does on SIGTERM): no new item is taken, nothing in flight is cut off."""
    from _batch_support import make_request

    from netverify_async.emulator import run_emulator

    refs = [f"stop-{i}" for i in range(8)]
    async with run_emulator(processing_delay=0, latency=0.5) as slow, client_for(slow) as client:
        async with SqliteJournal(tmp_path / "stop.journal") as journal:
            requests = [make_request(r) for r in refs]
            async with client.submit_many(requests, concurrency=2, journal=journal) as batch:
                statuses = []
                async for outcome in batch:
                    statuses.append(outcome.status)
                    batch.stop()
                    assert batch.stopping
            states = await journal.states()
        scans = scans_per_reference(slow)
    assert statuses and set(statuses) == {OutcomeStatus.RECEIPT} and len(statuses) < len(refs)
    assert batch.summary.unknown == () and len(batch.summary.not_sent) > 0
    assert sorted(scans) == sorted(ref for ref, state in states.items() if state is JournalState.RECEIPT)
    assert not any(state.outcome_unknown for state in states.values())
