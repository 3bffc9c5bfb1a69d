"""``GET /v1/jobs/{jobId}/storyboard`` through real HTTP: each job serves its own storyboard."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _client(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory, worker: bool = True
) -> Client:
    keys = {_digest("alice-key"): "alice", _digest("bob-key"): "bob"}
    settings = await prepare(local_settings(auth_api_keys=keys, receive_wait_s=0.5))
    app = create_app(settings, analyzer=CountingAnalyzer(), worker=worker)
    return await aiohttp_client(app)


async def _submit(client: Client, novel_id: str | None = None) -> dict[str, Any]:
    if novel_id is None:
        body = {"title": "Tale", "text": "Once upon a time."}
        created = await (await client.post("/v1/novels", json=body, headers=ALICE)).json()
        novel_id = created["novelId"]
    response = await client.post(f"/v1/novels/{novel_id}/analyze", headers=ALICE)
    assert response.status == 202
    return dict(await response.json()) | {"novelId": novel_id}


async def _completed(client: Client, status_url: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        job: dict[str, Any] = await (await client.get(status_url, headers=ALICE)).json()
        return job if job["status"] == "completed" else None

    return await eventually(done)


async def _error(response: Any, code: str) -> str:
    assert response.status == 404, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code
    return str(error["message"])


async def test_each_job_serves_its_own_storyboard(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings)
    first = await _submit(client)
    await _completed(client, first["statusUrl"])
    second = await _submit(client, first["novelId"])
    await _completed(client, second["statusUrl"])
    for job in (first, second):
        response = await client.get(f"/v1/jobs/{job['jobId']}/storyboard", headers=ALICE)
        assert response.status == 200
        storyboard = await response.json()
        assert storyboard["novelId"] == first["novelId"]
        assert storyboard["meta"]["jobId"] == job["jobId"]
    latest = await client.get(f"/v1/novels/{first['novelId']}/storyboard", headers=ALICE)
    assert (await latest.json())["meta"]["jobId"] == second["jobId"]


async def test_a_queued_job_answers_storyboard_pending_with_its_status_url(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings, worker=False)
    job = await _submit(client)
    response = await client.get(f"/v1/jobs/{job['jobId']}/storyboard", headers=ALICE)
    message = await _error(response, "storyboard_pending")
    assert job["statusUrl"] in message


async def test_another_users_or_a_cancelled_job_has_no_storyboard(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings, worker=False)
    job = await _submit(client)
    path = f"/v1/jobs/{job['jobId']}/storyboard"
    await _error(await client.get(path, headers=BOB), "not_found")
    await _error(await client.get(f"/v1/jobs/{'0' * 32}/storyboard", headers=ALICE), "not_found")
    cancelled = await client.post(f"/v1/jobs/{job['jobId']}/cancel", headers=ALICE)
    assert cancelled.status == 200
    await _error(await client.get(path, headers=ALICE), "not_found")
