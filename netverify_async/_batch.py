"""Batch submission: many requests through the client's pipeline, bounded memory, a crash-safe journal.

::

    reader ──► prepare workers ──► upload workers (``concurrency``) ──► outcomes (completion order)
    (lazy)     preflight + encode   client.send_encoded: rate limiter,
               in worker threads    retries, typed errors

The stages are joined by small memory streams, so preflight of the next images overlaps the current uploads,
and a byte budget (``max_bytes_in_flight``) caps what the pipeline holds: an item's raw image bytes from the
moment it is read until its body is encoded, then its encoded body until its upload ends. The input is read
lazily, one item at a time as room frees up, so a generator of a million requests is fine; the only thing kept
per item is its ``merchantIdScanReference`` (to refuse duplicates and for the summary).

Every item ends in exactly one :class:`BatchOutcome`; a failing item never stops the batch. Only a broken
journal (a batch must not send what it cannot record) or an exception raised by the input iterable itself ends
it early: the items already read are finished first, then the exception is raised from the ``async for``.

The pipeline's tasks live in a task group owned by ``async with client.submit_many(...) as batch``: they start
when the block is entered and are stopped and awaited (bookkeeping included) when it is left, whether by the
end of the loop, a ``break``, an exception or a cancellation. ``await batch.aclose()`` stops it early from
inside the block. There is no background task that could outlive the block.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._errors import ConfigurationError, RequestValidationError, ValidationIssue
from ._journal import Journal, open_journal
from ._models import NetverifyRequest
from ._outcomes import (
    BatchOutcome,
    BatchProgress,
    BatchStatus,
    BatchSummary,
    OutcomeStatus,
    ProgressHook,
)
from ._pipeline import Pipeline, Stages

if TYPE_CHECKING:
    import os


__all__ = [
    "Batch",
    "BatchOutcome",
    "BatchProgress",
    "BatchStatus",
    "BatchSummary",
    "OutcomeStatus",
    "ProgressHook",
    "check_unique_references",
    "submit_many",
]

#: Default number of prepare workers (preflight + encode): a few are enough to keep the uploads fed.
DEFAULT_PREPARE_WORKERS = 2


def check_unique_references(requests: Iterable[NetverifyRequest]) -> None:
    """Raise :class:`~netverify_async.RequestValidationError` naming each repeated merchant reference.

    For callers holding a list who want to refuse the whole batch before starting (the batch itself refuses
    each repeat as an ``INVALID`` outcome, since it reads its input lazily). Messages name positions, not
    values.
    """
    first_seen: dict[str, int] = {}
    issues: list[ValidationIssue] = []
    for index, request in enumerate(requests):
        ref = request.merchant_id_scan_reference
        if ref in first_seen:
            issues.append(
                ValidationIssue(
                    f"[{index}].merchantIdScanReference",
                    "duplicate_reference",
                    f"must be unique within a batch; item {first_seen[ref]} has the same value",
                )
            )
        else:
            first_seen[ref] = index
    if issues:
        raise RequestValidationError(issues)


class Batch:
    """A batch of submissions: use it as ``async with client.submit_many(...) as batch``, then iterate it for
    :class:`BatchOutcome` in completion order.

    Nothing starts before the block is entered. Leaving the block stops what is still running (uploads in flight
    become ``unknown``) and waits for the bookkeeping. ``summary`` is a live :class:`BatchSummary`, final once
    the block is left; ``progress`` is a :class:`BatchProgress` snapshot.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._group: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._closed = False

    def __repr__(self) -> str:
        p = self._pipeline
        return f"Batch(status={p.status.value}, read={p.read}, completed={sum(p.counts.values())})"

    @property
    def summary(self) -> BatchSummary:
        """Counts and references so far (final once the batch has ended)."""
        return self._pipeline.summary()

    @property
    def progress(self) -> BatchProgress:
        """A progress snapshot."""
        return self._pipeline.progress()

    @property
    def status(self) -> BatchStatus:
        return self._pipeline.status

    @property
    def peak_bytes_in_flight(self) -> int:
        """The most bytes the pipeline held at once (see ``max_bytes_in_flight``)."""
        return self._pipeline.budget.peak

    @property
    def largest_item_bytes(self) -> int:
        """The largest single reservation (an item above the budget goes through alone)."""
        return self._pipeline.budget.largest

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise ConfigurationError("this batch was already started; submit_many() returns a new one")
        self._entered = True
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        self._pipeline.setup()
        group.start_soon(self._pipeline.run, name="netverify-batch")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        self._closed = True
        assert group is not None
        self._pipeline.cancel()  # a no-op once the pipeline has finished on its own
        # The pipeline's task never raises (its errors go to the consumer): the group only needs the caller's
        # exception when it is a cancellation, which it must see; any other one goes on to the caller as it is,
        # not wrapped in an exception group.
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            await group.__aexit__(*((exc_type, exc, tb) if cancelled else (None, None, None)))
        finally:
            if self._pipeline.outcome_receive is not None:
                self._pipeline.outcome_receive.close()
        if exc is None:
            error = self._pipeline.take_error()
            if error is not None and not isinstance(error, anyio.get_cancelled_exc_class()):
                raise error

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> BatchOutcome:
        if not self._entered:
            raise ConfigurationError(
                "a batch runs inside 'async with': async with client.submit_many(...) as batch: "
                "async for outcome in batch: ..."
            )
        receive = self._pipeline.outcome_receive
        if self._closed or receive is None:
            raise StopAsyncIteration
        try:
            return await receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        error = self._pipeline.take_error()
        if error is not None:
            raise error
        raise StopAsyncIteration

    @property
    def stopping(self) -> bool:
        """True once the batch takes no new items: after :meth:`stop`, or when it stopped early by itself
        (repeated authentication refusals)."""
        return self._pipeline.stopping

    def stop(self) -> None:
        """Stop taking new items, gently: items read but not sent yet stay pending (with a journal, the next run
        sends them), uploads already in flight finish and get their outcome, then the iteration ends.

        Unlike :meth:`aclose`, nothing in flight is cut off. An input that is itself waiting (an async generator
        polling a queue) must also return for the batch to end: stop it the same way. Safe to call more than
        once, and before the block is entered.
        """
        self._pipeline.stopping = True

    async def aclose(self) -> None:
        """Stop the batch early (uploads in flight become ``unknown``) and wait for its bookkeeping.

        Raises the exception that ended the batch early (a journal failure) if it was not raised yet.
        """
        p = self._pipeline
        if self._group is not None and p.done is not None:
            with anyio.CancelScope(shield=True):
                p.cancel()
                await p.done.wait()
        self._closed = True
        error = p.take_error()
        if error is not None:
            raise error


def submit_many(
    client: Stages,
    requests: Iterable[NetverifyRequest] | AsyncIterable[NetverifyRequest],
    *,
    concurrency: int,
    journal: Journal | str | os.PathLike[str] | None = None,
    resend_unknown: bool = False,
    max_bytes_in_flight: int = 256 * 1024 * 1024,
    on_progress: ProgressHook | None = None,
    prepare_workers: int = DEFAULT_PREPARE_WORKERS,
) -> Batch:
    """Submit many requests through ``client``; returns a :class:`Batch`, to be used as
    ``async with submit_many(...) as batch: async for outcome in batch: ...``.

    - ``requests``: any iterable or async iterable of :class:`~netverify_async.NetverifyRequest`, read lazily.
      A plain iterable is advanced on the event loop: read files in an async generator (e.g. with
      ``Image.from_path_async``) rather than in a plain one.
    - ``concurrency``: uploads at once (the client's rate limiter and ``max_concurrency`` still apply).
    - ``journal``: a path (a :class:`~netverify_async.SqliteJournal` is opened and closed by the batch), a
      journal object, or None. With a journal, references that already have a receipt are skipped, and those
      whose earlier upload has an unknown outcome are skipped unless ``resend_unknown=True``.
    - ``max_bytes_in_flight``: the byte budget (raw images until encoded, then encoded bodies until uploaded).
    - ``on_progress``: called (sync or async) with a :class:`BatchProgress` after outcomes and at least every
      0.2 s; calls are coalesced when outcomes arrive faster than the hook runs. A hook that raises is logged
      and not called again.
    - ``prepare_workers``: items preflighted and encoded at once (CPU-bound work in worker threads).
    """
    if isinstance(requests, (str, bytes, NetverifyRequest)) or not isinstance(
        requests, Iterable | AsyncIterable
    ):
        raise ConfigurationError("requests: expected an iterable or async iterable of NetverifyRequest")
    for name, value in (
        ("concurrency", concurrency),
        ("max_bytes_in_flight", max_bytes_in_flight),
        ("prepare_workers", prepare_workers),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"{name}: must be an integer >= 1")
    if on_progress is not None and not callable(on_progress):
        raise ConfigurationError("on_progress: must be callable")
    journal_obj, owns = open_journal(journal)
    pipeline = Pipeline(
        client,
        requests,
        concurrency=concurrency,
        journal=journal_obj,
        owns_journal=owns,
        resend_unknown=bool(resend_unknown),
        max_bytes_in_flight=max_bytes_in_flight,
        on_progress=on_progress,
        prepare_workers=prepare_workers,
    )
    return Batch(pipeline)
