"""The fake OpenAI-compatible model (``harness.fake_llm``), served in a test's own loop."""

from __future__ import annotations

from pytest_aiohttp import AiohttpServer

from harness.fake_llm import (
    Budget,
    FakeLlm,
    Pace,
    Reply,
    Rule,
    Seen,
    error,
    hang,
    html,
    ok,
    smart_cast,
    smart_storyboard,
)

__all__ = [
    "Budget",
    "FakeLlm",
    "Pace",
    "Reply",
    "Rule",
    "Seen",
    "error",
    "hang",
    "html",
    "ok",
    "smart_cast",
    "smart_storyboard",
    "start_fake_llm",
]


async def start_fake_llm(aiohttp_server: AiohttpServer, fake: FakeLlm | None = None) -> FakeLlm:
    """Serve ``fake`` (a fresh one by default) on loopback; its ``base_url`` ends in ``/v1``."""
    fake = fake or FakeLlm()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("/v1"))
    return fake
