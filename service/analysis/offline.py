"""The offline analyzer: a deterministic, heuristic storyboard without any model or network.

It exists so the pipeline works end to end with no API key, and as the baseline any model
backed analyzer has to beat. Everything is derived from the text with regular expressions
and counting, so the same text always yields the same storyboard.

How it reads a novel:

* chapters come from :func:`service.analysis.chapters.split_chapters`; paragraphs are
  blank-line or indentation separated blocks with their hard line wraps re-joined
  (:mod:`~service.analysis.offline_paragraphs`);
* the cast comes from speech tags (``玄德曰：“…”``, ``said the Hatter``), Chinese
  ``姓刘名备，字玄德`` introductions (which also merge courtesy names into one character)
  and ``关公``-style honorifics (:mod:`~service.analysis.offline_names`); characters are
  ranked by how often any of their names is mentioned, and a bare given name in a speech
  tag (``操曰``) counts for the character with that given name last mentioned;
* each quotation is attributed to the character named in its speech tag, else to the
  narrator (:mod:`~service.analysis.offline_dialogue`);
* characters are described by the first sentence about their looks
  (:mod:`~service.analysis.offline_looks`);
* each chapter is cut into at most ``MAX_SCENES_PER_CHAPTER`` scenes, preferring
  paragraphs that open with a transition (``却说``, ``Meanwhile``), and each scene into at
  most ``MAX_PANELS_PER_SCENE`` panels of consecutive paragraphs. ``MAX_TOTAL_PANELS``
  shrinks the per-chapter share for novels with very many chapters, so even a long novel
  stays at a few thousand panels (:mod:`~service.analysis.offline_scenes`).
"""

from __future__ import annotations

import asyncio
import time

from service.analysis.chapters import Chapter, split_chapters
from service.analysis.offline_names import discover_cast
from service.analysis.offline_paragraphs import Reader, chapter_beats
from service.analysis.offline_scenes import (
    MAX_PANELS_PER_SCENE,
    MAX_SCENES_PER_CHAPTER,
    MAX_TOTAL_PANELS,
    SceneDraft,
    chapter_scenes,
    panel_cap,
    storyboard_scenes,
)
from service.analysis.offline_text import detect_language
from service.errors import JobError
from service.ports import NovelText, ProgressCallback
from service.storyboard import Character, Storyboard, provenance_meta

__all__ = [
    "MAX_PANELS_PER_SCENE",
    "MAX_SCENES_PER_CHAPTER",
    "MAX_TOTAL_PANELS",
    "OfflineAnalyzer",
    "build_storyboard",
]

# The cast lists the most mentioned characters plus anyone who appears in a panel.
TOP_CHARACTERS = 30


def build_storyboard(novel: NovelText) -> Storyboard:
    """The offline storyboard of a novel; CPU-bound, so call it off the event loop."""
    started = time.perf_counter()
    if not novel.text.strip():
        raise JobError("empty_text", "the novel has no text to analyze", transient=False)
    language = detect_language(novel.text)
    chapters = split_chapters(novel.text)
    beats = [chapter_beats(chapter.body, language) for chapter in chapters]
    reader = Reader(discover_cast(language, [beat for bs in beats for beat in bs]))
    drafts = _draft_scenes(novel, chapters, beats, reader)
    characters = _characters(reader, _rank(reader, drafts))
    return Storyboard(
        novel_id=novel.novel_id,
        title=novel.title,
        characters=characters,
        scenes=storyboard_scenes(drafts, {c.name: c for c in characters}),
        meta=provenance_meta(
            OfflineAnalyzer.name,
            OfflineAnalyzer.version,
            novel.job_id,
            chunk_count=len(chapters),
            chapter_count=len(chapters),
            timings={"analyzeS": round(time.perf_counter() - started, 3)},
        ),
    )


def _draft_scenes(
    novel: NovelText, chapters: list[Chapter], beats: list[list[str]], reader: Reader
) -> list[SceneDraft]:
    """Every chapter's scenes, reading its beats in order."""
    cap = panel_cap(len(chapters))
    drafts: list[SceneDraft] = []
    for chapter, texts in zip(chapters, beats, strict=True):
        if chapter.title == "" and len(chapters) == 1:
            chapter = Chapter(chapter.index, novel.title, chapter.body, chapter.start)
        paras = [reader.read(text) for text in texts]
        drafts.extend(chapter_scenes(chapter, paras, cap, reader.cast.language))
    return drafts


def _rank(reader: Reader, scenes: list[SceneDraft]) -> list[str]:
    """Characters worth listing, most mentioned first, ties in order of first appearance."""
    ranked = reader.mentions.ranked()
    used = {k for s in scenes for p in s.panels for k in [*p.keys, *(d for d, _ in p.dialogue)]}
    return [k for i, k in enumerate(ranked) if i < TOP_CHARACTERS or k in used]


def _characters(reader: Reader, keys: list[str]) -> list[Character]:
    generic = "书中人物" if reader.cast.language == "zh" else "a character from the story"
    return [
        Character(
            id=f"c{i}",
            name=key,
            aliases=list(reader.cast.people[key].aliases),
            description=reader.looks.of(key, generic),
            mentions=reader.mentions.counts[key],
        )
        for i, key in enumerate(keys, start=1)
    ]


class OfflineAnalyzer:
    """Heuristic analyzer that needs no model, network or randomness."""

    name = "offline"
    # Bumped whenever the heuristics change what a given text yields.
    version = "1"

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Build the storyboard in a worker thread, reporting start and finish."""
        await on_progress(0.0, "splitting chapters")
        try:
            storyboard = await asyncio.to_thread(build_storyboard, novel)
        except JobError:
            raise
        except Exception as exc:
            # A deterministic analyzer fails the same way every time: retrying cannot help.
            raise JobError(
                "offline_failed", f"offline analysis failed: {exc}", transient=False
            ) from exc
        await on_progress(1.0, "storyboard built")
        return storyboard
