"""The model-backed analyzer: a novel in chunks through two passes of a chat model.

How a novel is read:

1. **Chunks.** :func:`plan_chunks` packs whole chapters (from
   :func:`~service.analysis.chapters.split_chapters`) into chunks of at most
   :func:`chunk_chars` characters, cutting a longer chapter with
   :func:`~service.analysis.chapters.chunk_text`. Each chapter's text starts with a
   ``[[chapter N: title]]`` marker so replies can say which chapter a scene belongs to.
2. **Pass A** (characters) runs on every chunk in parallel, bounded per job by
   ``llm_job_concurrency`` and per process by the shared :class:`LlmLimiter`. It returns
   the chunk's characters and a short summary. Our code merges the characters into one
   :class:`Registry` with ids ``c1, c2, …`` in order of first appearance.
3. **Pass B** (scenes and panels) also runs on every chunk in parallel. It needs the
   merged registry, so it starts once pass A is complete; the story so far comes from pass
   A's summary of the *previous* chunk, so no chunk waits for another's pass B. Replies are
   assembled in chunk order afterwards, so ids (scenes ``s1…``, panels ``p1…``, and any
   character pass B adds) do not depend on which request finished first.

Names in pass B replies are resolved through the registry's alias table. A speaker or
panel character the registry does not know is added as a new character: the prompt asks
for the text's own name for characters missing from the list, and a named minor character
is more use to an illustrator than a line credited to nobody. Names that mean "nobody"
(``narrator``, ``旁白`` …) map to ``narrator``.

Every reply is validated; an invalid one gets one repair round, then the job fails with
``llm_invalid_output``. Each finished chunk of each pass is checkpointed in the blob store
under ``checkpoints/{job_id}/`` and reused when the job is retried, as long as the request
would be identical (same model, prompt version and input); checkpoints are deleted once
the storyboard is built. ``meta.usage`` counts the tokens of every reply the storyboard is
made of, including replies reused from checkpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from pydantic import BaseModel, ValidationError

from service.analysis.chapters import Chapter, chunk_text, split_chapters
from service.analysis.llm_client import (
    ChatMessage,
    ClientConfig,
    InvalidReply,
    LlmClient,
    RequestObserver,
    Usage,
)
from service.analysis.llm_limits import LlmLimiter
from service.analysis.llm_prompts import (
    PROMPT_VERSION,
    CastEntry,
    CastReply,
    CharacterReply,
    PanelReply,
    SceneReply,
    StoryboardReply,
    cast_messages,
    chapter_marker,
    describe_errors,
    parse_cast,
    parse_storyboard,
    repair_messages,
    storyboard_messages,
)
from service.errors import BlobNotFound, JobError
from service.logs import get_logger
from service.ports import BlobStore, NovelText, ProgressCallback
from service.settings import Settings, SettingsError
from service.storyboard import (
    NARRATOR,
    UNKNOWN,
    Character,
    DialogueLine,
    Panel,
    Scene,
    Storyboard,
    provenance_meta,
)

__all__ = [
    "AnalyzerOptions",
    "Checkpoints",
    "Chunk",
    "LlmAnalyzer",
    "Registry",
    "Segment",
    "chunk_chars",
    "normalise_name",
    "plan_chunks",
    "plan_novel",
]

log = get_logger(__name__)

CHUNK_INDEX = "storyboard.chunk.index"
PASS = "storyboard.pass"
REPAIR = "storyboard.repair"
"""Span attributes of a model request: its chunk (from 0), its pass (``a``: cast and
summary, ``b``: storyboard) and whether it asks for a repair of an invalid reply."""

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
T = TypeVar("T")

# ----------------------------------------------------------------------------- sizing
#
# A chunk must fit the model's context together with the instructions, the character list,
# the previous summary and the reply, and its reply must fit ``llm_max_output_tokens``:
#
#   input bound  = (llm_context_tokens - llm_max_output_tokens - overhead) * llm_chars_per_token
#   output bound = llm_max_output_tokens / PANEL_REPLY_TOKENS * SOURCE_CHARS_PER_PANEL
#   chunk chars  = clamp(min(input bound, output bound), MIN_CHUNK_CHARS, MAX_CHUNK_CHARS)
#
# where overhead is PROMPT_OVERHEAD_TOKENS, or half the input side on a small context. With
# the defaults (131072, 8192, 1.5): input bound (131072 - 8192 - 3072) * 1.5 = 179,712;
# output bound 8192 / 256 * 750 = 24,000; so chunks are 24,000 characters, about 16k tokens
# of Chinese or 6k of English. The output bound is the one that matters: pass B writes
# roughly one panel (about 256 tokens of JSON) per 750 characters of source, and a reply
# cut off at the token limit is useless. Smaller chunks also make checkpoints finer.

PROMPT_OVERHEAD_TOKENS = 3072
PANEL_REPLY_TOKENS = 256
SOURCE_CHARS_PER_PANEL = 750
MAX_CHUNK_CHARS = 24_000
MIN_CHUNK_CHARS = 500
# Pass A writes far less than pass B, so it gets this share of the progress bar.
CAST_SHARE = 0.3
# Bounds on what one chunk's pass B prompt repeats from the registry.
MAX_CAST_IN_PROMPT = 120
MAX_APPEARANCE_CHARS = 300
# Appearance notes from later chunks are kept until the description reaches this length.
MAX_DESCRIPTION_CHARS = 800
CHECKPOINT_DELETE_CONCURRENCY = 16


def chunk_chars(settings: Settings) -> int:
    """Characters of novel text per chunk for these settings (see the arithmetic above)."""
    input_side = settings.llm_context_tokens - settings.llm_max_output_tokens
    overhead = min(PROMPT_OVERHEAD_TOKENS, input_side // 2)
    input_bound = (input_side - overhead) * settings.llm_chars_per_token
    output_bound = settings.llm_max_output_tokens / PANEL_REPLY_TOKENS * SOURCE_CHARS_PER_PANEL
    return int(max(MIN_CHUNK_CHARS, min(input_bound, output_bound, MAX_CHUNK_CHARS)))


# ----------------------------------------------------------------------------- chunks


@dataclass(frozen=True, slots=True)
class Segment:
    """A chapter, or a piece of one, inside a chunk."""

    chapter: int
    title: str
    text: str
    continued: bool = False

    @property
    def rendered(self) -> str:
        """The text as the model sees it, under its chapter marker."""
        marker = chapter_marker(self.chapter, self.title, continued=self.continued)
        return f"{marker}\n{self.text}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One request's worth of novel text; ``index`` counts from 0."""

    index: int
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        """The segments under their markers, as sent to the model."""
        return "\n\n".join(s.rendered for s in self.segments)

    @property
    def chapters(self) -> list[int]:
        """Indexes of the chapters this chunk holds text of, in order."""
        return list(dict.fromkeys(s.chapter for s in self.segments))


def plan_chunks(chapters: Sequence[Chapter], max_chars: int, default_title: str) -> list[Chunk]:
    """Pack chapters into chunks of at most about ``max_chars`` characters each.

    Whole chapters are packed greedily; a chapter too long for one chunk is cut on sentence
    boundaries and its pieces packed like chapters. Markers count towards the size.
    """
    chunks: list[Chunk] = []
    current: list[Segment] = []
    size = 0
    for segment in _segments(chapters, max_chars, default_title):
        cost = len(segment.rendered) + 2
        if current and size + cost > max_chars:
            chunks.append(Chunk(len(chunks), tuple(current)))
            current, size = [], 0
        current.append(segment)
        size += cost
    if current:
        chunks.append(Chunk(len(chunks), tuple(current)))
    return chunks


def plan_novel(text: str, title: str, max_chars: int) -> tuple[list[Chapter], list[Chunk]]:
    """A novel's chapters and the chunks the analyzer sends, each chunk one request a pass;
    the cost estimate (:mod:`service.analysis.llm_estimate`) plans with this too."""
    chapters = split_chapters(text)
    return chapters, plan_chunks(chapters, max_chars, title)


def _segments(chapters: Sequence[Chapter], max_chars: int, default_title: str) -> list[Segment]:
    segments: list[Segment] = []
    for chapter in chapters:
        title = chapter.title or default_title
        room = max(max_chars - len(chapter_marker(chapter.index, title, continued=True)) - 2, 1)
        pieces = chunk_text(chapter.body, room) if len(chapter.body) > room else [chapter.body]
        segments.extend(
            Segment(chapter.index, title, piece, continued=number > 0)
            for number, piece in enumerate(pieces)
            if piece.strip()
        )
    return segments


# ----------------------------------------------------------------------------- registry

_NARRATOR_NAMES = frozenset(
    {"narrator", "narration", "the narrator", "none", "旁白", "叙述者", "无"}
)
# A model may say it cannot tell who speaks; that is no character either.
_UNKNOWN_NAMES = frozenset({"unknown", "unknown speaker", "someone", "?", "未知", "不明", "某人"})
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")


def normalise_name(name: str) -> str:
    """The form names are matched in: NFKC, case-folded, no edge punctuation, no ``the``."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = " ".join(_EDGE_PUNCTUATION.sub("", text).split())
    return text.removeprefix("the ")


def _is_name(key: str) -> bool:
    return bool(key) and key not in _NARRATOR_NAMES and key not in _UNKNOWN_NAMES


def _mentioned(name: str, folded_text: str) -> bool:
    """Whether ``name`` occurs in case-folded text; Latin names only as whole words (``Cat``
    is not in ``catch``), CJK ones anywhere, as Chinese has no spaces between words."""
    name = name.casefold()
    if not name.isascii():
        return name in folded_text
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", folded_text) is not None


@dataclass(slots=True)
class _Person:
    id: str
    name: str
    aliases: list[str] = field(default_factory=list)
    appearance: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    def describe(self) -> str:
        return " ".join(self.appearance)


class Registry:
    """Characters merged across chunks. The alias table maps every normalised name and
    alias to an id; a name already taken by one character is never moved to another.

    A new character merges into a known one when its name is one of the known one's names
    or aliases, or when one of its aliases is the known one's name (``Rabbit`` then
    ``White Rabbit`` a.k.a. ``Rabbit``). Sharing only an alias is not enough: titles such as
    ``Majesty`` or ``the old man`` belong to many people.
    """

    def __init__(self) -> None:
        self._people: list[_Person] = []
        self._by_name: dict[str, _Person] = {}
        self._by_primary: dict[str, _Person] = {}

    def __len__(self) -> int:
        return len(self._people)

    def merge(self, reply: CharacterReply) -> str | None:
        """Add a character, or merge it into the one sharing any of its names; the id, or
        ``None`` when every name means nobody (a model listing the narrator)."""
        keys = [k for k in map(normalise_name, [reply.name, *reply.aliases]) if _is_name(k)]
        if not keys:
            return None
        person = self._by_name.get(keys[0]) if keys[0] == normalise_name(reply.name) else None
        person = person or next((self._by_primary[k] for k in keys if k in self._by_primary), None)
        if person is None:
            person = self._new(reply.name)
        for alias in [reply.name, *reply.aliases]:
            self._claim(person, alias)
        appearance = " ".join(reply.appearance.split())
        room = MAX_DESCRIPTION_CHARS - len(person.describe())
        if appearance and appearance not in person.appearance and len(appearance) < room:
            person.appearance.append(appearance)
        return person.id

    def resolve(self, name: str) -> str | None:
        """The id for a name: ``narrator`` for names meaning nobody, ``unknown`` for an
        untold speaker, ``None`` for a name not seen yet."""
        key = normalise_name(name)
        if key in _UNKNOWN_NAMES or name.strip() == "?":
            return UNKNOWN
        if not _is_name(key):
            return NARRATOR
        person = self._by_name.get(key)
        return person.id if person else None

    def resolve_or_add(self, name: str) -> str:
        """The id for a name, adding a character when the name is new."""
        known = self.resolve(name)
        return known if known is not None else self._new(name.strip()).id

    def ids_for(self, names: Iterable[str]) -> list[str]:
        """Character ids for names, in order, without duplicates or ``narrator``."""
        ids = (self.resolve_or_add(n) for n in names)
        return list(dict.fromkeys(i for i in ids if i not in (NARRATOR, UNKNOWN)))

    def cast_for(self, text: str, ids: Iterable[str]) -> list[CastEntry]:
        """The characters to show pass B for ``text``: ``ids`` plus anyone named in it."""
        wanted = set(ids)
        folded = text.casefold()
        chosen = [
            p for p in self._people if p.id in wanted or any(_mentioned(n, folded) for n in p.names)
        ]
        return [
            CastEntry(
                name=p.name, aliases=p.aliases, appearance=p.describe()[:MAX_APPEARANCE_CHARS]
            )
            for p in chosen[:MAX_CAST_IN_PROMPT]
        ]

    def characters(self, mentions: Counter[str]) -> list[Character]:
        """The storyboard's characters; ``mentions`` counts the panels each appears in."""
        return [
            Character(
                id=p.id,
                name=p.name,
                aliases=p.aliases,
                description=p.describe(),
                mentions=mentions[p.id],
            )
            for p in self._people
        ]

    def _new(self, name: str) -> _Person:
        person = _Person(id=f"c{len(self._people) + 1}", name=name)
        self._people.append(person)
        self._by_primary.setdefault(normalise_name(name), person)
        self._claim(person, name)
        return person

    def _claim(self, person: _Person, alias: str) -> None:
        key = normalise_name(alias)
        if not _is_name(key) or key in self._by_name:
            return
        self._by_name[key] = person
        if alias != person.name:
            person.aliases.append(alias)


# ----------------------------------------------------------------------------- assembly


class _Builder:
    """Turns pass B replies into scenes and panels with ids, in reading order."""

    def __init__(self, registry: Registry, titles: dict[int, str]) -> None:
        self._registry = registry
        self._titles = titles
        self.scenes: list[Scene] = []
        self.mentions: Counter[str] = Counter()
        self._panels = 0

    def add(self, reply: StoryboardReply) -> None:
        """Append one chunk's scenes, ordered by chapter (a reply may interleave them)."""
        for scene in sorted(reply.scenes, key=lambda s: s.chapter or 0):
            self.scenes.append(self._scene(scene))

    def _scene(self, reply: SceneReply) -> Scene:
        chapter = reply.chapter or 0
        location = reply.location or self._titles.get(chapter, "")
        panels = [self._panel(p, location) for p in reply.panels]
        named = self._registry.ids_for(reply.characters)
        in_panels = [i for p in panels for i in p.character_ids]
        return Scene(
            id=f"s{len(self.scenes) + 1}",
            chapter_index=chapter,
            chapter_title=self._titles.get(chapter, ""),
            summary=reply.summary or panels[0].description,
            location=location,
            character_ids=list(dict.fromkeys([*named, *in_panels])),
            panels=panels,
        )

    def _panel(self, reply: PanelReply, location: str) -> Panel:
        dialogue = [
            DialogueLine(speaker_id=self._registry.resolve_or_add(line.speaker), text=line.text)
            for line in reply.dialogue
        ]
        speakers = [
            line.speaker_id for line in dialogue if line.speaker_id not in (NARRATOR, UNKNOWN)
        ]
        ids = list(dict.fromkeys([*self._registry.ids_for(reply.characters), *speakers]))
        self.mentions.update(ids)
        self._panels += 1
        return Panel(
            id=f"p{self._panels}",
            shot_type=reply.shot_type,
            description=reply.description,
            character_ids=ids,
            dialogue=dialogue,
            narration=reply.narration or None,
            image_prompt=reply.image_prompt or f"{reply.description} ({location})",
        )


# ----------------------------------------------------------------------------- checkpoints


class _Saved(BaseModel):
    fingerprint: str
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    reply: dict[str, Any]


class Checkpoints:
    """Finished chunk replies of one job in the blob store; disabled without a job id."""

    def __init__(self, blobs: BlobStore, job_id: str) -> None:
        self._blobs = blobs
        self._job_id = job_id

    def key(self, kind: str, index: int) -> str:
        """Where the reply of pass ``kind`` (``a`` or ``b``) for chunk ``index`` is kept."""
        return f"checkpoints/{self._job_id}/{kind}-{index}.json"

    async def load(
        self, kind: str, index: int, fingerprint: str
    ) -> tuple[dict[str, Any], Usage] | None:
        """A saved reply made from the same request, else ``None``."""
        if not self._job_id:
            return None
        try:
            saved = _Saved.model_validate_json(await self._blobs.get(self.key(kind, index)))
        except BlobNotFound:
            return None
        except Exception as exc:
            # A checkpoint only saves money; one that cannot be read is asked for again.
            log.warning("unreadable checkpoint ignored", kind=kind, chunk=index, error=str(exc))
            return None
        if saved.fingerprint != fingerprint:
            return None
        return saved.reply, Usage(saved.input_tokens, saved.output_tokens, saved.requests)

    async def save(
        self, kind: str, index: int, fingerprint: str, reply: BaseModel, usage: Usage
    ) -> None:
        """Keep a finished reply; a failed write only costs a repeat request on retry."""
        if not self._job_id:
            return
        saved = _Saved(
            fingerprint=fingerprint,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            requests=usage.requests,
            reply=reply.model_dump(mode="json", by_alias=True),
        )
        try:
            await self._blobs.put(
                self.key(kind, index),
                saved.model_dump_json().encode(),
                content_type="application/json",
            )
        except Exception as exc:
            log.warning("checkpoint write failed", kind=kind, chunk=index, error=str(exc))

    async def clear(self, chunks: int) -> None:
        """Delete every checkpoint of a finished job, best effort."""
        if not self._job_id:
            return
        keys = [self.key(kind, i) for kind in ("a", "b") for i in range(chunks)]
        try:
            await _bounded(CHECKPOINT_DELETE_CONCURRENCY, keys, self._blobs.delete)
        except Exception as exc:
            log.warning("checkpoint cleanup failed", error=str(exc))


def _fingerprint(model: str, messages: Sequence[ChatMessage]) -> str:
    payload = json.dumps([PROMPT_VERSION, model, list(messages)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


# ----------------------------------------------------------------------------- the analyzer


async def _bounded(limit: int, items: Sequence[T], run: Callable[[T], Awaitable[R]]) -> list[R]:
    """``run`` over ``items``, at most ``limit`` at once; the first error cancels the rest."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with semaphore:
            return await run(item)

    tasks = [asyncio.create_task(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class AnalyzerOptions:
    """What the analyzer takes from the settings besides the client."""

    model: str
    chunk_chars: int
    max_output_tokens: int
    job_concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalyzerOptions:
        """Options named by the ``llm_*`` settings."""
        return cls(
            model=settings.llm_model,
            chunk_chars=chunk_chars(settings),
            max_output_tokens=settings.llm_max_output_tokens,
            job_concurrency=settings.llm_job_concurrency,
        )


@dataclass(slots=True)
class _Run:
    """The state of one ``analyze`` call."""

    novel: NovelText
    chunks: list[Chunk]
    checkpoints: Checkpoints
    on_progress: ProgressCallback
    usage: Usage = field(default_factory=Usage)
    reused: int = 0
    done: Counter[str] = field(default_factory=Counter)

    async def finished(self, kind: str, usage: Usage, *, reused: bool) -> None:
        self.usage = self.usage + usage
        self.reused += reused
        self.done[kind] += 1
        count, total = self.done[kind], len(self.chunks)
        if kind == "a":
            await self.on_progress(CAST_SHARE * count / total, f"characters {count}/{total}")
        else:
            fraction = CAST_SHARE + (1 - CAST_SHARE) * count / total
            await self.on_progress(fraction, f"panels {count}/{total}")


@dataclass(frozen=True, slots=True)
class _Rejected:
    raw: str
    errors: list[str]
    usage: Usage


class LlmAnalyzer:
    """Builds storyboards with a chat model; one instance (and one limiter) per process."""

    name = "llm"
    # Bumped whenever chunking or assembly changes; the prompts have their own version.
    version = "1"

    def __init__(self, client: LlmClient, blobs: BlobStore, options: AnalyzerOptions) -> None:
        self._client = client
        self._blobs = blobs
        self.options = options

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        blobs: BlobStore,
        observer: RequestObserver | None = None,
        tracer: trace.Tracer | None = None,
    ) -> LlmAnalyzer:
        """The analyzer with a client and a process-wide limiter built from the settings."""
        config = ClientConfig.from_settings(settings)
        if config.api_key is None and settings.llm_base_url is None:
            raise SettingsError(
                "the llm analyzer needs STORYBOARD_LLM_API_KEY, DASHSCOPE_API_KEY or "
                "STORYBOARD_LLM_API_KEY_FILE, or STORYBOARD_LLM_BASE_URL for a server "
                "without keys"
            )
        limiter = LlmLimiter(
            concurrency=settings.llm_process_concurrency,
            requests_per_minute=settings.llm_requests_per_minute,
            tokens_per_minute=settings.llm_tokens_per_minute,
        )
        client = LlmClient(config, limiter, observer=observer, tracer=tracer)
        return cls(client, blobs, AnalyzerOptions.from_settings(settings))

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Chunk the novel, run both passes and assemble the storyboard."""
        if not novel.text.strip():
            raise JobError("empty_text", "the novel has no text to analyze", transient=False)
        started = time.perf_counter()
        # Splitting a long novel takes a noticeable fraction of a second: keep the loop free.
        chapters, chunks = await asyncio.to_thread(self._plan, novel)
        run = _Run(novel, chunks, Checkpoints(self._blobs, novel.job_id), on_progress)
        log.info(
            "llm analysis planned",
            chapters=len(chapters),
            chunks=len(chunks),
            chunk_chars=self.options.chunk_chars,
        )
        await on_progress(0.0, f"chunks planned: {len(chunks)}")
        casts = await _bounded(self.options.job_concurrency, chunks, lambda c: self._cast(run, c))
        registry = _registry(casts)
        cast_done = time.perf_counter()
        boards = await _bounded(
            self.options.job_concurrency, chunks, lambda c: self._board(run, c, casts, registry)
        )
        storyboard = self._assemble(run, chapters, registry, boards)
        storyboard.meta.timings.update(
            charactersS=round(cast_done - started, 3),
            panelsS=round(time.perf_counter() - cast_done, 3),
            analyzeS=round(time.perf_counter() - started, 3),
        )
        await run.checkpoints.clear(len(chunks))
        log.info("llm analysis finished", **storyboard.meta.usage)
        return storyboard

    def _plan(self, novel: NovelText) -> tuple[list[Chapter], list[Chunk]]:
        return plan_novel(novel.text, novel.title, self.options.chunk_chars)

    async def _cast(self, run: _Run, chunk: Chunk) -> CastReply:
        messages = cast_messages(
            title=run.novel.title, part=chunk.index + 1, parts=len(run.chunks), text=chunk.text
        )
        return await self._step(run, "a", chunk, messages, parse_cast)

    async def _board(
        self, run: _Run, chunk: Chunk, casts: Sequence[CastReply], registry: Registry
    ) -> StoryboardReply:
        # Only look names up: pass B runs in parallel, and the registry must not change
        # until the replies are assembled in order.
        seen = [registry.resolve(c.name) or "" for c in casts[chunk.index].characters]
        messages = storyboard_messages(
            title=run.novel.title,
            part=chunk.index + 1,
            parts=len(run.chunks),
            text=chunk.text,
            chapters=chunk.chapters,
            cast=registry.cast_for(chunk.text, seen),
            previous_summary=casts[chunk.index - 1].summary if chunk.index else "",
            panel_chars=SOURCE_CHARS_PER_PANEL,
        )
        chapters = chunk.chapters
        return await self._step(run, "b", chunk, messages, lambda d: parse_storyboard(d, chapters))

    async def _step(
        self,
        run: _Run,
        kind: str,
        chunk: Chunk,
        messages: list[ChatMessage],
        parse: Callable[[dict[str, Any]], M],
    ) -> M:
        """One chunk of one pass: from its checkpoint when there is one, else from the model."""
        fingerprint = _fingerprint(self.options.model, messages)
        saved = await run.checkpoints.load(kind, chunk.index, fingerprint)
        if saved is not None:
            try:
                reply = parse(saved[0])
            except ValidationError:
                saved = None
            else:
                await run.finished(kind, saved[1], reused=True)
                return reply
        # Which chunk and pass a model request is for, on its span.
        labels: dict[str, AttributeValue] = {CHUNK_INDEX: chunk.index, PASS: kind}
        reply, usage = await self._ask(messages, parse, labels)
        await run.checkpoints.save(kind, chunk.index, fingerprint, reply, usage)
        await run.finished(kind, usage, reused=False)
        return reply

    async def _ask(
        self,
        messages: list[ChatMessage],
        parse: Callable[[dict[str, Any]], M],
        labels: Mapping[str, AttributeValue],
    ) -> tuple[M, Usage]:
        """A validated reply, after at most one repair round."""
        first = await self._attempt(messages, parse, labels)
        if not isinstance(first, _Rejected):
            return first
        log.info("model reply invalid, asking for a repair", errors=len(first.errors))
        repair = repair_messages(messages, first.raw, first.errors)
        second = await self._attempt(repair, parse, {**labels, REPAIR: True})
        if not isinstance(second, _Rejected):
            return second[0], first.usage + second[1]
        raise JobError(
            "llm_invalid_output",
            f"the model's reply did not have the expected shape, even after a repair round: "
            f"{second.errors[0]}",
            transient=False,
        )

    async def _attempt(
        self,
        messages: list[ChatMessage],
        parse: Callable[[dict[str, Any]], M],
        labels: Mapping[str, AttributeValue],
    ) -> tuple[M, Usage] | _Rejected:
        try:
            data, usage = await self._client.complete_json(
                messages, max_tokens=self.options.max_output_tokens, span_attributes=labels
            )
        except InvalidReply as exc:
            return _Rejected(exc.raw, [exc.reason], exc.usage)
        try:
            return parse(data), usage
        except ValidationError as exc:
            return _Rejected(json.dumps(data, ensure_ascii=False), describe_errors(exc), usage)

    def _assemble(
        self,
        run: _Run,
        chapters: Sequence[Chapter],
        registry: Registry,
        boards: Sequence[StoryboardReply],
    ) -> Storyboard:
        titles = {c.index: c.title or run.novel.title for c in chapters}
        builder = _Builder(registry, titles)
        for board in boards:
            builder.add(board)
        usage = {**run.usage.to_meta(), "reusedChunks": run.reused}
        meta = provenance_meta(
            self.name,
            self.version,
            run.novel.job_id,
            chunk_count=len(run.chunks),
            chapter_count=len(chapters),
            model=self.options.model,
            prompt_version=PROMPT_VERSION,
            usage=usage,
        )
        return Storyboard(
            novel_id=run.novel.novel_id,
            title=run.novel.title,
            characters=registry.characters(builder.mentions),
            scenes=builder.scenes,
            meta=meta,
        )


def _registry(casts: Iterable[CastReply]) -> Registry:
    """The characters of every chunk merged in reading order."""
    registry = Registry()
    for cast in casts:
        for character in cast.characters:
            registry.merge(character)
    return registry
