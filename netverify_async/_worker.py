"""Workers of a distributed batch: any number of processes, on any hosts, share one journal that holds the queue.

A *leasing* journal (:class:`netverify_async.postgres.PostgresJournal`) holds every item with a payload (what
a worker needs to rebuild the request). A worker claims a few items at a time with a lease (``claim``), keeps
its leases alive in the background (``renew``), rebuilds each request from its payload and submits it through
the client's ordinary batch pipeline (:mod:`netverify_async._pipeline`) with that journal, so the journal's
transitions and the rule "recorded ``sent`` before the first byte leaves" live in one place for single-process
batches and workers alike.

What a worker guarantees, whenever it is killed (SIGKILL included):

- an item whose ``sent`` record was not committed was not sent: its lease runs out and another worker claims it;
- an item recorded ``sent`` is never claimed again (its outcome is known, or it is ``sent``/``unknown`` and waits
  for a callback or a person), so nothing is resent blindly;
- the journal fences ``mark_sent`` on the lease: a worker whose lease expired (paused, partitioned) gets
  ``LeaseLostError`` and does not send; the item is someone else's now, and the worker goes on with the others.

When the journal's database goes away (a restart, a failover), the worker backs off and tries again: claims and
renewals wait, an item whose ``sent`` record cannot be written is not sent (it stays pending and is claimed
again), and an outcome already known (a receipt) is written as soon as the database is back (for up to
``journal_retry_timeout`` seconds; after that the item stays ``sent``, which means "unknown": never resent).

The default payload is a manifest row as the command line parsed it (:func:`manifest_row_payload`): its values
by column and the folder its image paths are relative to. Image files are read by the worker, so workers on
other hosts need the same paths (shared storage); ``image_root=`` confines them to one folder (payloads come from
the shared database). Pass ``build=`` for payloads of your own.

An item a worker gives back unsent (the rate limiter failed, its lease ran out, its ``sent`` record could not be
written) leaves that worker's pipeline, so the worker sends it if it claims it again later; after a rate-limiter
failure the worker backs off before it takes more items.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread
import attrs

from ._errors import (
    BatchStoppedError,
    ConfigurationError,
    JournalError,
    NetverifyError,
    RequestValidationError,
    ValidationIssue,
)
from ._journal import Journal, JournalEntry, JournalState
from ._outcomes import BatchOutcome, OutcomeStatus

if TYPE_CHECKING:
    from ._batch import Batch
    from ._models import NetverifyRequest, ScanReceipt
    from ._pipeline import Stages

__all__ = [
    "LeasingJournal",
    "PayloadBuilder",
    "WorkerStats",
    "manifest_row_payload",
    "process_one",
    "request_from_payload",
    "run_worker",
]

logger = logging.getLogger("netverify_async.worker")

_T = TypeVar("_T")

#: The ``format`` of the payloads made by :func:`manifest_row_payload`.
PAYLOAD_FORMAT = "netverify-manifest-row"
PAYLOAD_VERSION = 1
#: Seconds a worker keeps trying to write to a journal that does not answer (database restarting).
DEFAULT_JOURNAL_RETRY_TIMEOUT = 120.0
#: Seconds between claims while there is nothing to claim.
DEFAULT_POLL_INTERVAL = 1.0
#: Lease length assumed when the journal does not say (``lease_seconds``).
_DEFAULT_LEASE_SECONDS = 120.0
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0
#: Seconds given to handing unsent items back when a worker stops (and to each journal write of a pipeline that
#: is being cancelled).
_RELEASE_TIMEOUT = 10.0
#: Seconds a worker waits before taking more items after the rate limiter failed (doubling up to the maximum while
#: it keeps failing), so that a long limiter outage does not become a tight claim -> fail -> hand back loop.
_LIMITER_BACKOFF_FIRST = 1.0
_LIMITER_BACKOFF_MAX = 30.0

#: Rebuilds the request of an item from its reference and payload (sync or async; blocking work is fine in a
#: sync one: it runs in a worker thread). Raise :class:`~netverify_async.RequestValidationError` for a payload
#: that cannot become a request: the item is recorded ``failed`` (nothing was sent).
PayloadBuilder = Callable[[str, Mapping[str, Any]], "NetverifyRequest | Awaitable[NetverifyRequest]"]


class _Lease(Protocol):
    @property
    def ref(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


@runtime_checkable
class LeasingJournal(Journal, Protocol):
    """What a worker needs from a journal: the batch journal's coroutines plus a queue with leases
    (:class:`netverify_async.postgres.PostgresJournal` has them). After ``claim``, the journal fences
    ``mark_sent`` on the lease: for an expired or stolen lease it raises an error named ``LeaseLostError`` (a
    :class:`~netverify_async.JournalError`) and records nothing."""

    async def claim(self, *, limit: int) -> Sequence[Any]:
        """Up to ``limit`` sendable items, each leased to this journal object (``ref``, ``payload``)."""
        ...

    async def renew(self, leases: Sequence[Any]) -> Iterable[str]:
        """Extend these leases; returns the references whose lease was lost."""
        ...

    async def release(self, lease: Any) -> None:
        """Give an unsent item back (claimable at once)."""

    async def counts(self) -> Mapping[JournalState, int]:
        """How many items are in each state."""
        ...


def _is_lease_lost(exc: BaseException) -> bool:
    """A journal's "this item is leased to someone else now" (by name, so that any leasing journal can say it)."""
    return isinstance(exc, JournalError) and any(c.__name__ == "LeaseLostError" for c in type(exc).__mro__)


# ----------------------------------------------------------------------------------------------------------
# Payloads
# ----------------------------------------------------------------------------------------------------------


def manifest_row_payload(
    values: Mapping[str, str | Sequence[str]],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    row: int | None = None,
) -> dict[str, Any]:
    """The payload of one item: a manifest row's values by column (see :mod:`netverify_async.cli._manifest`
    for the columns; ``reference``, ``front``, ``country`` and ``id_type`` are required), the folder its
    relative image paths start from (default: the current folder, made absolute now), and its row number.

    Image *paths* are stored, not images: every worker must see the files at those paths. The other values are
    stored as given, so personal fields of the row (names, document number, date of birth) live in the journal's
    database: keep them out of the manifest unless that database may hold them. Raises
    :class:`~netverify_async.RequestValidationError` naming an unknown column or a value of the wrong type.
    """
    from .cli._manifest import COLUMNS, canonical_column

    issues: list[ValidationIssue] = []
    clean: dict[str, str | list[str]] = {}
    for key, value in values.items():
        column = canonical_column(str(key))
        if column not in COLUMNS:
            issues.append(ValidationIssue(column, "unknown_column", "is not a manifest column"))
        elif isinstance(value, str):
            clean[column] = value
        elif column == "enabled_fields" and all(isinstance(v, str) for v in value):
            clean[column] = list(value)
        else:
            issues.append(ValidationIssue(column, "type", "must be a string"))
    for column in ("reference", "front", "country", "id_type"):
        if column not in clean and not any(i.path == column for i in issues):
            issues.append(ValidationIssue(column, "required", "is required"))
    if issues:
        raise RequestValidationError(issues)
    folder = Path(base_dir) if base_dir is not None else Path.cwd()
    return {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "row": row,
        "base_dir": str(folder.absolute()),
        "values": clean,
    }


def _outside_image_root(
    values: Mapping[str, str | tuple[str, ...]], base_dir: str, image_root: str | os.PathLike[str]
) -> list[ValidationIssue]:
    """The image columns whose file resolves (symbolic links followed) outside ``image_root``."""
    from .cli._manifest import IMAGE_COLUMNS

    root = Path(image_root).resolve()
    issues: list[ValidationIssue] = []
    for column in IMAGE_COLUMNS:
        value = values.get(column)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if not path.is_absolute():
            path = Path(base_dir) / path
        try:
            inside = path.resolve().is_relative_to(root)
        except (OSError, ValueError, RuntimeError):
            inside = False
        if not inside:
            # the path itself is not repeated: it comes from the shared database and may say too much
            issues.append(ValidationIssue(column, "outside_image_root", "names a file outside the image root"))
    return issues


def request_from_payload(
    merchant_id_scan_reference: str,
    payload: Mapping[str, Any],
    *,
    image_root: str | os.PathLike[str] | None = None,
) -> NetverifyRequest:
    """The request of a :func:`manifest_row_payload` (blocking: reads the image files; run it in a thread).

    With ``image_root``, an image path that resolves outside that folder (``..``, an absolute path, a symbolic
    link pointing out) is refused before any file is opened: payloads come from the shared database, and a
    worker reads whatever files they name.

    Raises :class:`~netverify_async.RequestValidationError` naming the columns that cannot become a request
    (a missing image file, a file outside ``image_root``: ``outside_image_root``, a broken rule), or a payload
    that is not of this format or names another reference.
    """
    from .cli._manifest import InvalidRow, ManifestRow, build_request

    if payload.get("format") != PAYLOAD_FORMAT or payload.get("version") != PAYLOAD_VERSION:
        raise RequestValidationError(
            [ValidationIssue("payload", "format", f"is not a {PAYLOAD_FORMAT} payload of version {PAYLOAD_VERSION}")]
        )
    raw = payload.get("values")
    base_dir = payload.get("base_dir")
    if not isinstance(raw, Mapping) or not isinstance(base_dir, str):
        raise RequestValidationError([ValidationIssue("payload", "format", "lacks its values or base_dir")])
    values: dict[str, str | tuple[str, ...]] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            values[str(key)] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values[str(key)] = tuple(value)
        else:
            raise RequestValidationError([ValidationIssue(str(key), "type", "must be a string")])
    if values.get("reference") != merchant_id_scan_reference:
        raise RequestValidationError(
            [ValidationIssue("reference", "mismatch", "the payload names another merchant reference")]
        )
    if image_root is not None:
        outside = _outside_image_root(values, base_dir, image_root)
        if outside:
            raise RequestValidationError(outside)
    row = payload.get("row")
    built = build_request(ManifestRow(row if isinstance(row, int) else 0, values), Path(base_dir))
    if isinstance(built, InvalidRow):
        raise built.error()
    return built


# ----------------------------------------------------------------------------------------------------------
# The worker
# ----------------------------------------------------------------------------------------------------------


@attrs.define
class WorkerStats:
    """What one worker did. Counts only; no references."""

    #: Items claimed (each lease counts once).
    claimed: int = 0
    #: Outcomes by :class:`~netverify_async.OutcomeStatus` value (``receipt``, ``failed``, ``unknown``, ...).
    outcomes: dict[str, int] = attrs.Factory(lambda: {s.value: 0 for s in OutcomeStatus})
    #: Items skipped because their lease was lost before they were sent (another worker has them).
    lease_lost: int = 0
    #: Unsent items handed back when the worker stopped.
    released: int = 0
    #: Items handed back to the queue because the rate limiter failed (e.g. Redis away): nothing was sent.
    requeued: int = 0
    #: Journal calls that failed and were tried again (the database restarting, say).
    journal_retries: int = 0
    #: Pipelines restarted after the journal failed for longer than ``journal_retry_timeout``.
    restarts: int = 0

    @property
    def completed(self) -> int:
        """Items that got an outcome from this worker."""
        return sum(self.outcomes.values())


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class _Worker:
    """The state of one worker: its leases, the pipeline's journal, the loop."""

    def __init__(
        self,
        client: Stages,
        journal: LeasingJournal,
        *,
        concurrency: int,
        drain: bool,
        build: PayloadBuilder | None,
        poll_interval: float,
        journal_retry_timeout: float,
        stop: anyio.Event | None,
        on_outcome: Callable[[BatchOutcome], Any] | None,
        max_items: int | None,
        wait_for_leased: bool,
        prepare_workers: int,
        image_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.concurrency = concurrency
        self.drain = drain
        self.build = build
        self.poll_interval = poll_interval
        self.journal_retry_timeout = journal_retry_timeout
        self.stop_event = stop if stop is not None else anyio.Event()
        self.on_outcome = on_outcome
        self.max_items = max_items
        self.wait_for_leased = wait_for_leased
        self.prepare_workers = prepare_workers
        self.image_root = image_root
        self.stats = WorkerStats()
        self.lease_seconds = float(getattr(journal, "lease_seconds", _DEFAULT_LEASE_SECONDS) or _DEFAULT_LEASE_SECONDS)
        #: claimed and not sent yet (what renewals keep alive and a stop hands back)
        self.held: dict[str, Any] = {}
        #: claimed, not yet handed to the pipeline
        self.buffer: deque[Any] = deque()
        #: references whose lease was lost before they were sent
        self.lost: set[str] = set()
        #: references handed to the current pipeline that have not left it yet (no outcome, not handed back)
        self.active: set[str] = set()
        #: leases taken from the buffer (whatever became of them): what ``max_items`` counts
        self.taken = 0
        #: the limiter back-off: no new item is taken before this time (anyio clock)
        self.resume_at = 0.0
        self.limiter_backoff = _LIMITER_BACKOFF_FIRST
        self.yielded = 0
        self.index = 0
        self.outcomes: list[BatchOutcome] = []
        self.input_done = False
        #: the pipeline of the current session
        self.batch: Batch | None = None
        #: whether the journal recorded the start of this worker's run
        self.run_started = False
        #: whether to record a run at all (not for ``process_one``: many may share one journal object at once)
        self.record_run = max_items is None

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def taking(self) -> bool:
        """Whether the input should go on: not stopping, and the pipeline still takes items."""
        batch = self.batch
        return not self.stop_event.is_set() and (batch is None or not batch.stopping)

    # -- journal calls -----------------------------------------------------------------------------------------

    async def retrying(self, what: str, call: Callable[[], Awaitable[_T]], *, patient: bool = True) -> _T:
        """``call()``, tried again with backoff while the journal fails (not for a lost lease), for up to
        ``journal_retry_timeout`` seconds; without ``patient``, also no longer once the worker is stopping."""
        deadline = anyio.current_time() + self.journal_retry_timeout
        delay = _BACKOFF_FIRST
        warned = False
        while True:
            try:
                return await call()
            except JournalError as exc:
                if _is_lease_lost(exc):
                    raise
                if anyio.current_time() >= deadline or (not patient and self.stopping):
                    raise
                self.stats.journal_retries += 1
                if not warned:
                    logger.warning("journal %s failed (%s); trying again", what, type(exc).__name__)
                    warned = True
            await anyio.sleep(delay * (0.5 + random.random()))
            delay = min(_BACKOFF_MAX, delay * 2)

    async def sleep_or_stop(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self.stop_event.wait()

    # -- the input of the pipeline -------------------------------------------------------------------------------

    async def requests(self) -> AsyncIterator[NetverifyRequest]:
        """The claimed items as requests, claiming a few at a time; ends when drained, stopped, or at max_items."""
        while self.taking():
            if self.max_items is not None and self.taken >= self.max_items:
                break
            wait = self.resume_at - anyio.current_time()
            if wait > 0:  # the rate limiter failed lately
                await self.sleep_or_stop(wait)
                continue
            if not self.buffer:
                want = self.concurrency
                if self.max_items is not None:
                    want = min(want, self.max_items - self.taken)
                try:
                    leases = await self.retrying(
                        "claim", functools.partial(self.journal.claim, limit=want), patient=False
                    )
                except JournalError:
                    if not self.taking():
                        break
                    raise
                if not leases:
                    if await self.finished():
                        break
                    await self.sleep_or_stop(self.poll_interval)
                    continue
                self.stats.claimed += len(leases)
                fresh = []
                for new in leases:
                    # claimed again (after a hand-back, a lost lease or a failed "sent" record): a new lease
                    self.lost.discard(new.ref)
                    self.held[new.ref] = new
                    if new.ref not in self.active:
                        fresh.append(new)
                    # else: still inside the pipeline, which goes on with it under the new lease
                if not self.taking():  # the pipeline stopped while this claim ran: they are handed back
                    break
                self.buffer.extend(fresh)
                if not fresh:
                    continue
            lease = self.buffer.popleft()
            self.taken += 1
            if not self.holds(lease) or lease.ref in self.active:
                continue  # lost, or superseded by a newer lease of the same item
            request = await self.rebuild(lease)
            if request is None:
                continue
            self.yielded += 1
            self.active.add(lease.ref)
            yield request
        self.input_done = True

    def holds(self, lease: _Lease) -> bool:
        """Whether this lease is the worker's current lease of its item (not lost, not superseded)."""
        return self.held.get(lease.ref) is lease

    async def finished(self) -> bool:
        """Nothing to claim now: is the queue drained (no pending item anywhere, leased ones included)?"""
        if not self.drain:
            return False
        if not self.wait_for_leased:
            return True
        pending_count = getattr(self.journal, "pending_count", None)
        if callable(pending_count):
            return int(await self.retrying("pending_count", pending_count, patient=False)) == 0
        counts = await self.retrying("counts", self.journal.counts, patient=False)
        return int(counts.get(JournalState.PENDING, 0)) == 0

    async def rebuild(self, lease: _Lease) -> NetverifyRequest | None:
        """The request of a lease; a payload that cannot become one is recorded ``failed`` (nothing sent)."""
        from ._models import NetverifyRequest

        ref = lease.ref
        started = anyio.current_time()
        try:
            if self.build is None:
                built = await anyio.to_thread.run_sync(
                    functools.partial(request_from_payload, ref, lease.payload, image_root=self.image_root)
                )
            elif inspect.iscoroutinefunction(self.build):
                built = await self.build(ref, lease.payload)
            else:
                built = await _maybe_await(await anyio.to_thread.run_sync(self.build, ref, lease.payload))
            if not isinstance(built, NetverifyRequest) or built.merchant_id_scan_reference != ref:
                raise RequestValidationError(
                    [ValidationIssue("payload", "type", "the builder must return the item's NetverifyRequest")]
                )
            return built
        except RequestValidationError as exc:
            error: NetverifyError = exc
        except NetverifyError as exc:  # e.g. an image file that preflight cannot read
            error = exc
        except Exception as exc:
            # A builder's own failure: the item fails (it would fail again on any worker), the worker goes on.
            # Only the exception's type is kept: its message may hold the payload's personal data.
            error = RequestValidationError(
                [ValidationIssue("payload", "build_failed", f"the payload builder raised {type(exc).__name__}")]
            )
            logger.error("worker: the payload builder raised %s for item %s", type(exc).__name__, ref)
        self.held.pop(ref, None)
        try:
            await self.retrying("mark_failed", lambda: self.journal.mark_failed(ref, error))
        except JournalError as exc:
            if not _is_lease_lost(exc):
                raise
            self.lease_was_lost(ref)
            return None
        logger.warning("worker: item %s cannot become a request (%s); recorded failed", ref, type(error).__name__)
        self.settle(
            BatchOutcome(
                index=self.next_index(),
                merchant_id_scan_reference=ref,
                status=OutcomeStatus.INVALID,
                error=error,
                elapsed=anyio.current_time() - started,
            )
        )
        return None

    def next_index(self) -> int:
        self.index += 1
        return self.index - 1

    def lease_was_lost(self, ref: str) -> None:
        if ref not in self.lost:
            self.lost.add(ref)
            self.stats.lease_lost += 1
            logger.info("worker: the lease of %s was lost before it was sent; skipped", ref)
        self.held.pop(ref, None)

    def left_unsent(self, ref: str) -> None:
        """The item left the current pipeline without an outcome (not sent): the pipeline forgets it, so that
        this worker can send it if it claims it again."""
        self.active.discard(ref)
        batch = self.batch
        if batch is not None:
            batch._pipeline.forget(ref)

    def limiter_failed(self) -> None:
        """Back off before taking more items; the wait doubles while the limiter keeps failing."""
        delay = self.limiter_backoff
        self.resume_at = max(self.resume_at, anyio.current_time() + delay * (0.75 + random.random() / 2))
        self.limiter_backoff = min(_LIMITER_BACKOFF_MAX, delay * 2)

    def pipeline_cancelled(self) -> bool:
        """Whether the current pipeline is being cancelled (a hard stop): its journal writes should not wait."""
        batch = self.batch
        return batch is not None and (batch._pipeline.finishing_cancelled or batch._pipeline.cancelled)

    def settle(self, outcome: BatchOutcome) -> None:
        ref = outcome.merchant_id_scan_reference
        if ref is not None:
            self.held.pop(ref, None)
            self.lost.discard(ref)
            self.active.discard(ref)
        self.stats.outcomes[outcome.status.value] = self.stats.outcomes.get(outcome.status.value, 0) + 1
        self.outcomes.append(outcome)
        if self.max_items is None and len(self.outcomes) > 1:  # only process_one reads them back
            del self.outcomes[0]
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                logger.exception("the worker's on_outcome hook failed; it will not be called again")
                self.on_outcome = None

    # -- background ------------------------------------------------------------------------------------------

    async def renew_loop(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while True:
            await anyio.sleep(interval)
            renewing = {ref: lease for ref, lease in self.held.items() if ref not in self.lost}
            if not renewing:
                continue
            try:
                lost = await self.journal.renew(list(renewing.values()))
            except JournalError as exc:
                self.stats.journal_retries += 1
                logger.warning("worker: renewing %d lease(s) failed (%s)", len(renewing), type(exc).__name__)
                continue
            for ref in lost:
                # (not when the item was claimed again meanwhile: that newer lease is alive)
                if ref in self.held and self.held[ref] is renewing.get(ref):
                    self.lease_was_lost(ref)

    async def release_unsent(self) -> None:
        """Hand back what was claimed and not sent (best effort: an unreleased lease just runs out)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_TIMEOUT):
            for ref, lease in list(self.held.items()):
                try:
                    await self.journal.release(lease)
                except JournalError as exc:
                    logger.info("worker: could not release %s (%s); its lease will run out", ref, type(exc).__name__)
                else:
                    self.stats.released += 1
                self.held.pop(ref, None)
            self.buffer.clear()

    # -- running ---------------------------------------------------------------------------------------------

    async def session(self) -> None:
        """One pipeline over the claimed items, until the input ends."""
        from ._batch import submit_many

        self.active.clear()  # a new pipeline: it has seen nothing yet
        batch = self.batch = submit_many(
            self.client,
            self.requests(),
            concurrency=self.concurrency,
            journal=_WorkerJournal(self),
            prepare_workers=self.prepare_workers,
        )
        error: Exception | None = None
        async with anyio.create_task_group() as group:

            async def stop_batch() -> None:
                await self.stop_event.wait()
                batch.stop()

            group.start_soon(stop_batch)
            try:
                async with batch:
                    async for outcome in batch:
                        self.settle(outcome)
            except Exception as exc:  # raised below, outside the task group, so that it is not wrapped in a group
                error = exc
            finally:
                group.cancel_scope.cancel()
        if error is not None:
            raise error

    async def sessions(self) -> None:
        """Pipelines one after the other, until the input ends; a journal down for too long starts a new one."""
        while True:
            self.input_done = False
            try:
                await self.session()
            except JournalError as exc:
                if self.stopping:
                    return
                # the items the stopped pipeline held but did not send are still leased to this worker: the
                # next pipeline takes them first
                queued = {lease.ref for lease in self.buffer}
                self.buffer.extendleft(
                    reversed([lease for ref, lease in self.held.items() if ref not in queued])
                )
                self.stats.restarts += 1
                logger.error(
                    "worker: the journal failed for longer than %.0f s (%s); starting over",
                    self.journal_retry_timeout,
                    type(exc).__name__,
                )
                await self.sleep_or_stop(_BACKOFF_MAX)
                continue
            if self.input_done or self.stopping:
                return

    async def run(self) -> WorkerStats:
        error: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self.renew_loop)
            try:
                await self.sessions()
            except Exception as exc:  # raised below, outside the task group, so that it is not wrapped in a group
                error = exc
            finally:
                await self.release_unsent()
                await self.finish_run(error)
                group.cancel_scope.cancel()
        if error is not None:
            raise error
        return self.stats

    async def finish_run(self, error: BaseException | None) -> None:
        """Record how this worker's run ended (best effort: the record of runs is informative only)."""
        if not self.run_started:
            return
        status = "failed" if error is not None else "stopped" if self.stopping else "completed"
        counts = {**self.stats.outcomes, "claimed": self.stats.claimed, "lease_lost": self.stats.lease_lost}
        with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_TIMEOUT):
            try:
                await self.journal.finish_run(status, counts)
                self.run_started = False
            except JournalError as exc:
                logger.info("worker: could not record the end of its run (%s)", type(exc).__name__)


class _WorkerJournal:
    """The journal as the pipeline sees it inside a worker: the leasing journal's calls, tried again while the
    database is away, with a lost lease turned into "not sent, not this worker's" instead of a batch failure."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._journal = worker.journal

    async def start_run(self) -> None:
        # One run per worker in the journal's record of runs, however many pipelines the worker goes through
        # (a new one after a long database outage); the worker finishes it when it stops.
        worker = self._worker
        if worker.record_run and not worker.run_started:
            await worker.retrying("start_run", self._journal.start_run, patient=False)
            worker.run_started = True

    async def finish_run(self, status: str, counts: Mapping[str, int]) -> None:
        pass  # see start_run: recorded once, by the worker, when it stops

    async def begin_item(self, merchant_id_scan_reference: str) -> JournalEntry | None:
        ref = merchant_id_scan_reference
        try:
            return await self._worker.retrying("begin_item", lambda: self._journal.begin_item(ref))
        except JournalError as exc:
            if not _is_lease_lost(exc):
                raise
            self._worker.lease_was_lost(ref)
            return None  # mark_sent refuses it below: nothing is sent

    async def mark_sent(self, merchant_id_scan_reference: str) -> None:
        ref = merchant_id_scan_reference
        worker = self._worker
        if worker.stopping:
            raise BatchStoppedError("the worker is stopping; not sent")
        if ref in worker.lost:
            worker.left_unsent(ref)
            raise BatchStoppedError("the item's lease was lost; not sent")
        try:
            await worker.retrying("mark_sent", lambda: self._journal.mark_sent(ref), patient=False)
        except JournalError as exc:
            worker.left_unsent(ref)
            if _is_lease_lost(exc):
                worker.lease_was_lost(ref)
                raise BatchStoppedError("the item's lease was lost; not sent") from None
            # "sent" could not be recorded, so it is not sent: it stays pending, handed back or (when the
            # database is still away) left to its lease, which is no longer renewed
            lease = worker.held.pop(ref, None)
            if lease is not None:
                with anyio.move_on_after(_RELEASE_TIMEOUT):
                    try:
                        await self._journal.release(lease)
                    except JournalError:
                        pass
            raise BatchStoppedError("the journal cannot record the upload; not sent") from exc
        worker.held.pop(ref, None)  # sent: never claimable again, no lease to keep
        worker.limiter_backoff = _LIMITER_BACKOFF_FIRST  # the limiter gave a slot

    async def mark_receipt(self, merchant_id_scan_reference: str, receipt: ScanReceipt) -> None:
        ref = merchant_id_scan_reference
        await self._outcome("mark_receipt", ref, lambda: self._journal.mark_receipt(ref, receipt))

    async def hand_back(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        """The shared limiter (Redis) could not book a slot: nothing was sent and the item is not at fault. It
        goes back to the queue (no outcome, no ``failed`` record) and the worker backs off."""
        ref = merchant_id_scan_reference
        worker = self._worker
        worker.left_unsent(ref)
        worker.limiter_failed()
        worker.stats.requeued += 1
        logger.warning(
            "worker: the rate limiter failed (%s); %s goes back to the queue (not sent)", type(error).__name__, ref
        )
        lease = worker.held.pop(ref, None)
        if lease is None:
            return  # its lease was lost: nothing to hand back
        try:
            await worker.retrying("release", lambda: self._journal.release(lease), patient=False)
        except JournalError as exc:
            logger.info("worker: could not hand back %s (%s); its lease will run out", ref, type(exc).__name__)

    async def mark_failed(self, merchant_id_scan_reference: str, error: BaseException) -> None:
        ref = merchant_id_scan_reference
        await self._outcome("mark_failed", ref, lambda: self._journal.mark_failed(ref, error))

    async def mark_unknown(self, merchant_id_scan_references: Iterable[str], error_type: str) -> None:
        refs = list(merchant_id_scan_references)
        await self._outcome("mark_unknown", None, lambda: self._journal.mark_unknown(refs, error_type))

    async def _outcome(self, what: str, ref: str | None, call: Callable[[], Awaitable[None]]) -> None:
        worker = self._worker
        try:
            if worker.pipeline_cancelled():
                # A hard stop: one try, bounded (the items stay ``sent``: unknown, never resent)
                with anyio.move_on_after(_RELEASE_TIMEOUT) as bounded:
                    await call()
                if bounded.cancelled_caught:
                    raise JournalError(f"the journal did not answer {what} in time while the worker was stopping")
            else:
                await worker.retrying(what, call)
        except JournalError as exc:
            if not _is_lease_lost(exc):
                raise
            # the item was taken over meanwhile (a receipt is recorded all the same; an unsent item's failure
            # is the new holder's business): nothing more to do here
            logger.info("worker: %s of an item whose lease was taken over", what)


def _check_worker_arguments(concurrency: int, poll_interval: float, journal_retry_timeout: float) -> None:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError("concurrency: must be an integer >= 1")
    for name, value in (("poll_interval", poll_interval), ("journal_retry_timeout", journal_retry_timeout)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"{name}: must be a finite number of seconds > 0")


def _check_journal(journal: object) -> LeasingJournal:
    if not isinstance(journal, LeasingJournal):
        raise ConfigurationError(
            "journal: a worker needs a leasing journal with claim/renew/release "
            f"(e.g. netverify_async.postgres.PostgresJournal), not {type(journal).__name__}"
        )
    return journal


async def run_worker(
    client: Stages,
    journal: LeasingJournal,
    *,
    concurrency: int = 4,
    drain: bool = True,
    build: PayloadBuilder | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    journal_retry_timeout: float = DEFAULT_JOURNAL_RETRY_TIMEOUT,
    stop: anyio.Event | None = None,
    on_outcome: Callable[[BatchOutcome], Any] | None = None,
    prepare_workers: int = 2,
    image_root: str | os.PathLike[str] | None = None,
) -> WorkerStats:
    """Work on the items of a shared journal until the queue is drained (or forever with ``drain=False``).

    - ``client``: a :class:`~netverify_async.NetverifyClient`; its rate limiter applies (share one account's
      limit between processes with :class:`netverify_async.redis.RedisRateLimiter`).
    - ``journal``: an open leasing journal (:class:`netverify_async.postgres.PostgresJournal`), not closed here.
    - ``concurrency``: uploads at once; the worker claims about that many items at a time, so that leases are
      not spent waiting for the rate limiter.
    - ``drain``: return once no item is pending anywhere (items leased by other workers included: a killed
      worker's items are claimed when their lease runs out); ``False`` keeps polling every ``poll_interval``
      seconds until ``stop`` is set.
    - ``build``: rebuilds a request from ``(reference, payload)`` (default :func:`request_from_payload`). Any
      exception it raises fails that item (recorded ``failed`` with the exception's type only, reported
      ``invalid``); the worker goes on.
    - ``image_root``: with the default ``build``, refuse (item ``failed``, ``outside_image_root``) any image
      path of a payload that resolves outside this folder. Recommended: payloads come from the shared
      database, and a worker reads the files they name.
    - ``journal_retry_timeout``: how long journal writes are tried again while the database is away.
    - ``stop``: set it to stop gently: nothing new is sent, uploads in flight finish and are recorded, unsent
      items are handed back (``release``). Cancelling the call instead cuts uploads off (their items stay
      ``sent``: unknown, never resent).
    - ``on_outcome``: called with each :class:`~netverify_async.BatchOutcome` (an item whose payload cannot
      become a request is recorded ``failed`` and reported ``invalid``).

    Returns the worker's :class:`WorkerStats`. Raises what stops a batch for good (e.g. repeated authentication
    refusals: :class:`~netverify_async.BatchStoppedError`); journal outages are waited out instead.
    """
    _check_worker_arguments(concurrency, poll_interval, journal_retry_timeout)
    worker = _Worker(
        client,
        _check_journal(journal),
        concurrency=concurrency,
        drain=drain,
        build=build,
        poll_interval=poll_interval,
        journal_retry_timeout=journal_retry_timeout,
        stop=stop,
        on_outcome=on_outcome,
        max_items=None,
        wait_for_leased=True,
        prepare_workers=prepare_workers,
        image_root=image_root,
    )
    return await worker.run()


async def process_one(
    client: Stages,
    journal: LeasingJournal,
    *,
    build: PayloadBuilder | None = None,
    journal_retry_timeout: float = DEFAULT_JOURNAL_RETRY_TIMEOUT,
    image_root: str | os.PathLike[str] | None = None,
) -> BatchOutcome | None:
    """Claim one item and submit it: the body of a task for arq / Celery-style task runners.

    Handles at most one claimed item and returns its :class:`~netverify_async.BatchOutcome` (``invalid`` for a
    payload that cannot become a request), or None when there was nothing to claim, when its lease was lost
    before it was sent (another worker has it), or when it was handed back because the rate limiter failed.
    The same guarantees as :func:`run_worker`; ``build`` and ``image_root`` as there.

    Concurrent calls may share one journal object (no run is recorded in the journal's record of runs for a
    ``process_one`` call, so they do not wait for each other).
    """
    _check_worker_arguments(1, DEFAULT_POLL_INTERVAL, journal_retry_timeout)
    worker = _Worker(
        client,
        _check_journal(journal),
        concurrency=1,
        drain=True,
        build=build,
        poll_interval=DEFAULT_POLL_INTERVAL,
        journal_retry_timeout=journal_retry_timeout,
        stop=None,
        on_outcome=None,
        max_items=1,
        wait_for_leased=False,
        prepare_workers=1,
        image_root=image_root,
    )
    await worker.run()
    return worker.outcomes[0] if worker.outcomes else None
