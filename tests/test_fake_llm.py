"""The fake model's pace and budget, over real HTTP, as the model client sees them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from harness.fake_llm import RATE_QUOTA, TOKEN_QUOTA, qwen_like_tokens
from service.analysis.chapters import split_chapters
from service.analysis.llm import SOURCE_CHARS_PER_PANEL, plan_chunks
from service.analysis.llm_client import ChatMessage, ClientConfig, LlmClient
from service.analysis.llm_limits import LlmLimiter
from service.analysis.llm_prompts import cast_messages, parse_storyboard, storyboard_messages
from service.errors import JobError
from tests.fake_llm import Budget, FakeLlm, Pace, start_fake_llm

MESSAGES: list[ChatMessage] = cast_messages(
    title="Test", part=1, parts=1, text="[[chapter 1: One]]\n“Hello,” said Alice. She ran."
)


async def post(fake: FakeLlm, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """One chat completion request; its status and JSON body."""
    payload = body or {"model": "qwen-plus", "messages": MESSAGES}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/chat/completions", json=payload) as response,
    ):
        return response.status, await response.json()


def client(fake: FakeLlm, retries: int = 0) -> LlmClient:
    config = ClientConfig(base_url=fake.base_url, api_key="sk-test", model="m", max_retries=retries)
    return LlmClient(config, LlmLimiter(concurrency=4))


async def test_a_reply_takes_time_to_first_token_plus_its_tokens_at_the_pace(
    aiohttp_server: AiohttpServer,
) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm(pace=Pace(ttft_s=0.2, tokens_per_s=50)))
    started = time.perf_counter()
    status, body = await post(fake)
    elapsed = time.perf_counter() - started
    assert status == 200
    (served,) = fake.served
    assert served.output_tokens == body["usage"]["completion_tokens"]
    assert served.seconds == pytest.approx(0.2 + served.output_tokens / 50)
    assert elapsed >= served.seconds


async def test_over_the_requests_per_minute_a_dashscope_429(aiohttp_server: AiohttpServer) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm(budget=Budget(requests_per_minute=2)))
    statuses = [(await post(fake))[0] for _ in range(2)]
    status, body = await post(fake)
    assert statuses == [200, 200]
    assert status == 429
    assert body["error"]["code"] == RATE_QUOTA
    assert "Requests rate limit exceeded" in body["error"]["message"]
    assert fake.throttled == {RATE_QUOTA: 1}


async def test_over_the_tokens_per_minute_a_429_the_client_waits_out(
    aiohttp_server: AiohttpServer,
) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm(budget=Budget(tokens_per_minute=600)))
    assert (await post(fake))[0] == 200
    status, body = await post(fake)
    assert (status, body["error"]["code"]) == (429, TOKEN_QUOTA)
    # Transient, so retried, and not mistaken for an exhausted free tier.
    with pytest.raises(JobError) as caught:
        await client(fake).complete_json(MESSAGES, max_tokens=10)
    assert caught.value.code == "llm_rate_limited"
    assert caught.value.transient


async def test_the_budget_window_slides(aiohttp_server: AiohttpServer) -> None:
    budget = Budget(requests_per_minute=1, minute_s=0.3)
    fake = await start_fake_llm(aiohttp_server, FakeLlm(budget=budget))
    assert (await post(fake))[0] == 200
    assert (await post(fake))[0] == 429
    await asyncio.sleep(0.4)
    assert (await post(fake))[0] == 200
    # A refused request spent nothing, so one refusal does not lead to the next.
    assert fake.throttled == {RATE_QUOTA: 1}
    assert len(fake.served) == 2


async def test_stats_list_what_was_served_and_refused(aiohttp_server: AiohttpServer) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm(budget=Budget(requests_per_minute=1)))
    await post(fake)
    await post(fake)
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.base_url.removesuffix("/v1") + "/stats") as response,
    ):
        stats = await response.json()
    assert stats["requests"] == 2
    assert stats["throttled"] == {RATE_QUOTA: 1}
    assert [s["kind"] for s in stats["served"]] == ["cast"]


async def test_storyboards_as_dense_as_the_prompt_asks(aiohttp_server: AiohttpServer) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm(follow_panel_density=True))
    sentence = "The little party walked on along the riverbank in the rain. "
    text = "CHAPTER I.\nThe Start\n\n" + sentence * 200
    (chunk,) = plan_chunks(split_chapters(text), 24_000, "Test")
    messages = storyboard_messages(
        title="Test",
        part=1,
        parts=1,
        text=chunk.text,
        chapters=chunk.chapters,
        cast=[],
        previous_summary="",
        panel_chars=SOURCE_CHARS_PER_PANEL,
    )
    data, _ = await client(fake).complete_json(messages, max_tokens=8192)
    board = parse_storyboard(data, chunk.chapters)
    panels = sum(len(scene.panels) for scene in board.scenes)
    assert panels == round(len(sentence) * 200 / SOURCE_CHARS_PER_PANEL)
    assert all(len(scene.panels) <= 8 for scene in board.scenes)


def test_tokens_are_counted_like_a_qwen_tokenizer_roughly() -> None:
    chinese = "却说张飞拍马赶到关下，关上矢石如雨，不得进而回。" * 10
    english = "Alice was beginning to get very tired of sitting by her sister. " * 10
    assert 1.2 < len(chinese) / qwen_like_tokens(chinese) < 1.8
    assert 3.0 < len(english) / qwen_like_tokens(english) < 5.0
    reply = json.dumps({"scenes": [{"chapter": 1}]})
    assert qwen_like_tokens(reply) > 0
