"""The stages of a batch: read (lazily) -> prepare (preflight + encode, in worker threads) -> upload, joined by
small memory streams, with a byte budget over what the stages hold and the journal written at each step.

See :mod:`netverify_async._batch` for the public side (``submit_many``, :class:`~netverify_async.Batch`).

Why one module of about 700 lines: the three stages share the pipeline's state (pending, in flight, arrived,
counts) and its bookkeeping on stop; splitting them would pass that state around instead of reading it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel
import attrs

from ._bytebudget import ByteBudget
from ._errors import (
    AuthenticationError,
    BatchItemError,
    BatchStoppedError,
    ConfigurationError,
    FailureKind,
    ForbiddenError,
    JournalError,
    NetverifyError,
    PreflightError,
    RateLimiterError,
    RequestError,
    RequestValidationError,
    SubmissionOutcomeUnknown,
    ValidationIssue,
    failure_kind,
)
from ._events import JournalTransition, emit_via
from ._journal import Journal, JournalState, SqliteJournal
from ._models import NetverifyRequest, ScanReceipt
from ._outcomes import BatchOutcome, BatchProgress, BatchStatus, BatchSummary, OutcomeStatus, ProgressHook
from ._validation import text_issues

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


__all__ = ["Pipeline", "Stages"]

logger = logging.getLogger("netverify_async.batch")

#: The journal state an upload's outcome is recorded as.
_JOURNALED = {
    OutcomeStatus.RECEIPT: JournalState.RECEIPT,
    OutcomeStatus.UNKNOWN: JournalState.UNKNOWN,
    OutcomeStatus.FAILED: JournalState.FAILED,
}

#: Seconds between progress calls while nothing else happens.
PROGRESS_INTERVAL_S = 0.2
class Stages(Protocol):
    """What the pipeline needs from a client: the stages of one submission (``NetverifyClient`` has them)."""

    async def prepare(self, request: NetverifyRequest) -> NetverifyRequest: ...

    async def encode(self, request: NetverifyRequest) -> bytes: ...

    async def send_encoded(
        self,
        body: bytes,
        *,
        merchant_id_scan_reference: str,
        on_send: Callable[[], Awaitable[None]] | None = None,
        on_body_sent: Callable[[], None] | None = None,
    ) -> ScanReceipt: ...


#: A batch stops after this many 401/403 answers in a row (no receipt between them): they would repeat for every
#: item (bad credentials, a refused User-Agent, another region's credentials), and at 5 per 5 s a large manifest
#: would otherwise spend hours collecting them.
AUTH_REFUSALS_BEFORE_STOP = 3
#: Budget reserved for the non-image part of a body (all text fields together are a few kilobytes).
_BODY_OVERHEAD_BYTES = 64 * 1024


def _estimate_bytes(request: NetverifyRequest) -> int:
    """Upper bound of what an item costs: its raw images plus the body they encode to (base64 + JSON)."""
    raw = sum(image.size for image in request.images.values())
    encoded = sum(4 * math.ceil(image.size / 3) for image in request.images.values())
    return raw + encoded + _BODY_OVERHEAD_BYTES


# ----------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------


@attrs.define
class _Item:
    index: int
    ref: str
    started: float
    reserved: int
    request: NetverifyRequest | None
    body: bytes | None = None


async def _record(write: Awaitable[None] | None) -> JournalError | None:
    """Await a journal write; its JournalError is returned (to raise after the outcome is delivered)."""
    if write is None:
        return None
    try:
        await write
    except JournalError as exc:
        return exc
    return None


def _lease_lost(exc: BaseException) -> bool:
    """A leasing journal's "this item is another owner's now" (``LeaseLostError``, told by name: any leasing
    journal can say it)."""
    return isinstance(exc, JournalError) and any(c.__name__ == "LeaseLostError" for c in type(exc).__mro__)


def _flatten(exc: BaseException) -> list[BaseException]:
    inner = getattr(exc, "exceptions", None)
    if (
        isinstance(exc, BaseException)
        and isinstance(inner, tuple)
        and type(exc).__name__.endswith("ExceptionGroup")
    ):
        leaves: list[BaseException] = []
        for sub in inner:
            leaves.extend(_flatten(sub))
        return leaves
    return [exc]


class Pipeline:
    """The state and the stages of one batch."""

    def __init__(
        self,
        client: Stages,
        requests: Iterable[NetverifyRequest] | AsyncIterable[NetverifyRequest],
        *,
        concurrency: int,
        journal: Journal | None,
        owns_journal: bool,
        resend_unknown: bool,
        max_bytes_in_flight: int,
        on_progress: ProgressHook | None,
        prepare_workers: int,
    ) -> None:
        self.client = client
        self.requests = requests
        self.concurrency = concurrency
        self.journal = journal
        self.owns_journal = owns_journal
        self.resend_unknown = resend_unknown
        self.budget = ByteBudget(max_bytes_in_flight)
        self.on_progress = on_progress
        self.prepare_workers = prepare_workers

        self.status = BatchStatus.NOT_STARTED
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.read = 0
        self.submitted = 0
        self.counts: dict[OutcomeStatus, int] = dict.fromkeys(OutcomeStatus, 0)
        self.receipts: list[str] = []
        self.failed: list[str] = []
        self.unknown: list[str] = []
        self.seen: set[str] = set()
        #: Items read and admitted, not sent yet (index -> reference).
        self.pending: dict[int, str] = {}
        #: Items whose upload started and has no outcome yet.
        self.in_flight: dict[int, str] = {}
        #: Items of which an attempt handed the whole body to the network: only these can have created a scan.
        self.arrived: set[int] = set()
        #: 401/403 answers in a row; the batch stops taking new items at AUTH_REFUSALS_BEFORE_STOP.
        self.auth_refusals = 0
        self.stopping = False
        self.input_error: BaseException | None = None
        self.fatal: BaseException | None = None
        self.error_delivered = False
        self.stats_start = (0, 0)
        #: Set while the bookkeeping of a cancelled batch runs (its journal writes should not wait long).
        self.finishing_cancelled = False

        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.outcome_receive: MemoryObjectReceiveStream[BatchOutcome] | None = None
        self._outcome_send: MemoryObjectSendStream[BatchOutcome] | None = None
        self._changed: anyio.Event | None = None

    # -- counters --------------------------------------------------------------------------------------------

    def _client_counters(self) -> tuple[int, int]:
        stats = getattr(self.client, "stats", None)
        return (int(getattr(stats, "retries", 0)), int(getattr(stats, "throttled", 0)))

    def elapsed(self) -> float:
        if self.status is BatchStatus.NOT_STARTED:
            return 0.0
        end = self.finished_at if self.finished_at is not None else anyio.current_time()
        return max(0.0, end - self.started_at)

    def progress(self) -> BatchProgress:
        retries, throttled = self._client_counters()
        elapsed = self.elapsed()
        completed = sum(self.counts.values())
        c = self.counts
        return BatchProgress(
            read=self.read,
            submitted=self.submitted,
            receipts=c[OutcomeStatus.RECEIPT],
            failed=c[OutcomeStatus.FAILED],
            unknown=c[OutcomeStatus.UNKNOWN],
            skipped=c[OutcomeStatus.SKIPPED_ALREADY_DONE] + c[OutcomeStatus.SKIPPED_UNKNOWN],
            preflight_rejected=c[OutcomeStatus.PREFLIGHT_REJECTED],
            invalid=c[OutcomeStatus.INVALID],
            in_flight=len(self.in_flight),
            completed=completed,
            elapsed=elapsed,
            rate=completed / elapsed if elapsed > 0 else 0.0,
            retries=retries - self.stats_start[0],
            throttled=throttled - self.stats_start[1],
            bytes_in_flight=self.budget.in_use,
            peak_bytes_in_flight=self.budget.peak,
        )

    def summary(self) -> BatchSummary:
        still_running = self.status is BatchStatus.RUNNING
        error = self.fatal or self.input_error
        return BatchSummary(
            status=self.status,
            read=self.read,
            submitted=self.submitted,
            counts=dict(self.counts),
            receipts=tuple(self.receipts),
            failed=tuple(self.failed),
            unknown=tuple(self.unknown) + (self._stopped_in_flight(arrived=True) if not still_running else ()),
            not_sent=(tuple(self.pending.values()) + self._stopped_in_flight(arrived=False))
            if not still_running
            else (),
            elapsed=self.elapsed(),
            peak_bytes_in_flight=self.budget.peak,
            error_type=type(error).__name__ if error is not None else None,
        )

    def _stopped_in_flight(self, *, arrived: bool) -> tuple[str, ...]:
        """The items in flight when the batch stopped whose body did (or did not) reach the network whole."""
        return tuple(ref for index, ref in self.in_flight.items() if (index in self.arrived) is arrived)

    # -- outcomes --------------------------------------------------------------------------------------------

    async def _journaled(self, state: JournalState, refs: Iterable[str]) -> None:
        """Tell the client's event hooks that the journal recorded ``state`` for each of ``refs``."""
        for ref in refs:
            event = functools.partial(JournalTransition, state=state.value, merchant_id_scan_reference=ref)
            await emit_via(self.client, event)

    async def _emit(self, out: MemoryObjectSendStream[BatchOutcome], outcome: BatchOutcome) -> None:
        self.counts[outcome.status] += 1
        ref = outcome.merchant_id_scan_reference
        if ref is not None:
            if outcome.status is OutcomeStatus.RECEIPT:
                self.receipts.append(ref)
            elif outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.PREFLIGHT_REJECTED):
                self.failed.append(ref)
            elif outcome.status is OutcomeStatus.UNKNOWN:
                self.unknown.append(ref)
        self.pending.pop(outcome.index, None)
        self.in_flight.pop(outcome.index, None)
        if self._changed is not None:
            self._changed.set()
        try:
            await out.send(outcome)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer closed the batch; its stop is on the way

    def _outcome(
        self,
        item_index: int,
        ref: str | None,
        status: OutcomeStatus,
        started: float,
        *,
        receipt: ScanReceipt | None = None,
        error: NetverifyError | None = None,
        attempts: int | None = 0,
    ) -> BatchOutcome:
        return BatchOutcome(
            index=item_index,
            merchant_id_scan_reference=ref,
            status=status,
            receipt=receipt,
            error=error,
            attempts=attempts,
            elapsed=anyio.current_time() - started,
        )

    # -- stage 1: reader -------------------------------------------------------------------------------------

    @staticmethod
    async def _next_request(source: Iterator[Any] | AsyncIterator[Any], is_async: bool) -> tuple[bool, Any]:
        if is_async:
            try:
                return True, await source.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                return False, None
        try:
            return True, next(source)  # type: ignore[arg-type]
        except StopIteration:
            return False, None

    async def _reader(
        self, prepare_send: MemoryObjectSendStream[_Item], out: MemoryObjectSendStream[BatchOutcome]
    ) -> None:
        requests = self.requests
        source: Iterator[Any] | AsyncIterator[Any]
        is_async = isinstance(requests, AsyncIterable)
        source = aiter(requests) if isinstance(requests, AsyncIterable) else iter(requests)
        async with prepare_send, out:
            try:
                index = 0
                while not self.stopping:
                    try:
                        more, request = await self._next_request(source, is_async)
                    except Exception as exc:
                        # the input itself broke: finish what was read, then raise it to the caller
                        self.input_error = exc
                        logger.error(
                            "batch input raised %s; finishing the items already read", type(exc).__name__
                        )
                        break
                    if not more:
                        break
                    await self._admit(index, request, prepare_send, out)
                    index += 1
                    del request
            finally:
                # close a generator input now (not whenever it is collected), so its own cleanup runs
                close = getattr(source, "aclose" if is_async else "close", None)
                if callable(close):
                    with anyio.CancelScope(shield=True):
                        result = close()
                        if inspect.isawaitable(result):
                            await result

    async def _admit(
        self,
        index: int,
        request: Any,
        prepare_send: MemoryObjectSendStream[_Item],
        out: MemoryObjectSendStream[BatchOutcome],
    ) -> None:
        started = anyio.current_time()
        self.read += 1
        if not isinstance(request, NetverifyRequest):
            issue = ValidationIssue(
                "request",
                "type",
                f"batch items must be NetverifyRequest objects, not {type(request).__name__}",
            )
            await self._emit(
                out,
                self._outcome(
                    index, None, OutcomeStatus.INVALID, started, error=RequestValidationError([issue])
                ),
            )
            return
        ref = request.merchant_id_scan_reference
        # a request changed after it was validated: its reference cannot be stored, logged or shown
        issues = text_issues(ref, "merchantIdScanReference")
        shown = None if issues else ref
        if ref in self.seen:
            issues.append(
                ValidationIssue(
                    "merchantIdScanReference",
                    "duplicate_reference",
                    "must be unique within a batch; an earlier item has the same value (not sent)",
                )
            )
        if issues:
            await self._emit(
                out,
                self._outcome(
                    index, shown, OutcomeStatus.INVALID, started, error=RequestValidationError(issues)
                ),
            )
            return
        self.seen.add(ref)
        self.pending[index] = ref  # from now on it is "not sent" until it is uploaded or has an outcome
        if self.journal is not None:
            entry = await self.journal.begin_item(ref)
            if entry is None:
                await self._journaled(JournalState.PENDING, [ref])
            if entry is not None and entry.state is JournalState.RECEIPT:
                await self._emit(
                    out,
                    self._outcome(
                        index, ref, OutcomeStatus.SKIPPED_ALREADY_DONE, started, receipt=entry.receipt
                    ),
                )
                return
            if entry is not None and entry.state.outcome_unknown and not self.resend_unknown:
                error = SubmissionOutcomeUnknown(
                    ref,
                    f"an earlier run sent it, outcome unknown (journal state {entry.state.value!r})",
                )
                await self._emit(
                    out, self._outcome(index, ref, OutcomeStatus.SKIPPED_UNKNOWN, started, error=error)
                )
                return
        reserved = _estimate_bytes(request)
        await self.budget.acquire(reserved)
        try:
            await prepare_send.send(_Item(index, ref, started, reserved, request))
        except BaseException:
            self.budget.release(reserved)
            raise

    # -- stage 2: preflight + encode -------------------------------------------------------------------------

    async def _preparer(
        self,
        receive: MemoryObjectReceiveStream[_Item],
        upload_send: MemoryObjectSendStream[_Item],
        out: MemoryObjectSendStream[BatchOutcome],
    ) -> None:
        async with receive, upload_send, out:
            async for item in receive:
                if self.stopping:  # stays pending: the next run sends it
                    self.budget.release(item.reserved)
                    del item
                    continue
                ready = await self._prepare(item, out)
                if ready is not None:
                    await upload_send.send(ready)
                del item, ready

    async def _prepare(self, item: _Item, out: MemoryObjectSendStream[BatchOutcome]) -> _Item | None:
        request = item.request
        assert request is not None
        item.request = None
        status: OutcomeStatus
        error: NetverifyError
        try:
            prepared = await self.client.prepare(request)
            del request
            body = await self.client.encode(prepared)
            del prepared
        except anyio.get_cancelled_exc_class():
            self.budget.release(item.reserved)
            raise
        except PreflightError as exc:
            status, error = OutcomeStatus.PREFLIGHT_REJECTED, exc
        except RequestValidationError as exc:
            status, error = OutcomeStatus.INVALID, exc
        except NetverifyError as exc:
            status, error = OutcomeStatus.FAILED, exc
        except Exception as exc:
            status = OutcomeStatus.FAILED
            error = BatchItemError(
                f"preparing the item failed unexpectedly ({type(exc).__name__}); nothing was sent",
                merchant_id_scan_reference=item.ref,
                stage="prepare",
            )
            error.__cause__ = exc
            logger.error("batch item %d: unexpected %s while preparing", item.index, type(exc).__name__)
        else:
            size = len(body)
            if size > item.reserved:
                self.budget.force(size - item.reserved)  # normalisation made the images larger
            else:
                self.budget.release(item.reserved - size)
            item.reserved = size
            item.body = body
            return item
        self.budget.release(item.reserved)
        item.reserved = 0
        failure = await _record(self.journal.mark_failed(item.ref, error) if self.journal else None)
        if self.journal is not None and failure is None:
            await self._journaled(JournalState.FAILED, [item.ref])
        await self._emit(out, self._outcome(item.index, item.ref, status, item.started, error=error))
        if failure is not None:
            raise failure
        return None

    # -- stage 3: upload -------------------------------------------------------------------------------------

    async def _uploader(
        self, receive: MemoryObjectReceiveStream[_Item], out: MemoryObjectSendStream[BatchOutcome]
    ) -> None:
        async with receive, out:
            async for item in receive:
                if self.stopping:  # stays pending: the next run sends it
                    self.budget.release(item.reserved)
                    del item
                    continue
                await self._upload(item, out)
                del item

    async def _upload(self, item: _Item, out: MemoryObjectSendStream[BatchOutcome]) -> None:
        body = item.body
        assert body is not None
        item.body = None
        ref = item.ref
        sent = False
        taken_over: JournalError | None = None

        async def mark_in_flight() -> None:
            # Called by the client once it holds a rate-limiter slot, right before the first HTTP attempt, so an
            # item still waiting for a slot when the batch stops counts as "not sent", not as "unknown".
            nonlocal sent
            if self.stopping:
                raise BatchStoppedError("the batch is stopping; not sent")  # raised here, nothing is sent
            if self.journal is not None:
                await self.journal.mark_sent(ref)
            # From here until its outcome the item is in flight: if the batch stops, its outcome is unknown.
            # (No await between the durable "sent" record and this move.)
            self.pending.pop(item.index, None)
            self.in_flight[item.index] = ref
            self.submitted += 1
            sent = True
            if self.journal is not None:
                await self._journaled(JournalState.SENT, [ref])

        receipt: ScanReceipt | None = None
        error: NetverifyError | None = None
        attempts: int | None = None
        try:
            try:
                receipt = await self.client.send_encoded(
                    body,
                    merchant_id_scan_reference=ref,
                    on_send=mark_in_flight,
                    on_body_sent=lambda: self.arrived.add(item.index),
                )
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                if isinstance(exc, JournalError) and not sent:
                    if not _lease_lost(exc):
                        raise  # "sent" could not be recorded, so nothing was sent: the journal failure stops the batch
                    taken_over = exc
                else:
                    error, attempts = self._upload_error(item, exc)
        finally:
            del body
            self.budget.release(item.reserved)
            item.reserved = 0
        if isinstance(error, BatchStoppedError) and not sent:
            return  # the batch stopped while it waited for a slot: it stays pending
        hand_back = getattr(self.journal, "hand_back", None)
        if isinstance(error, RateLimiterError) and not sent and callable(hand_back):
            # A journal that can give an unsent item back to its queue (a worker's) takes it: the item is not at
            # fault, it has no outcome here, and this pipeline may see it again.
            self.forget(ref)
            await hand_back(ref, error)
            return
        if taken_over is not None:
            # The lease begin_item took ran out before the upload and another process took the item: nothing
            # was sent, and the item is that process's to send now. Skipped here; the batch goes on.
            skipped = SubmissionOutcomeUnknown(
                ref,
                "another process took this item over after this batch's lease on it ran out, not sent here",
            )
            skipped.__cause__ = taken_over
            await self._emit(
                out,
                self._outcome(item.index, ref, OutcomeStatus.SKIPPED_UNKNOWN, item.started, error=skipped),
            )
            return
        journal = self.journal
        if receipt is not None:
            failure = await _record(journal.mark_receipt(ref, receipt) if journal else None)
            outcome = self._outcome(
                item.index, ref, OutcomeStatus.RECEIPT, item.started, receipt=receipt, attempts=None
            )
        else:
            assert error is not None
            # the kind was decided where the failure happened; only an item whose whole body reached the network
            # can have created a scan
            if item.index in self.arrived and failure_kind(error) is FailureKind.AMBIGUOUS:
                status = OutcomeStatus.UNKNOWN
                failure = await _record(
                    journal.mark_unknown([ref], type(error).__name__) if journal else None
                )
            else:
                status = OutcomeStatus.FAILED
                failure = await _record(journal.mark_failed(ref, error) if journal else None)
            outcome = self._outcome(item.index, ref, status, item.started, error=error, attempts=attempts)
        if journal is not None and failure is None:
            await self._journaled(_JOURNALED[outcome.status], [ref])
        # The caller learns the outcome even when the journal could not record it (the journal then still
        # says "sent", which a re-run treats as unknown); the journal failure then stops the batch.
        self.arrived.discard(item.index)
        await self._emit(out, outcome)
        self._count_auth_refusal(error, receipt is not None)
        if failure is not None:
            raise failure

    def forget(self, ref: str) -> None:
        """Forget an item that left this pipeline unsent (handed back to a shared queue), so that the same
        reference may be read again later in this batch instead of being refused as a duplicate."""
        self.seen.discard(ref)
        for index in [i for i, pending in self.pending.items() if pending == ref]:
            del self.pending[index]

    def _count_auth_refusal(self, error: NetverifyError | None, got_receipt: bool) -> None:
        """Stop taking new items after AUTH_REFUSALS_BEFORE_STOP 401/403 answers in a row."""
        if got_receipt:
            self.auth_refusals = 0
            return
        if not isinstance(error, (AuthenticationError, ForbiddenError)):
            return
        self.auth_refusals += 1
        if self.auth_refusals >= AUTH_REFUSALS_BEFORE_STOP and not self.stopping:
            self.stopping = True
            if self.fatal is None:
                self.fatal = BatchStoppedError(
                    f"batch stopped after {self.auth_refusals} authentication refusals in a row, which every "
                    f"item would get too; the last one: {error}. Items not sent stay pending: fix the settings "
                    "and run the same batch again (with its journal) to send them"
                )
            logger.error("batch stopping: %d authentication refusals in a row", self.auth_refusals)

    @staticmethod
    def _upload_error(item: _Item, exc: BaseException) -> tuple[NetverifyError, int | None]:
        if isinstance(exc, NetverifyError):
            attempts = getattr(exc, "attempts", None)
            if isinstance(exc, RateLimiterError) or (
                isinstance(exc, ConfigurationError) and not isinstance(exc, RequestError)
            ):
                attempts = 0  # refused before anything was sent
            return exc, attempts if isinstance(attempts, int) else None
        wrapped = BatchItemError(
            f"the upload failed unexpectedly ({type(exc).__name__}); a scan may have been created",
            merchant_id_scan_reference=item.ref,
            stage="upload",
        )
        wrapped.__cause__ = exc
        logger.error("batch item %d: unexpected %s during upload", item.index, type(exc).__name__)
        return wrapped, None

    # -- progress --------------------------------------------------------------------------------------------

    async def _report_progress(self) -> None:
        hook = self.on_progress
        if hook is None:
            return
        try:
            result = hook(self.progress())
            if inspect.isawaitable(result):
                await result
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.exception(
                "the batch's on_progress hook failed; it will not be called again for this batch"
            )
            self.on_progress = None

    async def _progress_loop(self) -> None:
        while self.on_progress is not None:
            self._changed = anyio.Event()
            with anyio.move_on_after(PROGRESS_INTERVAL_S):
                await self._changed.wait()
            await self._report_progress()

    # -- running -----------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the loop-bound objects; called in the consumer's task before the pipeline's task starts."""
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        buffer = max(1, self.concurrency)
        self._outcome_send, self.outcome_receive = anyio.create_memory_object_stream[BatchOutcome](buffer)
        self.status = BatchStatus.RUNNING
        self.started_at = anyio.current_time()
        self.stats_start = self._client_counters()

    async def run(self) -> None:
        """The pipeline's task: the stages, then the bookkeeping. Never raises (errors go to the consumer)."""
        assert self._outcome_send is not None and self.done is not None and self.scope is not None
        out = self._outcome_send
        journal_started = False
        try:
            with self.scope:
                if self.journal is not None:
                    await self.journal.start_run()
                    journal_started = True
                await self._run_stages(out)
        except BaseException as exc:
            leaves = [e for e in _flatten(exc) if not isinstance(e, anyio.get_cancelled_exc_class())]
            if leaves:
                self.fatal = leaves[0]
                logger.error("batch stopped by %s", type(self.fatal).__name__)
            elif not self.cancelled:
                # cancelled from outside (the event loop shutting down): do the bookkeeping, then let it go
                await self._finish(out, journal_started, BatchStatus.CANCELLED)
                raise
        if self.fatal is not None or self.input_error is not None:
            status = BatchStatus.FAILED
        elif self.cancelled:
            status = BatchStatus.CANCELLED
        else:
            status = BatchStatus.COMPLETED
        await self._finish(out, journal_started, status)

    async def _run_stages(self, out: MemoryObjectSendStream[BatchOutcome]) -> None:
        nprep = self.prepare_workers
        prepare_send, prepare_receive = anyio.create_memory_object_stream[_Item](nprep)
        upload_send, upload_receive = anyio.create_memory_object_stream[_Item](nprep)
        async with anyio.create_task_group() as outer:
            if self.on_progress is not None:
                outer.start_soon(self._progress_loop)
            async with anyio.create_task_group() as stages:
                stages.start_soon(self._reader, prepare_send, out.clone())
                for _ in range(nprep):
                    stages.start_soon(
                        self._preparer, prepare_receive.clone(), upload_send.clone(), out.clone()
                    )
                for _ in range(self.concurrency):
                    stages.start_soon(self._uploader, upload_receive.clone(), out.clone())
                prepare_receive.close()
                upload_send.close()
                upload_receive.close()
            outer.cancel_scope.cancel()
        await self._report_progress()

    async def _finish(
        self, out: MemoryObjectSendStream[BatchOutcome], journal_started: bool, status: BatchStatus
    ) -> None:
        self.finishing_cancelled = status is BatchStatus.CANCELLED
        with anyio.CancelScope(shield=True):
            try:
                if self.journal is not None:
                    try:
                        maybe_arrived = self._stopped_in_flight(arrived=True)
                        if maybe_arrived:
                            await self.journal.mark_unknown(maybe_arrived, "BatchCancelled")
                            await self._journaled(JournalState.UNKNOWN, maybe_arrived)
                        for ref in self._stopped_in_flight(arrived=False):
                            # every attempt failed before its body was out: no scan can exist
                            await self.journal.mark_failed(
                                ref, BatchStoppedError("the batch stopped before the body was sent")
                            )
                            await self._journaled(JournalState.FAILED, [ref])
                        if journal_started:
                            counts = {s.value: n for s, n in self.counts.items()}
                            counts[OutcomeStatus.UNKNOWN.value] += len(maybe_arrived)
                            await self.journal.finish_run(status.value, counts | {"read": self.read})
                    except Exception as exc:
                        if self.fatal is None:
                            self.fatal = exc
                            status = BatchStatus.FAILED
                        logger.error(
                            "the journal failed while the batch was stopping: %s", type(exc).__name__
                        )
                    finally:
                        if self.owns_journal and isinstance(self.journal, SqliteJournal):
                            await self.journal.aclose()
            finally:
                self.status = status
                self.finished_at = anyio.current_time()
                out.close()
                assert self.done is not None
                self.done.set()

    def cancel(self) -> None:
        """Ask the background task to stop (synchronous; safe to call more than once)."""
        if self.scope is not None:
            self.scope.cancel()

    @property
    def cancelled(self) -> bool:
        return self.scope is not None and self.scope.cancel_called

    def take_error(self) -> BaseException | None:
        """The exception to raise to the consumer (once)."""
        if self.error_delivered:
            return None
        self.error_delivered = True
        return self.fatal or self.input_error
