"""A process-wide limiter for model requests: concurrency, requests/minute, tokens/minute.

Every job in the process shares one :class:`LlmLimiter` (the analyzer holds it), so the
provider's account limits are respected however many jobs run at once. A request first
takes one of ``concurrency`` slots, then waits until both token buckets hold enough: one
request from the requests/minute bucket and its *estimated* tokens from the tokens/minute
bucket. Once the reply says what the request really cost, :meth:`Lease.record` refunds or
charges the difference. A rate of 0 means unlimited.

Each bucket holds one minute's allowance, so a process that has been idle may spend a
whole minute's allowance in its first seconds (a provider enforcing per-second limits then
answers 429, which the client waits out); over any longer stretch the configured rate holds.

Waiting is a computed ``sleep`` until the buckets refill, never polling, and waiters queue
in arrival order behind one lock so a large request is not starved by a stream of small ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

__all__ = ["Lease", "LlmLimiter", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Waits shorter than this are rounding noise; sleeping them would only spin the loop.
_NEGLIGIBLE_S = 1e-3


class TokenBucket:
    """A bucket holding up to one minute's allowance, refilled continuously.

    The level may go negative when a request turns out dearer than estimated; that debt is
    paid off by later waiters.
    """

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._level = self.capacity
        self._clock = clock
        self._stamp = clock()

    @property
    def level(self) -> float:
        """What the bucket holds now."""
        self._refill()
        return self._level

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the capacity, so it is always reachable) fits."""
        deficit = min(amount, self.capacity) - self.level
        return max(0.0, deficit / self._rate)

    def take(self, amount: float) -> None:
        """Remove ``amount`` (capped at the capacity) from the bucket."""
        self._refill()
        self._level -= min(amount, self.capacity)

    def give_back(self, amount: float) -> None:
        """Return ``amount`` (negative to charge more), never above the capacity."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now


class Lease:
    """One admitted request: holds a concurrency slot until released."""

    def __init__(self, limiter: LlmLimiter, estimated_tokens: int) -> None:
        self._limiter = limiter
        self.estimated_tokens = estimated_tokens
        self._released = False

    def record(self, actual_tokens: int) -> None:
        """Correct the tokens/minute bucket by what the request really cost."""
        self._limiter.record(self.estimated_tokens, actual_tokens)
        self.estimated_tokens = actual_tokens

    def release(self) -> None:
        """Give the concurrency slot back; repeated calls are harmless."""
        if not self._released:
            self._released = True
            self._limiter.release()


class LlmLimiter:
    """Bounds concurrent model requests and their rate in requests and tokens per minute."""

    def __init__(
        self,
        *,
        concurrency: int,
        requests_per_minute: int = 0,
        tokens_per_minute: int = 0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = asyncio.Lock()
        self._requests = TokenBucket(requests_per_minute, clock) if requests_per_minute else None
        self._tokens = TokenBucket(tokens_per_minute, clock) if tokens_per_minute else None
        self._sleep = sleep
        self.in_flight = 0
        self.peak_in_flight = 0
        self.admitted = 0

    async def acquire(self, estimated_tokens: int) -> Lease:
        """Wait for a slot and for rate budget; the caller must release the lease."""
        await self._slots.acquire()
        try:
            await self._wait_for_budget(estimated_tokens)
        except BaseException:
            self._slots.release()
            raise
        self.in_flight += 1
        self.admitted += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return Lease(self, estimated_tokens)

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[Lease]:
        """``acquire`` as a context manager that always releases."""
        lease = await self.acquire(estimated_tokens)
        try:
            yield lease
        finally:
            lease.release()

    def record(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Refund (or charge) the difference between a request's estimate and its cost."""
        if self._tokens is not None:
            self._tokens.give_back(estimated_tokens - actual_tokens)

    def release(self) -> None:
        """Free a concurrency slot taken by :meth:`acquire`."""
        self.in_flight -= 1
        self._slots.release()

    async def _wait_for_budget(self, estimated_tokens: int) -> None:
        # The slot is taken first so that a request which has waited for budget starts at
        # once instead of queueing again, which would let bursts overshoot the rate.
        async with self._queue:
            while (delay := self._delay(estimated_tokens)) > _NEGLIGIBLE_S:
                await self._sleep(delay)
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.take(estimated_tokens)

    def _delay(self, estimated_tokens: int) -> float:
        delays = [0.0]
        if self._requests is not None:
            delays.append(self._requests.wait_s(1))
        if self._tokens is not None:
            delays.append(self._tokens.wait_s(estimated_tokens))
        return max(delays)
