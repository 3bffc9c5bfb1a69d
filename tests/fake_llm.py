"""A loopback imitation of the OpenAI Chat Completions API, scripted per test.

``POST /v1/chat/completions`` answers from, in order: the first rule that returns a reply
for the request, the queue of scripted replies, and otherwise a "smart" reply derived from
the prompt (a cast for pass A, scenes and panels for pass B), so whole novels work without
scripting. Every request is recorded with its body and headers. With ``required_key`` set,
a request without that bearer key is refused with a 401 before any of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.analysis.llm_prompts import SHOT_TYPES, TEXT_CLOSE, TEXT_OPEN

__all__ = [
    "FakeLlm",
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


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, message content or a whole body, headers, a delay."""

    status: int = 200
    content: str | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    finish_reason: str = "stop"
    raw: str | None = None


def ok(content: dict[str, Any] | str, *, finish_reason: str = "stop") -> Reply:
    """A 200 whose message content is ``content`` (a dict is sent as its JSON)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return Reply(content=text, finish_reason=finish_reason)


def error(
    status: int, code: str = "", message: str = "error", *, headers: dict[str, str] | None = None
) -> Reply:
    """An error in the shape DashScope's compatible mode and OpenAI use."""
    body = {
        "error": {"code": code or None, "message": message, "type": code or "error", "param": None},
        "request_id": "fake-request",
    }
    return Reply(status=status, body=body, headers=headers or {})


def html(status: int = 200, text: str = "<html><body>Bad gateway</body></html>") -> Reply:
    """What a proxy in front of the model sends when the model fails."""
    return Reply(status=status, raw=text)


def hang(seconds: float = 30.0) -> Reply:
    """A reply that arrives only after ``seconds`` (or when the fake is released)."""
    return Reply(hang_s=seconds)


@dataclass(frozen=True)
class Seen:
    """A request as the fake received it."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages."""
        return list(self.body.get("messages", []))

    @property
    def kind(self) -> str:
        """``storyboard`` for pass B, ``cast`` for pass A (judged by the reply shape asked)."""
        return "storyboard" if '"scenes"' in str(self.messages[0]["content"]) else "cast"

    @property
    def is_repair(self) -> bool:
        """Whether this is a repair round (the rejected reply is in the conversation)."""
        return any(m["role"] == "assistant" for m in self.messages)

    @property
    def prompt(self) -> str:
        """The first user message."""
        return str(next(m["content"] for m in self.messages if m["role"] == "user"))

    @property
    def text(self) -> str:
        """The novel text of the chunk."""
        return self.prompt.split(TEXT_OPEN, 1)[1].rsplit(TEXT_CLOSE, 1)[0].strip("\n")

    @property
    def cast_names(self) -> list[str]:
        """Names in the character list a pass B prompt carries."""
        match = re.search(r"^Characters \(JSON[^\n]*\n(.*)$", self.prompt, re.MULTILINE)
        return [c["name"] for c in json.loads(match[1])] if match else []


Rule = Callable[[Seen], Reply | None]


class FakeLlm:
    """The fake server's state: scripted replies, rules, and the requests it saw."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.base_url = ""
        self.latency_s = 0.0
        self.required_key: str | None = None
        self.refused = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._released = asyncio.Event()
        self._ids = itertools.count(1)

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self.script.extend(replies)

    def calls(self, kind: str | None = None) -> int:
        """Requests received, of one kind (``cast`` or ``storyboard``) or all."""
        return sum(1 for seen in self.requests if kind is None or seen.kind == kind)

    def release(self) -> None:
        """End every hanging reply at once."""
        self._released.set()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        seen = Seen(await request.json(), dict(request.headers))
        self.requests.append(seen)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            reply = self._choose(seen)
            await self._delay(reply.hang_s or self.latency_s)
        finally:
            self.in_flight -= 1
        if reply.raw is not None:
            return web.Response(text=reply.raw, status=reply.status, content_type="text/html")
        if reply.body is not None:
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        content = reply.content if reply.content is not None else _smart(seen)
        return web.json_response(self._completion(seen, content, reply.finish_reason))

    async def _delay(self, seconds: float) -> None:
        if seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), seconds)

    @property
    def keys(self) -> list[str]:
        """The bearer key of every request, in order."""
        return [
            seen.headers.get("Authorization", "").removeprefix("Bearer ") for seen in self.requests
        ]

    def _choose(self, seen: Seen) -> Reply:
        wanted = self.required_key
        if wanted is not None and seen.headers.get("Authorization") != f"Bearer {wanted}":
            self.refused += 1
            return error(401, "invalid_api_key", "Incorrect API key provided.")
        for rule in self.rules:
            chosen = rule(seen)
            if chosen is not None:
                return chosen
        return self.script.popleft() if self.script else Reply()

    def _completion(self, seen: Seen, content: str, finish_reason: str) -> dict[str, Any]:
        prompt_chars = sum(len(str(m.get("content", ""))) for m in seen.messages)
        usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": seen.body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }


async def start_fake_llm(aiohttp_server: AiohttpServer) -> FakeLlm:
    """Serve a fresh fake on loopback; its ``base_url`` ends in ``/v1``."""
    fake = FakeLlm()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("/v1"))
    return fake


# --------------------------------------------------------------------------- smart replies

_MARKER = re.compile(r"^\[\[chapter (\d+): .*?\]\](?: \(continued\))?$", re.MULTILINE)
_SAID = re.compile(
    r"said (?:the )?([A-Z][a-z]+(?: [A-Z][a-z]+)?)|([\u4e00-\u9fff]{2,3})(?:曰|道)[：:]"
)
_NOT_NAMES = {"I", "He", "She", "It", "They", "We", "You", "This", "That", "But", "And"}
_SENTENCE = re.compile(r"(?<=[.!?。！？])[\"'”’」]*\s*")
_QUOTE = re.compile(r"[‘“「\"']([^’”」\"']{3,120})[’”」\"']")


def _smart(seen: Seen) -> str:
    if seen.kind == "storyboard":
        reply = smart_storyboard(seen.text, seen.cast_names)
    else:
        reply = smart_cast(seen.text)
    return json.dumps(reply, ensure_ascii=False)


def smart_cast(text: str) -> dict[str, Any]:
    """A plausible pass A reply: the names in speech tags, and the opening as summary."""
    body = _MARKER.sub("", text)
    found: Counter[str] = Counter()
    for match in _SAID.finditer(body):
        name = match[1] or match[2]
        if name not in _NOT_NAMES:
            found[name] += 1
    characters = [
        {
            "name": name,
            "aliases": [name.split()[-1]] if " " in name else [],
            "appearance": f"{name}, as the text describes them",
        }
        for name, _ in found.most_common(8)
    ]
    sentences = _sentences(body)
    return {"characters": characters, "summary": sentences[0][:160] if sentences else ""}


def smart_storyboard(text: str, cast: list[str]) -> dict[str, Any]:
    """A plausible pass B reply: a scene of up to two panels for each chapter marker."""
    markers = list(_MARKER.finditer(text))
    ends = [m.start() for m in markers[1:]] + [len(text)]
    scenes = []
    for marker, end in zip(markers, ends, strict=True):
        sentences = [s for s in _sentences(text[marker.end() : end]) if len(s) > 15] or ["..."]
        panels = [_panel(sentence, cast, n) for n, sentence in enumerate(sentences[:2])]
        names = list(dict.fromkeys(n for p in panels for n in p["characters"]))
        scenes.append(
            {
                "chapter": int(marker[1]),
                "location": f"the place of chapter {marker[1]}",
                "summary": sentences[0][:120],
                "characters": names,
                "panels": panels,
            }
        )
    return {"scenes": scenes}


def _panel(sentence: str, cast: list[str], number: int) -> dict[str, Any]:
    names = [name for name in cast if name in sentence]
    quote = _QUOTE.search(sentence)
    dialogue = [{"speaker": names[0] if names else "narrator", "text": quote[1]}] if quote else []
    return {
        "shotType": SHOT_TYPES[number % len(SHOT_TYPES)],
        "description": sentence[:160],
        "characters": names,
        "dialogue": dialogue,
        "narration": None,
        "imagePrompt": f"Illustration: {sentence[:100]}",
    }


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
