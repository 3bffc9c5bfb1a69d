"""The quality report of a storyboard: the numbers behind an artist's first look at it.

``storyboard eval STORYBOARD.json`` computes it for any storyboard of the schema in
:mod:`service.storyboard`, whichever analyzer or model made it, so analyzers can be compared
on the same novel. Every share is a fraction from 0 to 1 of a stated whole, and ``None`` when
that whole is empty (no dialogue, no panels). ``docs/quality.md`` explains each number.

A reference file (see :class:`Reference`) names a novel's real characters with their
aliases, in order of importance; against one, the report also scores the cast: how many of
the reference's main characters are in the cast's top 10, and how much of its top 20 is no
character at all.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator

from service.models import CamelModel
from service.storyboard import NARRATOR, UNKNOWN, ShotType, Storyboard
from service.text import TextDecodeError, load_novel_bytes

__all__ = [
    "CAST_TOP",
    "CONSISTENT_SCRIPT_SHARE",
    "JUNK_TOP",
    "RECALL_TOP",
    "REFERENCE_CAST",
    "QualityInputError",
    "QualityReport",
    "Reference",
    "ReferenceCharacter",
    "ReferenceScore",
    "entropy_bits",
    "evaluate",
    "evaluate_files",
    "is_placed",
    "language_scripts",
    "load_reference",
    "load_storyboard",
    "load_text_chars",
    "normalise_name",
    "report_rows",
    "score_cast",
    "script_of",
]

RECALL_TOP = 10
"""Main characters count as found when they are among this many of the cast's first."""
JUNK_TOP = 20
"""The junk share is taken over this many of the cast's first entries."""
REFERENCE_CAST = 20
CAST_TOP = 30
"""Cast recall: the share of the reference's first ``REFERENCE_CAST`` characters (its main
cast) among the cast's first ``CAST_TOP``, the cast an illustrator designs first."""
CONSISTENT_SCRIPT_SHARE = 0.95
"""A prompt is in one language when at least this share of its letters are in its script.

The cast's names and aliases are taken out of a prompt before its letters are counted: a
name in its own script (``刘备`` in an English prompt) is a proper noun, not a second
language, while a quoted sentence of the novel is. A prompt with no letters left (only
names, digits or punctuation) counts as consistent."""
SHOT_TYPES = len(ShotType)
MAX_ENTROPY_BITS = math.log2(SHOT_TYPES)

# A chapter heading at the start of a location: "CHAPTER XI.", "第十一回", "Book 2".
_HEADING = re.compile(
    r"\s*(?:第\s*[零〇一二两三四五六七八九十百千万\d０-９]+\s*[回章节節卷集部篇]"
    r"|(?:chapter|book|part|volume|canto|letter)\s+(?:[ivxlcdm]+|\d+)\b)",
    re.IGNORECASE,
)
# What opens a book before its story: these are never chapters of it.
_FRONT_MATTER = re.compile(
    r"contents|preface|foreword|introduction|transcriber|project gutenberg|licen[cs]e"
    r"|copyright|目录|目錄|前言|序言|出版说明|出版說明|内容简介|內容簡介|版权|版權|声明|聲明",
    re.IGNORECASE,
)
# Locations that say no place at all.
_NO_PLACE = frozenset({"", "unknown", "none", "n/a", "na", "-", "?", "未知", "不详", "无"})
_ARTICLE = re.compile(r"^the\s+", re.IGNORECASE)
_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "kana"}),
    "ko": frozenset({"hangul", "han"}),
    "ru": frozenset({"cyrillic"}),
    "uk": frozenset({"cyrillic"}),
    "bg": frozenset({"cyrillic"}),
    "el": frozenset({"greek"}),
    "ar": frozenset({"arabic"}),
    "fa": frozenset({"arabic"}),
}
"""Scripts a language is written in; any language not listed is written in Latin letters."""
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0600, 0x06FF, "arabic"),
    (0x1100, 0x11FF, "hangul"),
    (0x1E00, 0x1EFF, "latin"),
    (0x3040, 0x30FF, "kana"),
    (0x3130, 0x318F, "hangul"),
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFF21, 0xFF5A, "latin"),
    (0x20000, 0x3134F, "han"),
)


class QualityInputError(ValueError):
    """A file the report cannot use: absent, unreadable, not JSON, or not of its kind."""


# ------------------------------------------------------------------------------ schema


class ReferenceCharacter(CamelModel):
    """One real character of a novel: the name used for them, and every other they go by."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class Reference(CamelModel):
    """A novel's real cast, written by someone who knows the book.

    ``characters`` is ordered by importance and may go on past the main cast to minor
    characters, so that a real minor character in the cast's top 20 is not counted as junk.
    ``main`` names (by ``name``) the characters recall is measured on. ``chapters`` and
    ``first_chapter`` (how the first real chapter's title begins) say what the chapter
    split should find; front matter counted as a chapter breaks both.
    """

    title: str = Field(min_length=1)
    language: str | None = None
    chapters: int | None = Field(default=None, ge=1)
    first_chapter: str | None = None
    main: list[str] = Field(min_length=1)
    characters: list[ReferenceCharacter] = Field(min_length=1)

    @model_validator(mode="after")
    def _main_are_characters(self) -> Self:
        names = [c.name for c in self.characters]
        doubled = sorted(name for name, n in Counter(names).items() if n > 1)
        if doubled:
            raise ValueError(f"characters named more than once: {doubled}")
        missing = [name for name in self.main if name not in names]
        if missing:
            raise ValueError(f"main names no character of the list: {missing}")
        return self


class ReferenceScore(CamelModel):
    """How the cast compares with a reference's."""

    reference: str
    main_recall: float
    main_found: list[str]
    main_missing: list[str]
    cast_recall: float
    cast_missing: list[str]
    junk_share: float | None
    junk: list[str]
    duplicates: list[str]
    chapters_expected: int | None
    first_chapter_expected: str | None
    first_chapter_ok: bool | None


class QualityReport(CamelModel):
    """Every number of the report; ``docs/quality.md`` says what each one means."""

    title: str
    analyzer: str
    model: str | None
    chapters: int
    first_chapter: str | None
    front_matter_chapters: list[str]
    scenes: int
    panels: int
    characters: int
    dialogue_lines: int
    named_speaker_share: float | None
    narrator_share: float | None
    unknown_speaker_share: float | None
    located_panel_share: float | None
    distinct_locations: int
    shot_types: dict[str, int]
    shot_type_entropy_bits: float | None
    shot_type_entropy_max_bits: float
    top_shot_share: float | None
    text_chars: int | None
    panels_per_10k_chars: float | None = Field(alias="panelsPer10kChars")
    prompt_script: str | None
    prompt_script_source: str
    prompt_language_consistency: float | None
    reference: ReferenceScore | None = None


# ------------------------------------------------------------------------------- files


def _read_json(path: Path, kind: str) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QualityInputError(f"cannot read {kind} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QualityInputError(f"{kind} {path} is not JSON: {exc}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the document"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}"


def load_storyboard(path: Path) -> tuple[Storyboard, dict[str, Any]]:
    """The storyboard in ``path``, and its raw ``meta`` (which may carry fields the schema
    does not yet name, such as ``textChars`` or ``promptLanguage``)."""
    raw = _read_json(path, "storyboard")
    try:
        storyboard = Storyboard.model_validate(raw)
    except ValidationError as exc:
        raise QualityInputError(f"{path} is not a storyboard: {_first_error(exc)}") from None
    meta = raw.get("meta") if isinstance(raw, dict) else None
    return storyboard, meta if isinstance(meta, dict) else {}


def load_reference(path: Path) -> Reference:
    """The reference cast in ``path``."""
    raw = _read_json(path, "reference")
    try:
        return Reference.model_validate(raw)
    except ValidationError as exc:
        raise QualityInputError(f"{path} is not a reference: {_first_error(exc)}") from None


def load_text_chars(path: Path) -> int:
    """The length in characters of the novel in ``path``, decoded and normalised as an
    upload is, so it counts what the analyzer read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QualityInputError(f"cannot read text {path}: {exc.strerror or exc}") from None
    try:
        return len(load_novel_bytes(data))
    except (TextDecodeError, ValueError) as exc:
        raise QualityInputError(f"text {path}: {exc}") from None


def evaluate_files(
    storyboard: str | Path,
    *,
    reference: str | Path | None = None,
    text: str | Path | None = None,
    language: str | None = None,
) -> QualityReport:
    """The report on the storyboard file, with an optional reference and novel text file;
    raises :class:`QualityInputError` naming the first file it cannot use."""
    board, meta = load_storyboard(Path(storyboard))
    cast = load_reference(Path(reference)) if reference is not None else None
    chars = load_text_chars(Path(text)) if text is not None else None
    return evaluate(board, meta=meta, reference=cast, text_chars=chars, language=language)


# ----------------------------------------------------------------------------- metrics


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _chapters(storyboard: Storyboard) -> dict[int, str]:
    """Chapter index → title, in order, as the scenes name them."""
    chapters: dict[int, str] = {}
    for scene in storyboard.scenes:
        chapters.setdefault(scene.chapter_index, scene.chapter_title)
    return dict(sorted(chapters.items()))


def _speakers(storyboard: Storyboard) -> Counter[str]:
    """Lines per kind of speaker: ``named``, ``narrator`` or ``unknown``."""
    kinds: Counter[str] = Counter()
    for scene in storyboard.scenes:
        for panel in scene.panels:
            for line in panel.dialogue:
                if line.speaker_id in (NARRATOR, UNKNOWN):
                    kinds[line.speaker_id] += 1
                else:
                    kinds["named"] += 1
    return kinds


def _squashed(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split()).strip(" .:;,-—")


def _title_forms(titles: Iterable[str]) -> set[str]:
    """Every chapter title in the form locations are compared in."""
    return {_squashed(title) for title in titles} - {""}


def is_placed(location: str, chapter_titles: set[str]) -> bool:
    """Whether a location names a place: not empty, no placeholder, not a chapter's title
    and not starting with a chapter heading (``CHAPTER XI.``, ``第十一回``).

    A title's words alone (``The Pool of Tears``) may well be a place, so they count."""
    squashed = _squashed(location)
    if squashed in _NO_PLACE or _HEADING.match(location):
        return False
    return squashed not in chapter_titles


def _locations(storyboard: Storyboard, titles: Iterable[str]) -> tuple[int, int, int]:
    """Panels in all, panels whose scene names a place, and how many places are named."""
    forms = _title_forms(titles)
    panels = placed = 0
    places: set[str] = set()
    for scene in storyboard.scenes:
        panels += len(scene.panels)
        if is_placed(scene.location, forms):
            placed += len(scene.panels)
            places.add(_squashed(scene.location))
    return panels, placed, len(places)


def entropy_bits(counts: Iterable[int]) -> float | None:
    """Shannon entropy of a distribution given by counts, in bits; ``None`` if empty."""
    values = [n for n in counts if n > 0]
    total = sum(values)
    if not total:
        return None
    return max(0.0, -sum(n / total * math.log2(n / total) for n in values))


def script_of(char: str) -> str | None:
    """The script of a letter (``latin``, ``han``, ``kana``…), ``other`` for letters of
    any other script, ``None`` for anything not a letter (digits, punctuation, spaces)."""
    if not char.isalpha():
        return None
    point = ord(char)
    for low, high, script in _SCRIPT_RANGES:
        if low <= point <= high:
            return script
    return "other"


def _letters_by_script(prompt: str) -> Counter[str]:
    return Counter(s for s in map(script_of, prompt) if s is not None)


def language_scripts(language: str) -> frozenset[str]:
    """The scripts a language (a BCP 47 tag such as ``en`` or ``zh-Hans``) is written in."""
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return _LANGUAGE_SCRIPTS.get(primary, frozenset({"latin"}))


def _without_names(prompts: Sequence[str], names: Iterable[str]) -> list[str]:
    """The prompts with the cast's names taken out: a proper noun in its own script
    (``刘备`` in an English prompt) does not make a prompt bilingual."""
    ordered = sorted({n for n in names if n.strip()}, key=lambda n: (-len(n), n))
    if not ordered:
        return list(prompts)
    pattern = re.compile("|".join(map(re.escape, ordered)))
    return [pattern.sub(" ", p) for p in prompts]


def _prompt_scripts(
    prompts: Sequence[str], language: str | None
) -> tuple[str | None, str, float | None]:
    """The script prompts are judged against, where it came from, and the share of
    prompts whose letters are at least ``CONSISTENT_SCRIPT_SHARE`` in it."""
    letters = [_letters_by_script(p) for p in prompts]
    if language:
        scripts, source = language_scripts(language), f"declared language {language}"
    else:
        mains = Counter(c.most_common(1)[0][0] for c in letters if c)
        if not mains:
            return None, "no prompt has letters", None
        # Ties go to the script first in name order, so the report is the same every run.
        best = min(mains.items(), key=lambda item: (-item[1], item[0]))[0]
        scripts, source = frozenset({best}), "the prompts' dominant script"
    consistent = sum(
        1
        for c in letters
        if c.total() == 0 or sum(c[s] for s in scripts) >= CONSISTENT_SCRIPT_SHARE * c.total()
    )
    return "+".join(sorted(scripts)), source, _share(consistent, len(prompts))


def _declared_language(meta: dict[str, Any], language: str | None) -> str | None:
    declared = language or meta.get("promptLanguage")
    return declared if isinstance(declared, str) and declared.strip() else None


def _text_chars(meta: dict[str, Any], text_chars: int | None) -> int | None:
    if text_chars is not None:
        return text_chars
    carried = meta.get("textChars")
    return carried if isinstance(carried, int) and carried > 0 else None


def evaluate(
    storyboard: Storyboard,
    *,
    meta: dict[str, Any] | None = None,
    reference: Reference | None = None,
    text_chars: int | None = None,
    language: str | None = None,
) -> QualityReport:
    """The report on ``storyboard``.

    ``meta`` is the storyboard's raw meta; ``text_chars`` (the novel's length) and
    ``language`` (the declared prompt language) override what it carries.
    """
    meta = meta or {}
    chapters = _chapters(storyboard)
    kinds = _speakers(storyboard)
    lines = kinds.total()
    panels, placed, places = _locations(storyboard, chapters.values())
    shots = Counter(p.shot_type.value for s in storyboard.scenes for p in s.panels)
    prompts = _without_names(
        [p.image_prompt for s in storyboard.scenes for p in s.panels],
        (n for c in storyboard.characters for n in (c.name, *c.aliases)),
    )
    script, source, consistency = _prompt_scripts(prompts, _declared_language(meta, language))
    length = _text_chars(meta, text_chars)
    return QualityReport(
        title=storyboard.title,
        analyzer=storyboard.meta.analyzer,
        model=storyboard.meta.model,
        chapters=len(chapters),
        first_chapter=next(iter(chapters.values()), None),
        front_matter_chapters=[t for t in chapters.values() if _FRONT_MATTER.search(t)],
        scenes=len(storyboard.scenes),
        panels=panels,
        characters=len(storyboard.characters),
        dialogue_lines=lines,
        named_speaker_share=_share(kinds["named"], lines),
        narrator_share=_share(kinds[NARRATOR], lines),
        unknown_speaker_share=_share(kinds[UNKNOWN], lines),
        located_panel_share=_share(placed, panels),
        distinct_locations=places,
        shot_types={shot.value: shots[shot.value] for shot in ShotType},
        shot_type_entropy_bits=entropy_bits(shots.values()),
        shot_type_entropy_max_bits=MAX_ENTROPY_BITS,
        top_shot_share=_share(max(shots.values(), default=0), panels),
        text_chars=length,
        panels_per_10k_chars=panels * 10_000 / length if length else None,
        prompt_script=script,
        prompt_script_source=source,
        prompt_language_consistency=consistency,
        reference=score_cast(storyboard, reference, chapters) if reference else None,
    )


# ------------------------------------------------------------------------------- cast


def normalise_name(name: str) -> str:
    """The form names are compared in: NFKC, case-folded, without a leading "the", and
    with only letters and digits kept, so ``the White Rabbit``, ``White  Rabbit`` and
    ``white-rabbit`` are one name, as are ``诸葛·亮`` and ``诸葛亮``."""
    folded = _ARTICLE.sub("", unicodedata.normalize("NFKC", name).casefold().strip())
    return "".join(ch for ch in folded if ch.isalnum())


def _name_index(reference: Reference) -> dict[str, int]:
    """Normalised name or alias → the most important reference character it names."""
    index: dict[str, int] = {}
    for rank, character in enumerate(reference.characters):
        for name in (character.name, *character.aliases):
            index.setdefault(normalise_name(name), rank)
    return index


def _matched(names: Sequence[str], index: dict[str, int]) -> int | None:
    """The reference character a cast entry stands for: the one its own name names, else
    the most important one any of its aliases names, else ``None``."""
    own = index.get(normalise_name(names[0]))
    if own is not None:
        return own
    ranks = [index[key] for key in map(normalise_name, names[1:]) if key in index]
    return min(ranks, default=None)


def score_cast(
    storyboard: Storyboard, reference: Reference, chapters: dict[int, str] | None = None
) -> ReferenceScore:
    """The cast against the reference: main-character recall in the top ``RECALL_TOP``
    (by the storyboard's own order of characters), junk and duplicates in the top
    ``JUNK_TOP``, and the chapters against the expected count and first heading."""
    index = _name_index(reference)
    matches = [_matched([c.name, *c.aliases], index) for c in storyboard.characters]
    in_top = {m for m in matches[:RECALL_TOP] if m is not None}
    ranks = {c.name: rank for rank, c in enumerate(reference.characters)}
    found = [name for name in reference.main if ranks[name] in in_top]
    in_cast = {m for m in matches[:CAST_TOP] if m is not None}
    cast = reference.characters[:REFERENCE_CAST]
    cast_missing = [c.name for rank, c in enumerate(cast) if rank not in in_cast]
    junk, duplicates, seen = [], [], set()
    for character, match in zip(storyboard.characters[:JUNK_TOP], matches, strict=False):
        if match is None:
            junk.append(character.name)
        elif match in seen:
            duplicates.append(f"{character.name} (= {reference.characters[match].name})")
        seen.add(match)
    top = min(len(storyboard.characters), JUNK_TOP)
    chapters = _chapters(storyboard) if chapters is None else chapters
    first = next(iter(chapters.values()), None)
    expected_first = reference.first_chapter
    return ReferenceScore(
        reference=reference.title,
        main_recall=len(found) / len(reference.main),
        main_found=found,
        main_missing=[name for name in reference.main if name not in found],
        cast_recall=1 - len(cast_missing) / len(cast),
        cast_missing=cast_missing,
        junk_share=_share(len(junk), top),
        junk=junk,
        duplicates=duplicates,
        chapters_expected=reference.chapters,
        first_chapter_expected=expected_first,
        first_chapter_ok=None
        if expected_first is None
        else first is not None and _squashed(first).startswith(_squashed(expected_first)),
    )


# ------------------------------------------------------------------------------ table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _names(names: Sequence[str], limit: int = 8) -> str:
    more = f", … {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def report_rows(report: QualityReport) -> list[tuple[str, str]]:
    """The report as (metric, value) rows for a table."""
    top_shot = max(report.shot_types.items(), key=lambda item: item[1], default=("–", 0))
    length = "–" if report.text_chars is None else f"{report.text_chars} chars"
    rows = [
        ("storyboard", f"{report.title} ({report.analyzer}{_model(report)})"),
        ("chapters", f"{report.chapters}, the first: {report.first_chapter or '–'}"),
        ("front-matter chapters", _names(report.front_matter_chapters) or "none"),
        ("scenes · panels · characters", f"{report.scenes} · {report.panels} · "
         f"{report.characters}"),
        ("dialogue lines", str(report.dialogue_lines)),
        ("named speaker", _pct(report.named_speaker_share)),
        ("narrator", _pct(report.narrator_share)),
        ("unknown speaker", _pct(report.unknown_speaker_share)),
        ("panels with a place", f"{_pct(report.located_panel_share)} "
         f"({report.distinct_locations} places)"),
        ("shot-type entropy", f"{_num(report.shot_type_entropy_bits)} bits of "
         f"{report.shot_type_entropy_max_bits:.2f}"),
        ("most used shot", f"{top_shot[0]} {_pct(report.top_shot_share)}"),
        ("panels per 10k chars", f"{_num(report.panels_per_10k_chars, 1)} ({length})"),
        ("prompt language", f"{_pct(report.prompt_language_consistency)} in "
         f"{report.prompt_script or '–'} ({report.prompt_script_source})"),
    ]  # fmt: skip
    if report.reference is not None:
        rows += _reference_rows(report.reference)
    return rows


def _model(report: QualityReport) -> str:
    return f", {report.model}" if report.model else ""


def _reference_rows(score: ReferenceScore) -> list[tuple[str, str]]:
    found, main = len(score.main_found), len(score.main_found) + len(score.main_missing)
    missing = f" (missing {_names(score.main_missing)})" if score.main_missing else ""
    junk = f" ({_names(score.junk)})" if score.junk else ""
    rows = [
        ("reference", score.reference),
        (f"main in top {RECALL_TOP}", f"{found}/{main} = {score.main_recall:.2f}{missing}"),
        (
            f"main cast in top {CAST_TOP}",
            f"{score.cast_recall:.2f}"
            + (f" (missing {_names(score.cast_missing)})" if score.cast_missing else ""),
        ),
        (f"junk in top {JUNK_TOP}", f"{_num(score.junk_share)}{junk}"),
        (f"duplicates in top {JUNK_TOP}", _names(score.duplicates) or "none"),
    ]
    if score.chapters_expected is not None:
        rows.append(("chapters expected", str(score.chapters_expected)))
    if score.first_chapter_expected is not None:
        verdict = "yes" if score.first_chapter_ok else "no"
        rows.append((f"first chapter is {score.first_chapter_expected}…", verdict))
    return rows
