"""The CLI's HTTP client against the real app on aiohttp's test server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.client import default_title, submit_file, title_for
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, local_settings: SettingsFactory) -> Client:
    settings = local_settings(receive_wait_s=0.5)
    return await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))


def _base(api: Client) -> str:
    return str(api.make_url("")).rstrip("/")


async def _title_of_job(api: Client, job_id: str) -> Any:
    job = await (await api.get(f"/v1/jobs/{job_id}")).json()
    novel = await (await api.get(f"/v1/novels/{job['novelId']}")).json()
    return novel["title"]


def test_the_title_is_the_text_s_own_else_the_file_name() -> None:
    assert title_for("a/sanguo.gb18030.txt", "三国演义\n\n第一回　宴桃园") == "三国演义"
    assert title_for("a/sanguo.gb18030.txt", "第一回　宴桃园\n话说天下大势。") == "sanguo"
    assert title_for("-", "Chapter 1\n\nIt begins.") == default_title("-") == "stdin"


@pytest.mark.parametrize(
    ("name", "text", "given", "expected"),
    [
        ("three.gb18030.txt", "三国演义\n\n第一回　宴桃园\n\n话说天下大势。", None, "三国演义"),
        ("three.gb18030.txt", "第一回　宴桃园\n\n话说天下大势。", None, "three"),
        ("three.gb18030.txt", "三国演义\n\n第一回　宴桃园\n\n话说天下大势。", "Mine", "Mine"),
    ],
)
async def test_submit_sends_the_text_title_unless_one_is_given(
    api: Client, tmp_path: Path, name: str, text: str, given: str | None, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("gb18030"))
    job_id = await submit_file(_base(api), str(path), given)
    assert await _title_of_job(api, job_id) == expected
