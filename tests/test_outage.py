"""A backend outage: readiness reports it, the loop backs off, and work resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient
from moto.server import ThreadedMotoServer

from service.app import create_app
from service.appkeys import RUNTIME
from service.jobs import JobStatus
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, free_port, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]


def _server(port: int) -> ThreadedMotoServer:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


async def test_outage_is_reported_backed_off_and_survived(
    aws_settings: SettingsFactory,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    port = free_port()
    server = _server(port)
    settings = aws_settings(
        aws_endpoint_url=f"http://127.0.0.1:{port}",
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

    server = _server(port)  # the backend comes back (empty, as after a failover)
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
