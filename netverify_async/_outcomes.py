"""What a batch reports: the status of each item and of the batch, its progress and its summary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import attrs

from ._enums import TextEnum
from ._errors import NetverifyError
from ._models import ScanReceipt

__all__ = ["BatchOutcome", "BatchProgress", "BatchStatus", "BatchSummary", "OutcomeStatus", "ProgressHook"]


class OutcomeStatus(TextEnum):
    """What happened to one item of a batch."""

    #: Jumio accepted it: ``receipt`` holds the scan reference.
    RECEIPT = "receipt"
    #: It failed and certainly created no scan; ``error`` says why (resent by a re-run with the journal).
    FAILED = "failed"
    #: It was sent but the answer was lost, or the batch was stopped during its upload: a scan may exist.
    UNKNOWN = "unknown"
    #: The journal already holds a receipt for this reference; nothing sent.
    SKIPPED_ALREADY_DONE = "skipped_already_done"
    #: An earlier run sent it without learning the outcome; not resent (see ``resend_unknown``).
    SKIPPED_UNKNOWN = "skipped_unknown"
    #: An image would be refused by Jumio (``error`` is the PreflightError); nothing sent.
    PREFLIGHT_REJECTED = "preflight_rejected"
    #: Not a valid item: not a request, or a duplicate ``merchantIdScanReference``; nothing sent.
    INVALID = "invalid"


class BatchStatus(TextEnum):
    """Where a batch stands."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@attrs.frozen
class BatchOutcome:
    """The outcome of one item. Holds no image bytes and no personal data."""

    #: Position of the item in the input (0-based).
    index: int
    #: The item's reference (None when the item was not a request at all).
    merchant_id_scan_reference: str | None
    status: OutcomeStatus
    receipt: ScanReceipt | None = None
    #: The typed error of a non-receipt outcome (never raised: the batch goes on).
    error: NetverifyError | None = None
    #: HTTP attempts made for this item: 0 when nothing was sent; None when it was sent and the client does
    #: not report how many attempts the success took.
    attempts: int | None = 0
    #: Seconds from reading the item to its outcome.
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when a scan exists for the item (a receipt now or from an earlier run)."""
        return self.status in (OutcomeStatus.RECEIPT, OutcomeStatus.SKIPPED_ALREADY_DONE)


@attrs.frozen
class BatchProgress:
    """A snapshot for progress displays, passed to ``on_progress``."""

    #: Items taken from the input so far.
    read: int
    #: Uploads started (each item counts once).
    submitted: int
    receipts: int
    failed: int
    unknown: int
    #: Items skipped thanks to the journal (already done, or unknown and not resent).
    skipped: int
    preflight_rejected: int
    invalid: int
    #: Uploads running now.
    in_flight: int
    #: Outcomes produced so far (all statuses).
    completed: int
    #: Seconds since the batch started.
    elapsed: float
    #: Outcomes per second since the start.
    rate: float
    #: Retries the client made during the batch.
    retries: int
    #: 429 answers the client received during the batch.
    throttled: int
    #: Bytes held by the pipeline now, and the most it held.
    bytes_in_flight: int
    peak_bytes_in_flight: int


@attrs.frozen
class BatchSummary:
    """How a batch went: counts, and the references grouped by what happened to them.

    ``not_sent`` lists the references that were read but not yet uploaded when the batch stopped (the journal
    keeps them ``pending`` and a re-run sends them). ``unknown`` lists those whose upload may have created a
    scan: the answer was lost, or the batch was stopped during the upload; reconcile them before resending.
    """

    status: BatchStatus
    read: int
    submitted: int
    counts: Mapping[OutcomeStatus, int]
    receipts: tuple[str, ...]
    failed: tuple[str, ...]
    unknown: tuple[str, ...]
    not_sent: tuple[str, ...]
    elapsed: float
    peak_bytes_in_flight: int
    #: Class name of the exception that ended the batch early (journal failure, input error), if any.
    error_type: str | None = None

    @property
    def complete(self) -> bool:
        """True when every item of the input got an outcome."""
        return self.status is BatchStatus.COMPLETED


ProgressHook = Callable[[BatchProgress], "Awaitable[None] | None"]
