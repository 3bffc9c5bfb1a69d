"""Listing and redriving the dead-letter queue, on both backends."""

from __future__ import annotations

from service.jobs import Job, JobStatus
from service.producers.redrive import list_dead_letters, redrive
from service.runtime import Runtime, open_runtime
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer, FlakyAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually


async def _status(runtime: Runtime, job_id: str, status: JobStatus) -> Job:
    async def probe() -> Job | None:
        job = await runtime.backend.jobs.get(job_id)
        return job if job is not None and job.status is status else None

    return await eventually(probe)


async def test_redrive_restarts_chosen_jobs_cleanly(make_settings: SettingsFactory) -> None:
    settings = await prepare(
        make_settings(max_receive_count=1, receive_wait_s=0.5, dlq_hold_s=1, dlq_poll_s=60)
    )
    async with open_runtime(settings, analyzer=FlakyAnalyzer(failures=100)) as runtime:
        novel = await store_novel(runtime.backend, "local", "T", "text")
        first = await runtime.producer.submit(novel.novel_id, "local")
        second = await runtime.producer.submit(novel.novel_id, "local")
        await runtime.backend.dlq.send("poison")
        for job in (first, second):
            await _status(runtime, job.job_id, JobStatus.FAILED)

    async with open_runtime(settings, worker=False) as runtime:
        letters, _ = await eventually(lambda: _all_listed(runtime, 3))
        assert sorted(str(letter.job_id) for letter in letters) == sorted(
            [first.job_id, second.job_id, "None"]
        )
        report = await redrive(runtime.backend, {first.job_id})
        restarted = await runtime.backend.jobs.get(first.job_id)
    assert report.moved == [first.job_id]
    assert restarted is not None
    assert (restarted.status, restarted.attempts, restarted.error) == (JobStatus.QUEUED, 0, None)

    async with open_runtime(settings, analyzer=CountingAnalyzer()) as runtime:
        done = await _status(runtime, first.job_id, JobStatus.COMPLETED)
        still = await runtime.backend.jobs.get(second.job_id)
    assert done.attempts == 1
    assert still is not None
    assert still.status is JobStatus.FAILED

    async with open_runtime(settings, worker=False) as runtime:
        await eventually(lambda: _all_listed(runtime, 2))
        report = await redrive(runtime.backend, None)
        letters, _ = await eventually(lambda: _all_listed(runtime, 1))
    assert report.moved == [second.job_id]
    assert [letter.job_id for letter in report.kept] == [None]  # poison stays put
    assert letters[0].job_id is None


async def _all_listed(runtime: Runtime, count: int) -> tuple[list, int] | None:  # type: ignore[type-arg]
    letters, hidden = await list_dead_letters(runtime.backend)
    return (letters, hidden) if len(letters) == count else None
