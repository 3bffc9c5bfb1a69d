"""Uploads through real HTTP: hostile JSON, bad titles and the text/plain charsets."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory

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
