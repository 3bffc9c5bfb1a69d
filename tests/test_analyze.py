"""The analyze job type: a storyboard is published only by a job that completed."""

from __future__ import annotations

import asyncio

from service import jobs
from service.jobs import Job, JobStatus
from service.runtime import Runtime, open_runtime
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

JOBS_PER_ROUND = 20


async def _cancel_near_completion(runtime: Runtime, job: Job) -> bool:
    """Cancel the job as soon as it has started; whether the cancel won.

    A job this short writes no progress between its start and its completion, so a cancel
    that lands while it runs is met first by the guard on the completion (the storyboard
    already stored), the window this test is about.
    """

    async def ready() -> Job | None:
        current = await runtime.backend.jobs.get(job.job_id)
        assert current is not None
        return current if current.status is not JobStatus.QUEUED else None

    await eventually(ready, every_s=0.002)
    return await runtime.backend.jobs.apply(job.job_id, jobs.cancel()) is not None


async def _idle(runtime: Runtime) -> None:
    assert runtime.consumer is not None
    consumer = runtime.consumer

    async def idle() -> bool:
        return consumer.in_flight == 0

    await eventually(idle)


async def test_a_cancel_that_lands_at_completion_never_publishes_the_storyboard(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5, worker_concurrency=JOBS_PER_ROUND))
    won = lost = 0
    async with open_runtime(settings, analyzer=CountingAnalyzer(latency_s=0.05)) as runtime:
        # At least three rounds, and more while no cancel has yet landed in the window
        # (on a loaded machine the poll can be slower than the window).
        for round_number in range(10):
            if round_number >= 3 and won > 0:
                break
            novels = [
                await store_novel(runtime.backend, "local", "T", "text")
                for _ in range(JOBS_PER_ROUND)
            ]
            submitted = [await runtime.producer.submit(n.novel_id, "local") for n in novels]
            cancelled = await asyncio.gather(
                *(_cancel_near_completion(runtime, job) for job in submitted)
            )
            await _idle(runtime)
            for novel, job, cancel_won in zip(novels, submitted, cancelled, strict=True):
                stored = await runtime.backend.novels.get(novel.novel_id)
                ended = await runtime.backend.jobs.get(job.job_id)
                assert stored is not None
                assert ended is not None
                if cancel_won:
                    won += 1
                    assert ended.status is JobStatus.CANCELLED
                    assert stored.latest_storyboard is None, "a cancelled job was published"
                else:
                    lost += 1
                    assert ended.status is JobStatus.COMPLETED
                    assert stored.latest_storyboard is not None
                    assert stored.latest_storyboard.job_id == job.job_id
    assert won > 0, "no cancel landed in the window; the test proved nothing"
