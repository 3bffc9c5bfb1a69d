"""The whole path with real novels: upload, analyze, poll, download, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.conftest import SettingsFactory, corpus_file, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    ("name", "title", "chapters", "main_character"),
    [
        ("sanguo-yanyi.gb18030.txt", "三国演义", 120, "刘备"),
        ("alice-in-wonderland.txt", "Alice", 12, "Alice"),
    ],
)
async def test_corpus_novel_becomes_a_storyboard(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_settings: SettingsFactory,
    name: str,
    title: str,
    chapters: int,
    main_character: str,
) -> None:
    raw = corpus_file(name).read_bytes()
    settings = await prepare(make_settings(receive_wait_s=0.5, analyzer="offline"))
    client = await aiohttp_client(create_app(settings))

    response = await client.post(
        "/v1/novels", params={"title": title}, data=raw, headers={"Content-Type": "text/plain"}
    )
    assert response.status == 201, await response.text()
    novel = await response.json()
    assert novel["chars"] > 100_000
    accepted = await (await client.post(f"/v1/novels/{novel['novelId']}/analyze")).json()

    async def completed() -> dict[str, Any] | None:
        job: dict[str, Any] = await (await client.get(accepted["statusUrl"])).json()
        assert job["status"] not in ("failed", "cancelled"), job
        return job if job["status"] == "completed" else None

    job = await eventually(completed, within_s=120)
    storyboard = await (await client.get(job["storyboardUrl"])).json()
    assert storyboard["title"] == title
    assert storyboard["meta"]["chapterCount"] == chapters
    assert {s["chapterIndex"] for s in storyboard["scenes"]} == set(range(1, chapters + 1))
    assert storyboard["characters"][0]["name"] == main_character
    assert job["summary"]["panels"] == sum(len(s["panels"]) for s in storyboard["scenes"])
