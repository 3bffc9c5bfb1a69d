"""The analyze job type: a storyboard is published only by a job that completed."""

from __future__ import annotations

import asyncio

import pytest

from service import jobs
from service.backends.backend import Backend
from service.consumers.analyze import ANALYZE_JOB
from service.consumers.job_types import HandlerDeps
from service.consumers.outcome import DELETE
from service.consumers.retry_policy import Backoff, FailurePolicy
from service.consumers.runner import JobRunner
from service.errors import BlobNotFound
from service.jobs import Job, JobStatus
from service.novels import storyboard_key
from service.ports import Message, NovelText, ProgressCallback
from service.runtime import Runtime, open_runtime
from service.storyboard import Storyboard
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually, job_finished

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


class GatedAnalyzer(CountingAnalyzer):
    """Each call waits for its own gate (in call order) before returning its storyboard."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.gates = [asyncio.Event() for _ in range(calls)]

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        gate = self.gates[self.calls]
        self.calls += 1
        await gate.wait()
        return await super().analyze(novel, on_progress)


async def _two_deliveries(runtime: Runtime) -> tuple[Job, Message, Message]:
    """A submitted job and two real deliveries of its message: the second received after
    the first's lease was cut short, as when a worker stalls past its visibility timeout."""
    novel = await store_novel(runtime.backend, "local", "T", "text")
    job = await runtime.producer.submit(novel.novel_id, "local")
    queue = runtime.backend.queue
    [first] = await queue.receive(max_messages=1, wait_s=5, visibility_s=300)
    await queue.change_visibility_batch([first.receipt], 0)
    [second] = await queue.receive(max_messages=1, wait_s=5, visibility_s=300)
    assert (first.receive_count, second.receive_count) == (1, 2)
    return job, first, second


def _runner(backend: Backend, analyzer: GatedAnalyzer) -> JobRunner:
    handler = ANALYZE_JOB.build(HandlerDeps(backend, analyzer))
    assert handler is not None
    policy = FailurePolicy(backend.jobs, Backoff(1, 1), 3)
    return JobRunner({ANALYZE_JOB.name: handler}, backend.jobs, policy)


async def _calls(analyzer: GatedAnalyzer, count: int) -> None:
    async def reached() -> bool:
        return analyzer.calls >= count

    await eventually(reached)


async def _exists(runtime: Runtime, key: str) -> bool:
    try:
        await runtime.backend.blobs.get(key)
    except BlobNotFound:
        return False
    return True


@pytest.mark.parametrize("older_ends", ["after-newer-completed", "before-newer-completed"])
async def test_a_superseded_attempt_is_never_published_and_leaves_no_storyboard(
    make_settings: SettingsFactory, older_ends: str
) -> None:
    """Two deliveries of one job run at once; whichever ends first, the novel and the job
    name the owner's storyboard, and the older delivery's is gone."""
    settings = await prepare(make_settings())
    analyzer = GatedAnalyzer(calls=2)
    async with open_runtime(settings, worker=False) as runtime:
        job, first, second = await _two_deliveries(runtime)
        runner = _runner(runtime.backend, analyzer)
        older = asyncio.create_task(runner.dispatch(first))
        await _calls(analyzer, 1)  # the older delivery is working
        newer = asyncio.create_task(runner.dispatch(second))
        await _calls(analyzer, 2)  # ... and the newer took the job over
        order = [older, newer] if older_ends == "before-newer-completed" else [newer, older]
        gates = [analyzer.gates[0], analyzer.gates[1]]
        if order[0] is newer:
            gates.reverse()
        for gate, task in zip(gates, order, strict=True):
            gate.set()
            assert await task == DELETE
        ended = await job_finished(runtime.backend.jobs, job.job_id)
        novel = await runtime.backend.novels.get(job.novel_id)
        owner_key = storyboard_key(job.novel_id, job.job_id, 2)
        assert await _exists(runtime, owner_key)
        leftover = await _exists(runtime, storyboard_key(job.novel_id, job.job_id, 1))
    assert (ended.status, ended.delivery, ended.result_key) == (JobStatus.COMPLETED, 2, owner_key)
    assert novel is not None
    assert novel.latest_storyboard is not None
    assert (novel.latest_storyboard.key, novel.latest_storyboard.job_id) == (owner_key, job.job_id)
    assert not leftover, "the superseded delivery's storyboard was left behind"


async def test_a_job_completed_by_a_later_delivery_deletes_the_earlier_storyboards(
    make_settings: SettingsFactory,
) -> None:
    """Storyboards of earlier deliveries (a worker that died after storing one) are deleted
    by their keys when the job completes; a delivery that stored nothing is no error."""
    settings = await prepare(make_settings())
    analyzer = GatedAnalyzer(calls=1)
    analyzer.gates[0].set()
    async with open_runtime(settings, worker=False) as runtime:
        job, _, second = await _two_deliveries(runtime)
        # Delivery 1 stored its storyboard and died before completing.
        stale = storyboard_key(job.novel_id, job.job_id, 1)
        await runtime.backend.blobs.put(stale, b"{}", content_type="application/json")
        assert await _runner(runtime.backend, analyzer).dispatch(second) == DELETE
        ended = await runtime.backend.jobs.get(job.job_id)
        stale_left = await _exists(runtime, stale)
        own_left = await _exists(runtime, storyboard_key(job.novel_id, job.job_id, 2))
    assert ended is not None
    assert ended.status is JobStatus.COMPLETED
    assert (stale_left, own_left) == (False, True)
