"""The pure decisions of callback-driven reconciliation: what a callback (or Jumio's answer) does to a journal row.

No file, no event loop: :func:`reconcile_callback` and :func:`reconcile_receipt` are functions of the row, the
news and the clock. The SQLite journal only stores what they return (tests/test_journal_reconciliation.py).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netverify_async import ScanReceipt
from netverify_async._reconcile import (
    CallbackEffect,
    CallbackFacts,
    JournalEntry,
    JournalScan,
    JournalState,
    ScanResult,
    reconcile_callback,
    reconcile_receipt,
)
from netverify_async.callbacks import parse_callback

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(minutes=1)
T2 = T0 + dt.timedelta(minutes=2)
SCAN_A = "aaaaaaaa-0000-4000-8000-000000000001"
SCAN_B = "bbbbbbbb-0000-4000-8000-000000000002"

#: Personal data of a callback: none of it may reach the journal.
PERSONAL = {
    "idFirstName": "JANE",
    "idLastName": "ROEPERSONAL",
    "idDob": "1990-04-05",
    "idNumber": "P99887766",
    "personalNumber": "PN-5566",
    "idAddress": json.dumps({"line1": "12 SECRET STREET", "city": "HIDDENVILLE", "postalCode": "99999"}),
    "clientIp": "198.51.100.77",
    "customerId": "customer-4711",
    "idScanImage": "https://netverify.com/recognition/v1/idscan/x/front",
    "idExpiry": "2031-02-03",
    "placeOfBirth": "SOMEWHERE",
}


def callback(
    merchant: str | None = "order-1",
    scan: str = SCAN_A,
    status: str | None = "APPROVED_VERIFIED",
    **fields: str,
) -> Any:
    form = {"jumioIdScanReference": scan, "idScanStatus": "SUCCESS", **fields}
    if merchant is not None:
        form["merchantIdScanReference"] = merchant
    if status is not None:
        form["verificationStatus"] = status
    return parse_callback(urllib.parse.urlencode(form))


def facts(*args: Any, **kwargs: Any) -> CallbackFacts:
    return CallbackFacts.from_callback(callback(*args, **kwargs))


def row(state: JournalState, *scans: JournalScan, **fields: Any) -> JournalEntry:
    first = scans[0].scan_reference if scans else None
    return JournalEntry("order-1", state, scan_reference=first, scans=scans, **fields)


FRAUD = {
    "rejectReason": json.dumps(
        {
            "rejectReasonCode": "100",
            "rejectReasonDescription": "MANIPULATED_DOCUMENT",
            "rejectReasonDetails": [
                {"detailsCode": "1001", "detailsDescription": "PHOTO"},
                {"detailsCode": "1004", "detailsDescription": "DOB"},
            ],
        }
    ),
    "callbackDate": "2024-05-01T12:03:00.000Z",
}


def test_a_callback_for_a_reference_not_in_the_journal_is_ignored() -> None:
    decision = reconcile_callback(None, facts("someone-else"), T0)
    assert decision.effect is CallbackEffect.NOT_IN_JOURNAL
    assert decision.entry is None and not decision.changed
    assert decision.merchant_id_scan_reference == "someone-else"
    assert decision.scan_reference == SCAN_A


@pytest.mark.parametrize(
    "state", [JournalState.SENT, JournalState.UNKNOWN, JournalState.PENDING, JournalState.FAILED]
)
def test_a_callback_settles_an_item_that_has_no_scan(state: JournalState) -> None:
    before = row(state, error_type="ReadError", error_code="504", safe_to_retry=False, sends=1)
    decision = reconcile_callback(before, facts(status="DENIED_FRAUD", **FRAUD), T1)
    assert decision.effect is CallbackEffect.SETTLED and decision.changed
    after = decision.entry
    assert after is not None
    assert after.state is JournalState.RECEIPT
    assert after.scan_reference == SCAN_A and after.scan_references == (SCAN_A,)
    assert after.reconciled_at == T1 and after.updated_at == T1
    assert (after.error_type, after.error_code, after.safe_to_retry) == (None, None, None)
    assert after.receipt is None  # no timestamp from Jumio's answer
    assert after.sends == 1 and not after.duplicate_scan
    [scan] = after.scans
    assert scan.seen_at == T1 and scan.callback_at == T1
    assert after.result == ScanResult(
        verification_status="DENIED_FRAUD",
        reject_reason_code="100",
        reject_reason_description="MANIPULATED_DOCUMENT",
        reject_reason_details=("1001", "1004"),
        callback_date=dt.datetime(2024, 5, 1, 12, 3, tzinfo=dt.timezone.utc),
    )
    assert after.result is not None and not after.result.approved


def test_a_callback_adds_its_result_to_the_scan_of_the_receipt() -> None:
    before = row(
        JournalState.RECEIPT, JournalScan(SCAN_A, receipt_timestamp=T0, seen_at=T0), receipt_timestamp=T0
    )
    selfie = json.dumps({"similarity": "MATCH", "validity": "TRUE"})
    decision = reconcile_callback(before, facts(identityVerification=selfie), T1)
    assert decision.effect is CallbackEffect.RECORDED
    after = decision.entry
    assert after is not None and after.state is JournalState.RECEIPT
    assert after.reconciled_at is None  # nothing was unknown
    assert after.receipt == ScanReceipt(SCAN_A, T0)
    assert after.result is not None and after.result.approved
    assert (after.result.similarity, after.result.validity) == ("MATCH", "true")
    assert after.scans[0].callback_at == T1 and after.scans[0].receipt_timestamp == T0


def test_the_same_callback_twice_changes_nothing() -> None:
    first = reconcile_callback(row(JournalState.UNKNOWN), facts(**FRAUD, status="DENIED_FRAUD"), T1)
    again = reconcile_callback(first.entry, facts(**FRAUD, status="DENIED_FRAUD"), T2)
    assert again.effect is CallbackEffect.UNCHANGED and not again.changed
    assert again.entry == first.entry


def test_a_callback_for_another_scan_records_both_and_flags_the_item() -> None:
    before = row(
        JournalState.RECEIPT, JournalScan(SCAN_A, receipt_timestamp=T0, seen_at=T0), receipt_timestamp=T0
    )
    decision = reconcile_callback(before, facts(scan=SCAN_B), T1)
    assert decision.effect is CallbackEffect.DUPLICATE_SCAN and decision.changed
    after = decision.entry
    assert after is not None
    assert after.duplicate_scan and after.scan_references == (SCAN_A, SCAN_B)
    assert after.scan_reference == SCAN_A and after.receipt == ScanReceipt(SCAN_A, T0)  # the primary stays
    assert after.scans[1].result is not None and after.result is None  # B's result; A has none yet
    # the callback of the first scan then only adds its result
    later = reconcile_callback(after, facts(scan=SCAN_A, status="DENIED_FRAUD"), T2)
    assert later.effect is CallbackEffect.RECORDED
    assert later.entry is not None and later.entry.duplicate_scan
    assert later.entry.result is not None and later.entry.result.verification_status == "DENIED_FRAUD"


def test_a_callback_without_a_result_settles_and_the_final_one_adds_it() -> None:
    images_received = reconcile_callback(row(JournalState.SENT), facts(status=None), T1)
    assert images_received.effect is CallbackEffect.SETTLED
    assert images_received.entry is not None and images_received.entry.result is None
    final = reconcile_callback(images_received.entry, facts(), T2)
    assert final.effect is CallbackEffect.RECORDED
    assert final.entry is not None and final.entry.result is not None and final.entry.result.approved
    assert final.entry.scans[0].callback_at == T1  # the first callback's time is kept
    # a callback without a result never erases one
    assert reconcile_callback(final.entry, facts(status=None), T2).effect is CallbackEffect.UNCHANGED


def test_an_older_result_does_not_replace_a_newer_one() -> None:
    newer = facts(status="APPROVED_VERIFIED", callbackDate="2024-05-01T12:10:00.000Z")
    older = facts(status="ERROR_NOT_READABLE_ID", callbackDate="2024-05-01T12:05:00.000Z")
    after_newer = reconcile_callback(row(JournalState.UNKNOWN), newer, T1).entry
    stale = reconcile_callback(after_newer, older, T2)
    assert stale.effect is CallbackEffect.UNCHANGED and stale.entry == after_newer
    # in the other order, the newer one replaces the older one
    after_older = reconcile_callback(row(JournalState.UNKNOWN), older, T1).entry
    fresh = reconcile_callback(after_older, newer, T2)
    assert fresh.effect is CallbackEffect.RECORDED
    assert fresh.entry is not None and fresh.entry.result is not None and fresh.entry.result.approved


def test_the_answer_after_the_callback_agrees_when_it_names_the_same_scan() -> None:
    settled = reconcile_callback(row(JournalState.SENT, sends=1), facts(), T1).entry
    after = reconcile_receipt(settled, "order-1", ScanReceipt(SCAN_A, T0), T2)
    assert after.state is JournalState.RECEIPT and not after.duplicate_scan
    assert after.receipt == ScanReceipt(SCAN_A, T0) and after.scan_references == (SCAN_A,)
    assert after.result is not None and after.result.approved  # the callback's result is kept
    assert after.reconciled_at == T1  # the callback came first
    assert after.scans[0].receipt_timestamp == T0 and after.scans[0].callback_at == T1


def test_the_answer_after_the_callback_of_another_scan_is_a_duplicate() -> None:
    settled = reconcile_callback(row(JournalState.SENT), facts(scan=SCAN_A), T1).entry
    after = reconcile_receipt(settled, "order-1", ScanReceipt(SCAN_B, T0), T2)
    assert after.duplicate_scan and after.scan_references == (SCAN_A, SCAN_B)
    assert after.receipt == ScanReceipt(SCAN_B, T0)  # the answer's scan is the primary
    assert after.result is None  # B's callback has not come yet; A's result stays with A
    assert after.scans[0].result is not None


def test_a_plain_answer_makes_a_receipt() -> None:
    fresh = reconcile_receipt(None, "order-9", ScanReceipt(SCAN_A, T0), T1)
    assert fresh.merchant_id_scan_reference == "order-9" and fresh.state is JournalState.RECEIPT
    assert fresh.receipt == ScanReceipt(SCAN_A, T0) and fresh.reconciled_at is None
    sent = reconcile_receipt(row(JournalState.SENT, sends=2), "order-1", ScanReceipt(SCAN_A, T0), T1)
    assert sent.sends == 2 and sent.scans == (JournalScan(SCAN_A, receipt_timestamp=T0, seen_at=T1),)
    assert reconcile_receipt(sent, "order-1", ScanReceipt(SCAN_A, T0), T2).scans == sent.scans


def test_the_result_keeps_no_personal_data() -> None:
    full = callback(status="DENIED_FRAUD", **FRAUD, **PERSONAL)
    assert full.id_first_name == "JANE"  # the callback has it...
    result = ScanResult.from_callback(full)
    assert result is not None
    kept = json.dumps(attrs.asdict(result), default=str)
    for value in PERSONAL.values():  # ...the journal's result does not
        for part in (value, *json.loads(value).values()) if value.startswith("{") else (value,):
            assert part not in kept
    assert attrs.fields_dict(ScanResult).keys() == {
        "verification_status",
        "reject_reason_code",
        "reject_reason_description",
        "reject_reason_details",
        "similarity",
        "validity",
        "callback_date",
    }


def test_undocumented_values_are_kept_raw_and_cut() -> None:
    result = ScanResult.from_callback(callback(status="SOMETHING_NEW_" + "X" * 500))
    assert result is not None and result.verification_status.startswith("SOMETHING_NEW_")
    assert len(result.verification_status) == 100


def test_facts_refuse_what_is_not_a_callback() -> None:
    with pytest.raises(TypeError, match="NetverifyCallback"):
        CallbackFacts.from_callback({"jumioIdScanReference": SCAN_A})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Any order of answers and callbacks keeps the invariants

SCANS = [SCAN_A, SCAN_B, "cccccccc-0000-4000-8000-000000000003"]
event = st.one_of(
    st.tuples(st.just("receipt"), st.sampled_from(SCANS)),
    st.tuples(
        st.just("callback"),
        st.sampled_from(SCANS),
        st.sampled_from([None, "APPROVED_VERIFIED", "DENIED_FRAUD"]),
        st.sampled_from([None, "2024-05-01T12:01:00.000Z", "2024-05-01T12:02:00.000Z"]),
    ),
)


@given(
    start=st.sampled_from(
        [JournalState.PENDING, JournalState.SENT, JournalState.UNKNOWN, JournalState.FAILED]
    ),
    events=st.lists(event, max_size=8),
)
def test_any_sequence_keeps_the_invariants(start: JournalState, events: list[tuple[Any, ...]]) -> None:
    entry = row(start)
    for step, news in enumerate(events):
        now = T0 + dt.timedelta(seconds=step)
        if news[0] == "receipt":
            entry = reconcile_receipt(entry, "order-1", ScanReceipt(news[1], now), now)
            assert entry.receipt == ScanReceipt(news[1], now)
        else:
            extra = {"callbackDate": news[3]} if news[3] else {}
            incoming = facts(scan=news[1], status=news[2], **extra)
            decision = reconcile_callback(entry, incoming, now)
            assert decision.entry is not None
            # recording the same callback again right away never changes anything
            assert reconcile_callback(decision.entry, incoming, now).effect is CallbackEffect.UNCHANGED
            entry = decision.entry
        # an item with a known scan is "receipt"; two or more scans are always flagged; none is forgotten
        assert entry.state is JournalState.RECEIPT
        assert entry.duplicate_scan == (len(entry.scans) > 1)
        assert entry.scan_reference in entry.scan_references
        assert len(set(entry.scan_references)) == len(entry.scans)
        assert set(entry.scan_references) == {news[1] for news in events[: step + 1]}
    if not events:
        assert entry.state is start
