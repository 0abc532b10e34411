"""Results, not receipts: the verification result of every scan of a batch.

::

    async with wait_for_results(client, journal) as results:      # or a list of BatchOutcome
        async for result in results:
            print(result.merchant_id_scan_reference, result.verification_status)

Results the journal already holds (from callbacks fed to it, or from an earlier poll) come first, without a
request. With ``callback_grace`` (when a callback receiver feeds the journal), the journal is then read again
every :data:`GRACE_INTERVAL` seconds for up to that long, and each result a callback brings is given as it
comes; polling is the fallback for the scans still without a result after the grace. The other scans are polled with ``client.wait_for_result`` (Jumio's schedule, through the retrieval
limiter; a fast one against a loopback base URL), ``concurrency`` at once. With a journal, every polled result
is stored in it (:meth:`~netverify_async.SqliteJournal.record_result`: the decision only, nothing personal), so
a re-run polls nothing it already knows: waiting is resumable like the submission phase.

It is a function over receipts or a journal rather than a method of the batch because the results phase
outlives the submission phase: it runs after the batch block has closed (and with it the batch's journal), on
a resumed run that submits nothing, or in another process than the batch. Like ``submit_many`` it is used as
``async with ... as results: async for ...``, so its polling tasks live in a task group owned by the block.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import ConfigurationError, NetverifyError
from ._journal import JournalEntry, JournalState, ScanResult, SqliteJournal
from ._journaltables import utcnow
from ._outcomes import BatchOutcome
from ._pipeline import _flatten
from ._reconcile import MAX_DETAIL_CODES
from ._reconcile import _text as _clip
from ._results import IdentityVerification, RejectReason

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._retrieval import ScanDetails

__all__ = [
    "FORMULA_TRIGGERS",
    "RESULT_COLUMNS",
    "VerificationResult",
    "WaitForResults",
    "csv_cells",
    "spreadsheet_safe",
    "wait_for_results",
]

#: Default number of scans polled at once (the retrieval limiter still applies).
DEFAULT_CONCURRENCY = 8
#: Seconds between two reads of the journal while waiting for callbacks (``callback_grace``).
GRACE_INTERVAL = 1.0

#: The columns of a results file, in order (see :meth:`VerificationResult.as_row`).
RESULT_COLUMNS = (
    "reference",
    "scanReference",
    "status",
    "rejectReasonCode",
    "rejectReasonDescription",
    "submittedAt",
    "resultAt",
    "source",
    "error",
)


#: First characters that make a spreadsheet read a cell as a formula (or, for tab and CR, hide what follows).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading apostrophe when it starts with one of :data:`FORMULA_TRIGGERS`, so that a
    spreadsheet opening the results file shows it as text instead of evaluating it ("CSV injection"): the
    reject reason's description is Jumio's text, and an undocumented value is kept as sent."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """A row of :meth:`VerificationResult.as_row` as CSV cells: missing values empty, every text guarded with
    :func:`spreadsheet_safe`."""
    return {key: "" if value is None else spreadsheet_safe(str(value)) for key, value in row.items()}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = getattr(value, "value", value)  # an enum member: its documented string
    return str(text) if text != "" else None


@attrs.frozen
class VerificationResult:
    """The verification result of one item of a batch. Holds no personal data."""

    merchant_id_scan_reference: str
    scan_reference: str
    #: ``APPROVED_VERIFIED``, ``DENIED_FRAUD``, ``ERROR_NOT_READABLE_ID``...; None when it could not be learnt
    #: (see :attr:`error`).
    verification_status: str | None
    reject_reason_code: str | None = None
    reject_reason_description: str | None = None
    #: When the item was last handed to the API (journal), else Jumio's receipt timestamp.
    submitted_at: _dt.datetime | None = None
    #: Jumio's callback date for a result from a callback; the time of the poll for a polled result (the
    #: journal keeps it, so a later run reports the same time); None for a result polled by a version that did
    #: not store that time.
    result_at: _dt.datetime | None = None
    #: ``"journal"`` (held by the journal before this call: from a callback or an earlier poll) or ``"polled"``.
    source: str = "polled"
    #: Why there is no result (``DeadlineExceeded`` when the scan was still pending at the end of the schedule,
    #: or another typed error of the retrieval API); None otherwise.
    error: NetverifyError | None = None

    @property
    def approved(self) -> bool:
        return self.verification_status == "APPROVED_VERIFIED"

    def as_row(self) -> dict[str, Any]:
        """The row of a results file (keys :data:`RESULT_COLUMNS`; times in ISO 8601, missing values None)."""

        def iso(moment: _dt.datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "reference": self.merchant_id_scan_reference,
            "scanReference": self.scan_reference,
            "status": self.verification_status,
            "rejectReasonCode": self.reject_reason_code,
            "rejectReasonDescription": self.reject_reason_description,
            "submittedAt": iso(self.submitted_at),
            "resultAt": iso(self.result_at),
            "source": self.source,
            "error": None if self.error is None else type(self.error).__name__,
        }

    def as_csv_row(self) -> dict[str, str]:
        """:meth:`as_row` as the cells of a CSV file (see :func:`csv_cells`): safe to open in a spreadsheet."""
        return csv_cells(self.as_row())


@attrs.frozen
class _Item:
    ref: str
    scan_ref: str
    submitted_at: _dt.datetime | None
    stored: ScanResult | None = None
    result_at: _dt.datetime | None = None


def result_from_details(details: ScanDetails) -> ScanResult | None:
    """The decision of a retrieval answer, as the journal stores it; None when it has no verification status."""
    status = _text(details.verification_status)
    if status is None:
        return None
    verification = details.verification
    reject = verification.reject_reason if verification is not None else None
    code = description = None
    codes: tuple[str, ...] = ()
    if isinstance(reject, RejectReason):
        code, description = _clip(_text(reject.code)), _clip(_text(reject.description))
        if isinstance(reject.details, tuple):
            found = (_clip(_text(detail.code)) for detail in reject.details)
            codes = tuple(text for text in found if text)[:MAX_DETAIL_CODES]
    identity = verification.identity_verification if verification is not None else None
    similarity = validity = None
    if isinstance(identity, IdentityVerification):
        similarity, validity = _clip(_text(identity.similarity)), _clip(identity.validity)
    return ScanResult(
        verification_status=_clip(status) or status,
        reject_reason_code=code,
        reject_reason_description=description,
        reject_reason_details=codes,
        similarity=similarity,
        validity=validity,
    )


@runtime_checkable
class ResultsJournal(Protocol):
    """What :func:`wait_for_results` needs from a journal (:class:`~netverify_async.SqliteJournal` and
    :class:`~netverify_async.postgres.PostgresJournal` have it)."""

    async def open(self) -> Any: ...

    async def aclose(self) -> None: ...

    async def get(self, merchant_id_scan_reference: str) -> JournalEntry | None: ...

    async def entries(self, state: JournalState | str | None = None) -> list[JournalEntry]: ...

    async def record_result(self, merchant_id_scan_reference: str, scan_reference: str, result: Any) -> Any: ...


class WaitForResults:
    """Returned by :func:`wait_for_results`: ``async with ... as results: async for result in results``."""

    def __init__(
        self,
        client: Any,
        source: ResultsJournal | Iterable[BatchOutcome],
        journal: ResultsJournal | None,
        owns_journal: bool,
        concurrency: int,
        schedule: Sequence[float] | None,
        callback_grace: float = 0.0,
    ) -> None:
        self._client = client
        self._source = source
        self._journal = journal
        self._owns_journal = owns_journal
        self._concurrency = concurrency
        self._schedule = schedule
        self._callback_grace = callback_grace
        self._group: anyio.abc.TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[VerificationResult] | None = None
        self._error: BaseException | None = None
        #: Scans polled by this call (the others came from the journal).
        self.polled = 0
        self.from_journal = 0
        #: Of :attr:`from_journal`, the results that reached the journal during ``callback_grace``.
        self.from_callbacks = 0
        #: ``"reading"`` (the journal), ``"callbacks"`` (waiting for them, during ``callback_grace``),
        #: ``"polling"``, then ``"done"``.
        self.phase = "reading"
        #: How many results to expect (every scan known), once the source was read; None before.
        self.total: int | None = None

    async def __aenter__(self) -> WaitForResults:
        if self._group is not None or self._receive is not None:
            raise ConfigurationError("these results were already started; call wait_for_results() again")
        if self._owns_journal and self._journal is not None:
            await self._journal.open()
        send, self._receive = anyio.create_memory_object_stream[VerificationResult](self._concurrency)
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._run, send, name="netverify-results")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        assert group is not None
        group.cancel_scope.cancel()
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            await group.__aexit__(*((exc_type, exc, tb) if cancelled else (None, None, None)))
        finally:
            if self._receive is not None:
                self._receive.close()
            if self._owns_journal and self._journal is not None:
                with anyio.CancelScope(shield=True):
                    await self._journal.aclose()
        if exc is None and self._error is not None:
            error, self._error = self._error, None
            raise error

    def __aiter__(self) -> AsyncIterator[VerificationResult]:
        return self

    async def __anext__(self) -> VerificationResult:
        if self._receive is None:
            raise ConfigurationError(
                "results are read inside 'async with': async with wait_for_results(...) as results: "
                "async for result in results: ..."
            )
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration

    async def _items(self) -> list[_Item]:
        journal = self._journal
        items: list[_Item] = []
        if isinstance(self._source, ResultsJournal):
            for known in await self._source.entries(JournalState.RECEIPT):
                if known.scan_reference is not None:
                    items.append(self._item(known.merchant_id_scan_reference, known.scan_reference, known))
            return items
        for outcome in self._source:
            ref, receipt = outcome.merchant_id_scan_reference, outcome.receipt
            entry: JournalEntry | None = None
            if journal is not None and ref is not None:
                entry = await journal.get(ref)
            scan_ref = receipt.scan_reference if receipt is not None else None
            if scan_ref is None and entry is not None and entry.state is JournalState.RECEIPT:
                scan_ref = entry.scan_reference
            if ref is None or scan_ref is None:
                continue  # no scan: nothing to wait for
            item = self._item(ref, scan_ref, entry)
            if item.submitted_at is None and receipt is not None:
                item = attrs.evolve(item, submitted_at=receipt.timestamp)
            items.append(item)
        return items

    @staticmethod
    def _item(ref: str, scan_ref: str, entry: JournalEntry | None) -> _Item:
        if entry is None:
            return _Item(ref, scan_ref, None)
        scan = next((s for s in entry.scans if s.scan_reference == scan_ref), None)
        stored = None if scan is None else scan.result
        result_at = None
        if scan is not None and stored is not None:
            result_at = stored.callback_date or scan.callback_at
        return _Item(ref, scan_ref, entry.last_sent_at or entry.receipt_timestamp, stored, result_at)

    async def _run(self, send: MemoryObjectSendStream[VerificationResult]) -> None:
        async with send:
            try:
                items = await self._items()
                self.total = len(items)
                to_poll = []
                for item in items:
                    if item.stored is None:
                        to_poll.append(item)
                        continue
                    self.from_journal += 1
                    await send.send(_result(item, item.stored, item.result_at, "journal"))
                if to_poll and self._callback_grace > 0 and self._journal is not None:
                    self.phase = "callbacks"
                    to_poll = await self._await_callbacks(to_poll, send)
                self.phase = "polling"
                limiter = anyio.Semaphore(self._concurrency)
                async with anyio.create_task_group() as group:
                    for item in to_poll:
                        await limiter.acquire()
                        group.start_soon(self._poll, item, send.clone(), limiter)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the reader left the block
            except Exception as exc:  # a broken journal: raised from the async for
                leaves = _flatten(exc)
                self._error = leaves[0] if len(leaves) == 1 else exc
            finally:
                self.phase = "done"

    async def _await_callbacks(
        self, waiting: list[_Item], send: MemoryObjectSendStream[VerificationResult]
    ) -> list[_Item]:
        """Read the journal every :data:`GRACE_INTERVAL` seconds for up to ``callback_grace``, giving each
        result that reached it (from a callback receiver feeding it); return the items still without one."""
        journal = self._journal
        assert journal is not None
        pending = {(item.ref, item.scan_ref): item for item in waiting}
        deadline = anyio.current_time() + self._callback_grace
        while pending:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            await anyio.sleep(min(GRACE_INTERVAL, remaining))
            for entry in await journal.entries(JournalState.RECEIPT):
                for scan in entry.scans:
                    item = pending.get((entry.merchant_id_scan_reference, scan.scan_reference))
                    if item is None or scan.result is None:
                        continue
                    del pending[(item.ref, item.scan_ref)]
                    found = self._item(item.ref, item.scan_ref, entry)
                    if found.submitted_at is None:
                        found = attrs.evolve(found, submitted_at=item.submitted_at)
                    self.from_journal += 1
                    self.from_callbacks += 1
                    await send.send(_result(found, scan.result, found.result_at, "journal"))
        return list(pending.values())

    async def _poll(
        self,
        item: _Item,
        send: MemoryObjectSendStream[VerificationResult],
        limiter: anyio.Semaphore,
    ) -> None:
        async with send:
            try:
                try:
                    details = await self._client.wait_for_result(item.scan_ref, schedule=self._schedule)
                except NetverifyError as exc:
                    outcome = VerificationResult(
                        item.ref, item.scan_ref, None, submitted_at=item.submitted_at, error=exc
                    )
                else:
                    self.polled += 1
                    polled_at = utcnow()
                    result = result_from_details(details)
                    if result is not None:
                        # kept by the journal as the result's time, so a later run reports the same one
                        result = attrs.evolve(result, callback_date=polled_at)
                    if result is None:
                        outcome = VerificationResult(
                            item.ref, item.scan_ref, None, submitted_at=item.submitted_at, result_at=polled_at
                        )
                    else:
                        if self._journal is not None:
                            await self._journal.record_result(item.ref, item.scan_ref, result)
                        outcome = _result(item, result, polled_at, "polled")
            finally:
                limiter.release()
            await send.send(outcome)


def _result(
    item: _Item, result: ScanResult, result_at: _dt.datetime | None, source: str
) -> VerificationResult:
    return VerificationResult(
        merchant_id_scan_reference=item.ref,
        scan_reference=item.scan_ref,
        verification_status=result.verification_status,
        reject_reason_code=result.reject_reason_code,
        reject_reason_description=result.reject_reason_description,
        submitted_at=item.submitted_at,
        result_at=result_at,
        source=source,
    )


def wait_for_results(
    client: Any,
    source: ResultsJournal | str | os.PathLike[str] | Iterable[BatchOutcome],
    *,
    journal: ResultsJournal | str | os.PathLike[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    schedule: Sequence[float] | None = None,
    callback_grace: float | _dt.timedelta | None = None,
) -> WaitForResults:
    """The verification result of every scan of a batch, as :class:`VerificationResult` in the order they are
    known: ``async with wait_for_results(client, journal) as results: async for result in results: ...``.

    - ``source``: a journal (an open :class:`~netverify_async.SqliteJournal` or
      :class:`~netverify_async.postgres.PostgresJournal`, or a SQLite path: every item with a
      receipt), or the :class:`~netverify_async.BatchOutcome` of a batch (those without a scan are left out).
    - ``journal``: with outcomes as the source, the journal to read stored results from and write polled ones
      to (a journal source is used for both).
    - ``concurrency``: scans polled at once; ``schedule``: passed to ``client.wait_for_result``.
    - ``callback_grace`` (seconds or a timedelta): when a callback receiver feeds the journal
      (``netverify_async.fastapi.callback_router(journal=...)``, ``emulator.run_callback_receiver(journal=...)``),
      wait up to that long for callbacks first, reading the journal every :data:`GRACE_INTERVAL` seconds and
      giving each result as it arrives (``source="journal"``); only the scans still without a result after it are
      polled. It ends early once every scan has its result. None (default) or 0: poll at once. Ignored without a
      journal.

    A scan still pending at the end of the schedule, or whose retrieval fails, gives a result with
    ``verification_status=None`` and the typed :attr:`~VerificationResult.error`; it is polled again next time.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError("concurrency: must be an integer >= 1")
    grace = _grace_seconds(callback_grace)
    owns = False
    if isinstance(source, (str, os.PathLike)):
        source, owns = SqliteJournal(source), True
    if isinstance(source, ResultsJournal):
        if journal is not None:
            raise ConfigurationError("journal: not with a journal as the source (it is used for both)")
        journal_obj: ResultsJournal | None = source
    elif isinstance(journal, (str, os.PathLike)):
        journal_obj, owns = SqliteJournal(journal), True
    elif journal is None or isinstance(journal, ResultsJournal):
        journal_obj = journal
    else:
        raise ConfigurationError("journal: expected a journal (SqliteJournal, PostgresJournal), a path or None")
    if not isinstance(source, ResultsJournal):
        if isinstance(source, (bytes, BatchOutcome)) or not isinstance(source, Iterable):
            raise ConfigurationError(
                "source: expected a SqliteJournal, a path, or an iterable of BatchOutcome"
            )
        source = list(source)
    return WaitForResults(client, source, journal_obj, owns, concurrency, schedule, grace)


def _grace_seconds(value: float | _dt.timedelta | None) -> float:
    """``callback_grace`` as seconds (0.0 for None); ConfigurationError for anything else."""
    if value is None:
        return 0.0
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError("callback_grace: expected seconds (a number), a timedelta or None")
    if not seconds >= 0 or seconds == float("inf"):  # also refuses NaN
        raise ConfigurationError("callback_grace: must be a finite number of seconds >= 0")
    return seconds
