"""The watch hub: one per process, serving every open job event stream.

Streams register the jobs they follow and wait on the hub, never on the store. The hub
reads all watched jobs together, about once a second, with one ``get_many`` (BatchGetItem,
100 ids a read, on DynamoDB), so a replica's reads per second are the number of watched
jobs over 100, however many streams follow each job. A store that announces its own writes
(the embedded backend) wakes the watchers at once on a write in this process; the polling
still covers writes by other processes and other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from types import TracebackType

from service.jobs import Job
from service.logs import get_logger
from service.ports import JobStore, WriteNotifier

log = get_logger(__name__)

DEFAULT_POLL_S = 1.0
READ_BATCH = 100
"""Ids one BatchGetItem call reads."""


class Watch:
    """One stream's view of one job: the newest state the hub has seen of it."""

    def __init__(self, job: Job) -> None:
        self.job_id = job.job_id
        self.latest = job
        self.ended = False
        """True once the job is gone (deleted) or the hub is closing: no news will come."""
        self._changed = asyncio.Event()

    def offer(self, job: Job) -> None:
        """Take ``job`` if it is newer than what this watch has."""
        if job.version > self.latest.version:
            self.latest = job
            self._changed.set()

    def end(self) -> None:
        """No more news: wake the waiting stream so it can finish."""
        self.ended = True
        self._changed.set()

    async def newer_than(self, version: int, timeout_s: float) -> Job | None:
        """The job once its version exceeds ``version``; ``None`` after ``timeout_s`` with
        nothing newer, or when the watch has ended."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.latest.version <= version and not self.ended:
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.latest if self.latest.version > version else None


class WatchHub:
    """Follows the jobs open streams watch; use as an async context manager."""

    def __init__(self, store: JobStore, *, poll_s: float = DEFAULT_POLL_S) -> None:
        self._store = store
        self._poll_s = poll_s
        self._watches: dict[str, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[object] = []
        self._closing = False
        self.polls = 0
        """Polls made: one ``get_many`` of every watched job each."""
        self.reads = 0
        """Batch reads those polls took, counted as DynamoDB counts them (100 ids each)."""
        self.failures = 0
        """Polls that failed (the store was unreachable); the next poll tries again."""

    @property
    def watched(self) -> int:
        """How many distinct jobs are watched now."""
        return len(self._watches)

    @property
    def streams(self) -> int:
        """How many watches (open streams) there are now."""
        return sum(len(watches) for watches in self._watches.values())

    async def __aenter__(self) -> WatchHub:
        if isinstance(self._store, WriteNotifier):
            self._unsubscribe.append(self._store.on_write(self._offer))
        self._task = asyncio.create_task(self._poll_forever(), name="watch hub")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_watches()
        for unsubscribe in self._unsubscribe:
            if callable(unsubscribe):
                unsubscribe()
        self._unsubscribe.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close_watches(self) -> None:
        """End every watch, now and for any opened later (the process is shutting down)."""
        self._closing = True
        for watches in self._watches.values():
            for watch in watches:
                watch.end()

    @contextlib.contextmanager
    def watch(self, job: Job) -> Iterator[Watch]:
        """Follow ``job`` (as the caller last read it) for the block's duration."""
        watch = Watch(job)
        if self._closing:
            watch.end()
        self._watches.setdefault(job.job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job.job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job.job_id]

    def _offer(self, job: Job) -> None:
        for watch in self._watches.get(job.job_id, ()):
            watch.offer(job)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            if not self._watches:
                continue
            try:
                await self.poll()
            except Exception as exc:
                # The loop outlives a failing store: streams just see no news until it is back.
                self.failures += 1
                log.warning("watch poll failed", error=str(exc), watched=self.watched)

    async def poll(self) -> None:
        """Read every watched job once and hand each stream what is new."""
        ids = list(self._watches)
        self.polls += 1
        self.reads += math.ceil(len(ids) / READ_BATCH)
        found = await self._store.get_many(ids)
        for job_id, job in found.items():
            if job is not None:
                self._offer(job)
                continue
            for watch in self._watches.get(job_id, ()):
                watch.end()  # deleted: nothing more will ever come
