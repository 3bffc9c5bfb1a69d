"""Prometheus metrics: what an operator scrapes after real work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.appkeys import RUNTIME
from service.metrics import Metrics
from service.ports import QueueDepth
from tests.analyzers import CountingAnalyzer, RejectingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_after_a_job(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(receive_wait_s=0.5, worker_concurrency=8)
    client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"})).json()
    accepted = await (await client.post(f"/v1/novels/{created['novelId']}/analyze")).json()

    async def completed() -> bool:
        job = await (await client.get(accepted["statusUrl"])).json()
        return bool(job["status"] == "completed")

    await eventually(completed)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples = _samples(await response.text())
    assert samples[("storyboard_jobs_total", (("outcome", "completed"),))] == 1
    assert samples[("storyboard_consumer_received_total", (("queue", "main"),))] == 1
    assert samples[("storyboard_consumer_receives_total", (("queue", "main"),))] >= 1
    assert ("storyboard_jobs_in_flight", (("queue", "main"),)) in samples
    assert ("storyboard_worker_saturation", (("queue", "dlq"),)) in samples
    created_key = (
        "storyboard_http_requests_total",
        (("method", "POST"), ("route", "/v1/novels"), ("status", "201")),
    )
    assert samples[created_key] == 1
    stage = ("storyboard_stage_duration_seconds_count", (("stage", "analyze"),))
    assert samples[stage] == 1
    assert samples[("storyboard_worker_capacity", (("queue", "main"),))] == 8
    assert samples[("storyboard_consumer_draining", (("queue", "main"),))] == 0
    beat = samples[("storyboard_consumer_heartbeat_age_seconds", (("queue", "main"),))]
    assert 0 <= beat < settings.heartbeat_stale_s
    assert samples[("storyboard_llm_tokens_per_minute_limit", ())] == settings.llm_tokens_per_minute
    # Route templates, not raw ids, label the requests.
    assert not any(created["novelId"] in str(labels) for _, labels in samples)


def test_llm_requests_are_counted() -> None:
    metrics = Metrics()
    metrics.llm_request(1.5, None, 1200, 300)
    metrics.llm_request(0.2, "llm_rate_limited", 0, 0)
    samples = _samples(metrics.render().decode())
    assert samples[("storyboard_llm_tokens_total", (("direction", "input"),))] == 1200
    assert samples[("storyboard_llm_tokens_total", (("direction", "output"),))] == 300
    assert samples[("storyboard_llm_errors_total", (("code", "llm_rate_limited"),))] == 1
    count = ("storyboard_llm_request_duration_seconds_count", (("outcome", "ok"),))
    assert samples[count] == 1


async def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    return _samples(await response.text())


async def _submit(client: Client) -> str:
    created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"})).json()
    accepted = await (await client.post(f"/v1/novels/{created['novelId']}/analyze")).json()
    return str(accepted["statusUrl"])


def _depth(queue: str, state: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("storyboard_queue_messages", (("queue", queue), ("state", state)))


async def test_queue_depth_is_read_at_every_scrape(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    """An API-only process reports the queue's own count, on both backends."""
    settings = await prepare(make_settings())
    client = await aiohttp_client(create_app(settings, worker=False))
    before = await _scrape(client)
    assert before[_depth("main", "visible")] == 0
    assert before[_depth("dlq", "visible")] == 0
    await _submit(client)
    await _submit(client)
    after = await _scrape(client)
    assert after[_depth("main", "visible")] == 2
    assert after[_depth("main", "in_flight")] == 0
    # No consumer here: neither its gauges nor the worker's model limits.
    assert not any(name == "storyboard_jobs_in_flight" for name, _ in after)
    assert ("storyboard_llm_tokens_per_minute_limit", ()) not in after


@dataclass
class _BrokenQueue:
    """A queue whose depth read fails, as an unreachable SQS endpoint's would."""

    broken: bool = False

    async def depth(self) -> QueueDepth:
        if self.broken:
            raise ConnectionError("endpoint unreachable")
        return QueueDepth(visible=3, in_flight=1)


async def test_an_unreadable_queue_loses_its_series_until_it_answers() -> None:
    metrics = Metrics()
    queue = _BrokenQueue()
    metrics.watch_queues({"main": queue})
    await metrics.sample_queues()
    assert _samples(metrics.render().decode())[_depth("main", "in_flight")] == 1
    queue.broken = True
    await metrics.sample_queues()
    samples = _samples(metrics.render().decode())
    assert _depth("main", "visible") not in samples
    assert samples[("storyboard_queue_depth_errors_total", (("queue", "main"),))] == 1
    queue.broken = False
    await metrics.sample_queues()
    assert _samples(metrics.render().decode())[_depth("main", "visible")] == 3


async def test_failed_attempts_are_counted_by_code(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    settings = local_settings(receive_wait_s=0.5)
    client = await aiohttp_client(create_app(settings, analyzer=RejectingAnalyzer()))
    status_url = await _submit(client)

    async def failed() -> bool:
        job = await (await client.get(status_url)).json()
        return bool(job["status"] == "failed")

    await eventually(failed)
    samples = await _scrape(client)
    key = ("storyboard_job_errors_total", (("code", "content_rejected"), ("outcome", "failed")))
    assert samples[key] == 1
    assert samples[("storyboard_jobs_total", (("outcome", "failed"),))] == 1


async def test_a_draining_consumer_says_so_and_drops_its_heartbeat(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    settings = local_settings(receive_wait_s=0.5)
    client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    consumer = client.app[RUNTIME].consumer
    assert consumer is not None
    consumer.begin_drain()
    samples = await _scrape(client)
    assert samples[("storyboard_consumer_draining", (("queue", "main"),))] == 1
    assert samples[("storyboard_consumer_draining", (("queue", "dlq"),))] == 0
    assert ("storyboard_consumer_heartbeat_age_seconds", (("queue", "main"),)) not in samples
    assert ("storyboard_consumer_heartbeat_age_seconds", (("queue", "dlq"),)) in samples


def test_an_unlimited_model_limit_has_no_sample() -> None:
    metrics = Metrics()
    metrics.model_limits(requests_per_minute=0, tokens_per_minute=90_000)
    text = metrics.render().decode()
    samples = _samples(text)
    assert samples[("storyboard_llm_tokens_per_minute_limit", ())] == 90_000
    assert ("storyboard_llm_requests_per_minute_limit", ()) not in samples
    # The family is still declared, so a dashboard's query names a metric that exists.
    assert "# TYPE storyboard_llm_requests_per_minute_limit gauge" in text
