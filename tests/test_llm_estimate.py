"""The cost estimate: the analyzer's own chunk plan, the prompts' own sizes, the prices."""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpServer

from service.analysis.llm import LlmAnalyzer, chunk_chars, plan_novel
from service.analysis.llm_estimate import (
    CAST_REPLY_TOKENS,
    estimate_cost,
    estimate_tokens,
    expected_panels,
)
from service.ports import NovelText
from tests.fake_llm import FakeLlm, start_fake_llm
from tests.test_llm import MemoryBlobs, llm_settings, make_novel


async def _ignore(fraction: float, stage: str) -> None:
    return None


async def test_the_estimate_plans_the_requests_the_analyzer_sends(
    aiohttp_server: AiohttpServer,
) -> None:
    fake = await start_fake_llm(aiohttp_server, FakeLlm())
    settings = llm_settings(fake)
    text = make_novel(5)
    analyzer = LlmAnalyzer.from_settings(settings, MemoryBlobs())
    try:
        board = await analyzer.analyze(NovelText("n", "A Tale", text), _ignore)
    finally:
        await analyzer.aclose()
    estimate = estimate_cost(text, "A Tale", settings)
    assert estimate.requests == board.meta.usage["requests"] == fake.calls()
    assert estimate.chunks == board.meta.chunk_count
    assert estimate.chapters == board.meta.chapter_count == 5


def test_tokens_and_price_follow_the_prompts_and_the_prices() -> None:
    settings = llm_settings(
        FakeLlm(), llm_input_price_per_million=2.0, llm_output_price_per_million=10.0
    )
    text = make_novel(4)
    _, chunks = plan_novel(text, "A Tale", chunk_chars(settings))
    estimate = estimate_cost(text, "A Tale", settings)
    # Both passes read the whole text once.
    assert estimate.input_tokens > 2 * estimate_tokens(text)
    assert estimate.output_tokens >= len(chunks) * CAST_REPLY_TOKENS + sum(
        map(expected_panels, chunks)
    )
    price = (estimate.input_tokens * 2.0 + estimate.output_tokens * 10.0) / 1e6
    assert estimate.price == pytest.approx(price)
    assert estimate.currency == "CNY"
    assert ("price", f"CNY {price:.4f} (2 in, 10 out per million tokens)") in estimate.rows()


def test_chinese_counts_more_tokens_a_character_than_english() -> None:
    chinese, english = "话说天下大势，分久必合，合久必分。", "Alice was beginning to get tired."
    assert estimate_tokens(chinese) / len(chinese) > 2 * estimate_tokens(english) / len(english)
