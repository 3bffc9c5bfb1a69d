"""What the model analyzer would spend on a novel, before it spends anything.

The estimate plans the novel exactly as :class:`~service.analysis.llm.LlmAnalyzer` does
(:func:`~service.analysis.llm.plan_novel` with the same chunk size), so it sends one pass A
and one pass B request per chunk. Its inputs are the real prompts: pass A's in full, pass
B's without what only pass A can tell (the character list and the previous chunk's
summary), for which a typical size is added. Its outputs follow what the prompts ask for:
a cast reply per chunk, and about one panel of :data:`PANEL_TOKENS` per
:data:`~service.analysis.llm.SOURCE_CHARS_PER_PANEL` characters of each chapter.

Tokens are counted as Model Studio's billing notes describe Qwen's tokenizer: about 1.5
Chinese (or Japanese, Korean) characters a token, and about 4 characters of other text.
That is a closer guess than the limiter's single ``llm_chars_per_token``, which is kept
pessimistic on purpose (Chinese-like for every text) so that rate limits hold.

Repair rounds and retries are not in the estimate: they happen only when a reply is
invalid or a request fails, and are counted in the storyboard's ``meta.usage`` when they do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.analysis.llm import (
    SOURCE_CHARS_PER_PANEL,
    Chunk,
    chunk_chars,
    plan_novel,
)
from service.analysis.llm_client import ChatMessage
from service.analysis.llm_prompts import cast_messages, storyboard_messages
from service.settings import Settings

__all__ = [
    "CAST_PROMPT_TOKENS",
    "CAST_REPLY_TOKENS",
    "PANEL_TOKENS",
    "SUMMARY_TOKENS",
    "Estimate",
    "estimate_cost",
    "estimate_tokens",
    "expected_panels",
]

CJK_CHARS_PER_TOKEN = 1.5
OTHER_CHARS_PER_TOKEN = 4.0
CAST_REPLY_TOKENS = 600
"""A pass A reply: a dozen characters with a line of appearance each, and a summary."""
PANEL_TOKENS = 160
"""What a panel's JSON usually costs: keys and syntax (~35 tokens), a one-sentence
description and a caption (~30), a line of dialogue (~20) and an English image prompt of
some fifty words (~70). Chunks are sized on a ceiling of
:data:`~service.analysis.llm.PANEL_REPLY_TOKENS` instead, so that no reply is cut off."""
CAST_PROMPT_TOKENS = 800
"""The character list a pass B prompt carries: those of the registry named in the chunk."""
SUMMARY_TOKENS = 120
"""The previous chunk's summary in a pass B prompt (at most three sentences)."""
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_MILLION = 1_000_000


def estimate_tokens(text: str) -> int:
    """Qwen tokens in ``text``, as Model Studio's billing notes put it (see above)."""
    cjk = len(_CJK.findall(text))
    return round(cjk / CJK_CHARS_PER_TOKEN + (len(text) - cjk) / OTHER_CHARS_PER_TOKEN)


def _prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) for m in messages)


def expected_panels(chunk: Chunk) -> int:
    """Panels pass B is asked for: about one per ``SOURCE_CHARS_PER_PANEL`` characters of
    each chapter, and at least one for each."""
    return sum(max(1, round(len(s.text) / SOURCE_CHARS_PER_PANEL)) for s in chunk.segments)


@dataclass(frozen=True, slots=True)
class Estimate:
    """Requests, tokens and price the model analyzer is expected to spend on a novel."""

    model: str
    chapters: int
    chunks: int
    requests: int
    input_tokens: int
    output_tokens: int
    currency: str
    input_price_per_million: float
    output_price_per_million: float

    @property
    def price(self) -> float:
        """The tokens at the configured prices per million."""
        return (
            self.input_tokens * self.input_price_per_million
            + self.output_tokens * self.output_price_per_million
        ) / _MILLION

    def rows(self) -> list[tuple[str, str]]:
        """The estimate as the lines of a two-column table."""
        prices = (
            f"{self.input_price_per_million:g} in, {self.output_price_per_million:g} out "
            "per million tokens"
        )
        return [
            ("model", self.model),
            ("chapters", f"{self.chapters:,}"),
            ("chunks", f"{self.chunks:,}"),
            ("requests", f"{self.requests:,} (one a chunk in each of the two passes)"),
            ("input tokens", f"{self.input_tokens:,}"),
            ("output tokens", f"{self.output_tokens:,}"),
            ("price", f"{self.currency} {_amount(self.price)} ({prices})"),
        ]


def _amount(price: float) -> str:
    # A short text costs a fraction of a cent; two decimals would say it is free.
    return f"{price:.2f}" if price >= 1 else f"{price:.4f}"


def estimate_cost(text: str, title: str, settings: Settings) -> Estimate:
    """The estimate for a novel's text under these settings (model, chunk size, prices)."""
    chapters, chunks = plan_novel(text, title, chunk_chars(settings))
    input_tokens = output_tokens = 0
    for chunk in chunks:
        a, b = _chunk_prompts(title, chunk, len(chunks))
        summary = SUMMARY_TOKENS if chunk.index else 0
        input_tokens += _prompt_tokens(a) + _prompt_tokens(b) + CAST_PROMPT_TOKENS + summary
        output_tokens += CAST_REPLY_TOKENS + expected_panels(chunk) * PANEL_TOKENS
    return Estimate(
        model=settings.llm_model,
        chapters=len(chapters),
        chunks=len(chunks),
        requests=2 * len(chunks),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        currency=settings.llm_price_currency,
        input_price_per_million=settings.llm_input_price_per_million,
        output_price_per_million=settings.llm_output_price_per_million,
    )


def _chunk_prompts(
    title: str, chunk: Chunk, parts: int
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The pass A prompt as sent, and pass B's without a character list or summary."""
    part = chunk.index + 1
    cast = cast_messages(title=title, part=part, parts=parts, text=chunk.text)
    board = storyboard_messages(
        title=title,
        part=part,
        parts=parts,
        text=chunk.text,
        chapters=chunk.chapters,
        cast=[],
        previous_summary="",
        panel_chars=SOURCE_CHARS_PER_PANEL,
    )
    return cast, board
