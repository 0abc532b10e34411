"""Stopping a long command cleanly: Ctrl-C, or the reader of its output going away (``| head``).

The first Ctrl-C does not kill the command: it stops the part that runs inside :meth:`Interruption.stoppable`
(e.g. a batch's loop), lets the rest finish its bookkeeping (the journal records what was in flight), and the
command prints its run summary. A second Ctrl-C quits at once (``interrupted``, exit status 130). A closed
output pipe (``BrokenPipeError``) is handled the same way: stdout is pointed at the null device and the summary
goes to stderr.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import anyio

from ._common import EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, silence_stdout

__all__ = ["INTERRUPTED", "OUTPUT_CLOSED", "Interruption", "run_interruptible"]

_T = TypeVar("_T")

#: :attr:`Interruption.reason` after Ctrl-C.
INTERRUPTED = "interrupted"
#: :attr:`Interruption.reason` after the output pipe was closed.
OUTPUT_CLOSED = "output closed"


class Interruption:
    """Why a command stopped early (``reason``), and the cancel scope of the part that stops."""

    def __init__(self) -> None:
        #: None while nothing stopped the command; :data:`INTERRUPTED` or :data:`OUTPUT_CLOSED` after.
        self.reason: str | None = None
        self._scopes: list[anyio.CancelScope] = []

    @property
    def output_closed(self) -> bool:
        """True when stdout's reader went away (write the summary to stderr)."""
        return self.reason == OUTPUT_CLOSED

    @property
    def exit_status(self) -> int | None:
        """130 after Ctrl-C, 141 after a closed output pipe, None otherwise."""
        if self.reason is None:
            return None
        return EXIT_OUTPUT_CLOSED if self.output_closed else EXIT_INTERRUPTED

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[None]:
        """The block that a stop cancels; the code after it runs normally (and prints the summary)."""
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            if self.reason is not None:
                scope.cancel()
            try:
                yield
            finally:
                self._scopes.remove(scope)

    def stop(self, reason: str) -> None:
        """Stop the running :meth:`stoppable` blocks (the first reason given is kept)."""
        if self.reason is None:
            self.reason = reason
        for scope in self._scopes:
            scope.cancel()

    def lost_output(self) -> None:
        """Call on ``BrokenPipeError`` from stdout: nothing more goes there, and the work stops."""
        silence_stdout()
        self.stop(OUTPUT_CLOSED)


def _can_watch_signals() -> bool:
    """Signals reach the main thread only; and a SIGINT the process was told to ignore (a background job of
    a non-interactive shell, ``nohup``) stays ignored."""
    return (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "SIGINT")
        and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )


async def _watch(interruption: Interruption, note: str | None) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            interruption.stop(INTERRUPTED)
            if note:
                print(note, file=sys.stderr, flush=True)
            break
    # the receiver is closed: a second Ctrl-C raises KeyboardInterrupt, which quits at once


async def run_interruptible(
    body: Callable[[Interruption], Awaitable[_T]], *, note: str | None = None
) -> tuple[_T, Interruption]:
    """Run ``body(interruption)`` with the first Ctrl-C turned into ``interruption.stop("interrupted")`` (and
    ``note`` printed on stderr); returns its result and the interruption. ``body`` should stop its work inside
    ``interruption.stoppable()`` and then report what it did."""
    interruption = Interruption()
    error: Exception | None = None
    result: _T | None = None
    async with anyio.create_task_group() as tasks:
        if _can_watch_signals():
            tasks.start_soon(_watch, interruption, note)
        try:
            result = await body(interruption)
        except Exception as exc:  # raised below, outside the task group, so that it is not wrapped in a group
            error = exc
        finally:
            tasks.cancel_scope.cancel()
    if error is not None:
        raise error
    return result, interruption  # type: ignore[return-value]
