"""Prometheus metrics: what an operator scrapes after real work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.metrics import Metrics
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]


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
