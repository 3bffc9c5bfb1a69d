"""Progress writes that do not hold the job up.

A job reports progress with ``report()``, which returns at once. One background task per job
writes the newest pending value at most once per ``interval_s`` (2 s), so a slow store delays
progress display, never the work, and bursts of reports collapse into one write. A job that
finishes within the interval writes no intermediate progress at all: its record goes
created → started → completed, three writes in all.
"""

from __future__ import annotations

import asyncio
import time

from service import jobs
from service.jobs import JobStatus
from service.logs import get_logger
from service.ports import JobStore

log = get_logger(__name__)


CANCELLED, DELETED, SUPERSEDED = "cancelled", "deleted", "superseded by a newer attempt"


class JobStopped(Exception):
    """The attempt must stop: the job was cancelled or deleted, or a newer attempt took
    it over."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def final(self) -> bool:
        """Whether the job will never run again, so what the attempt wrote is garbage; a
        superseded attempt's outputs belong to the attempt that took over."""
        return self.reason in (CANCELLED, DELETED)


class ProgressWriter:
    """Coalescing, ordered progress writes for one delivery of one job."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        delivery: int,
        interval_s: float = 2.0,
        *,
        version: int | None = None,
    ) -> None:
        self._store = store
        self.version = version
        """The job's version after this writer's last write (the start's, before any);
        ``None`` once a write failed without saying whether it landed."""
        self._job_id = job_id
        self._delivery = delivery
        self._interval_s = interval_s
        # The start transition has just written progress, so the clock starts now.
        self._next_write_at = time.monotonic() + interval_s
        self._pending: tuple[int, str] | None = None
        self._last: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._refused = False

    def report(self, percentage: int, stage: str) -> None:
        """Record progress; the write happens in the background."""
        if self._refused:
            return
        value = (max(0, min(100, percentage)), stage)
        if value == self._last or value == self._pending:
            return
        self._pending = value
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"progress-{self._job_id}")

    async def on_fraction(self, low: int, high: int, fraction: float, stage: str) -> None:
        """Map an analyzer's fraction of its own work onto ``low``..``high`` percent."""
        self.report(low + round((high - low) * max(0.0, min(1.0, fraction))), stage)

    async def close(self) -> None:
        """Drop progress not yet written (a final write follows) and wait for one in flight."""
        self._pending = None
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if not self._writing:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def confirm(self, percentage: int, stage: str) -> None:
        """Write progress now and raise JobStopped unless this attempt still owns the job.

        Called before an effect that must not come from a superseded attempt (writing the
        storyboard): the guarded write doubles as an ownership check.
        """
        await self.close()
        await self.check()
        written = await self._store.apply(
            self._job_id, jobs.progress(self._delivery, percentage, stage)
        )
        self._last = (percentage, stage)
        if written is None:
            self._refused = True
            await self.check()
        else:
            self.version = written.version

    async def check(self) -> None:
        """Raise JobStopped if a progress write was refused because the job moved on.

        It costs nothing until a write is refused: the guard on every write is the signal.
        """
        if not self._refused:
            return
        job = await self._store.get(self._job_id)
        if job is None:
            raise JobStopped(DELETED)  # its novel was erased
        raise JobStopped(CANCELLED if job.status is JobStatus.CANCELLED else SUPERSEDED)

    def cancel(self) -> None:
        """Drop pending writes (the job is being abandoned)."""
        if self._task is not None:
            self._task.cancel()

    async def _drain(self) -> None:
        while self._pending is not None:
            delay = self._next_write_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                if self._pending is None:
                    return
            percentage, stage = self._last = self._pending
            self._pending = None
            self._next_write_at = time.monotonic() + self._interval_s
            if not await self._write(percentage, stage):
                self._refused = True
                self._pending = None
                return

    async def _write(self, percentage: int, stage: str) -> bool:
        """One guarded write; False only when the guard refused it."""
        self._writing = True
        try:
            written = await self._store.apply(
                self._job_id, jobs.progress(self._delivery, percentage, stage)
            )
        except Exception as exc:
            # Progress is advisory; the job's outcome is written separately and checked.
            log.warning("progress write failed", error=str(exc), percentage=percentage)
            self.version = None
            return True
        finally:
            self._writing = False
        if written is not None:
            self.version = written.version
        return written is not None
