"""The producer: a job whose message cannot be sent is never left queued."""

from __future__ import annotations

import json

import pytest

from service.app import create_app
from service.backends.aws_clients import open_clients
from service.jobs import JobStatus
from service.producers.enqueue import EnqueueError
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
