"""The HTTP API through aiohttp's test client, on both backends."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.appkeys import RUNTIME
from service.ports import Analyzer
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
StartApp = Callable[..., Awaitable[Client]]

UNKNOWN = "0" * 32


@pytest.fixture
def start_app(aiohttp_client: AiohttpClient, make_settings: SettingsFactory) -> StartApp:
    """Start the app on the test's backend with settings overrides and an analyzer."""

    async def start(
        analyzer: Analyzer | None = None, worker: bool = True, **overrides: Any
    ) -> Client:
        overrides.setdefault("receive_wait_s", 0.5)
        settings = await prepare(make_settings(**overrides))
        app = create_app(settings, analyzer=analyzer or CountingAnalyzer(), worker=worker)
        return await aiohttp_client(app)

    return start


async def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


async def _upload(client: Client, text: str = "Once upon a time.", title: str = "T") -> str:
    response = await client.post("/v1/novels", json={"title": title, "text": text})
    assert response.status == 201
    return str((await response.json())["novelId"])


async def test_submission_to_storyboard(start_app: StartApp) -> None:
    client = await start_app(analyzer=CountingAnalyzer(0.05))
    response = await client.post("/v1/novels", json={"title": "Tale", "text": "Once upon a time."})
    assert response.status == 201
    created = await response.json()
    assert created["title"] == "Tale"
    assert created["chars"] == len("Once upon a time.")
    assert response.headers["Location"] == f"/v1/novels/{created['novelId']}"

    response = await client.post(f"/v1/novels/{created['novelId']}/analyze")
    assert response.status == 202
    accepted = await response.json()
    assert accepted["status"] == "queued"
    assert response.headers["Location"] == accepted["statusUrl"]

    async def completed() -> dict[str, Any] | None:
        job: dict[str, Any] = await (await client.get(accepted["statusUrl"])).json()
        return job if job["status"] == "completed" else None

    job = await eventually(completed)
    assert job["progress"] == {"percentage": 100, "stage": "completed"}
    assert job["attempts"] == 1
    assert job["error"] is None
    storyboard = await (await client.get(job["storyboardUrl"])).json()
    assert storyboard["novelId"] == created["novelId"]
    assert storyboard["scenes"][0]["panels"]

    novel = await (await client.get(f"/v1/novels/{created['novelId']}")).json()
    assert novel["storyboard"]["panels"] == 1
    assert novel["storyboardUrl"] == job["storyboardUrl"]


async def test_job_document_has_every_field(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    novel_id = await _upload(client)
    accepted = await (await client.post(f"/v1/novels/{novel_id}/analyze")).json()
    job = await (await client.get(accepted["statusUrl"])).json()
    assert set(job) >= {
        "jobId", "novelId", "type", "status", "progress", "attempts", "error",
        "createdAt", "updatedAt", "storyboardUrl",
    }  # fmt: skip
    assert job["status"] == "queued"
    assert job["type"] == "analyze"
    assert job["storyboardUrl"] is None


async def test_plain_text_upload_in_gb18030(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    text = "第一回　宴桃园豪杰三结义\r\n　　话说天下大势，分久必合，合久必分。"
    response = await client.post(
        "/v1/novels",
        params={"title": "三国演义"},
        data=text.encode("gb18030"),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status == 201
    body = await response.json()
    assert body["title"] == "三国演义"
    assert body["chars"] == len(text.replace("\r\n", "\n"))


async def test_storyboard_before_any_analysis_is_404(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    novel_id = await _upload(client)
    await _error(await client.get(f"/v1/novels/{novel_id}/storyboard"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "validation_error"),
        (b'{"title": "x"}', 422, "validation_error"),
        (b'{"text": "x"}', 422, "validation_error"),
        (b'{"title": "", "text": "x"}', 422, "validation_error"),
        (b'{"title": "x", "text": 5}', 422, "validation_error"),
        (b'{"title": "x", "text": "  \\n "}', 422, "empty_text"),
    ],
)
async def test_bad_json_uploads(start_app: StartApp, body: bytes, status: int, code: str) -> None:
    client = await start_app(worker=False)
    response = await client.post(
        "/v1/novels", data=body, headers={"Content-Type": "application/json"}
    )
    await _error(response, status, code)


async def test_plain_upload_without_a_title_is_titled_by_its_first_line(
    start_app: StartApp,
) -> None:
    client = await start_app(worker=False)
    text = "\n\n   The Time Machine  \n\nAn Invention\n\nThe Time Traveller was..."
    response = await client.post(
        "/v1/novels", data=text.encode(), headers={"Content-Type": "text/plain"}
    )
    assert response.status == 201
    assert (await response.json())["title"] == "The Time Machine"


async def test_a_title_parameter_beside_a_json_body_is_still_checked(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    body = b'{"title": "Body title", "text": "x"}'
    json_type = {"Content-Type": "application/json"}
    bad = await client.post("/v1/novels?title=%20", data=body, headers=json_type)
    await _error(bad, 422, "validation_error")
    good = await client.post("/v1/novels?title=Other", data=body, headers=json_type)
    assert (await good.json())["title"] == "Body title"


async def test_bad_plain_uploads(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    plain = {"Content-Type": "text/plain"}
    response = await client.post("/v1/novels?title=%20%20", data=b"text", headers=plain)
    await _error(response, 422, "validation_error")  # a blank title
    response = await client.post("/v1/novels?title=x", data=b"\xff\xfe\x00\xd8\xff", headers=plain)
    await _error(response, 415, "undecodable_text")
    response = await client.post("/v1/novels?title=x", data=b"", headers=plain)
    await _error(response, 422, "empty_text")
    response = await client.post(
        "/v1/novels?title=x", data=b"<p/>", headers={"Content-Type": "text/html"}
    )
    await _error(response, 415, "unsupported_media_type")


async def test_oversized_body_is_413(start_app: StartApp) -> None:
    client = await start_app(worker=False, max_body_bytes=1024)
    text = "x" * 2048
    response = await client.post("/v1/novels", data=json.dumps({"title": "t", "text": text}),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    await _error(response, 413, "payload_too_large")


async def test_a_novel_over_the_size_limit_is_422(start_app: StartApp) -> None:
    client = await start_app(worker=False, max_novel_chars=100)
    response = await client.post("/v1/novels", json={"title": "t", "text": "字" * 101})
    await _error(response, 422, "novel_too_large")
    assert (await client.post("/v1/novels", json={"title": "t", "text": "字" * 100})).status == 201


async def test_unknown_ids_and_routes_are_404(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    for path in (
        f"/v1/novels/{UNKNOWN}",
        f"/v1/novels/{UNKNOWN}/storyboard",
        f"/v1/jobs/{UNKNOWN}",
        "/v1/jobs/..%2F..%2Fetc",
        "/v1/novels/not-an-id",
        "/nowhere",
    ):
        await _error(await client.get(path), 404, "not_found")
    await _error(await client.post(f"/v1/novels/{UNKNOWN}/analyze"), 404, "not_found")


async def test_wrong_method_is_405(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    response = await client.delete("/v1/novels")
    await _error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_health_and_readiness(start_app: StartApp) -> None:
    client = await start_app()
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"


async def test_readiness_fails_while_draining(start_app: StartApp) -> None:
    client = await start_app()
    runtime = client.app[RUNTIME]
    assert runtime.consumer is not None
    runtime.consumer.begin_drain()
    await _error(await client.get("/readyz"), 503, "draining")


async def test_idempotency_key_returns_the_same_job(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    novel_id = await _upload(client)
    path = f"/v1/novels/{novel_id}/analyze"
    first = await client.post(path, headers={"Idempotency-Key": "order-42"})
    again = await client.post(path, headers={"Idempotency-Key": "order-42"})
    other = await client.post(path, headers={"Idempotency-Key": "order-43"})
    plain = await client.post(path)
    assert [r.status for r in (first, again, other, plain)] == [202, 202, 202, 202]
    ids = [(await r.json())["jobId"] for r in (first, again, other, plain)]
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    await _error(await client.post(path, headers={"Idempotency-Key": ""}), 400)


async def test_cancel_a_queued_job_then_a_finished_one(start_app: StartApp) -> None:
    client = await start_app(worker=False)
    novel_id = await _upload(client)
    accepted = await (await client.post(f"/v1/novels/{novel_id}/analyze")).json()
    cancel = f"{accepted['statusUrl']}/cancel"
    response = await client.post(cancel)
    assert response.status == 200
    assert (await response.json())["status"] == "cancelled"
    assert (await client.post(cancel)).status == 200  # cancelling twice is harmless
    job = await (await client.get(accepted["statusUrl"])).json()
    assert job["status"] == "cancelled"
    await _error(await client.post(f"/v1/jobs/{UNKNOWN}/cancel"), 404, "not_found")


async def test_cancel_after_completion_is_a_conflict(start_app: StartApp) -> None:
    client = await start_app(analyzer=CountingAnalyzer())
    novel_id = await _upload(client)
    accepted = await (await client.post(f"/v1/novels/{novel_id}/analyze")).json()

    async def completed() -> bool:
        job = await (await client.get(accepted["statusUrl"])).json()
        return bool(job["status"] == "completed")

    await eventually(completed)
    await _error(await client.post(f"{accepted['statusUrl']}/cancel"), 409, "job_finished")
