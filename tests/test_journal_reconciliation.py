"""The SQLite journal learns from callbacks, on asyncio and on trio: before the receipt, after a crash, twice,
for a reference it does not hold, for a second scan; and the batch's later writes never undo what it learnt.

The decisions themselves are unit-tested in tests/test_reconcile_decision.py; here they meet real files.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import pytest

from netverify_async import (
    BadRequestError,
    CallbackEffect,
    CallbackJournal,
    JournalState,
    ScanReceipt,
    SqliteJournal,
)
from netverify_async.callbacks import NetverifyCallback, parse_callback

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

SCAN_A = "aaaaaaaa-0000-4000-8000-000000000001"
SCAN_B = "bbbbbbbb-0000-4000-8000-000000000002"
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, dt.timezone.utc)

PERSONAL = {
    "idFirstName": "JANEPERSONAL",
    "idLastName": "ROEPERSONAL",
    "idDob": "1990-04-05",
    "idNumber": "P99887766",
    "personalNumber": "PN-556677",
    "idAddress": json.dumps({"line1": "12 SECRET STREET", "city": "HIDDENVILLE", "postalCode": "98765"}),
    "clientIp": "198.51.100.77",
    "customerId": "customer-4711",
    "idScanImage": "https://netverify.com/recognition/v1/idscan/secret-image-url/front",
}
FRAUD_REASON = json.dumps(
    {
        "rejectReasonCode": "100",
        "rejectReasonDescription": "MANIPULATED_DOCUMENT",
        "rejectReasonDetails": [{"detailsCode": "1001", "detailsDescription": "PHOTO"}],
    }
)


def callback(
    merchant: str | None = "order-1",
    scan: str = SCAN_A,
    status: str | None = "APPROVED_VERIFIED",
    **fields: str,
) -> NetverifyCallback:
    form = {"jumioIdScanReference": scan, **fields}
    if merchant is not None:
        form["merchantIdScanReference"] = merchant
    if status is not None:
        form["verificationStatus"] = status
    return parse_callback(urllib.parse.urlencode(form))


def raw(path: Path) -> dict[str, Any]:
    """Both tables as another process sees them right now."""
    with sqlite3.connect(path) as conn:
        return {
            "items": conn.execute("SELECT * FROM items ORDER BY ref").fetchall(),
            "scans": conn.execute("SELECT * FROM scans ORDER BY ref, position").fetchall(),
        }


async def test_sqlite_journal_is_a_callback_journal(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        assert isinstance(journal, CallbackJournal)


async def test_a_callback_settles_an_unknown_item_and_keeps_its_result(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.begin_item("order-1")
        await journal.mark_sent("order-1")
        await journal.mark_unknown(["order-1"], "ReadTimeout")
        assert await journal.unknown() == ["order-1"]
        done = await journal.record_callback(
            callback(
                status="DENIED_FRAUD", rejectReason=FRAUD_REASON, callbackDate="2024-05-01T12:30:00.000Z"
            )
        )
        assert done.effect is CallbackEffect.SETTLED and done.changed
        entry = await journal.get("order-1")
        assert done.entry == entry
        assert await journal.unknown() == []
        assert await journal.begin_item("order-1") == entry  # a re-run skips it as done
    assert entry is not None
    assert entry.state is JournalState.RECEIPT and entry.scan_reference == SCAN_A
    assert entry.reconciled_at is not None and entry.error_type is None and entry.sends == 1
    assert entry.result is not None
    assert (entry.result.verification_status, entry.result.reject_reason_code) == ("DENIED_FRAUD", "100")
    assert entry.result.reject_reason_description == "MANIPULATED_DOCUMENT"
    assert entry.result.reject_reason_details == ("1001",)
    assert entry.result.callback_date == dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)


async def test_a_callback_before_the_receipt_then_the_receipt_agrees(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.begin_item("order-1")
        await journal.mark_sent("order-1")  # the upload is in flight...
        raced = await journal.record_callback(callback())  # ...and the callback beats the HTTP answer
        assert raced.effect is CallbackEffect.SETTLED
        await journal.mark_receipt("order-1", ScanReceipt(SCAN_A, T0))
        entry = await journal.get("order-1")
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert entry.receipt == ScanReceipt(SCAN_A, T0) and not entry.duplicate_scan
    assert entry.scan_references == (SCAN_A,)
    assert entry.result is not None and entry.result.approved
    assert entry.scans[0].callback_at is not None and entry.scans[0].receipt_timestamp == T0


async def test_a_callback_before_a_receipt_that_names_another_scan_is_flagged(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_sent("order-1")
        await journal.record_callback(callback(scan=SCAN_A))  # from an earlier send of the same reference
        await journal.mark_receipt("order-1", ScanReceipt(SCAN_B, T0))
        entry = await journal.get("order-1")
    assert entry is not None and entry.duplicate_scan
    assert entry.scan_references == (SCAN_A, SCAN_B)
    assert entry.receipt == ScanReceipt(SCAN_B, T0)


@pytest.mark.parametrize("batch_says", ["unknown", "failed", "sent"])
async def test_the_batch_never_undoes_what_a_callback_settled(tmp_path: Path, batch_says: str) -> None:
    """The callback came while the answer was still awaited; the batch then records what it saw."""
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.begin_item("order-1")
        await journal.mark_sent("order-1")
        await journal.record_callback(callback())
        if batch_says == "unknown":
            await journal.mark_unknown(["order-1"], "RemoteProtocolError")
        elif batch_says == "failed":
            await journal.mark_failed("order-1", BadRequestError("Bad Request", status_code=400))
        else:
            await journal.mark_sent("order-1")
        entry = await journal.get("order-1")
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert entry.scan_reference == SCAN_A and entry.error_type is None
    assert entry.sends == (2 if batch_says == "sent" else 1)


CRASHING_WRITER = """
import os, signal, sys, anyio
from netverify_async._journal import SqliteJournal

async def main():
    journal = SqliteJournal(sys.argv[1])
    await journal.start_run()
    for ref in ("order-1", "order-2"):
        await journal.begin_item(ref)
        await journal.mark_sent(ref)
    os.kill(os.getpid(), signal.SIGKILL)  # dies with both uploads in flight

anyio.run(main)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_callback_after_a_crash_settles_the_item_of_the_dead_run(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    result = await anyio.run_process(
        [sys.executable, "-c", CRASHING_WRITER, str(path)], check=False, stdout=subprocess.DEVNULL
    )
    assert result.returncode == -signal.SIGKILL
    async with SqliteJournal(path) as journal:  # the receiver (or the next run) reopens the journal
        assert await journal.unknown() == ["order-1", "order-2"]
        settled = await journal.record_callback(callback("order-1", SCAN_A))
        assert settled.effect is CallbackEffect.SETTLED
    async with SqliteJournal(path) as journal:  # and the next run finds it done
        await journal.start_run()
        done = await journal.begin_item("order-1")
        still_unknown = await journal.begin_item("order-2")
        await journal.finish_run("completed", {})
    assert done is not None and done.state is JournalState.RECEIPT and done.scan_reference == SCAN_A
    assert still_unknown is not None and still_unknown.state is JournalState.SENT


async def test_the_same_callback_twice_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.mark_sent("order-1")
        await journal.mark_unknown(["order-1"], "ReadTimeout")
        first = await journal.record_callback(callback(rejectReason=FRAUD_REASON, status="DENIED_FRAUD"))
        before = raw(path)
        await anyio.sleep(0.01)  # a later clock: a write would show in updated_at
        again = await journal.record_callback(callback(rejectReason=FRAUD_REASON, status="DENIED_FRAUD"))
        after = raw(path)
    assert first.effect is CallbackEffect.SETTLED
    assert again.effect is CallbackEffect.UNCHANGED and not again.changed
    assert again.entry == first.entry
    assert after == before


async def test_a_callback_for_a_reference_not_in_the_journal_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.mark_receipt("order-1", ScanReceipt(SCAN_A, T0))
        before = raw(path)
        ignored = await journal.record_callback(callback("made-elsewhere", SCAN_B))
        assert await journal.get("made-elsewhere") is None
        after = raw(path)
    assert ignored.effect is CallbackEffect.NOT_IN_JOURNAL and not ignored.changed
    assert ignored.entry is None and ignored.merchant_id_scan_reference == "made-elsewhere"
    assert after == before


async def test_a_second_scan_for_a_receipt_is_recorded_and_flagged(tmp_path: Path) -> None:
    """An ambiguous retry the user opted into (resend_unknown) created the scan twice."""
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_sent("order-1")
        await journal.mark_unknown(["order-1"], "RemoteProtocolError")
        await journal.mark_sent("order-1")  # resend_unknown=True
        await journal.mark_receipt("order-1", ScanReceipt(SCAN_B, T0))
        first = await journal.record_callback(callback(scan=SCAN_B))
        second = await journal.record_callback(callback(scan=SCAN_A, status="DENIED_FRAUD"))  # the lost one's
        again = await journal.record_callback(callback(scan=SCAN_A, status="DENIED_FRAUD"))
        entry = await journal.get("order-1")
        flagged = [e.merchant_id_scan_reference for e in await journal.entries() if e.duplicate_scan]
    assert (first.effect, second.effect, again.effect) == (
        CallbackEffect.RECORDED,
        CallbackEffect.DUPLICATE_SCAN,
        CallbackEffect.UNCHANGED,
    )
    assert entry is not None and entry.duplicate_scan and flagged == ["order-1"]
    assert entry.scan_references == (SCAN_B, SCAN_A)
    assert entry.receipt == ScanReceipt(SCAN_B, T0)
    assert [scan.result.verification_status for scan in entry.scans if scan.result] == [
        "APPROVED_VERIFIED",
        "DENIED_FRAUD",
    ]
    assert entry.sends == 2


async def test_a_callback_without_merchant_reference_is_matched_by_its_scan(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_receipt("order-1", ScanReceipt(SCAN_A, T0))
        matched = await journal.record_callback(callback(merchant=None, scan=SCAN_A))
        unmatched = await journal.record_callback(callback(merchant=None, scan=SCAN_B))
    assert matched.effect is CallbackEffect.RECORDED and matched.merchant_id_scan_reference == "order-1"
    assert unmatched.effect is CallbackEffect.NOT_IN_JOURNAL and unmatched.merchant_id_scan_reference is None


async def test_the_files_hold_the_result_but_no_personal_data(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as journal:
        await journal.mark_sent("order-1")
        await journal.record_callback(callback(status="DENIED_FRAUD", rejectReason=FRAUD_REASON, **PERSONAL))
        stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))
    assert b"DENIED_FRAUD" in stored and b"MANIPULATED_DOCUMENT" in stored and SCAN_A.encode() in stored
    for name, value in PERSONAL.items():
        parts = json.loads(value).values() if value.startswith("{") else [value]
        for part in parts:
            assert part.encode() not in stored, name


async def test_a_receiver_writes_while_a_batch_holds_the_journal(tmp_path: Path) -> None:
    """The receiver runs in another process (here: another connection); the batch's pending rows must not
    keep a write transaction open between calls, or the receiver would wait for the busy timeout."""
    path = tmp_path / "j.sqlite"
    async with SqliteJournal(path) as batch_side, SqliteJournal(path) as receiver:
        await batch_side.start_run()
        await batch_side.begin_item("order-1")
        await batch_side.mark_sent("order-1")
        await batch_side.begin_item("order-2")  # read, waiting for a rate-limiter slot
        with anyio.fail_after(3):
            settled = await receiver.record_callback(callback("order-1"))
        assert settled.effect is CallbackEffect.SETTLED
        await batch_side.mark_unknown(["order-1"], "ReadTimeout")  # the batch gives up on the answer later
        assert (await batch_side.get("order-1")).state is JournalState.RECEIPT  # type: ignore[union-attr]
        await batch_side.finish_run("completed", {})
    assert raw(path)["items"][1][:2] == ("order-2", "pending")


async def test_unresolved_items_and_the_last_callback(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        assert await journal.last_callback_at() is None
        for ref in ("order-1", "order-2", "order-3"):
            await journal.mark_sent(ref)
        await journal.mark_unknown(["order-1", "order-2"], "ReadTimeout")
        await journal.record_callback(callback("order-3"))
        unresolved = await journal.unresolved()
        assert [e.merchant_id_scan_reference for e in unresolved] == ["order-1", "order-2"]
        assert all(e.last_sent_at is not None for e in unresolved)
        assert await journal.unresolved(older_than=dt.timedelta(hours=1)) == []
        await anyio.sleep(0.05)
        old_enough = await journal.unresolved(older_than=dt.timedelta(milliseconds=20))
        assert [e.merchant_id_scan_reference for e in old_enough] == ["order-1", "order-2"]
        last = await journal.last_callback_at()
        assert last is not None and all(last >= e.last_sent_at for e in unresolved if e.last_sent_at)
        # the horizon's verdict, recorded: no scan was created, so the next run sends it again
        assert (await journal.mark_reconciled("order-1", None)).state is JournalState.PENDING


async def test_mark_reconciled_by_hand_records_the_scan(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        await journal.mark_sent("order-1")
        found = await journal.mark_reconciled("order-1", SCAN_A, timestamp=T0)
        late = await journal.record_callback(callback("order-1", SCAN_A))
    assert found.scan_references == (SCAN_A,) and found.receipt == ScanReceipt(SCAN_A, T0)
    assert late.effect is CallbackEffect.RECORDED and not late.entry.duplicate_scan  # type: ignore[union-attr]


async def test_record_callback_refuses_what_is_not_a_callback(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.sqlite") as journal:
        with pytest.raises(TypeError, match="NetverifyCallback"):
            await journal.record_callback("jumioIdScanReference=x")  # type: ignore[arg-type]
