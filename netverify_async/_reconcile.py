"""The journal's rows, and the pure decisions that change them when Jumio's answer or its callback arrives.

A journal row (:class:`JournalEntry`) holds one merchant reference: its state, every scan Jumio is known to
have created for it (:class:`JournalScan`, each with the result its callback reported, :class:`ScanResult`)
and whether there is more than one (``duplicate_scan``). Two kinds of news change the scans of a row:

* Jumio's HTTP answer, :func:`reconcile_receipt` (the batch's ``mark_receipt``);
* Jumio's callback, :func:`reconcile_callback` (``record_callback``): it carries both the merchant reference
  and Jumio's scan reference, so it settles an item whose answer was lost.

Both are plain functions of the current row and the news (plus the clock, passed in); the SQLite journal
reads the row, calls one, and writes what it returns. The rules, in one place:

1. **An item with a known scan is** ``receipt``. A callback for an item that has no scan yet (``sent`` or
   ``unknown``: the answer was lost or has not arrived; also ``pending`` or ``failed``, which a callback
   proves wrong) settles it: the scan is recorded, the state becomes ``receipt`` and ``reconciled_at`` is set.
   Nothing moves an item with a known scan back to a state that a re-run would send again.
2. **A second scan is flagged, never merged.** A callback or an answer naming a scan other than the ones
   known adds it to ``scans`` and sets ``duplicate_scan`` (both scans exist at Jumio, both are billed).
3. **The same news twice changes nothing** (:attr:`CallbackEffect.UNCHANGED`): callbacks are delivered at
   least once. A callback whose result is older (by ``callbackDate``) than the one stored does not replace it.
4. **A callback for a reference the journal does not hold is ignored** (:attr:`CallbackEffect.NOT_IN_JOURNAL`):
   a receiver (on the portal-wide callback URL, say) also gets the callbacks of scans made elsewhere.
5. **The callback and the answer can come in either order.** A callback that beats the HTTP answer settles
   the ``sent`` item; the answer then agrees (same scan: its timestamp is added) or, naming another scan,
   is recorded as a duplicate.

Only what a verification *decided* is kept: the status, the reject reason's codes and description, the
selfie's similarity and validity, and the callback's date. Never images or their URLs, and no personal data
(names, numbers, dates of birth, addresses, the end user's IP address...).
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import TYPE_CHECKING, Any

import attrs

from ._enums import TextEnum
from ._models import ScanReceipt
from ._results import IdentityVerification, RejectReason

if TYPE_CHECKING:
    from .callbacks import NetverifyCallback

__all__ = [
    "CallbackEffect",
    "CallbackFacts",
    "CallbackReconciliation",
    "JournalEntry",
    "JournalScan",
    "JournalState",
    "ScanResult",
    "reconcile_callback",
    "reconcile_found",
    "reconcile_receipt",
]

#: Longest text kept from a callback field (documented values are far shorter; an undocumented one is cut).
MAX_RESULT_TEXT = 100
#: Most reject-reason detail codes kept.
MAX_DETAIL_CODES = 20


class JournalState(TextEnum):
    """Where one merchant reference stands (see :mod:`netverify_async._journal`)."""

    PENDING = "pending"
    SENT = "sent"
    RECEIPT = "receipt"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def outcome_unknown(self) -> bool:
        """True for ``sent`` and ``unknown``: a scan may or may not exist."""
        return self in (JournalState.SENT, JournalState.UNKNOWN)


def _text(value: object) -> str | None:
    """An enum's value or a raw string, cut to :data:`MAX_RESULT_TEXT`; None for anything else."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_RESULT_TEXT]


@attrs.frozen
class ScanResult:
    """What the journal keeps of a verification result: the decision, never the data it was made on.

    Values are the documented strings (``"APPROVED_VERIFIED"``, ``"100"``, ``"MANIPULATED_DOCUMENT"``,
    ``"MATCH"``, ``"true"``), or the raw string Jumio sent when it is not documented.
    """

    #: ``verificationStatus``: ``APPROVED_VERIFIED``, ``DENIED_FRAUD``, ``ERROR_NOT_READABLE_ID``...
    verification_status: str
    #: ``rejectReason.rejectReasonCode`` (``"100"``...), for denied and unreadable scans.
    reject_reason_code: str | None = None
    #: ``rejectReason.rejectReasonDescription`` (``"MANIPULATED_DOCUMENT"``...).
    reject_reason_description: str | None = None
    #: The detail codes of the reject reason (``("1001", "1004")``): which check failed, not what was read.
    reject_reason_details: tuple[str, ...] = ()
    #: ``identityVerification.similarity`` (``MATCH``, ``NO_MATCH``, ``NOT_POSSIBLE``), when a selfie was checked.
    similarity: str | None = None
    #: ``identityVerification.validity`` as ``"true"``/``"false"`` (or the raw string).
    validity: str | None = None
    #: ``callbackDate``: when Jumio sent the callback (orders two callbacks of one scan); for a result polled by
    #: :func:`~netverify_async.wait_for_results`, the time it was polled.
    callback_date: _dt.datetime | None = None

    @property
    def approved(self) -> bool:
        """True when the verification status is ``APPROVED_VERIFIED``."""
        return self.verification_status == "APPROVED_VERIFIED"

    @classmethod
    def from_callback(cls, callback: NetverifyCallback) -> ScanResult | None:
        """The result carried by ``callback``; None when it carries none (no ``verificationStatus``, e.g. the
        "images received" callback of ``callbackGranularity=onAllSteps``)."""
        status = _text(callback.verification_status)
        if status is None:
            return None
        reject = callback.reject_reason
        code = description = None
        details: tuple[str, ...] = ()
        if isinstance(reject, RejectReason):
            code, description = _text(reject.code), _text(reject.description)
            if isinstance(reject.details, tuple):
                found = (_text(detail.code) for detail in reject.details)
                details = tuple(text for text in found if text)[:MAX_DETAIL_CODES]
        similarity = validity = None
        identity = callback.identity_verification
        if isinstance(identity, IdentityVerification):
            similarity, validity = _text(identity.similarity), _text(identity.validity)
        date = callback.callback_date if isinstance(callback.callback_date, _dt.datetime) else None
        return cls(
            verification_status=status,
            reject_reason_code=code,
            reject_reason_description=description,
            reject_reason_details=details,
            similarity=similarity,
            validity=validity,
            callback_date=date,
        )


@attrs.frozen
class JournalScan:
    """One scan Jumio created for a merchant reference, as far as the journal knows it."""

    #: Jumio's scan reference (``jumioIdScanReference``).
    scan_reference: str
    #: Jumio's timestamp from the HTTP answer; None when the answer was lost (known from a callback).
    receipt_timestamp: _dt.datetime | None = None
    #: The verification result from the callback; None until a callback with a result arrives.
    result: ScanResult | None = None
    #: When the journal learnt of this scan (the journal's clock).
    seen_at: _dt.datetime | None = None
    #: When the first callback about this scan was recorded (the journal's clock); None: no callback yet.
    callback_at: _dt.datetime | None = None


@attrs.frozen
class JournalEntry:
    """The journal's row for one merchant reference. Holds no personal data."""

    merchant_id_scan_reference: str
    state: JournalState
    #: Jumio's scan reference, once known: the receipt's, else the first one a callback or reconciliation named.
    scan_reference: str | None = None
    #: Jumio's timestamp from the receipt (None when the scan reference came from a callback or reconciliation).
    receipt_timestamp: _dt.datetime | None = None
    #: Class name of the error of a ``failed`` or ``unknown`` item, e.g. ``BadRequestError``.
    error_type: str | None = None
    #: A short machine code for that error: the HTTP status, or the broken rules (``too_small``).
    error_code: str | None = None
    #: Whether the error proves that nothing was processed (for ``failed`` items).
    safe_to_retry: bool | None = None
    #: How many times the item was handed to the API over all runs.
    sends: int = 0
    updated_at: _dt.datetime | None = None
    #: When an unknown outcome was settled: by a callback, or by :meth:`SqliteJournal.mark_reconciled`.
    reconciled_at: _dt.datetime | None = None
    #: True when more than one scan is known for this reference (each one exists at Jumio and is billed).
    duplicate_scan: bool = False
    #: When the item was last handed to the API (the start of its last upload).
    last_sent_at: _dt.datetime | None = None
    #: Every scan known for this reference, in the order the journal learnt of them.
    scans: tuple[JournalScan, ...] = ()

    @property
    def receipt(self) -> ScanReceipt | None:
        """The receipt, when the journal has both Jumio's scan reference and its timestamp."""
        if self.scan_reference is None or self.receipt_timestamp is None:
            return None
        return ScanReceipt(scan_reference=self.scan_reference, timestamp=self.receipt_timestamp)

    @property
    def scan_references(self) -> tuple[str, ...]:
        """Every known scan reference (two or more when ``duplicate_scan``)."""
        return tuple(scan.scan_reference for scan in self.scans)

    @property
    def result(self) -> ScanResult | None:
        """The verification result of :attr:`scan_reference` (None until its callback arrives)."""
        for scan in self.scans:
            if scan.scan_reference == self.scan_reference:
                return scan.result
        return None


class CallbackEffect(TextEnum):
    """What recording one callback did to the journal."""

    #: The item had no known scan (``sent``, ``unknown``, ``pending`` or ``failed``): now ``receipt``.
    SETTLED = "settled"
    #: The scan was known; what the callback says (its result, or that the callback came) was stored.
    RECORDED = "recorded"
    #: The item already had another scan: this one was added and the item flagged ``duplicate_scan``.
    DUPLICATE_SCAN = "duplicate_scan"
    #: Nothing new: the same callback again, or an older result than the one stored.
    UNCHANGED = "unchanged"
    #: No item of the journal has this merchant reference (nor this scan reference): ignored.
    NOT_IN_JOURNAL = "not_in_journal"


@attrs.frozen
class CallbackFacts:
    """The part of a callback that reconciliation reads: the two references and the result."""

    scan_reference: str
    merchant_id_scan_reference: str | None = None
    result: ScanResult | None = None

    @classmethod
    def from_callback(cls, callback: NetverifyCallback) -> CallbackFacts:
        scan_reference = getattr(callback, "jumio_id_scan_reference", None)
        if not isinstance(scan_reference, str) or not scan_reference:
            raise TypeError(
                f"expected a NetverifyCallback (from parse_callback), not {type(callback).__name__}"
            )
        merchant = callback.merchant_id_scan_reference
        return cls(
            scan_reference=scan_reference,
            merchant_id_scan_reference=merchant if isinstance(merchant, str) and merchant else None,
            result=ScanResult.from_callback(callback),
        )


@attrs.frozen
class CallbackReconciliation:
    """What :meth:`SqliteJournal.record_callback` did with one callback."""

    effect: CallbackEffect
    #: Jumio's scan reference of the callback.
    scan_reference: str
    #: The journal item it was matched to (None when it matched none).
    merchant_id_scan_reference: str | None = None
    #: The item's row after the callback (None when it matched none).
    entry: JournalEntry | None = None

    @property
    def changed(self) -> bool:
        """Whether the journal was written (SETTLED, RECORDED or DUPLICATE_SCAN)."""
        return self.effect in (CallbackEffect.SETTLED, CallbackEffect.RECORDED, CallbackEffect.DUPLICATE_SCAN)


def _newer_result(stored: ScanResult | None, incoming: ScanResult | None) -> ScanResult | None:
    """The result to keep: the incoming one, unless there is none or it is older than the stored one."""
    if incoming is None or incoming == stored:
        return stored
    if stored is None:
        return incoming
    if stored.callback_date is not None and (
        incoming.callback_date is None or incoming.callback_date < stored.callback_date
    ):
        return stored
    return incoming


def _with_scan(entry: JournalEntry, scan: JournalScan) -> tuple[JournalScan, ...]:
    """``entry.scans`` with ``scan`` in place of the one with the same reference, or appended."""
    if any(known.scan_reference == scan.scan_reference for known in entry.scans):
        return tuple(scan if known.scan_reference == scan.scan_reference else known for known in entry.scans)
    return (*entry.scans, scan)


def _settled_fields(entry: JournalEntry, now: _dt.datetime) -> dict[str, Any]:
    """The fields that make an item ``receipt``: errors cleared, ``reconciled_at`` set if it was not."""
    fields: dict[str, Any] = {"state": JournalState.RECEIPT, "updated_at": now}
    if entry.state is not JournalState.RECEIPT:
        fields.update(error_type=None, error_code=None, safe_to_retry=None, reconciled_at=now)
    return fields


def reconcile_callback(
    entry: JournalEntry | None, facts: CallbackFacts, now: _dt.datetime
) -> CallbackReconciliation:
    """What a callback does to a journal row: the row after it, and the :class:`CallbackEffect`.

    ``entry`` is the row of the callback's merchant reference (or, for a callback without one, of the item
    that already knows its scan reference), None when the journal has none. Pure: nothing is read or written.
    """
    scan_ref = facts.scan_reference
    if entry is None:
        return CallbackReconciliation(
            CallbackEffect.NOT_IN_JOURNAL, scan_ref, facts.merchant_id_scan_reference
        )
    ref = entry.merchant_id_scan_reference
    known = next((scan for scan in entry.scans if scan.scan_reference == scan_ref), None)
    if known is None:
        scan = JournalScan(scan_ref, result=facts.result, seen_at=now, callback_at=now)
        if not entry.scans:
            new = attrs.evolve(entry, scan_reference=scan_ref, receipt_timestamp=None, scans=(scan,))
            new = attrs.evolve(new, **_settled_fields(entry, now))
            return CallbackReconciliation(CallbackEffect.SETTLED, scan_ref, ref, new)
        new = attrs.evolve(
            entry, scans=_with_scan(entry, scan), duplicate_scan=True, **_settled_fields(entry, now)
        )
        return CallbackReconciliation(CallbackEffect.DUPLICATE_SCAN, scan_ref, ref, new)
    # Until the first callback for a scan arrives, a stored result can only have been polled (its
    # ``callback_date`` is the poll time): the callback's own result replaces it, whatever its date.
    first_callback = known.callback_at is None and facts.result is not None
    updated = attrs.evolve(
        known,
        result=facts.result if first_callback else _newer_result(known.result, facts.result),
        callback_at=known.callback_at if known.callback_at is not None else now,
    )
    if updated == known and entry.state is JournalState.RECEIPT:
        return CallbackReconciliation(CallbackEffect.UNCHANGED, scan_ref, ref, entry)
    new = attrs.evolve(entry, scans=_with_scan(entry, updated), **_settled_fields(entry, now))
    return CallbackReconciliation(CallbackEffect.RECORDED, scan_ref, ref, new)


def reconcile_receipt(
    entry: JournalEntry | None, merchant_id_scan_reference: str, receipt: ScanReceipt, now: _dt.datetime
) -> JournalEntry:
    """The row after Jumio's HTTP answer ``receipt`` for ``merchant_id_scan_reference``. Pure.

    The answer's scan becomes the row's ``scan_reference`` (with its timestamp). If a callback already
    reported the same scan (it raced the answer), the two agree and the timestamp is added to it; if the
    row knows another scan, both are kept and the row is flagged ``duplicate_scan``.
    """
    return _found(entry, merchant_id_scan_reference, receipt.scan_reference, receipt.timestamp, now, False)


def reconcile_found(
    entry: JournalEntry | None,
    merchant_id_scan_reference: str,
    scan_reference: str,
    timestamp: _dt.datetime | None,
    now: _dt.datetime,
) -> JournalEntry:
    """The row after you reconciled it by hand with the scan you found (``mark_reconciled``). Pure."""
    return _found(entry, merchant_id_scan_reference, scan_reference, timestamp, now, True)


def _found(
    entry: JournalEntry | None,
    ref: str,
    scan_ref: str,
    timestamp: _dt.datetime | None,
    now: _dt.datetime,
    by_hand: bool,
) -> JournalEntry:
    if entry is None:
        entry = JournalEntry(merchant_id_scan_reference=ref, state=JournalState.PENDING)
    known = next((scan for scan in entry.scans if scan.scan_reference == scan_ref), None)
    if known is None:
        scan = JournalScan(scan_ref, receipt_timestamp=timestamp, seen_at=now)
    else:
        scan = attrs.evolve(
            known, receipt_timestamp=timestamp if timestamp is not None else known.receipt_timestamp
        )
    fields = _settled_fields(entry, now)
    if not by_hand:
        fields["reconciled_at"] = entry.reconciled_at  # an answer is not a reconciliation
    return attrs.evolve(
        entry,
        scan_reference=scan_ref,
        receipt_timestamp=scan.receipt_timestamp,
        scans=_with_scan(entry, scan),
        duplicate_scan=entry.duplicate_scan or (known is None and bool(entry.scans)),
        **fields,
    )
