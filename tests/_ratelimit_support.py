"""Virtual time on both anyio backends (tests marked ``virtual_time``, see conftest), and the sliding-window check.

Virtual time: on trio, ``trio.testing.MockClock(autojump_threshold=0)``; on asyncio, an event loop whose clock
jumps straight to the next timer whenever every task is blocked. Both make ``anyio.sleep(3600)`` return at
once while ``anyio.current_time()`` advances by an hour, so the tests can assert exact virtual times without
depending on the speed of the machine. Loopback sockets are fine when their server runs in the same event loop
(``tests/_misbehaving.py``, ``tests/_hostile.py``): the clock jumps only when no task can run and no socket is
ready. A worker thread or a server in another thread is not: the clock would jump while it works.
"""

from __future__ import annotations

import asyncio
import bisect
import selectors
from collections.abc import Iterable
from typing import Any

from trio.testing import MockClock


class _JumpingSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking; when the loop would sleep until a timer, moves the clock there."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer at all: only real I/O can wake us
            return super().select(None)
        self._loop.advance(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop running on virtual time (starts at 0, jumps to the next timer when idle)."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """An ``anyio_backend`` value running ``name`` on virtual time."""
    if name == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualTimeEventLoop})


def max_in_window(starts: Iterable[float], seconds: float) -> int:
    """The largest number of starts inside any half-open interval [t, t + seconds), over every t.

    The maximum is reached by an interval that begins at one of the starts, so checking those is exhaustive.
    """
    ordered = sorted(starts)
    best = 0
    for i, t in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, t + seconds, lo=i) - i)
    return best


def max_in_window_int(starts: Iterable[int], width: int) -> int:
    """:func:`max_in_window` on integer timestamps (exact arithmetic, e.g. microseconds)."""
    ordered = sorted(starts)
    best = 0
    for i, t in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, t + width, lo=i) - i)
    return best
