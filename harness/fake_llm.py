"""A loopback imitation of the OpenAI Chat Completions API, for the tests and the benchmarks.

``POST /v1/chat/completions`` answers from, in order: the first rule that returns a reply
for the request, the queue of scripted replies, and otherwise a "smart" reply derived from
the prompt (a cast for pass A, scenes and panels for pass B), so whole novels work without
scripting. Every request is recorded with its body and headers. With ``required_key`` set,
a request without that bearer key is refused with a 401 before any of that.

Two settings make it behave like a hosted model rather than an instant one:

- a :class:`Pace` (time to first token, output tokens per second): a reply arrives after
  ``ttft_s + output_tokens / tokens_per_s``;
- a :class:`Budget` (requests and tokens per minute, over a sliding window of
  ``minute_s``): a request over either is refused with a 429 in DashScope's shape, code
  ``Throttling.RateQuota`` for requests and ``Throttling.AllocationQuota`` for tokens.
  A request's input tokens count from its arrival and its output tokens from its reply,
  as providers bill them; refused requests count towards neither.

Tokens are counted by :func:`qwen_like_tokens`, an approximation of a Qwen tokenizer. The
tests start the fake in their own loop (``tests/fake_llm.py``); the benchmark runs it as
``python -m harness.fake_llm --port N ...`` and reads ``GET /stats`` afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from service.analysis.llm_prompts import SHOT_TYPES, TEXT_CLOSE, TEXT_OPEN

__all__ = [
    "RATE_QUOTA",
    "TOKEN_QUOTA",
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
    "qwen_like_tokens",
    "smart_cast",
    "smart_storyboard",
]

RATE_QUOTA = "Throttling.RateQuota"
"""DashScope's code for a request over the requests-per-minute limit."""
TOKEN_QUOTA = "Throttling.AllocationQuota"
"""DashScope's code for a request over the tokens-per-minute limit."""
_RATE_MESSAGE = "Requests rate limit exceeded, please try again later."
_TOKEN_MESSAGE = "Allocated quota exceeded, please increase your quota limit."


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
TokenCounter = Callable[[str], int]

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_WORD = re.compile(r"[A-Za-z]+")
_SPACE = re.compile(r"\s")
# A Qwen-style BPE vocabulary holds most common Chinese words as one token and splits rarer
# characters; a classical text lands near 1.4 characters a token. English words take about
# 1.3 tokens each; digits, punctuation and JSON syntax about one token per two characters.
_CJK_TOKENS = 0.7
_WORD_TOKENS = 1.3
_OTHER_TOKENS = 0.5


def qwen_like_tokens(text: str) -> int:
    """An approximation of what a Qwen tokenizer makes of ``text``, at least 1."""
    cjk = len(_CJK.findall(text))
    words = _WORD.findall(text)
    other = len(text) - cjk - sum(map(len, words)) - len(_SPACE.findall(text))
    return max(1, math.ceil(cjk * _CJK_TOKENS + len(words) * _WORD_TOKENS + other * _OTHER_TOKENS))


@dataclass(frozen=True)
class Pace:
    """How fast replies come: time to first token, then output tokens per second (0: at
    once). Scripted replies with their own ``hang_s`` keep it instead."""

    ttft_s: float = 0.0
    tokens_per_s: float = 0.0

    def seconds(self, output_tokens: int) -> float:
        """How long a reply of ``output_tokens`` takes."""
        streaming = output_tokens / self.tokens_per_s if self.tokens_per_s else 0.0
        return self.ttft_s + streaming


@dataclass(frozen=True)
class Budget:
    """The account's limits over a sliding window of ``minute_s`` seconds; 0 is unlimited.

    A shorter ``minute_s`` with the same limits models a time-scaled run (see
    ``bench/model_pipeline.py``)."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    minute_s: float = 60.0


@dataclass
class Served:
    """One answered completion: its pass, tokens and how long its reply took."""

    kind: str
    input_tokens: int
    output_tokens: int
    seconds: float


class _Window:
    """Amounts stamped with when they were spent, summed over the last ``span_s``."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._entries: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, amount: int, now: float) -> None:
        self._entries.append((now, amount))
        self._total += amount

    def total(self, now: float) -> int:
        while self._entries and self._entries[0][0] <= now - self.span_s:
            self._total -= self._entries.popleft()[1]
        return self._total


class FakeLlm:
    """The fake server's state: scripted replies, rules, pace, budget and what it saw."""

    def __init__(
        self,
        *,
        pace: Pace | None = None,
        budget: Budget | None = None,
        count_tokens: TokenCounter = qwen_like_tokens,
        follow_panel_density: bool = False,
    ) -> None:
        """``follow_panel_density`` makes smart storyboards as dense as the prompt asks
        (about one panel per N characters) instead of two panels a chapter."""
        self.script: deque[Reply] = deque()
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.served: list[Served] = []
        self.throttled: Counter[str] = Counter()
        self.base_url = ""
        self.latency_s = 0.0
        self.pace = pace or Pace()
        self.budget = budget or Budget()
        self.count_tokens = count_tokens
        self.follow_panel_density = follow_panel_density
        self.required_key: str | None = None
        self.refused = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._released = asyncio.Event()
        self._ids = itertools.count(1)
        self._requests_spent = _Window(self.budget.minute_s)
        self._tokens_spent = _Window(self.budget.minute_s)

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
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/healthz", self._healthz)
        return app

    def stats(self) -> dict[str, Any]:
        """What it served and refused, for a benchmark to read after a run."""
        return {
            "requests": len(self.requests),
            "throttled": dict(self.throttled),
            "peak_in_flight": self.peak_in_flight,
            "served": [asdict(s) for s in self.served],
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle(self, request: web.Request) -> web.Response:
        seen = Seen(await request.json(), dict(request.headers))
        self.requests.append(seen)
        prompt_tokens = sum(self.count_tokens(str(m.get("content", ""))) for m in seen.messages)
        reply = self._choose(seen) or self._over_budget(prompt_tokens)
        if reply is None:
            reply = self.script.popleft() if self.script else Reply()
        if reply.status == 200 and reply.body is None and reply.raw is None:
            return await self._complete(seen, reply, prompt_tokens)
        return await self._answer(reply)

    async def _answer(self, reply: Reply) -> web.Response:
        """A scripted body, raw text or error, after its own delay."""
        await self._waiting(reply.hang_s or self.latency_s)
        if reply.raw is not None:
            return web.Response(text=reply.raw, status=reply.status, content_type="text/html")
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def _complete(self, seen: Seen, reply: Reply, prompt_tokens: int) -> web.Response:
        # A fixed delay comes first: a reply the client gave up on is never written.
        fixed = reply.hang_s or self.latency_s
        if fixed:
            await self._waiting(fixed)
        content = reply.content if reply.content is not None else self._smart(seen)
        output_tokens = self.count_tokens(content)
        seconds = fixed or self.pace.seconds(output_tokens)
        if not fixed:
            await self._waiting(seconds)
        self._tokens_spent.add(output_tokens, time.monotonic())
        self.served.append(Served(seen.kind, prompt_tokens, output_tokens, seconds))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        }
        return web.json_response(self._completion(seen, content, reply.finish_reason, usage))

    async def _waiting(self, seconds: float) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if seconds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), seconds)
        finally:
            self.in_flight -= 1

    @property
    def keys(self) -> list[str]:
        """The bearer key of every request, in order."""
        return [
            seen.headers.get("Authorization", "").removeprefix("Bearer ") for seen in self.requests
        ]

    def _choose(self, seen: Seen) -> Reply | None:
        wanted = self.required_key
        if wanted is not None and seen.headers.get("Authorization") != f"Bearer {wanted}":
            self.refused += 1
            return error(401, "invalid_api_key", "Incorrect API key provided.")
        for rule in self.rules:
            chosen = rule(seen)
            if chosen is not None:
                return chosen
        return None

    def _over_budget(self, prompt_tokens: int) -> Reply | None:
        """A 429 when this request would pass a limit; else the request is counted."""
        now, budget = time.monotonic(), self.budget
        rpm, tpm = budget.requests_per_minute, budget.tokens_per_minute
        if rpm and self._requests_spent.total(now) + 1 > rpm:
            self.throttled[RATE_QUOTA] += 1
            return error(429, RATE_QUOTA, _RATE_MESSAGE)
        if tpm and self._tokens_spent.total(now) + prompt_tokens > tpm:
            self.throttled[TOKEN_QUOTA] += 1
            return error(429, TOKEN_QUOTA, _TOKEN_MESSAGE)
        self._requests_spent.add(1, now)
        self._tokens_spent.add(prompt_tokens, now)
        return None

    def _smart(self, seen: Seen) -> str:
        if seen.kind != "storyboard":
            reply = smart_cast(seen.text)
        else:
            density = _panel_chars(seen) if self.follow_panel_density else None
            reply = smart_storyboard(seen.text, seen.cast_names, panel_chars=density)
        return json.dumps(reply, ensure_ascii=False)

    def _completion(
        self, seen: Seen, content: str, finish_reason: str, usage: dict[str, int]
    ) -> dict[str, Any]:
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


_DENSITY = re.compile(r"about one panel per (\d+) characters")


def _panel_chars(seen: Seen) -> int | None:
    match = _DENSITY.search(str(seen.messages[0].get("content", "")))
    return int(match[1]) if match else None


# --------------------------------------------------------------------------- smart replies

_MARKER = re.compile(r"^\[\[chapter (\d+): .*?\]\](?: \(continued\))?$", re.MULTILINE)
_SAID = re.compile(
    r"said (?:the )?([A-Z][a-z]+(?: [A-Z][a-z]+)?)|([\u4e00-\u9fff]{2,3})(?:曰|道)[：:]"
)
_NOT_NAMES = {"I", "He", "She", "It", "They", "We", "You", "This", "That", "But", "And"}
_SENTENCE = re.compile(r"(?<=[.!?。！？])[\"'”’」]*\s*")
_QUOTE = re.compile(r"[‘“「\"']([^’”」\"']{3,120})[’”」\"']")
MAX_PANELS_PER_SCENE = 8


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


def smart_storyboard(
    text: str, cast: list[str], *, panel_chars: int | None = None
) -> dict[str, Any]:
    """A plausible pass B reply. Without ``panel_chars``: a scene of up to two panels for
    each chapter marker. With it: about one panel per ``panel_chars`` characters of each
    chapter, in scenes of at most eight panels, as the prompt asks of a model."""
    markers = list(_MARKER.finditer(text))
    ends = [m.start() for m in markers[1:]] + [len(text)]
    scenes = []
    for marker, end in zip(markers, ends, strict=True):
        body = text[marker.end() : end]
        sentences = [s for s in _sentences(body) if len(s) > 15] or ["..."]
        wanted = 2 if panel_chars is None else max(1, round(len(body) / panel_chars))
        step = max(1, len(sentences) // wanted)
        chosen = sentences[::step][:wanted]
        for start in range(0, len(chosen), MAX_PANELS_PER_SCENE):
            group = chosen[start : start + MAX_PANELS_PER_SCENE]
            rich = panel_chars is not None
            panels = [_panel(s, cast, n, rich=rich) for n, s in enumerate(group)]
            names = list(dict.fromkeys(n for p in panels for n in p["characters"]))
            scenes.append(
                {
                    "chapter": int(marker[1]),
                    "location": f"the place of chapter {marker[1]}",
                    "summary": group[0][:120],
                    "characters": names,
                    "panels": panels,
                }
            )
    return {"scenes": scenes}


def _panel(sentence: str, cast: list[str], number: int, *, rich: bool = False) -> dict[str, Any]:
    names = [name for name in cast if name in sentence]
    quote = _QUOTE.search(sentence)
    dialogue = [{"speaker": names[0] if names else "narrator", "text": quote[1]}] if quote else []
    shot = SHOT_TYPES[number % len(SHOT_TYPES)]
    prompt = _IMAGE_PROMPT.format(shot=shot, figures=len(names) or 1) if rich else ""
    return {
        "shotType": shot,
        "description": sentence[:160],
        "characters": names,
        "dialogue": dialogue,
        "narration": None,
        "imagePrompt": prompt or f"Illustration: {sentence[:100]}",
    }


# What the prompt asks of an image prompt: English, self-contained, setting, figures by
# looks, action, mood and framing; about the length a model writes.
_IMAGE_PROMPT = (
    "A {shot} comic panel in ink and soft watercolour. Setting: a period scene with "
    "detailed architecture and natural light. Figures: {figures} in period costume, drawn by "
    "their looks, with expressive faces and dynamic poses. Action: the moment the text "
    "describes, caught mid-movement. Mood: tense and dramatic. Framing: rule of thirds, "
    "clear silhouettes, a detailed background."
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


# --------------------------------------------------------------------------- as a process


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the fake model on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-s", type=float, default=0.0, help="time to first token")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="output speed, 0: instant")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute, 0: unlimited")
    parser.add_argument("--tpm", type=int, default=0, help="tokens per minute, 0: unlimited")
    parser.add_argument("--minute-s", type=float, default=60.0, help="the budget's window")
    parser.add_argument(
        "--follow-panel-density", action="store_true", help="as many panels as the prompt asks"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until killed: ``python -m harness.fake_llm --port N``."""
    args = _arguments(argv)
    fake = FakeLlm(
        pace=Pace(args.ttft_s, args.tokens_per_s),
        budget=Budget(args.rpm, args.tpm, args.minute_s),
        follow_panel_density=args.follow_panel_density,
    )
    web.run_app(fake.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
