"""The upload limits, worded as the API words its refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.uploads import (
    BODY_TOO_LARGE,
    UploadRefused,
    check_novel_length,
    check_upload_size,
)
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


def test_limits_let_what_fits_through(local_settings: SettingsFactory) -> None:
    settings = local_settings(max_body_bytes=10, max_novel_chars=3)
    check_upload_size(10, settings)
    check_novel_length("三国志", settings)
    with pytest.raises(UploadRefused) as body:
        check_upload_size(11, settings)
    with pytest.raises(UploadRefused) as chars:
        check_novel_length("三国演义", settings)
    assert (body.value.status, body.value.code) == (413, "payload_too_large")
    assert (chars.value.status, chars.value.code) == (422, "novel_too_large")
    assert chars.value.message == "the novel has 4 characters; the limit is 3"


async def test_refusals_say_what_the_api_says(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    settings = local_settings(max_body_bytes=1000, max_novel_chars=50)
    api = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    text = "话说天下大势，分久必合，合久必分。" * 5
    headers = {"Content-Type": "text/plain"}
    too_long = await api.post("/v1/novels?title=T", data=text.encode(), headers=headers)
    too_big = await api.post("/v1/novels?title=T", data=b"x" * 1001, headers=headers)

    with pytest.raises(UploadRefused) as chars:
        check_novel_length(text, settings)
    assert too_long.status == chars.value.status
    assert (await too_long.json())["error"] == {
        "code": chars.value.code,
        "message": chars.value.message,
    }
    with pytest.raises(UploadRefused) as body:
        check_upload_size(1001, settings)
    assert too_big.status == body.value.status
    error = (await too_big.json())["error"]
    assert error == {"code": body.value.code, "message": BODY_TOO_LARGE}
    assert body.value.message.startswith(BODY_TOO_LARGE)
