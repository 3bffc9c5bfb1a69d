"""Stopping running attempts: the deadline, the cancel watch, and what they stop.

First ``run_stoppable`` against each backend's real job store, then whole runtimes: the
sleep analyzer past its deadline over HTTP, the offline analyzer on a hostile text (its
process killed at the deadline, on a cancel, at shutdown, or from outside), and the model
analyzer cancelled while its requests hang on the fake model server.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from service import jobs
from service.analysis.cpu_pool import DIED, CpuPool
from service.analysis.offline import OfflineAnalyzer
from service.app import create_app
from service.appkeys import RUNTIME
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.consumers.progress import CANCELLED, DELETED, SUPERSEDED, JobStopped
from service.consumers.stopping import JOB_TIMEOUT, StopRules, run_stoppable
from service.errors import BackendError, JobError
from service.jobs import Job, JobStatus
from service.models import new_id
from service.ports import JobStore
from service.runtime import Runtime, open_runtime
from service.uploads import store_novel
from tests.conftest import SettingsFactory, prepare
from tests.fake_llm import FakeLlm, start_fake_llm
from tests.waiting import all_gone, eventually, gone, job_finished

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

HOSTILE = ("曰：“" * 500 + "\n") * 1930
"""2.9 million characters that keep the offline analyzer busy for a long time (issue #19):
seconds at the very least even in linear time, minutes before."""


@pytest.fixture
async def backend(make_settings: SettingsFactory) -> AsyncIterator[Backend]:
    """An open backend of each kind."""
    async with open_backend(await prepare(make_settings())) as opened:
        yield opened


async def running(store: JobStore, delivery: int = 1) -> Job:
    """A job record that delivery ``delivery`` has started."""
    job = Job(job_id=new_id(), novel_id=new_id(), user_id="reader")
    await store.create(job)
    started = await store.apply(job.job_id, jobs.start(delivery))
    assert started is not None
    return started


class Reads:
    """The real job store, counting its reads; ``failing`` reads fail first."""

    def __init__(self, store: JobStore, failing: int = 0) -> None:
        self._store = store
        self.gets = 0
        self.failing = failing

    async def get(self, job_id: str) -> Job | None:
        self.gets += 1
        if self.failing:
            self.failing -= 1
            raise BackendError("the table is unreachable")
        return await self._store.get(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Work:
    """An attempt's work that runs until told to finish, and says whether it was
    cancelled and got to clean up."""

    def __init__(self, result: str = "done", seconds: float = 3600.0) -> None:
        self.result = result
        self.seconds = seconds
        self.cancelled = False

    async def __call__(self) -> str:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleaning up takes a moment, and is waited for
            self.cancelled = True
            raise
        return self.result


# --------------------------------------------------------------------------- run_stoppable


async def test_work_that_ends_in_time_is_the_outcome_and_reads_nothing(backend: Backend) -> None:
    job = await running(backend.jobs)
    store = Reads(backend.jobs)
    rules = StopRules(deadline_s=30, check_s=5)
    assert await run_stoppable(Work(seconds=0.05)(), store, job.job_id, 1, rules) == "done"

    async def refuse() -> None:
        raise JobError("content_rejected", "no", transient=False)

    with pytest.raises(JobError, match="no"):
        await run_stoppable(refuse(), store, job.job_id, 1, rules)
    assert store.gets == 0  # both ended before the first check


async def test_the_deadline_cancels_the_work_and_fails_it_for_good(backend: Backend) -> None:
    job = await running(backend.jobs)
    work = Work()
    with pytest.raises(JobError) as late:
        await run_stoppable(work(), backend.jobs, job.job_id, 1, StopRules(0.3, check_s=60))
    assert work.cancelled
    assert (late.value.code, late.value.transient) == (JOB_TIMEOUT, False)
    assert "deadline of 0.3 s" in late.value.message


@pytest.mark.parametrize("change", ["cancel", "delete", "take over", "fail"])
async def test_the_watch_stops_work_whose_job_is_no_longer_its_own(
    backend: Backend, change: str
) -> None:
    job = await running(backend.jobs)
    if change == "cancel":
        await backend.jobs.apply(job.job_id, jobs.cancel())
    elif change == "delete":
        await backend.job_catalog.delete(job.job_id)
    elif change == "take over":
        await backend.jobs.apply(job.job_id, jobs.start(2))
    else:
        await backend.jobs.apply(job.job_id, jobs.exhausted(jobs.retries_exhausted(1)))
    work = Work()
    store = Reads(backend.jobs)
    with pytest.raises(JobStopped) as stopped:
        await run_stoppable(work(), store, job.job_id, 1, StopRules(None, check_s=0.1))
    expected = {"cancel": CANCELLED, "delete": DELETED}.get(change, SUPERSEDED)
    assert stopped.value.reason == expected
    assert work.cancelled
    assert store.gets == 1  # one read per check


async def test_a_failed_read_lets_the_work_go_on(backend: Backend) -> None:
    job = await running(backend.jobs)
    store = Reads(backend.jobs, failing=2)
    work = Work(seconds=1.0)
    rules = StopRules(None, check_s=0.1)
    assert await run_stoppable(work(), store, job.job_id, 1, rules) == "done"
    assert store.gets >= 3  # the failures, then reads that found the job still its own


async def test_cancelling_the_call_cancels_the_work_and_waits_for_it(backend: Backend) -> None:
    job = await running(backend.jobs)
    work = Work()
    call = asyncio.create_task(
        run_stoppable(work(), backend.jobs, job.job_id, 1, StopRules(None, check_s=60))
    )
    await asyncio.sleep(0.1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert work.cancelled


# --------------------------------------------------------------------------- whole runtimes


async def _submit(runtime: Runtime, text: str) -> Job:
    novel = await store_novel(runtime.backend, "local", "A Title", text)
    return await runtime.producer.submit(novel.novel_id, "local")


async def _drained(runtime: Runtime) -> None:
    """Wait until the main queue holds no message, visible or in flight."""

    async def empty() -> bool:
        depth = await runtime.backend.queue.depth()
        return (depth.visible, depth.in_flight) == (0, 0)

    await eventually(empty, within_s=30)


async def _status(runtime: Runtime, job_id: str, status: JobStatus) -> Job:
    async def reached() -> Job | None:
        job = await runtime.backend.jobs.get(job_id)
        return job if job is not None and job.status is status else None

    return await eventually(reached, within_s=30)


async def _busy_child(runtime: Runtime) -> tuple[CpuPool, int]:
    """The runtime's offline pool and the process id of its one child, once busy."""
    assert isinstance(runtime.analyzer, OfflineAnalyzer)
    pool = runtime.analyzer.pool
    assert pool is not None

    async def busy() -> bool:
        return pool.busy == 1

    await eventually(busy, within_s=30)
    (pid,) = pool.pids
    return pool, pid


async def test_a_sleeping_job_past_its_deadline_fails_and_frees_its_slot_at_once(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    settings = await prepare(
        make_settings(
            analyzer="sleep",
            sleep_analyzer_s=600,
            job_timeout_s=1,
            user_max_active_jobs=1,
            receive_wait_s=0.5,
            shutdown_grace_s=1,
        )
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    upload = await client.post("/v1/novels", json={"title": "T", "text": "Once upon a time."})
    novel_id = (await upload.json())["novelId"]
    analyze = f"/v1/novels/{novel_id}/analyze"
    first = await client.post(analyze)
    assert first.status == 202
    assert (await client.post(analyze)).status == 429  # the one slot is taken

    runtime = app[RUNTIME]
    job = await job_finished(runtime.backend.jobs, (await first.json())["jobId"])
    await _drained(runtime)  # deleted, not left for a redelivery
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == JOB_TIMEOUT
    assert job.attempts == 1
    assert runtime.consumer is not None
    assert runtime.consumer.stats.received == 1  # its message came once, and went
    assert (await client.post(analyze)).status == 202  # the slot came back with the end


async def test_an_offline_job_on_a_hostile_text_is_killed_at_its_deadline(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(job_timeout_s=1, cpu_workers=1, receive_wait_s=0.5)
    async with open_runtime(settings) as runtime:
        job = await _submit(runtime, HOSTILE)
        pool, child = await _busy_child(runtime)
        ended = await job_finished(runtime.backend.jobs, job.job_id)
        await all_gone([child])
        await _drained(runtime)
        assert pool.killed == 1
        # The pool goes on with a new process.
        small = await job_finished(
            runtime.backend.jobs, (await _submit(runtime, "It was a dark night.")).job_id
        )
    assert ended.status is JobStatus.FAILED
    assert ended.error is not None
    assert ended.error.code == JOB_TIMEOUT
    assert small.status is JobStatus.COMPLETED


async def test_cancelling_a_running_offline_job_kills_its_process(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(cancel_check_s=0.5, cpu_workers=1, receive_wait_s=0.5))
    async with open_runtime(settings) as runtime:
        job = await _submit(runtime, HOSTILE)
        _, child = await _busy_child(runtime)
        assert await runtime.backend.jobs.apply(job.job_id, jobs.cancel()) is not None
        await all_gone([child])
        await _drained(runtime)
        final = await runtime.backend.jobs.get(job.job_id)
        novel = await runtime.backend.novels.get(job.novel_id)
    assert final is not None
    assert final.status is JobStatus.CANCELLED
    assert novel is not None
    assert novel.latest_storyboard is None


async def test_a_process_killed_from_outside_retries_its_job_and_the_pool_goes_on(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(cpu_workers=1, receive_wait_s=0.5, retry_base_s=600)
    async with open_runtime(settings) as runtime:
        job = await _submit(runtime, HOSTILE)
        _, child = await _busy_child(runtime)
        os.kill(child, signal.SIGKILL)
        retrying = await _status(runtime, job.job_id, JobStatus.RETRYING)
        small = await job_finished(
            runtime.backend.jobs, (await _submit(runtime, "It was a dark night.")).job_id
        )
        await runtime.backend.jobs.apply(job.job_id, jobs.cancel())  # no second attempt
    assert retrying.error is not None
    assert retrying.error.code == DIED
    assert retrying.error.message == "the analysis process died (killed by SIGKILL)"
    assert small.status is JobStatus.COMPLETED


async def test_shutdown_kills_a_running_analysis_and_hands_its_job_back(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(shutdown_grace_s=1, cpu_workers=1, receive_wait_s=0.5)
    async with open_runtime(settings) as runtime:
        job = await _submit(runtime, HOSTILE)
        pool, child = await _busy_child(runtime)
    # Gone, and reaped, by the time the runtime has closed.
    assert gone(child)
    assert pool.pids == []
    async with open_runtime(settings, worker=False) as runtime:
        released = await runtime.backend.jobs.get(job.job_id)
    assert released is not None
    assert (released.status, released.attempts) == (JobStatus.QUEUED, 0)


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeLlm]:
    """The fake model server, every request of which hangs for ten minutes."""
    fake = await start_fake_llm(aiohttp_server)
    fake.latency_s = 600
    yield fake
    fake.release()


async def test_cancelling_a_model_job_abandons_its_hanging_requests(
    make_settings: SettingsFactory, fake: FakeLlm
) -> None:
    settings = await prepare(
        make_settings(
            llm_base_url=fake.base_url,
            STORYBOARD_LLM_API_KEY="sk-test",
            llm_timeout_s=600,
            cancel_check_s=0.5,
            receive_wait_s=0.5,
        )
    )
    async with open_runtime(settings) as runtime:
        job = await _submit(runtime, "Chapter 1\n\nAlice said hello.\n\nThe end.")

        async def asked() -> bool:
            return fake.in_flight >= 1

        await eventually(asked, within_s=30)
        assert await runtime.backend.jobs.apply(job.job_id, jobs.cancel()) is not None
        await _drained(runtime)  # within seconds, while the model would take ten minutes
        final = await runtime.backend.jobs.get(job.job_id)
    assert final is not None
    assert final.status is JobStatus.CANCELLED
    assert fake.calls() == 1
