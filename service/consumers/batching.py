"""Batched queue writes: deletes and visibility extensions.

Batching keeps SQS requests per job near one: a delete waits at most ``flush_s`` (or until
ten are pending) so that concurrent completions share a ``DeleteMessageBatch`` call, and one
``ChangeMessageVisibilityBatch`` call extends every long-running message at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.consumers.stats import ConsumerStats
from service.logs import get_logger
from service.ports import Queue
from service.queue_limits import MAX_BATCH

log = get_logger(__name__)


class DeleteBatcher:
    """Collects receipts to delete and flushes them in batches of up to ten."""

    def __init__(self, queue: Queue, stats: ConsumerStats, flush_s: float) -> None:
        self._queue = queue
        self._stats = stats
        self._flush_s = flush_s
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._flushing: set[asyncio.Task[None]] = set()

    def add(self, receipt: str) -> None:
        """Queue a receipt for deletion; a full batch is sent at once."""
        self._pending.append(receipt)
        if len(self._pending) >= MAX_BATCH:
            self._send(self._take())
        else:
            self._wake.set()

    async def run(self) -> None:
        """Flush pending deletes every ``flush_s``; runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_s)
            if self._pending:
                self._send(self._take())

    async def close(self) -> None:
        """Send everything pending and wait for every batch in flight."""
        while self._pending:
            self._send(self._take())
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    def _take(self) -> list[str]:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        return batch

    def _send(self, batch: list[str]) -> None:
        task = asyncio.create_task(self._delete(batch), name="delete-batch")
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _delete(self, batch: list[str]) -> None:
        try:
            outcome = await self._queue.delete_batch(batch)
        except Exception:
            # The messages reappear after their visibility timeout and the job guards make
            # the redelivery a no-op, so a lost delete costs a request, not correctness.
            self._stats.delete_errors += len(batch)
            log.exception("delete batch failed", count=len(batch))
            return
        self._stats.deleted += len(batch) - len(outcome.failed)
        self._stats.delete_errors += len(outcome.failed)
        for receipt, code in outcome.failed.items():
            log.warning("delete refused", code=code, receipt_tail=receipt[-8:])


@dataclass(slots=True)
class Lease:
    """A message in flight and when we last pushed its visibility out."""

    receipt: str
    extended_at: float = field(default_factory=time.monotonic)


class LeaseExtender:
    """Keeps in-flight messages hidden while their jobs run, however long they take.

    Every ``visibility_s / 3`` it extends, in batches, the leases not extended for at least
    half that period, so each message keeps at least half its timeout in hand.
    """

    def __init__(
        self,
        queue: Queue,
        stats: ConsumerStats,
        visibility_s: int,
        leases: Callable[[], list[Lease]],
    ) -> None:
        self._queue = queue
        self._stats = stats
        self._visibility_s = visibility_s
        self._leases = leases
        self.period_s = max(visibility_s / 3, 0.2)

    async def run(self) -> None:
        """Extend due leases forever; runs until cancelled."""
        while True:
            await asyncio.sleep(self.period_s)
            await self.extend_due()

    async def extend_due(self) -> None:
        """One round of extensions."""
        now = time.monotonic()
        due = [lease for lease in self._leases() if now - lease.extended_at >= self.period_s / 2]
        if not due:
            return
        try:
            outcome = await self._queue.change_visibility_batch(
                [lease.receipt for lease in due], self._visibility_s
            )
        except Exception:
            self._stats.extend_errors += len(due)
            log.exception("visibility extension failed", count=len(due))
            return
        for lease in due:
            if lease.receipt not in outcome.failed:
                lease.extended_at = now
        self._stats.extended += len(due) - len(outcome.failed)
        self._stats.extend_errors += len(outcome.failed)
        for receipt, code in outcome.failed.items():
            log.warning("visibility extension refused", code=code, receipt_tail=receipt[-8:])
