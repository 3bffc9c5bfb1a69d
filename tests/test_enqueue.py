"""The producer: a job whose message cannot be sent is never left queued."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from service.app import create_app
from service.appkeys import RUNTIME
from service.backends.aws_clients import open_clients
from service.jobs import Job, JobStatus, Transition
from service.ports import JobStore
from service.producers import enqueue
from service.producers.enqueue import EnqueueError, JobProducer
from service.runtime import open_runtime
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare


async def test_submit_creates_a_queued_job_and_sends_the_seed_body(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False, analyzer=CountingAnalyzer()) as runtime:
        novel = await store_novel(runtime.backend, "local", "T", "text")
        job = await runtime.producer.submit(novel.novel_id, "local")
        stored = await runtime.backend.jobs.get(job.job_id)
        messages = await runtime.backend.queue.receive(max_messages=10, wait_s=1, visibility_s=30)
    assert stored is not None
    assert stored.status is JobStatus.QUEUED
    assert stored.attempts == 0
    assert len(messages) == 1
    body = json.loads(messages[0].body)
    assert body == {"jobId": job.job_id, "novelId": novel.novel_id, "userId": "local"}
    # The user is the message group, so the queue shares its workers fairly between users.
    assert messages[0].group == "local"


async def test_a_failed_send_marks_the_job_failed(aws_settings: SettingsFactory) -> None:
    settings = await prepare(aws_settings())
    async with open_runtime(settings, worker=False, analyzer=CountingAnalyzer()) as runtime:
        novel = await store_novel(runtime.backend, "local", "T", "text")
        async with open_clients(settings) as clients:
            url = (await clients.sqs.get_queue_url(QueueName=settings.queue_name))["QueueUrl"]
            await clients.sqs.delete_queue(QueueUrl=url)
        with pytest.raises(EnqueueError) as caught:
            await runtime.producer.submit(novel.novel_id, "local")
        job = await runtime.backend.jobs.get(caught.value.job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == "enqueue_failed"


async def test_api_answers_503_when_the_queue_is_gone(
    aws_settings: SettingsFactory, aiohttp_client: object
) -> None:
    settings = await prepare(aws_settings())
    app = create_app(settings, worker=False, analyzer=CountingAnalyzer())
    client = await aiohttp_client(app)  # type: ignore[operator]
    created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"})).json()
    async with open_clients(settings) as clients:
        url = (await clients.sqs.get_queue_url(QueueName=settings.queue_name))["QueueUrl"]
        await clients.sqs.delete_queue(QueueUrl=url)
    response = await client.post(f"/v1/novels/{created['novelId']}/analyze")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "queue_unavailable"


@pytest.mark.parametrize("rounds", [12])
async def test_concurrent_requests_with_one_idempotency_key_make_one_job(
    make_settings: SettingsFactory, aiohttp_client: object, rounds: int
) -> None:
    settings = await prepare(make_settings())
    app = create_app(settings, worker=False, analyzer=CountingAnalyzer())
    client = await aiohttp_client(app)  # type: ignore[operator]
    created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"})).json()
    url = f"/v1/novels/{created['novelId']}/analyze"

    async def post(key: str) -> tuple[int, dict[str, object]]:
        response = await client.post(url, headers={"Idempotency-Key": key})
        return response.status, await response.json()

    for round_number in range(rounds):
        answers = await asyncio.gather(*(post(f"key-{round_number}") for _ in range(20)))
        accepted = {body["jobId"] for status, body in answers if status == 202}
        others = {status for status, _ in answers if status != 202}
        assert len(accepted) == 1, f"round {round_number}: {len(accepted)} jobs for one key"
        assert others <= {409}, others
    depth = await app[RUNTIME].backend.queue.depth()
    assert depth.visible + depth.in_flight == rounds  # one message per key, no strays


class _SlowCreates:
    """A job store whose creates wait for a signal: the window between a request's claim
    of a key and its job record, held open."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.release = asyncio.Event()

    async def create(self, job: Job) -> None:
        await self.release.wait()
        await self._store.create(job)

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get(job_id)

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        return await self._store.apply(job_id, transition)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        return await self._store.get_many(job_ids)


async def test_a_repeat_waits_for_the_first_requests_job_instead_of_making_its_own(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        backend = runtime.backend
        slow = _SlowCreates(backend.jobs)
        producer = JobProducer(slow, backend.queue, backend.idempotency)
        first = asyncio.create_task(producer.submit_once("n", "u", "key"))
        await asyncio.sleep(0.2)  # the first has claimed the key and waits in create
        repeat = asyncio.create_task(producer.submit_once("n", "u", "key"))
        await asyncio.sleep(0.2)
        slow.release.set()
        one, two = await asyncio.gather(first, repeat)
        depth = await backend.queue.depth()
    assert (one.replayed, two.replayed) == (False, True)
    assert one.job.job_id == two.job.job_id
    assert depth.visible == 1


async def test_a_repeat_whose_first_request_never_writes_its_job_answers_a_conflict(
    local_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enqueue, "OWNER_WAIT_S", 0.3)
    async with open_runtime(local_settings(), worker=False) as runtime:
        backend = runtime.backend
        slow = _SlowCreates(backend.jobs)
        producer = JobProducer(slow, backend.queue, backend.idempotency)
        stuck = asyncio.create_task(producer.submit_once("n", "u", "key"))
        await asyncio.sleep(0.1)
        with pytest.raises(enqueue.IdempotencyConflict):
            await producer.submit_once("n", "u", "key")
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)


async def test_a_job_for_a_novel_that_is_gone_fails_and_is_never_sent(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        with pytest.raises(enqueue.NovelGone):
            await runtime.producer.submit("0" * 32, "local")
        depth = await runtime.backend.queue.depth()
    assert depth.visible + depth.in_flight == 0


async def test_each_new_job_becomes_its_novels_latest(make_settings: SettingsFactory) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        novel = await store_novel(runtime.backend, "local", "T", "text")
        first = await runtime.producer.submit(novel.novel_id, "local")
        second = await runtime.producer.submit(novel.novel_id, "local")
        stored = await runtime.backend.novels.get(novel.novel_id)
    assert first.job_id != second.job_id
    assert stored is not None
    assert stored.latest_job_id == second.job_id
