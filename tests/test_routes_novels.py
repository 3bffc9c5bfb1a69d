"""Uploads through real HTTP: hostile JSON, bad titles and the text/plain charsets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from service import jobs
from service.analysis.llm_estimate import estimate_cost
from service.app import create_app
from service.appkeys import RUNTIME
from service.novels import checkpoint_prefix, storyboard_key, storyboard_prefix, text_key
from service.text import normalise_text
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.fake_llm import start_fake_llm
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

JSON = {"Content-Type": "application/json"}
PLAIN = {"Content-Type": "text/plain"}

# Far past any recursion limit: the decoder must give up cleanly, not crash the request.
DEEP_ARRAYS = "[" * 100_000 + "]" * 100_000
DEEP_OBJECTS = '{"a":' * 50_000 + "1" + "}" * 50_000
# Deep enough to reach the model's validation, shallow enough for any JSON decoder.
SHALLOW_ARRAYS = "[" * 100 + "]" * 100
SHALLOW_OBJECTS = '{"a":' * 100 + "1" + "}" * 100


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, local_settings: SettingsFactory) -> Client:
    """The API without a worker: uploads only need the stores."""
    app = create_app(local_settings(), analyzer=CountingAnalyzer(), worker=False)
    return await aiohttp_client(app)


async def _error(response: Any, status: int, code: str) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return str(body["error"]["message"])


def _document(where: str, value: str) -> str:
    fields = {"title": '"t"', "text": '"some text"'}
    if where == "extra":
        fields["extra"] = value
    else:
        fields[where] = value
    return "{" + ", ".join(f'"{name}": {raw}' for name, raw in fields.items()) + "}"


@pytest.mark.parametrize("where", ["title", "text", "extra"])
@pytest.mark.parametrize("nested", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_json_nested_past_any_limit_is_400(client: Client, nested: str, where: str) -> None:
    response = await client.post("/v1/novels", data=_document(where, nested), headers=JSON)
    await _error(response, 400, "invalid_json")


@pytest.mark.parametrize("where", ["title", "text"])
@pytest.mark.parametrize("nested", [SHALLOW_ARRAYS, SHALLOW_OBJECTS], ids=["arrays", "objects"])
async def test_json_nested_value_for_a_string_field_is_422(
    client: Client, nested: str, where: str
) -> None:
    response = await client.post("/v1/novels", data=_document(where, nested), headers=JSON)
    message = await _error(response, 422, "validation_error")
    assert message.startswith(f"{where}:"), message


@pytest.mark.parametrize("nested", [SHALLOW_ARRAYS, SHALLOW_OBJECTS], ids=["arrays", "objects"])
async def test_json_nested_extra_field_is_ignored(client: Client, nested: str) -> None:
    response = await client.post("/v1/novels", data=_document("extra", nested), headers=JSON)
    assert response.status == 201, await response.text()
    assert (await response.json())["title"] == "t"


async def test_json_upload_still_accepts_a_plain_document(client: Client) -> None:
    body = json.dumps({"title": "Tale", "text": "Once upon a time."})
    response = await client.post("/v1/novels", data=body, headers=JSON)
    assert response.status == 201, await response.text()


async def _upload(client: Client, via: str, title: str, text: str = "some text") -> Any:
    if via == "json":
        return await client.post("/v1/novels", json={"title": title, "text": text})
    return await client.post(
        "/v1/novels", params={"title": title}, data=text.encode(), headers=PLAIN
    )


@pytest.mark.parametrize(
    "document",
    [
        '{"title": "t", "text": "abc \\ud800 def"}',
        '{"title": "t", "text": "abc \\udfff"}',
        '{"title": "t", "text": "\\ude00\\ud83d reversed pair"}',
        '{"title": "\\ud800", "text": "abc"}',
        '{"title": "a \\udc80 b", "text": "abc"}',
    ],
)
async def test_json_lone_surrogate_is_422(client: Client, document: str) -> None:
    response = await client.post("/v1/novels", data=document, headers=JSON)
    message = await _error(response, 422, "validation_error")
    assert "surrogate" in message, message


async def test_json_surrogate_pair_is_one_character(client: Client) -> None:
    document = '{"title": "\\ud83d\\ude00", "text": "smile \\ud83d\\ude00"}'
    response = await client.post("/v1/novels", data=document, headers=JSON)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["title"] == "\U0001f600"
    assert body["chars"] == len("smile \U0001f600")


@pytest.mark.parametrize("via", ["json", "plain"])
@pytest.mark.parametrize("title", ["", " ", "   ", "\t\n", "\u3000", " " * 600])
async def test_blank_title_is_422_on_both_paths(client: Client, via: str, title: str) -> None:
    response = await _upload(client, via, title)
    message = await _error(response, 422, "validation_error")
    assert "title" in message, message


@pytest.mark.parametrize("via", ["json", "plain"])
@pytest.mark.parametrize(
    ("title", "stored"),
    [(" Tale ", "Tale"), ("\u3000三国\u3000", "三国"), (" " + "x" * 500 + " ", "x" * 500)],
)
async def test_title_is_stripped_then_measured(
    client: Client, via: str, title: str, stored: str
) -> None:
    response = await _upload(client, via, title)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["title"] == stored
    novel = await (await client.get(f"/v1/novels/{created['novelId']}")).json()
    assert novel["title"] == stored


@pytest.mark.parametrize("via", ["json", "plain"])
async def test_title_over_500_characters_is_422(client: Client, via: str) -> None:
    await _error(await _upload(client, via, "x" * 501), 422, "validation_error")


async def _stored_text(client: Client, novel_id: str) -> str:
    data = await client.app[RUNTIME].backend.blobs.get(text_key(novel_id))
    return data.decode("utf-8")


@pytest.mark.parametrize(
    "query",
    ["title=%ff%fe", "title=ok%C3", "title=%ED%A0%80", "title=%C0%AF", "x=1&%74itle=%ff"],
    ids=["not-utf8", "truncated", "encoded-surrogate", "overlong", "encoded-name"],
)
async def test_plain_title_that_is_not_utf8_is_422(client: Client, query: str) -> None:
    response = await client.post(f"/v1/novels?{query}", data=b"some text", headers=PLAIN)
    message = await _error(response, 422, "validation_error")
    assert "UTF-8" in message, message


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("title=%E4%B8%89%E5%9B%BD", "三国"),
        ("title=a+b%20c", "a b c"),
        ("title=x&title=%ff", "x"),  # the first title counts, as it always did
        ("y=%ff&title=x", "x"),  # other parameters are not ours to judge
    ],
)
async def test_plain_title_is_percent_decoded_as_utf8(
    client: Client, query: str, title: str
) -> None:
    response = await client.post(f"/v1/novels?{query}", data=b"some text", headers=PLAIN)
    assert response.status == 201, await response.text()
    assert (await response.json())["title"] == title


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("gb18030", "小说"),  # its bytes are also valid UTF-8: detection would read "С˵"
        ("GBK", "话说天下大势"),
        ("utf-16", "你好，世界"),
        ("utf-16-le", "你好，世界"),
        ("UTF-16BE", "你好，世界"),
        ("latin-1", "café crème"),
        ("shift_jis", "吾輩は猫である"),
        ("big5", "天下大勢"),
        ('"utf-8"', "quoted charset"),
    ],
)
async def test_plain_upload_honours_the_declared_charset(
    client: Client, charset: str, text: str
) -> None:
    encoding = charset.strip('"')
    response = await client.post(
        "/v1/novels?title=t",
        data=text.encode(encoding),
        headers={"Content-Type": f"text/plain; charset={charset}"},
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["chars"] == len(text)
    assert await _stored_text(client, created["novelId"]) == text


@pytest.mark.parametrize(
    "charset", ["klingon", '""', "base64", "rot13", "zlib", "punycode", "idna", "unicode_escape"]
)
async def test_plain_upload_in_an_unknown_charset_is_415(client: Client, charset: str) -> None:
    response = await client.post(
        "/v1/novels?title=t",
        data=b"some text",
        headers={"Content-Type": f"text/plain; charset={charset}"},
    )
    await _error(response, 415, "unsupported_charset")


@pytest.mark.parametrize(
    ("charset", "data"),
    [
        ("utf-8", "天下大势".encode("gb18030")),
        ("ascii", "café".encode()),
        ("utf-16", b"\xff\xfe\x00\xd8"),  # a BOM, then half a surrogate pair
        ("utf-16-le", b"abc"),  # an odd number of bytes
        ("shift_jis", b"\x81"),
    ],
)
async def test_plain_upload_that_does_not_decode_in_its_charset_is_415(
    client: Client, charset: str, data: bytes
) -> None:
    response = await client.post(
        "/v1/novels?title=t",
        data=data,
        headers={"Content-Type": f"text/plain; charset={charset}"},
    )
    message = await _error(response, 415, "undecodable_text")
    assert charset in message, message


async def test_plain_upload_decoding_to_a_lone_surrogate_is_422(client: Client) -> None:
    response = await client.post(
        "/v1/novels?title=t",
        data=b"half a pair: +2AA-",  # UTF-7 for U+D800 on its own
        headers={"Content-Type": "text/plain; charset=utf-7"},
    )
    message = await _error(response, 422, "validation_error")
    assert "surrogate" in message, message


async def test_plain_upload_without_charset_still_detects_the_encoding(client: Client) -> None:
    text = "第一回　宴桃园豪杰三结义"
    for data in (text.encode(), text.encode("gb18030"), text.encode("utf-16")):
        response = await client.post("/v1/novels?title=t", data=data, headers=PLAIN)
        assert response.status == 201, await response.text()
        assert await _stored_text(client, (await response.json())["novelId"]) == text


# --- the latest job and storyboard_pending -----------------------------------------------


async def _api(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory, *, worker: bool
) -> Client:
    settings = await prepare(make_settings(receive_wait_s=0.5))
    return await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer(), worker=worker))


async def _new_novel(client: Client, title: str = "Tale", text: str = "Once upon a time.") -> str:
    response = await client.post("/v1/novels", json={"title": title, "text": text})
    assert response.status == 201, await response.text()
    return str((await response.json())["novelId"])


async def _analyze(client: Client, novel_id: str, **headers: str) -> dict[str, Any]:
    response = await client.post(f"/v1/novels/{novel_id}/analyze", headers=headers)
    assert response.status == 202, await response.text()
    return dict(await response.json())


async def test_a_queued_first_job_makes_the_storyboard_pending(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=False)
    novel_id = await _new_novel(client)
    before = await (await client.get(f"/v1/novels/{novel_id}")).json()
    assert before["latestJob"] is None
    await _error(await client.get(f"/v1/novels/{novel_id}/storyboard"), 404, "not_found")

    job = await _analyze(client, novel_id)

    message = await _error(
        await client.get(f"/v1/novels/{novel_id}/storyboard"), 404, "storyboard_pending"
    )
    assert job["statusUrl"] in message
    novel = await (await client.get(f"/v1/novels/{novel_id}")).json()
    assert novel["latestJob"] == {"jobId": job["jobId"], "status": "queued"}


async def test_a_cancelled_first_job_leaves_a_plain_404(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=False)
    novel_id = await _new_novel(client)
    job = await _analyze(client, novel_id)
    assert (await client.post(f"/v1/jobs/{job['jobId']}/cancel")).status == 200

    await _error(await client.get(f"/v1/novels/{novel_id}/storyboard"), 404, "not_found")
    novel = await (await client.get(f"/v1/novels/{novel_id}")).json()
    assert novel["latestJob"] == {"jobId": job["jobId"], "status": "cancelled"}


async def test_the_newest_job_is_latest_and_a_finished_storyboard_is_served(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=True)
    novel_id = await _new_novel(client)
    first = await _analyze(client, novel_id)

    async def completed() -> bool:
        job = await (await client.get(first["statusUrl"])).json()
        return bool(job["status"] == "completed")

    await eventually(completed)
    response = await client.get(f"/v1/novels/{novel_id}/storyboard")
    assert response.status == 200
    assert (await response.json())["meta"]["jobId"] == first["jobId"]
    novel = await (await client.get(f"/v1/novels/{novel_id}")).json()
    assert novel["latestJob"] == {"jobId": first["jobId"], "status": "completed"}
    assert novel["storyboard"]["panels"] >= 1


async def test_a_just_completed_first_job_serves_its_storyboard_before_it_is_published(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=False)
    novel_id = await _new_novel(client)
    job_id = (await _analyze(client, novel_id))["jobId"]
    backend = client.app[RUNTIME].backend
    # A worker's steps up to its completion, stopped before it points the novel at it.
    key = storyboard_key(novel_id, job_id, 1)
    await backend.blobs.put(key, b'{"novelId": "n"}', content_type="application/json")
    assert await backend.jobs.apply(job_id, jobs.start(1)) is not None
    assert await backend.jobs.apply(job_id, jobs.complete(1, key)) is not None

    response = await client.get(f"/v1/novels/{novel_id}/storyboard")

    assert response.status == 200, await response.text()
    assert await response.json() == {"novelId": "n"}


# --- GET /v1/novels ------------------------------------------------------------------------

ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


async def _two_users(aiohttp_client: AiohttpClient, make_settings: SettingsFactory) -> Client:
    keys = {hashlib.sha256(f"{u}-key".encode()).hexdigest(): u for u in ("alice", "bob")}
    settings = await prepare(make_settings(auth_api_keys=keys))
    return await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer(), worker=False))


async def _upload_as(client: Client, who: dict[str, str], title: str) -> str:
    body = {"title": title, "text": f"The text of {title}."}
    response = await client.post("/v1/novels", json=body, headers=who)
    assert response.status == 201, await response.text()
    return str((await response.json())["novelId"])


async def _pages(client: Client, path: str, who: dict[str, str], limit: int) -> list[Any]:
    pages: list[Any] = []
    cursor: str | None = None
    while True:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        response = await client.get(path, params=params, headers=who)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert set(body) == {"items", "nextCursor"}
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


async def test_each_user_lists_their_own_novels_newest_first(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_users(aiohttp_client, make_settings)
    alices = [await _upload_as(client, ALICE, f"Tale {n}") for n in range(5)]
    bobs = [await _upload_as(client, BOB, f"Saga {n}") for n in range(2)]
    analyzed = await client.post(f"/v1/novels/{alices[1]}/analyze", headers=ALICE)
    job_id = (await analyzed.json())["jobId"]

    pages = await _pages(client, "/v1/novels", ALICE, limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    items = [item for page in pages for item in page]
    assert [item["novelId"] for item in items] == alices[::-1]
    second = items[3]
    assert second == {
        "novelId": alices[1],
        "title": "Tale 1",
        "chars": len("The text of Tale 1."),
        "createdAt": second["createdAt"],
        "latestJobId": job_id,
        "latestJobStatus": "queued",
    }
    assert items[0]["latestJobId"] is None
    assert items[0]["latestJobStatus"] is None
    theirs = await (await client.get("/v1/novels", headers=BOB)).json()
    assert [item["novelId"] for item in theirs["items"]] == bobs[::-1]
    assert theirs["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "abc", "", "\u0661", "1" * 5000])
async def test_a_limit_outside_1_to_100_is_400(client: Client, limit: str) -> None:
    response = await client.get("/v1/novels", params={"limit": limit})
    message = await _error(response, 400, "validation_error")
    assert "limit" in message


async def test_a_cursor_from_anywhere_else_is_400_invalid_cursor(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_users(aiohttp_client, make_settings)
    for n in range(3):
        await _upload_as(client, ALICE, f"Tale {n}")
    await _upload_as(client, BOB, "Saga")
    first = await (await client.get("/v1/novels?limit=1", headers=ALICE)).json()
    cursor = first["nextCursor"]
    assert cursor

    for bad in ("junk", cursor[:-3], cursor + "x", "A" * 600):
        response = await client.get("/v1/novels", params={"cursor": bad}, headers=ALICE)
        await _error(response, 400, "invalid_cursor")
    # Bob gets an error, never Alice's novels.
    response = await client.get("/v1/novels", params={"cursor": cursor}, headers=BOB)
    await _error(response, 400, "invalid_cursor")
    jobs = await client.get("/v1/jobs", params={"cursor": cursor}, headers=ALICE)
    await _error(jobs, 400, "invalid_cursor")
    ok = await client.get("/v1/novels", params={"cursor": cursor, "limit": "5"}, headers=ALICE)
    assert len((await ok.json())["items"]) == 2


# --- a replayed analyze ----------------------------------------------------------------------


async def test_a_replayed_analyze_reports_the_job_as_it_is_now(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=False)
    novel_id = await _new_novel(client)
    key = {"Idempotency-Key": "replay-me"}
    first = await _analyze(client, novel_id, **key)
    assert (first["status"], first["message"]) == (
        "queued",
        "Analysis queued. Use the statusUrl to check progress.",
    )
    store = client.app[RUNTIME].backend.jobs
    assert await store.apply(first["jobId"], jobs.start(1)) is not None

    response = await client.post(f"/v1/novels/{novel_id}/analyze", headers=key)
    assert response.status == 202
    assert response.headers["Idempotent-Replayed"] == "true"
    running = await response.json()
    assert running["jobId"] == first["jobId"]
    assert running["status"] == "running"
    assert running["message"].startswith("Analysis running.")
    assert "queued" not in running["message"]
    view = await (await client.get(running["statusUrl"])).json()
    assert view["status"] == running["status"]

    assert (await client.post(f"/v1/jobs/{first['jobId']}/cancel")).status == 200
    cancelled = await _analyze(client, novel_id, **key)
    assert (cancelled["status"], cancelled["message"]) == ("cancelled", "Analysis cancelled.")


# --- DELETE /v1/novels/{novelId} -------------------------------------------------------------


async def _nothing_stored_for(client: Client, novel_id: str, job_ids: list[str]) -> None:
    backend = client.app[RUNTIME].backend
    prefixes = [f"novels/{novel_id}/", storyboard_prefix(novel_id)]
    prefixes += [checkpoint_prefix(job_id) for job_id in job_ids]
    for prefix in prefixes:
        assert await backend.blobs.list_keys(prefix) == [], prefix
    assert await backend.novels.get(novel_id) is None
    for job_id in job_ids:
        assert await backend.jobs.get(job_id) is None


async def test_delete_erases_the_novel_its_jobs_and_storyboards(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    keys = {hashlib.sha256(f"{u}-key".encode()).hexdigest(): u for u in ("alice", "bob")}
    settings = await prepare(make_settings(auth_api_keys=keys, receive_wait_s=0.5))
    client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    novel_id = await _upload_as(client, ALICE, "Tale")
    kept = await _upload_as(client, ALICE, "Other tale")
    job = await _analyze(client, novel_id, **ALICE)

    async def completed() -> bool:
        view = await (await client.get(job["statusUrl"], headers=ALICE)).json()
        return bool(view["status"] == "completed")

    await eventually(completed)
    path = f"/v1/novels/{novel_id}"
    await _error(await client.delete(path, headers=BOB), 404, "not_found")
    assert (await client.get(path, headers=ALICE)).status == 200, "Bob's attempt did nothing"

    response = await client.delete(path, headers=ALICE)

    assert response.status == 204
    assert await response.read() == b""
    for gone in (path, f"{path}/storyboard", job["statusUrl"], f"{job['statusUrl']}/storyboard"):
        await _error(await client.get(gone, headers=ALICE), 404, "not_found")
    await _error(await client.post(f"{path}/analyze", headers=ALICE), 404, "not_found")
    await _error(await client.delete(path, headers=ALICE), 404, "not_found")
    novels = await (await client.get("/v1/novels", headers=ALICE)).json()
    assert [item["novelId"] for item in novels["items"]] == [kept]
    jobs_left = await (await client.get("/v1/jobs", headers=ALICE)).json()
    assert jobs_left["items"] == []
    await _nothing_stored_for(client, novel_id, [job["jobId"]])


async def test_concurrent_deletes_of_one_novel_erase_it_once(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _api(aiohttp_client, make_settings, worker=False)
    for _ in range(4):
        novel_id = await _new_novel(client)
        job = await _analyze(client, novel_id)

        responses = await asyncio.gather(
            *(client.delete(f"/v1/novels/{novel_id}") for _ in range(20))
        )

        statuses = sorted(response.status for response in responses)
        assert statuses == [204] + [404] * 19, statuses
        await _nothing_stored_for(client, novel_id, [job["jobId"]])


async def test_a_job_running_when_its_novel_is_deleted_ends_and_leaves_nothing(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, make_settings: SettingsFactory
) -> None:
    fake = await start_fake_llm(aiohttp_server)
    fake.latency_s = 0.3  # each model call, so the job runs for seconds
    settings = await prepare(
        make_settings(
            llm_base_url=fake.base_url,
            STORYBOARD_LLM_API_KEY="sk-test",
            llm_max_output_tokens=256,
            llm_job_concurrency=1,
            receive_wait_s=0.5,
        )
    )
    client = await aiohttp_client(create_app(settings))
    backend = client.app[RUNTIME].backend
    novel_id = await _new_novel(client, text=_chapters(8))
    job_id = (await _analyze(client, novel_id))["jobId"]

    async def checkpointed() -> bool:
        return bool(await backend.blobs.list_keys(checkpoint_prefix(job_id)))

    # Running, with checkpoints already written: the worker is in the middle of it.
    await eventually(checkpointed)

    assert (await client.delete(f"/v1/novels/{novel_id}")).status == 204

    async def attempt_over() -> bool:
        depth = await backend.queue.depth()
        return depth.visible + depth.in_flight == 0

    await eventually(attempt_over)  # the message was deleted: the attempt has ended
    fake.release()
    await _nothing_stored_for(client, novel_id, [job_id])
    parked = await backend.dlq.depth()
    assert parked.visible + parked.in_flight == 0, "deleted, not retried or dead-lettered"


def _chapters(count: int) -> str:
    """A novel of ``count`` short chapters: one model chunk each with small replies."""
    paragraph = (
        "Alice walked by the river and met the White Rabbit near the mill. 'Oh dear, I shall "
        "be late,' said the White Rabbit. 'Where are you going?' said Alice."
    )
    return "\n\n".join(
        f"CHAPTER {n + 1}. Day {n + 1}\n\n" + "\n\n".join([paragraph] * 3) for n in range(count)
    )


# --- POST /v1/novels/{novelId}/estimate ----------------------------------------------------


async def test_estimate_is_the_analyzer_s_plan_priced_and_queues_nothing(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_users(aiohttp_client, make_settings)
    text = (
        "第一回　宴桃园豪杰三结义\n话说天下大势，分久必合，合久必分。\n\n"
        "第二回　张翼德怒鞭督邮\n且说董卓。"
    )
    created = await client.post("/v1/novels", json={"title": "三国", "text": text}, headers=ALICE)
    novel_id = (await created.json())["novelId"]

    response = await client.post(f"/v1/novels/{novel_id}/estimate", headers=ALICE)

    assert response.status == 200, await response.text()
    body = await response.json()
    settings = client.app[RUNTIME].settings
    expected = estimate_cost(normalise_text(text), "三国", settings)
    assert body == {
        "novelId": novel_id,
        "model": "qwen-plus",
        "chapters": 2,
        "chunks": expected.chunks,
        "requests": expected.requests,
        "inputTokens": expected.input_tokens,
        "outputTokens": expected.output_tokens,
        "price": {
            "currency": "CNY",
            "amount": pytest.approx(expected.price, abs=1e-6),
            "inputPerMillion": settings.llm_input_price_per_million,
            "outputPerMillion": settings.llm_output_price_per_million,
        },
    }
    novel = await client.get(f"/v1/novels/{novel_id}", headers=ALICE)
    assert (await novel.json())["latestJob"] is None


async def test_estimate_of_an_unknown_or_another_user_s_novel_is_404(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory
) -> None:
    client = await _two_users(aiohttp_client, make_settings)
    novel_id = await _upload_as(client, ALICE, "Tale")
    theirs = await client.post(f"/v1/novels/{novel_id}/estimate", headers=BOB)
    await _error(theirs, 404, "not_found")
    unknown = await client.post(f"/v1/novels/{'0' * 32}/estimate", headers=ALICE)
    await _error(unknown, 404, "not_found")
    anonymous = await client.post(f"/v1/novels/{novel_id}/estimate")
    assert anonymous.status == 401
