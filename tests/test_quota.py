"""The active-job quota, on both backends: slots taken and given back, leaks reconciled,
and the limit held under concurrent submissions over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import jobs
from service.api_schema import LimitErrorBody
from service.app import create_app
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.jobs import ErrorInfo, Job, JobStatus
from service.models import new_id, utcnow
from service.ports import Queue, QueueDepth
from service.producers.enqueue import EnqueueError, JobProducer, NovelGone
from service.producers.quota import GRACE_S, ActiveJobQuota, TooManyActiveJobs
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer, RejectingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
StartApp = Callable[..., Awaitable[Client]]

USER = "reader"


class Clock:
    """Wall-clock time the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def backend(make_settings: SettingsFactory) -> AsyncIterator[Backend]:
    """An open backend of each kind."""
    async with open_backend(await prepare(make_settings())) as opened:
        yield opened


def quota_on(backend: Backend, limit: int, clock: Clock | None = None) -> ActiveJobQuota:
    """A quota counting analyses, on the backend's own slots and jobs."""
    return ActiveJobQuota(
        backend.quotas,
        backend.jobs,
        limit=limit,
        counted_types=["analyze"],
        clock=clock or utcnow,
    )


def analysis(user: str = USER) -> Job:
    """A new analysis job of ``user``'s (not stored)."""
    return Job(job_id=new_id(), novel_id=new_id(), user_id=user)


# --- leaks -----------------------------------------------------------------------------


async def test_a_slot_whose_job_was_never_written_is_dropped_after_the_grace(
    backend: Backend,
) -> None:
    clock = Clock()
    quota = quota_on(backend, 1, clock)
    await quota.take(analysis())  # the process "dies" before writing the job

    with pytest.raises(TooManyActiveJobs) as refused:
        await quota.take(analysis())
    assert (refused.value.active, refused.value.limit) == (1, 1), "young: maybe in progress"

    clock.now += timedelta(seconds=GRACE_S + 1)
    survivor = analysis()
    assert await quota.take(survivor) == 1
    assert set(await backend.quotas.held(USER)) == {survivor.job_id}


async def test_a_slot_whose_release_was_lost_is_dropped_when_its_job_has_ended(
    backend: Backend,
) -> None:
    quota = quota_on(backend, 2)
    ended, running = analysis(), analysis()
    for job in (ended, running):
        await backend.jobs.create(job)
        await quota.take(job)
    # The end is written, then the process "dies" before the end hook frees the slot.
    assert await backend.jobs.apply(ended.job_id, jobs.cancel()) is not None

    newcomer = analysis()
    assert await quota.take(newcomer) == 2
    assert set(await backend.quotas.held(USER)) == {running.job_id, newcomer.job_id}
    with pytest.raises(TooManyActiveJobs):
        await quota.take(analysis())


async def test_reconciling_keeps_live_jobs_and_other_users_slots(backend: Backend) -> None:
    clock = Clock()
    quota = quota_on(backend, 3, clock)
    live = [analysis() for _ in range(3)]
    for job in live:
        await backend.jobs.create(job)
        await quota.take(job)
    await quota.take(analysis("someone-else"))
    clock.now += timedelta(days=1)

    assert await quota.reconcile(USER) == 0
    assert await quota.reconcile("someone-else") == 1
    assert set(await backend.quotas.held(USER)) == {job.job_id for job in live}


# --- the producer ----------------------------------------------------------------------


class _DownQueue:
    """A queue whose sends fail, as during an outage."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    async def send(
        self, body: str, *, group: str | None = None, attributes: Mapping[str, str] | None = None
    ) -> str:
        raise OSError("queue unreachable")

    async def depth(self) -> QueueDepth:
        return await self._queue.depth()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


async def test_a_submission_that_queues_nothing_gives_its_slot_back(backend: Backend) -> None:
    quota = quota_on(backend, 1)
    novel = await store_novel(backend, USER, "T", "text")
    down = JobProducer(backend.jobs, _DownQueue(backend.queue), novels=backend.novels, quota=quota)
    with pytest.raises(EnqueueError):
        await down.submit(novel.novel_id, USER)
    assert await backend.quotas.held(USER) == {}

    producer = JobProducer(backend.jobs, backend.queue, novels=backend.novels, quota=quota)
    with pytest.raises(NovelGone):
        await producer.submit(new_id(), USER)  # no such novel: the job is dropped
    assert await backend.quotas.held(USER) == {}

    job = await producer.submit(novel.novel_id, USER)
    assert set(await backend.quotas.held(USER)) == {job.job_id}


async def test_the_end_hook_frees_only_ended_jobs(backend: Backend) -> None:
    quota = quota_on(backend, 5)
    job = analysis()
    await backend.jobs.create(job)
    await quota.take(job)

    await quota.ended(job)  # still queued: a stray call frees nothing
    assert set(await backend.quotas.held(USER)) == {job.job_id}
    failed = await backend.jobs.apply(job.job_id, jobs.abandon(ErrorInfo.of("x", "y")))
    assert failed is not None
    await quota.ended(failed)
    await quota.ended(failed)
    assert await backend.quotas.held(USER) == {}


# --- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def start_app(aiohttp_client: AiohttpClient, make_settings: SettingsFactory) -> StartApp:
    """The app on the test's backend, with settings overrides."""

    async def start(analyzer: Any = None, worker: bool = False, **overrides: Any) -> Client:
        overrides.setdefault("receive_wait_s", 0.5)
        settings = await prepare(make_settings(**overrides))
        app = create_app(settings, analyzer=analyzer or CountingAnalyzer(), worker=worker)
        return await aiohttp_client(app)

    return start


async def _upload(client: Client) -> str:
    response = await client.post("/v1/novels", json={"title": "T", "text": "Once upon a time."})
    assert response.status == 201
    return str((await response.json())["novelId"])


async def _analyze(client: Client, novel_id: str, **headers: str) -> tuple[int, Any, Any]:
    response = await client.post(f"/v1/novels/{novel_id}/analyze", headers=headers)
    return response.status, await response.json(), response.headers


async def test_fifty_concurrent_submissions_admit_exactly_the_limit(start_app: StartApp) -> None:
    client = await start_app(user_max_active_jobs=7)
    novels = [await _upload(client) for _ in range(5)]
    for round_number in range(3):
        answers = await asyncio.gather(
            *(_analyze(client, novels[n % len(novels)]) for n in range(50))
        )
        accepted = [body for status, body, _ in answers if status == 202]
        refused = [(body, headers) for status, body, headers in answers if status == 429]
        assert (len(accepted), len(refused)) == (7, 43), round_number
        for body, headers in refused:
            LimitErrorBody.model_validate(body)  # the document's 429 schema
            assert body["error"]["code"] == "too_many_active_jobs"
            assert (body["error"]["activeJobs"], body["error"]["limit"]) == (7, 7)
            assert (
                "you have 7 analyses queued or running and may have 7" in body["error"]["message"]
            )
            assert int(headers["Retry-After"]) > 0
            assert headers["RateLimit-Remaining"] == "0"
        # Cancelling every accepted job gives its slot back for the next round.
        for body in accepted:
            response = await client.post(f"/v1/jobs/{body['jobId']}/cancel")
            assert response.status == 200


async def test_the_headers_count_the_slots_down(start_app: StartApp) -> None:
    client = await start_app(user_max_active_jobs=3)
    novel_id = await _upload(client)
    seen = []
    for _ in range(4):
        status, _, headers = await _analyze(client, novel_id)
        seen.append((status, headers["RateLimit-Limit"], headers["RateLimit-Remaining"]))
    assert seen == [(202, "3", "2"), (202, "3", "1"), (202, "3", "0"), (429, "3", "0")]


async def test_an_idempotent_replay_takes_no_second_slot_and_is_not_refused(
    start_app: StartApp,
) -> None:
    client = await start_app(user_max_active_jobs=2)
    first, second = await _upload(client), await _upload(client)
    status, original, _ = await _analyze(client, first, **{"Idempotency-Key": "k1"})
    assert status == 202
    assert (await _analyze(client, second))[0] == 202

    status, replay, headers = await _analyze(client, first, **{"Idempotency-Key": "k1"})
    assert status == 202, replay
    assert replay["jobId"] == original["jobId"]
    assert headers["Idempotent-Replayed"] == "true"
    assert headers["RateLimit-Remaining"] == "0"
    assert (await _analyze(client, first, **{"Idempotency-Key": "k2"}))[0] == 429


async def test_slots_come_back_when_jobs_complete_or_fail(start_app: StartApp) -> None:
    analyzer = CountingAnalyzer()
    client = await start_app(analyzer=analyzer, worker=True, user_max_active_jobs=2)
    novel_id = await _upload(client)

    async def accepted_in_turn(count: int) -> None:
        for _ in range(count):

            async def admitted() -> bool:
                return (await _analyze(client, novel_id))[0] == 202

            await eventually(admitted, every_s=0.2)

    await accepted_in_turn(6)  # three times the limit, each waiting for a slot to free
    assert analyzer.calls >= 4


async def test_a_failed_job_frees_its_slot(start_app: StartApp) -> None:
    client = await start_app(analyzer=RejectingAnalyzer(), worker=True, user_max_active_jobs=1)
    novel_id = await _upload(client)
    status, body, _ = await _analyze(client, novel_id)
    assert status == 202

    async def failed() -> bool:
        job = await (await client.get(body["statusUrl"])).json()
        return bool(job["status"] == JobStatus.FAILED.value)

    await eventually(failed)
    assert (await _analyze(client, novel_id))[0] == 202


async def test_erasing_a_novel_frees_its_jobs_slots(start_app: StartApp) -> None:
    client = await start_app(user_max_active_jobs=2)
    doomed, kept = await _upload(client), await _upload(client)
    assert [(await _analyze(client, doomed))[0] for _ in range(2)] == [202, 202]
    assert (await _analyze(client, kept))[0] == 429

    assert (await client.delete(f"/v1/novels/{doomed}")).status == 204
    assert [(await _analyze(client, kept))[0] for _ in range(3)] == [202, 202, 429]


async def test_no_limit_takes_no_slots(start_app: StartApp) -> None:
    client = await start_app(user_max_active_jobs=0)
    novel_id = await _upload(client)
    answers = [await _analyze(client, novel_id) for _ in range(25)]
    assert {status for status, _, _ in answers} == {202}
    assert "RateLimit-Limit" not in answers[0][2]


async def test_over_the_submission_rate_a_429_says_when_to_come_back(
    start_app: StartApp,
) -> None:
    client = await start_app(user_submit_rate=3, user_max_active_jobs=10)
    novel_id = await _upload(client)
    answers = [await _analyze(client, novel_id) for _ in range(4)]

    assert [status for status, _, _ in answers] == [202, 202, 202, 429]
    # Three a minute, with 7 of 10 slots free: the rate is the tighter limit.
    assert [headers["RateLimit-Remaining"] for _, _, headers in answers] == ["2", "1", "0", "0"]
    assert {headers["RateLimit-Limit"] for _, _, headers in answers} == {"3"}
    _, body, headers = answers[3]
    LimitErrorBody.model_validate(body)
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["limit"] == 3
    assert 0 < int(headers["Retry-After"]) <= 20
    assert headers["RateLimit-Reset"] == headers["Retry-After"]
    assert body["error"]["retryAfter"] == int(headers["Retry-After"])
