"""The consumer on both backends: bounded concurrency, heartbeats, redelivery, shutdown."""

from __future__ import annotations

import asyncio

from service.jobs import Job, JobStatus
from service.runtime import Runtime, open_runtime
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer, FlakyAnalyzer, RejectingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually


async def _submit(runtime: Runtime, text: str = "It was a dark night.") -> Job:
    novel = await store_novel(runtime.backend, "local", "A Title", text)
    return await runtime.producer.submit(novel.novel_id, "local")


async def _finished(runtime: Runtime, job_id: str) -> Job:
    async def probe() -> Job | None:
        job = await runtime.backend.jobs.get(job_id)
        done = job is not None and job.status in (JobStatus.COMPLETED, JobStatus.FAILED)
        return job if done else None

    return await eventually(probe)


async def test_runs_up_to_concurrency_jobs_at_once_and_never_more(
    make_settings: SettingsFactory,
) -> None:
    concurrency, count = 4, 14
    settings = await prepare(make_settings(worker_concurrency=concurrency, receive_wait_s=1))
    analyzer = CountingAnalyzer(latency_s=0.4)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        submitted = [await _submit(runtime) for _ in range(count)]
        finished = [await _finished(runtime, job.job_id) for job in submitted]
        assert runtime.consumer is not None
        stats = runtime.consumer.stats
    assert all(job.status is JobStatus.COMPLETED for job in finished)
    assert analyzer.calls == count
    assert analyzer.peak == concurrency
    assert stats.peak_in_flight == concurrency


async def test_heartbeat_keeps_a_long_job_hidden(make_settings: SettingsFactory) -> None:
    settings = await prepare(make_settings(visibility_timeout_s=2, receive_wait_s=1))
    analyzer = CountingAnalyzer(latency_s=6.0)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _finished(runtime, (await _submit(runtime)).job_id)
        assert runtime.consumer is not None
        stats = runtime.consumer.stats
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 1
    assert analyzer.calls == 1
    assert stats.received == 1
    assert stats.extended >= 3


async def test_transient_failures_are_redelivered_until_success(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(
        make_settings(visibility_timeout_s=1, receive_wait_s=0.5, max_receive_count=5)
    )
    analyzer = FlakyAnalyzer(failures=2)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _finished(runtime, (await _submit(runtime)).job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 3
    assert job.error is None


async def test_transient_failure_is_recorded_while_waiting_for_retry(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(visibility_timeout_s=30, receive_wait_s=0.5))
    analyzer = FlakyAnalyzer(failures=1)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        submitted = await _submit(runtime)

        async def requeued() -> Job | None:
            job = await runtime.backend.jobs.get(submitted.job_id)
            return job if job is not None and job.error is not None else None

        job = await eventually(requeued)
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 1
    assert job.error is not None
    assert job.error.code == "model_unavailable"


async def test_retries_exhausted_fail_the_job_and_park_the_message(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(
        make_settings(visibility_timeout_s=1, receive_wait_s=0.5, max_receive_count=2)
    )
    analyzer = FlakyAnalyzer(failures=100)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _finished(runtime, (await _submit(runtime)).job_id)

        async def parked() -> bool:
            return (await runtime.backend.dlq.depth()).visible == 1

        await eventually(parked)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 2
    assert job.error is not None
    assert "gave up after 2 attempts" in job.error.message


async def test_permanent_failure_ends_the_job_and_deletes_the_message(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(visibility_timeout_s=1, receive_wait_s=0.5))
    analyzer = RejectingAnalyzer()
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _finished(runtime, (await _submit(runtime)).job_id)
        await asyncio.sleep(1.5)  # past the visibility timeout: a kept message would return
        depth = await runtime.backend.queue.depth()
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == "content_rejected"
    assert analyzer.calls == 1
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_stop_releases_unfinished_messages_at_once(make_settings: SettingsFactory) -> None:
    settings = await prepare(make_settings(visibility_timeout_s=300, receive_wait_s=0.5))
    analyzer = CountingAnalyzer(latency_s=60)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        await _submit(runtime)
        await asyncio.wait_for(analyzer.started.wait(), 30)
        assert runtime.consumer is not None
        await runtime.consumer.stop(grace_s=0.2)
        await runtime.consumer.stop(grace_s=0.2)  # a second stop is harmless
        released = runtime.consumer.stats.released
        messages = await runtime.backend.queue.receive(max_messages=10, wait_s=0, visibility_s=30)
    assert released == 1
    assert len(messages) == 1
    assert messages[0].receive_count == 2
