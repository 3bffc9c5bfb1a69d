"""The consumer on both backends: bounded concurrency, lease extension, redelivery, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace

import pytest

from service import jobs
from service.consumers.consumer import Consumer, ConsumerConfig
from service.consumers.outcome import DELETE, Outcome
from service.errors import BackendError
from service.jobs import Job, JobStatus, Transition
from service.ports import JobStore, Message
from service.runtime import Runtime, build_consumer, open_runtime
from service.uploads import store_novel
from tests.analyzers import (
    CountingAnalyzer,
    FlakyAnalyzer,
    RejectingAnalyzer,
    SteppingAnalyzer,
)
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually, job_finished, one_message_dead_lettered


async def _submit(runtime: Runtime, text: str = "It was a dark night.") -> Job:
    novel = await store_novel(runtime.backend, "local", "A Title", text)
    return await runtime.producer.submit(novel.novel_id, "local")


async def _finished(runtime: Runtime, job_id: str) -> Job:
    return await job_finished(runtime.backend.jobs, job_id)


async def test_runs_up_to_concurrency_jobs_at_once_and_never_more(
    make_settings: SettingsFactory,
) -> None:
    concurrency, count = 4, 14
    settings = await prepare(make_settings(worker_concurrency=concurrency, receive_wait_s=1))
    analyzer = CountingAnalyzer(latency_s=0.4)
    # Queue everything first, so the peak depends on the consumer alone, not on how fast
    # submissions arrive on a busy machine.
    async with open_runtime(settings, worker=False) as runtime:
        submitted = [await _submit(runtime) for _ in range(count)]
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        finished = [await _finished(runtime, job.job_id) for job in submitted]
        assert runtime.consumer is not None
        stats = runtime.consumer.stats
    assert all(job.status is JobStatus.COMPLETED for job in finished)
    assert analyzer.calls == count
    assert analyzer.peak == concurrency
    assert stats.peak_in_flight == concurrency


async def test_lease_extension_keeps_a_long_job_hidden(make_settings: SettingsFactory) -> None:
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
        make_settings(
            visibility_timeout_s=30, receive_wait_s=0.5, max_receive_count=5, retry_base_s=0.5
        )
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
    settings = await prepare(
        make_settings(visibility_timeout_s=30, receive_wait_s=0.5, retry_base_s=600)
    )
    analyzer = FlakyAnalyzer(failures=1)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        submitted = await _submit(runtime)

        async def retrying() -> Job | None:
            job = await runtime.backend.jobs.get(submitted.job_id)
            return job if job is not None and job.status is JobStatus.RETRYING else None

        job = await eventually(retrying)
        await asyncio.sleep(1.0)
        depth = await runtime.backend.queue.depth()
    assert job.attempts == 1
    assert job.error is not None
    assert job.error.code == "model_unavailable"
    assert job.next_attempt_at is not None
    wait_s = (job.next_attempt_at - job.updated_at).total_seconds()
    assert 300 - 1 <= wait_s <= 600 + 1  # first backoff: base 600 s with equal jitter
    assert (depth.visible, depth.in_flight) == (0, 1)  # hidden for the backoff, not lost
    assert analyzer.calls == 1


async def test_retries_exhausted_fail_the_job_and_dead_letter_at_once(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(
        make_settings(
            visibility_timeout_s=30, receive_wait_s=0.5, max_receive_count=2, retry_base_s=0.5
        )
    )
    analyzer = FlakyAnalyzer(failures=100)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _finished(runtime, (await _submit(runtime)).job_id)
        await one_message_dead_lettered(runtime.backend.queue, runtime.backend.dlq)
        parked = await runtime.backend.dlq.receive(max_messages=1, wait_s=1, visibility_s=0)
    assert [m.group for m in parked] == [job.user_id]  # a redrive keeps the user's group
    assert job.status is JobStatus.FAILED
    assert job.attempts == 2
    assert job.error is not None
    assert job.error.code == "retries_exhausted"
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
        submitted = await _submit(runtime)
        await asyncio.wait_for(analyzer.started.wait(), 30)
        assert runtime.consumer is not None
        await runtime.consumer.stop(grace_s=0.2)
        await runtime.consumer.stop(grace_s=0.2)  # a second stop is harmless
        released = runtime.consumer.stats.released
        job = await runtime.backend.jobs.get(submitted.job_id)
        messages = await runtime.backend.queue.receive(max_messages=10, wait_s=0, visibility_s=30)
    assert released == 1
    assert job is not None
    assert job.status is JobStatus.QUEUED  # handed back, not left running
    assert len(messages) == 1
    assert messages[0].receive_count == 2


async def test_poison_messages_go_to_the_dead_letter_queue_at_once(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(
        make_settings(visibility_timeout_s=300, receive_wait_s=0.5, dlq_hold_s=1, dlq_poll_s=60)
    )
    analyzer = CountingAnalyzer()
    poison = [
        "not json at all",
        json.dumps({"jobId": "j"}),  # fields missing
        json.dumps({"jobId": "a" * 32, "novelId": "n", "userId": "u", "type": "transcode"}),
        json.dumps({"jobId": "b" * 32, "novelId": "n", "userId": "u"}),  # no such job
    ]
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        for index, body in enumerate(poison):
            await runtime.backend.queue.send(body, attributes={"n": str(index)})
        good = await _submit(runtime)
        job = await _finished(runtime, good.job_id)

        async def all_parked() -> bool:
            parked = await runtime.backend.dlq.depth()
            main = await runtime.backend.queue.depth()
            drained = main.visible + main.in_flight == 0
            return parked.visible + parked.in_flight == len(poison) and drained

        await eventually(all_parked)
        assert runtime.consumer is not None
        stats = runtime.consumer.stats
    async with open_runtime(settings, worker=False) as viewer:
        # The dead-letter consumer held them for a second; all are visible again after it.
        taken: list[Message] = []

        async def all_taken() -> bool:
            taken.extend(
                await viewer.backend.dlq.receive(max_messages=10, wait_s=1, visibility_s=60)
            )
            return len(taken) == len(poison)

        await eventually(all_taken)
        parked = taken
    # Each moved message keeps the attributes it was sent with (its trace context).
    assert sorted((m.body, dict(m.attributes)) for m in parked) == sorted(
        (body, {"n": str(index)}) for index, body in enumerate(poison)
    )
    assert job.status is JobStatus.COMPLETED  # the loop carried on
    assert stats.dead_lettered == len(poison)
    assert stats.crashed == 0


async def test_dead_letter_consumer_fails_the_job_and_keeps_the_message(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5, dlq_poll_s=0.2, dlq_hold_s=600))
    async with open_runtime(settings, worker=False) as runtime:
        job = await _submit(runtime)
        # As SQS's redrive does after a worker died on the last attempt:
        (message,) = await runtime.backend.queue.receive(max_messages=1, wait_s=1, visibility_s=30)
        await runtime.backend.dlq.send(message.body)
        await runtime.backend.queue.delete_batch([message.receipt])
    async with open_runtime(settings, analyzer=CountingAnalyzer()) as runtime:

        async def failed() -> Job | None:
            current = await runtime.backend.jobs.get(job.job_id)
            return current if current and current.status is JobStatus.FAILED else None

        ended = await eventually(failed)
        depth = await runtime.backend.dlq.depth()
    assert ended.error is not None
    assert ended.error.code == "retries_exhausted"
    assert depth.visible + depth.in_flight == 1  # kept for redrive


async def test_cancelling_a_queued_job_deletes_its_message_unrun(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5, visibility_timeout_s=300))
    analyzer = CountingAnalyzer()
    async with open_runtime(settings, worker=False) as runtime:
        job = await _submit(runtime)
        cancelled = await runtime.backend.jobs.apply(job.job_id, jobs.cancel())
    assert cancelled is not None
    async with open_runtime(settings, analyzer=analyzer) as runtime:

        async def drained() -> bool:
            depth = await runtime.backend.queue.depth()
            return (depth.visible, depth.in_flight) == (0, 0)

        await eventually(drained)
        final = await runtime.backend.jobs.get(job.job_id)
    assert analyzer.calls == 0
    assert final is not None
    assert final.status is JobStatus.CANCELLED


async def test_cancelling_a_running_job_stops_it_at_the_next_chunk(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5, visibility_timeout_s=300))
    analyzer = SteppingAnalyzer(steps=50, step_s=0.1)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _submit(runtime)
        await asyncio.wait_for(analyzer.started.wait(), 30)

        async def chunks_done() -> bool:
            return analyzer.steps_done >= 2

        await eventually(chunks_done)  # cancel a job that is partway through, not one starting
        assert await runtime.backend.jobs.apply(job.job_id, jobs.cancel()) is not None

        async def drained() -> bool:
            depth = await runtime.backend.queue.depth()
            return (depth.visible, depth.in_flight) == (0, 0)

        await eventually(drained)
        final = await runtime.backend.jobs.get(job.job_id)
        novel = await runtime.backend.novels.get(job.novel_id)
    assert final is not None
    assert final.status is JobStatus.CANCELLED
    assert analyzer.steps_done < analyzer.steps  # stopped early
    assert novel is not None
    assert novel.latest_storyboard is None  # no storyboard from a cancelled job


async def test_a_superseded_attempt_never_writes_its_storyboard(
    make_settings: SettingsFactory,
) -> None:
    """An attempt whose job a newer delivery took over stops before its effects."""
    settings = await prepare(make_settings(receive_wait_s=0.5, visibility_timeout_s=300))
    analyzer = CountingAnalyzer(latency_s=1.0)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        job = await _submit(runtime)
        await asyncio.wait_for(analyzer.started.wait(), 30)
        # As if the message had been redelivered to another worker (attempt 2).
        assert await runtime.backend.jobs.apply(job.job_id, jobs.start(2)) is not None

        async def drained() -> bool:
            depth = await runtime.backend.queue.depth()
            return (depth.visible, depth.in_flight) == (0, 0)

        await eventually(drained)
        current = await runtime.backend.jobs.get(job.job_id)
        novel = await runtime.backend.novels.get(job.novel_id)
    assert current is not None
    assert (current.status, current.attempts) == (JobStatus.RUNNING, 2)  # left to its owner
    assert novel is not None
    assert novel.latest_storyboard is None


class _FailingWrites:
    """The real job store, except that the next ``count`` writes setting one of
    ``statuses`` fail as a storage outage would."""

    def __init__(self, store: JobStore, statuses: set[str], count: int = 1) -> None:
        self._store = store
        self._statuses = statuses
        self.remaining = count

    async def create(self, job: Job) -> None:
        await self._store.create(job)

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get(job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        return await self._store.get_many(job_ids)

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        if self.remaining and transition.changes.get("status") in self._statuses:
            self.remaining -= 1
            raise BackendError("storage is failing")
        return await self._store.apply(job_id, transition)


@pytest.mark.parametrize(
    ("failing", "analyzer_failures", "attempts"),
    # The failed start never ran the job, so only the repaired delivery counts.
    [({"retrying"}, 1, 2), ({"running"}, 0, 1)],
    ids=["failure-record-fails", "start-record-fails"],
)
async def test_a_storage_failure_brings_the_message_back_soon_not_after_the_timeout(
    make_settings: SettingsFactory, failing: set[str], analyzer_failures: int, attempts: int
) -> None:
    settings = await prepare(
        make_settings(receive_wait_s=0.5, visibility_timeout_s=900, retry_base_s=1)
    )
    analyzer = FlakyAnalyzer(failures=analyzer_failures)
    async with open_runtime(settings, worker=False) as runtime:
        job = await _submit(runtime)
        store = _FailingWrites(runtime.backend.jobs, failing)
        backend = replace(runtime.backend, jobs=store)
        async with build_consumer(settings, backend, analyzer):
            # A whole visibility timeout would be 900 s; the wait below is far shorter.
            ended = await eventually(
                lambda: _completed(runtime, job.job_id), within_s=30, every_s=0.1
            )
    assert store.remaining == 0  # the outage did happen
    assert ended.attempts == attempts


async def _completed(runtime: Runtime, job_id: str) -> Job | None:
    job = await runtime.backend.jobs.get(job_id)
    return job if job is not None and job.status is JobStatus.COMPLETED else None


async def test_a_job_handed_back_at_shutdown_does_not_use_up_an_attempt(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(
        make_settings(receive_wait_s=0.5, max_attempts=1, max_receive_count=5, retry_base_s=1)
    )
    async with open_runtime(settings, analyzer=CountingAnalyzer(latency_s=60)) as runtime:
        job = await _submit(runtime)
        assert runtime.consumer is not None
        consumer = runtime.consumer

        async def running() -> bool:
            return consumer.in_flight == 1

        await eventually(running)
        consumer.cut_grace()  # a rolling deploy: released at once, never finished
    async with open_runtime(settings, analyzer=RejectingAnalyzer()) as runtime:
        ended = await _finished(runtime, job.job_id)
    # Its one real run failed permanently; the run cut short by the shutdown did not count.
    assert ended.status is JobStatus.FAILED
    assert ended.error is not None
    assert ended.error.code == "content_rejected"
    assert ended.attempts == 1


async def test_a_receive_in_flight_at_shutdown_gives_its_messages_back(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=3))
    handled: list[Message] = []

    async def dispatch(message: Message) -> Outcome:
        handled.append(message)
        return DELETE

    config = ConsumerConfig(concurrency=4, wait_s=3, visibility_s=900)
    async with open_runtime(settings, worker=False) as runtime:
        consumer = Consumer(runtime.backend.queue, dispatch, config)
        consumer.start()
        await asyncio.sleep(0.5)  # the first long poll is waiting at the queue
        stopping = asyncio.create_task(consumer.stop(grace_s=5))
        await asyncio.sleep(0.1)
        await runtime.backend.queue.send("arrives during the drain")
        await stopping
        depth = await runtime.backend.queue.depth()
    assert handled == []
    # Visible again at once: not hidden for 900 s behind a receive nobody read.
    assert (depth.visible, depth.in_flight) == (1, 0)
