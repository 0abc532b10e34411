"""A semaphore counted in bytes: what caps the memory a batch holds (``max_bytes_in_flight``)."""

from __future__ import annotations

import anyio

__all__ = ["ByteBudget"]


class _Waiter:
    __slots__ = ("amount", "event", "granted")

    def __init__(self, amount: int) -> None:
        self.amount = amount
        self.event = anyio.Event()
        self.granted = False


class ByteBudget:
    """A semaphore counted in bytes (FIFO). An amount larger than the whole capacity is granted when nothing
    else is held, so one oversized item still goes through, alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        #: Largest single amount granted (to tell an oversized item from an overrun).
        self.largest = 0
        self._waiters: list[_Waiter] = []

    def _fits(self, amount: int) -> bool:
        return self.in_use == 0 or self.in_use + amount <= self.capacity

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.peak = max(self.peak, self.in_use)
        self.largest = max(self.largest, amount)

    def _grant_waiters(self) -> None:
        while self._waiters and self._fits(self._waiters[0].amount):
            waiter = self._waiters.pop(0)
            self._take(waiter.amount)
            waiter.granted = True
            waiter.event.set()

    async def acquire(self, amount: int) -> None:
        """Wait until ``amount`` bytes fit, then hold them."""
        if not self._waiters and self._fits(amount):
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._take(amount)
            return
        waiter = _Waiter(amount)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release(amount)
            else:
                self._waiters.remove(waiter)
                self._grant_waiters()
            raise

    def force(self, amount: int) -> None:
        """Hold more bytes without waiting (an item that grew after it was admitted)."""
        self._take(amount)

    def release(self, amount: int) -> None:
        """Give bytes back."""
        self.in_use -= amount
        self._grant_waiters()
