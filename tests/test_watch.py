"""The watch hub on both backends: shared batch reads, wake-ups, deletions, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from service import jobs
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.errors import BackendError
from service.jobs import Job, Transition
from service.ports import JobStore
from service.watch import WatchHub
from tests.conftest import SettingsFactory, prepare


class CountingReads:
    """A job store that counts ``get_many`` calls and can fail the next few."""

    def __init__(self, store: JobStore, failures: int = 0) -> None:
        self._store = store
        self.calls: list[int] = []
        self.failures = failures

    async def create(self, job: Job) -> None:
        await self._store.create(job)

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get(job_id)

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        return await self._store.apply(job_id, transition)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        self.calls.append(len(job_ids))
        if self.failures:
            self.failures -= 1
            raise BackendError("the table is unreachable")
        return await self._store.get_many(job_ids)


@pytest.fixture
async def backend(make_settings: SettingsFactory) -> AsyncIterator[Backend]:
    async with open_backend(await prepare(make_settings())) as opened:
        yield opened


def _job(n: int) -> Job:
    return Job(job_id=f"{n:032x}", novel_id="n", user_id="u")


async def test_one_poll_reads_every_watched_job_together_however_many_streams(
    backend: Backend,
) -> None:
    created = [_job(n) for n in range(250)]
    await asyncio.gather(*(backend.jobs.create(job) for job in created))
    store = CountingReads(backend.jobs)
    async with WatchHub(store, poll_s=3600) as hub:
        with contextlib.ExitStack() as streams:
            watches = [streams.enter_context(hub.watch(job)) for job in created * 4]
            assert (hub.streams, hub.watched) == (1000, 250)
            starts = (backend.jobs.apply(job.job_id, jobs.start(1)) for job in created)
            await asyncio.gather(*starts)
            await hub.poll()
            assert store.calls == [250]  # one get_many for all 1,000 streams
            assert hub.reads == 3  # as DynamoDB counts it: 100 ids a BatchGetItem
            assert {watch.latest.version for watch in watches} == {2}
        assert (hub.streams, hub.watched) == (0, 0)


async def test_a_write_wakes_its_watchers_and_the_newer_state_is_handed_over(
    backend: Backend,
) -> None:
    job = _job(1)
    await backend.jobs.create(job)
    # A one-second poll on AWS; the local store wakes the hub on its own writes.
    async with WatchHub(backend.jobs, poll_s=1.0) as hub:
        with hub.watch(job) as watch:
            assert await watch.newer_than(job.version, timeout_s=0.3) is None
            await backend.jobs.apply(job.job_id, jobs.start(1))
            newer = await watch.newer_than(job.version, timeout_s=10)
    assert newer is not None
    assert (newer.version, newer.status.value) == (2, "running")


async def test_a_job_that_is_gone_ends_its_watches(backend: Backend) -> None:
    async with WatchHub(backend.jobs, poll_s=3600) as hub:
        with hub.watch(_job(7)) as watch:  # never stored: as if deleted
            await hub.poll()
            assert watch.ended
            assert await watch.newer_than(1, timeout_s=5) is None


async def test_closing_ends_open_watches_and_any_opened_later(backend: Backend) -> None:
    job = _job(2)
    await backend.jobs.create(job)
    async with WatchHub(backend.jobs, poll_s=3600) as hub:
        with hub.watch(job) as watch:
            waiting = asyncio.create_task(watch.newer_than(job.version, timeout_s=60))
            await asyncio.sleep(0)
            hub.close_watches()
            assert await asyncio.wait_for(waiting, 5) is None
        with hub.watch(job) as late:
            assert late.ended


async def test_a_failing_poll_is_counted_and_the_next_one_delivers(backend: Backend) -> None:
    job = _job(3)
    await backend.jobs.create(job)
    store = CountingReads(backend.jobs, failures=1)
    # Through the counting wrapper the hub gets no write notifications: polling alone.
    async with WatchHub(store, poll_s=0.2) as hub:
        with hub.watch(job) as watch:
            await backend.jobs.apply(job.job_id, jobs.start(1))
            newer = await watch.newer_than(job.version, timeout_s=10)
    assert hub.failures == 1  # the first poll failed; a later one brought the news
    assert newer is not None
    assert newer.version == 2
    assert len(store.calls) >= 2
