"""Workers of a distributed batch, one at a time: loading a manifest into a PostgreSQL journal (idempotent), the
``worker`` and ``status --journal`` commands, a worker on trio, a lost lease, ``process_one``, bad payloads.

Real parts over loopback: a throwaway PostgreSQL (``tests/_postgres_support.py``), the bundled emulator served
from a thread, the command line as a subprocess. The many-workers-with-kills test is
``test_distributed_workers.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
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
    image_root = cli("batch", str(path), "--image-root", str(images))
    assert image_root.returncode == 2 and "--image-root needs a PostgreSQL journal" in image_root.stderr
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


# ----------------------------------------------------------------------------------------------------------
# Items given back and taken again; hard stops; builders; process_one; image_root
# ----------------------------------------------------------------------------------------------------------


class _Slot:
    def record(self, status_code: int | None, retry_after: float | None = None) -> None:
        pass


class FlakyLimiter:
    """A shared limiter that cannot book a slot for its first ``failures`` requests, or that makes its first
    request wait ``first_wait`` seconds. A stand-in: a real Redis outage cannot be timed to one request."""

    def __init__(self, *, failures: int = 0, first_wait: float = 0.0) -> None:
        self.failures = failures
        self.first_wait = first_wait
        self.calls = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        from netverify_async import RateLimiterError

        self.calls += 1
        if self.calls <= self.failures:
            raise RateLimiterError("the shared limit cannot be reached")
        if self.calls == 1 and self.first_wait:
            await anyio.sleep(self.first_wait)
        yield _Slot()


@pytest.mark.anyio
async def test_an_item_handed_back_after_a_limiter_failure_is_sent_once_after_a_back_off(
    images: Path, postgres_url: str, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter fails once: the item goes back to the queue (no ``failed`` record or transition), the worker
    waits before it takes items again, claims the same item again, sends it once, and ``drain`` ends."""
    from netverify_async import JournalTransition, _worker

    monkeypatch.setattr(_worker, "_LIMITER_BACKOFF_FIRST", 0.2)
    backoffs: list[tuple[float, float]] = []  # (when the limiter failed, no new item before)
    original = _worker._Worker.limiter_failed

    def spy(self: Any) -> None:
        original(self)
        backoffs.append((anyio.current_time(), self.resume_at))

    monkeypatch.setattr(_worker._Worker, "limiter_failed", spy)
    claims: list[float] = []

    class Recording(PostgresJournal):
        async def claim(self, limit: int = 1) -> Any:
            claims.append(anyio.current_time())
            return await super().claim(limit=limit)

    emu.reset()
    transitions: list[str] = []
    outcomes: list[Any] = []

    def hook(event: Any) -> None:
        if isinstance(event, JournalTransition):
            transitions.append(event.state)

    async with Recording(postgres_url, journal_name("requeue")) as journal:
        await journal.load(payloads(images, ["rq-1"]))
        async with client_for(emu, rate_limit=FlakyLimiter(failures=1), event_hooks=[hook]) as client:
            with anyio.fail_after(30):
                stats = await run_worker(client, journal, concurrency=1, poll_interval=0.05, on_outcome=outcomes.append)
        entry = await journal.get("rq-1")
    assert [o.status for o in outcomes] == [OutcomeStatus.RECEIPT]
    assert stats.requeued == 1 and stats.claimed == 2 and stats.completed == 1
    assert entry is not None and entry.state is JournalState.RECEIPT and entry.sends == 1
    assert scans_per_reference(emu) == {"rq-1": 1}
    assert "failed" not in transitions and transitions[-1] == "receipt"
    ((failed_at, resume_at),) = backoffs
    assert resume_at > failed_at
    later = [t for t in claims if t >= failed_at]
    assert later and all(t >= resume_at for t in later)  # no claim during the back-off


@pytest.mark.anyio
async def test_an_item_whose_sent_record_failed_for_a_while_is_claimed_again_and_sent_once(
    images: Path, postgres_url: str, emu: Any
) -> None:
    """``mark_sent`` fails past ``journal_retry_timeout`` (the database away for that write): the item is not
    sent and is handed back; the same worker claims it again and sends it once; ``drain`` ends."""
    from netverify_async import JournalError

    class SentNotRecorded(PostgresJournal):
        releases = 0

        async def mark_sent(self, merchant_id_scan_reference: str) -> None:
            if self.releases == 0:
                raise JournalError("the database is away")
            await super().mark_sent(merchant_id_scan_reference)

        async def release(self, lease: Any) -> None:
            self.releases += 1
            await super().release(lease)

    emu.reset()
    outcomes: list[Any] = []
    async with SentNotRecorded(postgres_url, journal_name("marksent")) as journal:
        await journal.load(payloads(images, ["ms-1"]))
        async with client_for(emu) as client:
            with anyio.fail_after(30):
                stats = await run_worker(
                    client, journal, concurrency=1, poll_interval=0.05, journal_retry_timeout=0.3, on_outcome=outcomes.append
                )
        entry = await journal.get("ms-1")
        assert journal.releases == 1
    assert [o.status for o in outcomes] == [OutcomeStatus.RECEIPT]
    assert stats.claimed == 2 and stats.completed == 1
    assert entry is not None and entry.state is JournalState.RECEIPT and entry.sends == 1
    assert scans_per_reference(emu) == {"ms-1": 1}


@pytest.mark.anyio
async def test_an_item_whose_lease_ran_out_is_claimed_again_by_the_same_worker_and_sent_once(
    images: Path, postgres_url: str, emu: Any
) -> None:
    """Renewals fail (the database away for them) while the first upload waits for a slot longer than the
    lease: ``mark_sent`` is refused (lease lost), nothing is sent; nobody else takes the item, so the same
    worker claims it again (its reference no longer counts as lost) and sends it once; ``drain`` ends."""
    from netverify_async import JournalError

    class RenewalsAway(PostgresJournal):
        refused = 0

        async def renew(self, leases: Any) -> Any:
            if not self.refused:
                raise JournalError("the database is away")
            return await super().renew(leases)

        async def mark_sent(self, merchant_id_scan_reference: str) -> None:
            try:
                await super().mark_sent(merchant_id_scan_reference)
            except JournalError:
                self.refused += 1
                raise

    emu.reset()
    outcomes: list[Any] = []
    async with RenewalsAway(postgres_url, journal_name("relost"), lease_seconds=1.0) as journal:
        await journal.load(payloads(images, ["rl-1"]))
        async with client_for(emu, rate_limit=FlakyLimiter(first_wait=1.8)) as client:
            with anyio.fail_after(30):
                # polls rarely, so that the lease runs out (and mark_sent is refused) before the next claim
                stats = await run_worker(client, journal, concurrency=1, poll_interval=2.5, on_outcome=outcomes.append)
        entry = await journal.get("rl-1")
        assert journal.refused == 1
    assert [o.status for o in outcomes] == [OutcomeStatus.RECEIPT]
    assert stats.lease_lost == 1 and stats.claimed == 2
    assert entry is not None and entry.state is JournalState.RECEIPT and entry.sends == 1
    assert scans_per_reference(emu) == {"rl-1": 1}


@pytest.mark.anyio
async def test_a_hard_stop_while_the_database_is_away_tries_each_outcome_write_once(
    images: Path, postgres_url: str
) -> None:
    """Cancelling a worker (the second SIGTERM) while an upload is in flight and the database is away: the
    pipeline's last journal writes are tried once, not for ``journal_retry_timeout``; the item stays ``sent``."""
    from netverify_async import JournalError
    from netverify_async.emulator import run_emulator

    down = False
    tries: list[str] = []
    sent = anyio.Event()

    class Away(PostgresJournal):
        async def mark_sent(self, merchant_id_scan_reference: str) -> None:
            await super().mark_sent(merchant_id_scan_reference)
            sent.set()

        async def mark_unknown(self, merchant_id_scan_references: Any, error_type: str) -> None:
            if down:
                tries.append("mark_unknown")
                raise JournalError("the database is away")
            await super().mark_unknown(merchant_id_scan_references, error_type)

        async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
            if down:
                tries.append("mark_failed")
                raise JournalError("the database is away")
            await super().mark_failed(merchant_id_scan_reference, error)

    async with run_emulator(processing_delay=0, latency=3.0) as slow, Away(postgres_url, journal_name("hard")) as journal:
        await journal.load(payloads(images, ["hs-1"]))
        async with client_for(slow) as client:
            with anyio.CancelScope() as hard:
                async with anyio.create_task_group() as group:

                    async def cut() -> None:
                        nonlocal down
                        await sent.wait()
                        await anyio.sleep(0.2)
                        down = True
                        hard.cancel()

                    group.start_soon(cut)
                    # before the fix, the shielded writes were retried for these 20 s
                    await run_worker(client, journal, concurrency=1, journal_retry_timeout=20.0)
        entry = await journal.get("hs-1")
    assert hard.cancelled_caught
    assert len(tries) == 1
    assert entry is not None and entry.state is JournalState.SENT and entry.sends == 1


def test_redacted_url_hides_every_password_and_keeps_ipv6_brackets() -> None:
    from netverify_async.cli.worker import redacted_url

    shown = redacted_url("postgresql://app:s3cret@[::1]:5432/db?sslmode=require&password=hunter2&sslpassword=k3y")
    assert "s3cret" not in shown and "hunter2" not in shown and "k3y" not in shown
    assert shown == "postgresql://app:***@[::1]:5432/db?sslmode=require&password=***&sslpassword=***"
    assert redacted_url("postgresql://[::1]:5432/db") == "postgresql://[::1]:5432/db"
    assert redacted_url("postgres://h/db?PassWord=x&application_name=a") == "postgres://h/db?PassWord=***&application_name=a"
    assert redacted_url("postgresql://app@h/db?sslmode=require") == "postgresql://app@h/db?sslmode=require"
    assert "x" not in redacted_url("postgresql://h/db?a=1;password=xx").split("//")[1]


@pytest.mark.anyio
async def test_a_builder_that_raises_fails_its_item_with_the_type_only_and_the_worker_goes_on(
    images: Path, postgres_url: str, emu: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emu.reset()
    secret = "Jane Doe, born 1980-01-02"

    def build(ref: str, payload: Any) -> NetverifyRequest:
        if ref == "raise-1":
            raise ValueError(secret)
        return request_from_payload(ref, payload)

    outcomes: list[Any] = []
    async with PostgresJournal(postgres_url, journal_name("raise")) as journal:
        await journal.load(payloads(images, ["raise-1", "raise-2"]))
        async with client_for(emu) as client:
            stats = await run_worker(client, journal, concurrency=2, build=build, on_outcome=outcomes.append)
        entry = await journal.get("raise-1")
    assert stats.outcomes["invalid"] == 1 and stats.outcomes["receipt"] == 1
    bad = next(o for o in outcomes if o.merchant_id_scan_reference == "raise-1")
    assert bad.status is OutcomeStatus.INVALID and [i.code for i in bad.error.errors] == ["build_failed"]
    assert "ValueError" in str(bad.error) and "Jane" not in str(bad.error) and bad.error.__cause__ is None
    assert "ValueError" in caplog.text and "Jane" not in caplog.text
    assert entry is not None and entry.state is JournalState.FAILED and entry.sends == 0
    assert scans_per_reference(emu) == {"raise-2": 1}


@pytest.mark.anyio
async def test_process_one_handles_at_most_one_claimed_item_even_an_invalid_one(
    images: Path, postgres_url: str, emu: Any
) -> None:
    emu.reset()
    missing = manifest_row_payload(
        {"reference": "po-bad", "front": "no-such.png", "country": "USA", "id_type": "PASSPORT"}, base_dir=images
    )
    async with PostgresJournal(postgres_url, journal_name("pone")) as journal:
        await journal.load([("po-bad", missing)])
        await journal.load(payloads(images, ["po-good"]))
        async with client_for(emu) as client:
            first = await process_one(client, journal)
            between = await journal.states()
            second = await process_one(client, journal)
    assert first is not None and first.merchant_id_scan_reference == "po-bad"
    assert first.status is OutcomeStatus.INVALID
    assert between == {"po-bad": JournalState.FAILED, "po-good": JournalState.PENDING}
    assert second is not None and second.status is OutcomeStatus.RECEIPT
    assert second.merchant_id_scan_reference == "po-good"


@pytest.mark.anyio
async def test_concurrent_process_one_calls_may_share_one_journal_object(
    images: Path, postgres_url: str, emu: Any
) -> None:
    """Each call's builder waits until the other's has started: they only finish if neither waits for the
    other's whole call (no run per call in the journal object)."""
    emu.reset()
    both = anyio.Event()
    started: list[str] = []

    async def build(ref: str, payload: Any) -> NetverifyRequest:
        started.append(ref)
        if len(started) == 2:
            both.set()
        await both.wait()
        return await anyio.to_thread.run_sync(request_from_payload, ref, payload)

    results: list[Any] = []
    async with PostgresJournal(postgres_url, journal_name("shared")) as journal:
        await journal.load(payloads(images, ["sh-1", "sh-2"]))
        async with client_for(emu) as client:

            async def task() -> None:
                results.append(await process_one(client, journal, build=build, journal_retry_timeout=2.0))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    group.start_soon(task)
                    group.start_soon(task)
        states = await journal.states()
    assert sorted(o.merchant_id_scan_reference for o in results) == ["sh-1", "sh-2"]
    assert {o.status for o in results} == {OutcomeStatus.RECEIPT}
    assert states == {"sh-1": JournalState.RECEIPT, "sh-2": JournalState.RECEIPT}


def test_image_root_refuses_paths_that_resolve_outside_it(tmp_path: Path, images: Path) -> None:
    from netverify_async import RequestValidationError

    (tmp_path / "outside.png").write_bytes(GOOD_PNG)
    (images / "link.png").symlink_to(tmp_path / "outside.png")
    for front in ("../outside.png", str(tmp_path / "outside.png"), "link.png"):
        payload = manifest_row_payload(
            {"reference": "ir-1", "front": front, "country": "USA", "id_type": "PASSPORT"}, base_dir=images
        )
        request_from_payload("ir-1", payload)  # readable without a root
        with pytest.raises(RequestValidationError) as refused:
            request_from_payload("ir-1", payload, image_root=images)
        assert [(i.path, i.code) for i in refused.value.errors] == [("front", "outside_image_root")]
        assert "outside.png" not in str(refused.value) and str(tmp_path) not in str(refused.value)
    inside = manifest_row_payload(
        {"reference": "ir-2", "front": "front.png", "country": "USA", "id_type": "PASSPORT"}, base_dir=images
    )
    assert request_from_payload("ir-2", inside, image_root=images).frontside_image is not None


def test_worker_command_image_root_fails_items_outside_it(
    tmp_path: Path, images: Path, postgres_url: str, emu: Any
) -> None:
    emu.reset()
    name = journal_name("imgroot")
    path = manifest(tmp_path, ["root-1"])  # its images are in tmp_path/img
    common = ["--journal", postgres_url, "--name", name]
    loaded = cli("batch", str(path), *common, "--load-only")
    assert loaded.returncode == 0, loaded.stderr
    other = tmp_path / "elsewhere"
    other.mkdir()
    worker = cli(
        "worker", *common, "--drain", "--image-root", str(other), "--emulator", emu.base_url,
        "--rate-limit", "none", "--json",
    )
    assert worker.returncode == 0, worker.stderr
    items = [json.loads(line) for line in worker.stdout.splitlines() if '"item"' in line]
    assert [(item["reference"], item["status"]) for item in items] == [("root-1", "invalid")]
    assert str(images) not in worker.stdout + worker.stderr
    assert scans_per_reference(emu) == {}
