"""``GET /v1/jobs/{jobId}/storyboard`` through real HTTP: each job serves its own storyboard."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from httpx_sse import ServerSentEvent, aconnect_sse

from service.app import create_app
from service.appkeys import RUNTIME
from service.ports import Analyzer
from service.settings import Settings
from tests.analyzers import CountingAnalyzer, RejectingAnalyzer, SteppingAnalyzer
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


# --- GET /v1/jobs --------------------------------------------------------------------------


async def _two_user_api(aiohttp_client: AiohttpClient, make_settings: SettingsFactory) -> Client:
    keys = {_digest("alice-key"): "alice", _digest("bob-key"): "bob"}
    settings = await prepare(make_settings(auth_api_keys=keys))
    return await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer(), worker=False))


async def _novel(client: Client, who: dict[str, str]) -> str:
    body = {"title": "Tale", "text": "Once upon a time."}
    response = await client.post("/v1/novels", json=body, headers=who)
    return str((await response.json())["novelId"])


async def _job(client: Client, novel_id: str, who: dict[str, str] = ALICE) -> str:
    response = await client.post(f"/v1/novels/{novel_id}/analyze", headers=who)
    assert response.status == 202, await response.text()
    return str((await response.json())["jobId"])


async def _listed(client: Client, who: dict[str, str] = ALICE, **params: str) -> list[Any]:
    """Every job the list gives, one page of ``limit`` (default 2) at a time."""
    items: list[Any] = []
    query: dict[str, str] = {"limit": "2", **params}
    while True:
        response = await client.get("/v1/jobs", params=query, headers=who)
        assert response.status == 200, await response.text()
        body = await response.json()
        items += body["items"]
        if body["nextCursor"] is None:
            return items
        query["cursor"] = body["nextCursor"]


async def test_jobs_are_listed_newest_first_with_filters(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_user_api(aiohttp_client, make_settings)
    first, second = await _novel(client, ALICE), await _novel(client, ALICE)
    made = [await _job(client, first), await _job(client, second), await _job(client, first)]
    bobs_novel = await _novel(client, BOB)
    bobs_job = await _job(client, bobs_novel, BOB)
    cancelled = await client.post(f"/v1/jobs/{made[0]}/cancel", headers=ALICE)
    assert cancelled.status == 200

    everything = await _listed(client)
    assert [job["jobId"] for job in everything] == made[::-1]
    for job in everything:  # each item is the job view itself
        view = await (await client.get(f"/v1/jobs/{job['jobId']}", headers=ALICE)).json()
        assert job == view
    of_first = await _listed(client, novelId=first)
    assert [job["jobId"] for job in of_first] == [made[2], made[0]]
    gone = await _listed(client, status="cancelled")
    assert [job["jobId"] for job in gone] == [made[0]]
    waiting = await _listed(client, novelId=first, status="queued", limit="1")
    assert [job["jobId"] for job in waiting] == [made[2]]
    assert await _listed(client, novelId=bobs_novel) == []  # not Alice's: nothing to list
    assert [job["jobId"] for job in await _listed(client, BOB)] == [bobs_job]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "done"}, "validation_error"),
        ({"novelId": "not-an-id"}, "validation_error"),
        ({"limit": "1000"}, "validation_error"),
        ({"cursor": "e30"}, "invalid_cursor"),
    ],
)
async def test_bad_list_parameters_are_400(
    aiohttp_client: AiohttpClient,
    local_settings: SettingsFactory,
    params: dict[str, str],
    code: str,
) -> None:
    client = await _client(aiohttp_client, local_settings, worker=False)
    response = await client.get("/v1/jobs", params=params, headers=ALICE)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == code


async def test_a_jobs_cursor_is_bound_to_its_filters_and_its_user(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_user_api(aiohttp_client, make_settings)
    novel_id = await _novel(client, ALICE)
    for _ in range(3):
        await _job(client, novel_id)
    params = {"limit": "1", "novelId": novel_id}
    first = await (await client.get("/v1/jobs", params=params, headers=ALICE)).json()
    cursor = first["nextCursor"]

    for who, query in (
        (BOB, params),
        (ALICE, {"limit": "1"}),
        (ALICE, {**params, "status": "queued"}),
    ):
        response = await client.get("/v1/jobs", params={**query, "cursor": cursor}, headers=who)
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["code"] == "invalid_cursor"


# --- GET /v1/jobs/{jobId}/events: Server-Sent Events, read with httpx-sse ----------------


async def _stream_app(
    aiohttp_client: AiohttpClient, settings: Settings, analyzer: Analyzer
) -> Client:
    keys = {_digest("alice-key"): "alice", _digest("bob-key"): "bob"}
    ready = await prepare(settings.model_copy(update={"auth_api_keys": keys}))
    return await aiohttp_client(create_app(ready, analyzer=analyzer))


async def _events(
    client: Client, job_id: str, *, last_event_id: str | None = None, limit: int = 1000
) -> list[ServerSentEvent]:
    """Every event of the job's stream, until the server closes it."""
    headers = {**ALICE, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    url = str(client.make_url(f"/v1/jobs/{job_id}/events"))
    events: list[ServerSentEvent] = []
    async with (
        httpx.AsyncClient(timeout=60) as http,
        aconnect_sse(http, "GET", url, headers=headers) as source,
    ):
        source.response.raise_for_status()
        async for event in source.aiter_sse():
            events.append(event)
            if len(events) >= limit:
                break
    return events


async def test_a_stream_carries_every_write_then_the_final_event_and_closes(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    # Steps 2.5 s apart: the progress writer writes every one of them (at most one write
    # each 2 s), and on AWS the hub's 1 s poll sees each before the next.
    analyzer = SteppingAnalyzer(steps=3, step_s=2.5)
    settings = make_settings(receive_wait_s=0.5)
    client = await _stream_app(aiohttp_client, settings, analyzer)
    accepted = await _submit(client)

    events = await _events(client, accepted["jobId"])

    ids = [int(event.id) for event in events]
    assert ids == sorted(set(ids)), ids
    if settings.resolved_backend == "local":
        # Writes in this process wake the hub at once: not one version is skipped. On AWS
        # the hub polls once a second, so writes closer together than that may merge.
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    assert [event.event for event in events[:-1]] == ["progress"] * (len(events) - 1)
    assert events[-1].event == "completed"
    views = [event.json() for event in events]
    final = await (await client.get(f"/v1/jobs/{accepted['jobId']}", headers=ALICE)).json()
    assert views[-1] == final  # the same document as GET /v1/jobs/{jobId}
    stages = [view["progress"]["stage"] for view in views]
    # The last chunk's report and the end of the analysis come together: one write.
    assert {"started", "chunk 1/3", "chunk 2/3", "completed"} <= set(stages), stages
    percentages = [view["progress"]["percentage"] for view in views]
    assert percentages == sorted(percentages)


async def test_a_reconnect_with_last_event_id_gets_the_newer_state_at_once_and_carries_on(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    analyzer = SteppingAnalyzer(steps=3, step_s=2.5)
    client = await _stream_app(aiohttp_client, local_settings(receive_wait_s=0.5), analyzer)
    job_id = (await _submit(client))["jobId"]
    (first,) = await _events(client, job_id, limit=1)
    await eventually(lambda: _version_above(client, job_id, int(first.id)))

    resumed = await _events(client, job_id, last_event_id=first.id)

    assert int(resumed[0].id) > int(first.id)
    assert resumed[-1].event == "completed"
    again = await _events(client, job_id)  # a new stream on an ended job: the final event
    assert [(event.event, event.id) for event in again] == [("completed", resumed[-1].id)]


async def _version_above(client: Client, job_id: str, version: int) -> bool:
    job = await (await client.get(f"/v1/jobs/{job_id}", headers=ALICE)).json()
    stored = await client.app[RUNTIME].backend.jobs.get(job_id)
    return stored is not None and stored.version > version and job["status"] != "queued"


async def test_a_reconnect_after_the_final_event_answers_204_so_eventsource_stops(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client = await _stream_app(
        aiohttp_client, local_settings(receive_wait_s=0.5), CountingAnalyzer()
    )
    accepted = await _submit(client)
    await _completed(client, accepted["statusUrl"])
    (final,) = await _events(client, accepted["jobId"])
    assert final.event == "completed"

    url = f"/v1/jobs/{accepted['jobId']}/events"
    after = await client.get(url, headers={**ALICE, "Last-Event-ID": final.id})
    garbage = await client.get(url, headers={**ALICE, "Last-Event-ID": "not-a-version"})

    assert after.status == 204
    assert garbage.status == 200
    assert "event: completed" in await garbage.text()


@pytest.mark.parametrize(
    ("analyzer", "end"), [(RejectingAnalyzer(), "failed"), (None, "cancelled")]
)
async def test_the_final_event_is_named_after_the_end_state(
    aiohttp_client: AiohttpClient,
    local_settings: SettingsFactory,
    analyzer: Analyzer | None,
    end: str,
) -> None:
    worker = analyzer is not None
    settings = local_settings(receive_wait_s=0.5)
    keys = {_digest("alice-key"): "alice"}
    app = create_app(
        settings.model_copy(update={"auth_api_keys": keys}),
        analyzer=analyzer or CountingAnalyzer(),
        worker=worker,
    )
    client = await aiohttp_client(app)
    job_id = (await _submit(client))["jobId"]
    if not worker:
        cancelled = await client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE)
        assert cancelled.status == 200

    events = await _events(client, job_id)

    assert events[-1].event == end
    assert events[-1].json()["status"] == end


async def test_another_users_stream_is_404_and_a_stream_needs_credentials(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings, worker=False)
    job_id = (await _submit(client))["jobId"]
    url = f"/v1/jobs/{job_id}/events"
    assert (await client.get(url, headers=BOB)).status == 404
    assert (await client.get(url)).status == 401


async def test_a_quiet_stream_gets_keep_alive_comments(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    keys = {_digest("alice-key"): "alice"}
    settings = local_settings(receive_wait_s=0.5, sse_ping_s=0.2, auth_api_keys=keys)
    client = await aiohttp_client(create_app(settings, worker=False))
    job_id = (await _submit(client))["jobId"]  # no worker: it stays queued and quiet
    response = await client.get(f"/v1/jobs/{job_id}/events", headers=ALICE)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    lines = [await asyncio.wait_for(response.content.readline(), 5) for _ in range(6)]
    response.close()
    assert lines[0].startswith(b"id: ")  # the current state first
    assert b": ping\r\n" in lines or b": ping\n" in lines, lines
