"""A counting semaphore that can say how many slots are free.

The consumer must never receive more messages than it can start at once, since a received
message's visibility clock is already running; so it needs the free count before it polls,
which ``asyncio.Semaphore`` does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib


class Slots:
    """``capacity`` slots; ``take`` never blocks, ``wait_free`` waits for one to open."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        """Slots not taken."""
        return self.capacity - self._used

    @property
    def used(self) -> int:
        """Slots taken."""
        return self._used

    def take(self) -> None:
        """Take a slot; the caller has checked that one is free."""
        if self._used >= self.capacity:
            raise RuntimeError("no free slot")
        self._used += 1

    def release(self) -> None:
        """Give a slot back and wake a waiter."""
        self._used -= 1
        self._freed.set()

    async def wait_free(self, within_s: float) -> int:
        """Wait up to ``within_s`` seconds for a free slot; return the free count (maybe 0)."""
        if self.free == 0:
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), within_s)
        return self.free
