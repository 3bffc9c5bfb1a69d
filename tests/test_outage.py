"""A backend outage: readiness reports it, the loop backs off, and work resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from harness.aws import MotoThread
from service.app import create_app
from service.appkeys import RUNTIME
from service.jobs import JobStatus
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]


async def test_outage_is_reported_backed_off_and_survived(
    aws_settings: SettingsFactory,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    server = MotoThread.start()
    settings = aws_settings(
        aws_endpoint_url=server.endpoint,
        aws_max_attempts=1,
        aws_connect_timeout_s=1,
        aws_read_timeout_s=2,
        receive_wait_s=1,
    )
    await prepare(settings)
    client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    consumer = client.app[RUNTIME].consumer
    assert consumer is not None
    assert (await client.get("/readyz")).status == 200

    server.stop()
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "backend_unavailable"
    errors_before = consumer.stats.receive_errors
    await asyncio.sleep(4)
    failed_polls = consumer.stats.receive_errors - errors_before
    assert 1 <= failed_polls <= 5  # backing off (0.5, 1, 2 s ...), not spinning
    assert (await client.get("/healthz")).status == 200  # alive, just waiting

    server = MotoThread.start(server.port)  # the backend comes back (empty, as after a failover)
    try:
        await prepare(settings)

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        await eventually(ready)
        created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"})).json()
        accepted = await (await client.post(f"/v1/novels/{created['novelId']}/analyze")).json()

        async def completed() -> bool:
            job = await (await client.get(accepted["statusUrl"])).json()
            return bool(job["status"] == JobStatus.COMPLETED.value)

        await eventually(completed)
    finally:
        await client.close()
        server.stop()
