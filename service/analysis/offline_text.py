"""Text basics shared by the offline analyzer's modules: language, clipping and ranking."""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any, Literal

Language = Literal["zh", "en"]

# The CJK unified ideographs, as a range for a regular expression character class.
CJK = "\u4e00-\u9fff"
_CJK_RANGES = (("\u2e80", "\u9fff"), ("\uf900", "\ufaff"), ("\uff00", "\uffef"))


def is_cjk(ch: str) -> bool:
    """Whether a character is Chinese script or full-width punctuation."""
    return any(lo <= ch <= hi for lo, hi in _CJK_RANGES)


class SpanCover:
    """Whether positions fall inside any of a set of ``(start, stop)`` spans, in log time.

    Asking each span in turn costs time in proportion to the spans for every position, so
    a paragraph with many quotations and many sentences or names took quadratic time.
    Spans may overlap: a position is covered when some span starting before it reaches
    past it, and the furthest reach of the spans starting up to each point answers that.
    """

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(spans)
        self._starts = [start for start, _ in ordered]
        self._reach = list(accumulate((stop for _, stop in ordered), max))

    def covers(self, position: int, *, past_start: bool = False) -> bool:
        """Whether ``start <= position < stop`` for some span (``start < position`` with
        ``past_start``)."""
        find = bisect_left if past_start else bisect_right
        before = find(self._starts, position)
        return before > 0 and self._reach[before - 1] > position


def count_between(positions: list[int], start: int, stop: int) -> int:
    """How many of the sorted ``positions`` lie in ``start <= p < stop``."""
    return bisect_left(positions, stop) - bisect_left(positions, start)


def detect_language(text: str) -> Language:
    """Chinese when ideographs outnumber Latin letters in the opening of the text."""
    sample = text[:20_000]
    cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in sample if ch.isascii() and ch.isalpha())
    return "zh" if cjk > latin else "en"


def clip(text: str, limit: int) -> str:
    """The text on one line, cut to ``limit`` characters with an ellipsis if longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def words(text: str) -> tuple[str, ...]:
    """Whitespace-separated word lists, kept readable as one string in the source."""
    return tuple(text.split())


def by_count(names: Iterable[str], counts: Mapping[str, int]) -> list[str]:
    """The names, most counted first and ties in name order, so rankings are stable."""
    return sorted(names, key=lambda name: (-counts[name], name))


_JIEBA_LOCK = threading.Lock()
_jieba_tagger: Any = None


def jieba_tagger() -> Any:
    """The process's one jieba part-of-speech tagger (``jieba.posseg``), loaded on first use.

    Loading its dictionary takes about a second, so it happens once per process, under a
    lock because analyses run in worker threads; every later call returns the same tagger.
    jieba's segmentation is a deterministic function of its bundled dictionary.
    """
    global _jieba_tagger
    with _JIEBA_LOCK:
        if _jieba_tagger is None:
            import jieba  # type: ignore[import-untyped]
            import jieba.posseg  # type: ignore[import-untyped]

            jieba.setLogLevel(logging.WARNING)
            jieba.posseg.dt.initialize()
            _jieba_tagger = jieba.posseg.dt
        return _jieba_tagger
