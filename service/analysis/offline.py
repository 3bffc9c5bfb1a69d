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
import contextvars
import functools
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from service.analysis.chapters import Chapter, split_chapters
from service.analysis.offline_names import discover_cast
from service.analysis.offline_paragraphs import Reader, chapter_beats
from service.analysis.offline_scenes import (
    GENERIC_LOOKS,
    MAX_PANELS_PER_SCENE,
    MAX_SCENES_PER_CHAPTER,
    MAX_TOTAL_PANELS,
    Languages,
    SceneDraft,
    chapter_scenes,
    panel_cap,
    storyboard_scenes,
)
from service.analysis.offline_text import Language, detect_language
from service.errors import JobError
from service.ports import NovelText, ProgressCallback
from service.storyboard import Character, Storyboard, provenance_meta

if TYPE_CHECKING:
    # Only the type: a pool's process imports this module, and needs no pool of its own.
    from service.analysis.cpu_pool import CpuPool

__all__ = [
    "MAX_PANELS_PER_SCENE",
    "MAX_SCENES_PER_CHAPTER",
    "MAX_TOTAL_PANELS",
    "OfflineAnalyzer",
    "build_storyboard",
]

# The cast lists the most mentioned characters plus anyone who appears in a panel.
TOP_CHARACTERS = 30


Step = tuple[float, str]
"""A fraction of the offline analyzer's work done, and a stage name to show for it."""

# Shares of the work, roughly as the phases take time on a long novel (三国演义): scenes
# are most of it; splitting, paragraphs and the cast share the rest.
_SPLIT_DONE = 0.1
_PARAGRAPHS_DONE = 0.25
_CAST_DONE = 0.4
_SCENES_DONE = 0.95


def build_storyboard(novel: NovelText, prompt_language: Language = "en") -> Storyboard:
    """The offline storyboard of a novel, its image prompts in ``prompt_language``;
    CPU-bound, so call it off the event loop."""
    steps = storyboard_steps(novel, prompt_language)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            board: Storyboard = done.value
            return board


def storyboard_steps(
    novel: NovelText, prompt_language: Language = "en"
) -> Generator[Step, None, Storyboard]:
    """:func:`build_storyboard` one step at a time: it yields after splitting, after each
    chapter's paragraphs, after finding the cast and after each chapter's scenes, and
    returns the storyboard. The caller may do other work (report progress) between steps.
    """
    started = time.perf_counter()
    if not novel.text.strip():
        raise JobError("empty_text", "the novel has no text to analyze", transient=False)
    yield 0.0, "splitting chapters"
    language = detect_language(novel.text)
    chapters = split_chapters(novel.text)
    total = len(chapters)
    yield _SPLIT_DONE, f"{total} chapters found"
    beats: list[list[str]] = []
    for chapter in chapters:
        beats.append(chapter_beats(chapter.body, language))
        done = len(beats)
        yield _share(_SPLIT_DONE, _PARAGRAPHS_DONE, done, total), f"paragraphs {done}/{total}"
    reader = Reader(discover_cast(language, [beat for bs in beats for beat in bs]))
    yield _CAST_DONE, f"cast of {len(reader.cast.people)} found"
    drafts: list[SceneDraft] = []
    cap = panel_cap(total)
    for done, (chapter, texts) in enumerate(zip(chapters, beats, strict=True), start=1):
        where = drafts[-1].location if drafts else ""
        drafts.extend(_chapter_drafts(novel, chapter, total, texts, reader, cap, where))
        yield _share(_CAST_DONE, _SCENES_DONE, done, total), f"scenes {done}/{total}"
    characters = _characters(reader, _rank(reader, drafts))
    languages = Languages(novel=language, prompt=prompt_language)
    return Storyboard(
        novel_id=novel.novel_id,
        title=novel.title,
        characters=characters,
        scenes=storyboard_scenes(drafts, {c.name: c for c in characters}, languages),
        meta=provenance_meta(
            OfflineAnalyzer.name,
            OfflineAnalyzer.version,
            novel.job_id,
            chunk_count=total,
            chapter_count=total,
            timings={"analyzeS": round(time.perf_counter() - started, 3)},
            prompt_language=prompt_language,
            text_chars=len(novel.text),
        ),
    )


def _share(low: float, high: float, done: int, total: int) -> float:
    return low + (high - low) * done / total


def _chapter_drafts(
    novel: NovelText,
    chapter: Chapter,
    chapters: int,
    texts: list[str],
    reader: Reader,
    cap: int,
    where: str,
) -> list[SceneDraft]:
    """One chapter's scenes, reading its beats in order; ``where`` the story last was."""
    if chapter.title == "" and chapters == 1:
        chapter = Chapter(chapter.index, novel.title, chapter.body, chapter.start)
    paras = [reader.read(text) for text in texts]
    return chapter_scenes(chapter, paras, cap, reader.cast.language, where)


def _rank(reader: Reader, scenes: list[SceneDraft]) -> list[str]:
    """Characters worth listing, most mentioned first, ties in order of first appearance."""
    ranked = reader.mentions.ranked()
    used = {k for s in scenes for p in s.panels for k in [*p.keys, *(d for d, _ in p.dialogue)]}
    return [k for i, k in enumerate(ranked) if i < TOP_CHARACTERS or k in used]


def _characters(reader: Reader, keys: list[str]) -> list[Character]:
    generic = GENERIC_LOOKS[reader.cast.language]
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
    """Heuristic analyzer that needs no model, network or randomness.

    With a :class:`~service.analysis.cpu_pool.CpuPool` (as the service runs it) each
    analysis runs in one of the pool's processes, so a cancel, a deadline or the shutdown
    can stop it by killing that process. Without one it runs in worker threads, which
    nothing can stop: for tests, benchmarks and library use.
    """

    name = "offline"
    # Bumped whenever the heuristics change what a given text yields.
    version = "2"

    def __init__(self, prompt_language: Language = "en", pool: CpuPool | None = None) -> None:
        self.prompt_language: Language = prompt_language
        self.pool = pool

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Build the storyboard one step at a time, reporting progress after each
        chapter's paragraphs and scenes.

        A report is also where a cancelled job stops when the callback raises; in the pool,
        that kills the process.
        """
        if self.pool is None:
            board = await _in_threads(storyboard_steps(novel, self.prompt_language), on_progress)
        else:

            async def report(step: Step) -> None:
                await on_progress(*step)

            board = await self.pool.run(report, checked_steps, novel, self.prompt_language)
        await on_progress(1.0, "storyboard built")
        return board


async def _in_threads(
    steps: Generator[Step, None, Storyboard], on_progress: ProgressCallback
) -> Storyboard:
    """Step in a worker thread, which keeps the event loop free.

    One thread of its own for the whole analysis: the default executor hands consecutive
    steps to different threads, and moving between them made the analysis a third slower.
    """
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offline-analysis")
    context = contextvars.copy_context()
    try:
        while True:
            step = await loop.run_in_executor(
                executor, functools.partial(context.run, _advance, steps)
            )
            if isinstance(step, Storyboard):
                return step
            await on_progress(*step)
    finally:
        # Not waiting: a cancelled analysis must not hold the event loop for its last step.
        executor.shutdown(wait=False)


def checked_steps(
    novel: NovelText, prompt_language: Language = "en"
) -> Generator[Step, None, Storyboard]:
    """:func:`storyboard_steps` as a pool's process runs it: any failure but a
    :class:`JobError` becomes a permanent ``offline_failed``."""
    steps = storyboard_steps(novel, prompt_language)
    while True:
        step = _advance(steps)
        if isinstance(step, Storyboard):
            return step
        yield step


def _advance(steps: Generator[Step, None, Storyboard]) -> Step | Storyboard:
    """The next step, or the storyboard at the end (a future cannot carry StopIteration)."""
    try:
        return next(steps)
    except StopIteration as done:
        board: Storyboard = done.value
        return board
    except JobError:
        raise
    except Exception as exc:
        # A deterministic analyzer fails the same way every time: retrying cannot help.
        raise JobError(
            "offline_failed", f"offline analysis failed: {exc}", transient=False
        ) from exc
