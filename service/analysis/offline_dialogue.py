"""Quotations and who speaks them.

Each quotation is attributed to the character named in its speech tag; a poem, a
letter or an inscription (``后人有诗叹曰``, ``书略曰``) is the narrator's (``None``), and a
line whose speaker cannot be told is ``UNKNOWN``'s: better no name than a wrong one. A
Chinese tag may name a speaker by a bare given name (``操曰``, ``瑜曰`` after a comma),
which counts for the bearer of that given name mentioned last; a tag with no subject of its
own (``遂按剑而问曰``) is the sentence's subject's; one with a nameless subject (``一人大叫曰``)
is unknown. An English pronoun tag (``she said``) points at whoever was named last, and
untagged quotations in a paragraph with a single named speaker are that speaker's.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from service.analysis.offline_english_names import SPEECH_VERBS
from service.analysis.offline_names import Cast, Mention, strip_leads
from service.analysis.offline_text import Language
from service.storyboard import UNKNOWN

# ``(start, end, inner text)`` of a quotation in its paragraph.
Quote: TypeAlias = tuple[int, int, str]
# A quotation that is dialogue, and its speaker (``None`` for the narrator, ``UNKNOWN``
# for someone the text does not make clear).
Attributed: TypeAlias = tuple[Quote, str | None]

_CN_QUOTES = re.compile(r"“[^“”]*”?|「[^「」]*」?|『[^『』]*』?")
_CN_SPEECH_END = re.compile(r"(?:[曰道云说言问答叫喝骂呼叹笑奏告谏][：:，,]?|[：:])$")
# What ends a sentence, so that a speech tag after it starts a new one.
_CN_SENTENCE_END = re.compile(r"[。！？”」』]")
# How far back from a quotation its speech tag is looked for. Real tags are a clause
# long; a bound keeps a run of text with no sentence end from being read again for every
# quotation in it.
_TAG_LOOKBACK = 120
# The end-anchored tag patterns match a few characters at most, so only the region's
# tail is searched: a search for ``…$`` otherwise tries every position of the region.
_TAG_TAIL = 16
# A tag this short (答曰：) names no one; longer nameless tags (后人有诗曰：) are not a turn.
_BARE_TAG_CHARS = 3
# A name right after one of these is the one spoken to, not the speaker.
_CN_OBJECT_MARKERS = set("问谓告对与向见令命教使遣唤请拜呼叱骂劝谢顾")
# Tags of text that is read out or written, not spoken: poems, songs, letters, memorials,
# edicts and inscriptions are the narrator's.
_CN_NARRATION_TAG = re.compile(
    r"(?:[诗词歌谣偈颂赋][^，。！？“”]{0,3}|(?<!尚)书(?:略|中|上)?|[表诏檄榜]|[碑篆]文[^，。]{0,4}"
    r"|其文|上写|写道|写着)(?:曰|云|道|说)?[：:，,]?$"
)
# The clause before a tag, after the last comma: ``酒至数巡，瑜曰`` speaks for 瑜.
_CN_CLAUSE_BREAK = re.compile(r"[，,；;：:、]")
# A nameless subject in the clause of the tag: someone other than the last named.
_CN_SOMEONE = re.compile(r"一[人将员骑卒]|有人|其人|那人|此人|来人|众|诸|左右|[军士兵]|[探哨]马")
# Regulated verse: four or more lines of five or seven characters.
_CN_VERSE_LINE = re.compile(r"[^，。！？；、]+")
_VERSE_LINES = 4

# Pieces of English speech tags: what may come between a quotation and its tag, an
# adverb before the verb, and the rest of a tag that runs up to the next quotation.
_LEAD = r"^[\s,;:—-]*"
_ADVERB = r"(?:\w+ly\s+)?"
_TO_QUOTE = r"[^'\"‘’“”]{0,40}$"
_EN_ANY_TAG = re.compile(rf"{_LEAD}(?:[\w']+\s+){{0,3}}?(?:{SPEECH_VERBS})\b")
_EN_PRONOUN_AFTER = re.compile(
    rf"{_LEAD}(?:(?:she|he)\s+{_ADVERB}(?:{SPEECH_VERBS})|(?:{SPEECH_VERBS})\s+(?:she|he))\b"
)
_EN_PRONOUN_BEFORE = re.compile(rf"\b(?:[Ss]he|[Hh]e)\s+{_ADVERB}(?:{SPEECH_VERBS})\b{_TO_QUOTE}")

# --------------------------------------------------------------------------- quotations


def find_quotes(paragraph: str, language: Language) -> list[Quote]:
    """``(start, end, inner text)`` of each quotation in the paragraph."""
    if language == "zh":
        spans = [(m.start(), m.end()) for m in _CN_QUOTES.finditer(paragraph)]
        spans += _straight_quote_spans(paragraph)
        spans.sort()
    else:
        spans = _english_quote_spans(paragraph)
    quotes = []
    for start, end in spans:
        inner = paragraph[start + 1 : end].strip().strip("”」』\"'’")
        if inner.strip():
            quotes.append((start, end, inner.strip()))
    return quotes


def _straight_quote_spans(text: str) -> list[tuple[int, int]]:
    positions = [m.start() for m in re.finditer('"', text)]
    spans = list(zip(positions[::2], [p + 1 for p in positions[1::2]], strict=False))
    if len(positions) % 2:
        spans.append((positions[-1], len(text)))
    return spans


def _english_quote_spans(paragraph: str) -> list[tuple[int, int]]:
    """Quotations in English, telling quote marks from apostrophes by their neighbours.

    An unclosed quotation runs to the paragraph's end: English closes a speech that goes
    on into the next paragraph only there.
    """
    spans: list[tuple[int, int]] = []
    start: int | None = None
    family = ""
    for i, ch in enumerate(paragraph):
        if ch not in "'\"‘’“”":
            continue
        before = paragraph[i - 1] if i else " "
        after = paragraph[i + 1] if i + 1 < len(paragraph) else " "
        if start is None and _opens_quote(ch, before, after):
            start, family = i, _quote_family(ch)
        elif start is not None and _closes_quote(ch, before, after, family) and i > start + 1:
            spans.append((start, i + 1))
            start = None
    if start is not None:
        spans.append((start, len(paragraph)))
    return spans


def _quote_family(ch: str) -> str:
    return "single" if ch in "'‘’" else "double"


def _opens_quote(ch: str, before: str, after: str) -> bool:
    if ch in "‘“":
        return True
    # A straight mark opens after a space or bracket; one between letters is an apostrophe.
    return ch in "'\"" and (before.isspace() or before in "([—-") and not after.isspace()


def _closes_quote(ch: str, before: str, after: str, family: str) -> bool:
    # Inside a quotation only its own kind of mark can close it, so the nested
    # "Edwin and Morcar" in a single-quoted speech stays inside; a mark between letters
    # is an apostrophe.
    if _quote_family(ch) != family:
        return False
    return ch in '”"' or not (before.isspace() or after.isalnum())


def _looks_like_speech(text: str) -> bool:
    """A Chinese quotation without a tag is dialogue if long or sentence-like, not a term."""
    return len(text) >= 12 or (len(text) >= 4 and any(ch in "。！？，" for ch in text))


# --------------------------------------------------------------------------- mentions


@dataclass(slots=True)
class Mentions:
    """Who the text has named so far: how often, first when, and who was named last."""

    cast: Cast
    counts: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, int] = field(default_factory=dict)
    # A one-character given name (``操``) to the bearer of it mentioned last.
    recent: dict[str, str] = field(default_factory=dict)
    last: str | None = None

    def count(self, keys: list[str]) -> None:
        """Record the characters a paragraph mentions, in reading order."""
        for key in keys:
            self.counts[key] += 1
            self.first_seen.setdefault(key, len(self.first_seen))
        self.remember(keys)
        self.last = keys[-1] if keys else self.last

    def remember(self, keys: Iterable[str]) -> None:
        """Note these characters as the latest bearers of their given names."""
        shared = self.cast.shared_given
        for key in keys:
            given = shared.get(key)
            if given is not None:
                self.recent[given] = key

    def bearer(self, given: str) -> str | None:
        """Whom a bare given name means: its bearer named last, else its best-known one."""
        holders = self.cast.holders.get(given)
        if not holders:
            return None
        if given in self.recent:
            return self.recent[given]
        return max(holders, key=lambda k: (self.counts[k], -len(k), k))

    def ranked(self) -> list[str]:
        """Characters most mentioned first, ties in order of first appearance."""
        return sorted(self.counts, key=lambda k: (-self.counts[k], self.first_seen[k], k))


# --------------------------------------------------------------------------- speakers


@dataclass(slots=True)
class Speakers:
    """Finds the speaker of each quotation from its speech tag and recent mentions."""

    mentions: Mentions
    # English only: tags naming one of the cast after a quotation, then before one.
    tags_after: tuple[re.Pattern[str], ...] = ()
    tags_before: tuple[re.Pattern[str], ...] = ()
    # Chinese only: who spoke the last quotations of the conversation going on, if any.
    turns: list[str | None] = field(default_factory=list)

    @classmethod
    def of(cls, mentions: Mentions) -> Speakers:
        """Speaker finding for the cast the mentions are counted for."""
        pattern = mentions.cast.pattern
        if mentions.cast.language != "en" or pattern is None:
            return cls(mentions)
        names = pattern.pattern
        verbs = SPEECH_VERBS
        after = (
            re.compile(rf"{_LEAD}(?:{verbs})\s+(?:the\s+)?({names})"),
            re.compile(rf"{_LEAD}(?:[Tt]he\s+)?({names})\s+{_ADVERB}(?:{verbs})\b"),
        )
        before = (
            re.compile(rf"({names})\s+{_ADVERB}(?:{verbs})\b{_TO_QUOTE}"),
            re.compile(rf"(?:{verbs})\s+(?:the\s+)?({names}){_TO_QUOTE}"),
        )
        return cls(mentions, after, before)

    def attribute(
        self, paragraph: str, quotes: list[Quote], hits: list[Mention]
    ) -> tuple[list[Attributed], list[Mention]]:
        """Speaker of each quotation that is dialogue; bare-name speakers as extra hits."""
        if self.mentions.cast.language == "zh":
            return self._attribute_chinese(paragraph, quotes, hits)
        return self._attribute_english(paragraph, quotes, hits), []

    def _attribute_chinese(
        self, paragraph: str, quotes: list[Quote], hits: list[Mention]
    ) -> tuple[list[Attributed], list[Mention]]:
        dialogue: list[Attributed] = []
        spoken: list[Mention] = []
        seen = 0
        if not quotes:
            # A paragraph of narration ends the conversation.
            self.turns.clear()
        marks = _Marks.of(paragraph)
        for quote in quotes:
            # Names before the quotation decide whom a bare given name in its tag means.
            ahead = _count_before(hits, quote[0])
            self.mentions.remember(key for _, key in hits[seen:ahead])
            seen = max(seen, ahead)
            tag = self._chinese_tag(paragraph, quote, hits, marks)
            if tag.bare and tag.speaker is not None:
                spoken.append((quote[0], tag.speaker))
            speaker = tag.speaker
            if tag.kind == "narration":
                dialogue.append((quote, None))
                self.turns = []
                continue
            if speaker is None and _is_bare_reply(paragraph, quote[0], marks):
                speaker = self._next_turn()
            if speaker is not None or tag.kind == "nameless" or _looks_like_speech(quote[2]):
                dialogue.append((quote, speaker or UNKNOWN))
                self.turns = [*self.turns[-1:], speaker]
        return dialogue, spoken

    def _next_turn(self) -> str | None:
        """An untagged reply in a two-person exchange (A, B, then ?) is A's again."""
        if len(self.turns) < 2:
            return None
        before, last = self.turns[-2], self.turns[-1]
        return before if before is not None and last is not None and before != last else None

    def _chinese_tag(
        self, paragraph: str, quote: Quote, hits: list[Mention], marks: _Marks
    ) -> _Tag:
        """What the speech tag before a Chinese quotation says of its speaker.

        ``hits`` are the paragraph's mentions: names never span punctuation, so those
        inside the tag are the ones a search of the tag alone would find.
        """
        if _is_verse(quote[2]):
            return _Tag("narration")
        offset = marks.sentence_start(quote[0])
        region = paragraph[offset : quote[0]]
        tail = region[-_TAG_TAIL:]
        if not _CN_SPEECH_END.search(tail):
            return _Tag("none")
        if _CN_NARRATION_TAG.search(tail):
            return _Tag("narration")
        at = marks.clause_start(offset, quote[0]) - offset
        clause = region[at:]
        speaker, bare = self._subject(clause, _hits_from(hits, offset + at, quote[0]))
        if speaker is None and clause is not region and not _has_nameless_subject(clause):
            # No subject of its own (遂按剑而问曰): the sentence's subject speaks.
            speaker, bare = self._subject(region, _hits_from(hits, offset, quote[0]))
        return _Tag("named" if speaker else "nameless", speaker, bare)

    def _subject(self, clause: str, hits: list[Mention]) -> tuple[str | None, bool]:
        """The character a clause opens with: named in full, or by a bare given name.

        ``hits`` are the clause's mentions, positions relative to the clause.
        """
        lead = len(clause) - len(strip_leads(clause))
        named = _first_named(clause, hits)
        bare = self.mentions.bearer(clause[lead : lead + 1])
        if bare is not None and (named is None or lead < named[0]):
            return bare, True
        return (named[1] if named else None), False

    def _attribute_english(
        self, paragraph: str, quotes: list[Quote], hits: list[Mention]
    ) -> list[Attributed]:
        dialogue: list[Attributed] = []
        tagged: list[bool] = []
        for index, quote in enumerate(quotes):
            ahead = _count_before(hits, quote[0])
            last = hits[ahead - 1][1] if ahead else self.mentions.last
            speaker, has_tag = self._english_speaker(paragraph, quotes, index, last)
            dialogue.append((quote, speaker))
            tagged.append(has_tag)
        dialogue = _inherit_paragraph_speaker(dialogue, tagged)
        return self._english_turn(dialogue, tagged)

    def _english_turn(self, dialogue: list[Attributed], tagged: list[bool]) -> list[Attributed]:
        """Untagged speech in a two-person exchange (A, B, then ?) is A's again; a paragraph
        of narration ends the exchange. Lines still without a speaker are unknown's."""
        if not dialogue:
            self.turns.clear()
            return dialogue
        speakers = {key for _, key in dialogue if key is not None}
        if not speakers and not any(tagged):
            turn = self._next_turn()
            dialogue = [(quote, turn) for quote, _ in dialogue]
            speakers = {turn} if turn is not None else set()
        self.turns = [*self.turns[-1:], next(iter(speakers)) if len(speakers) == 1 else None]
        return [(quote, key or UNKNOWN) for quote, key in dialogue]

    def _english_speaker(
        self, paragraph: str, quotes: list[Quote], index: int, last_mentioned: str | None
    ) -> tuple[str | None, bool]:
        """Speaker named next to an English quotation (``'…,' said Alice``, ``Alice said, '…'``).

        The flag tells whether the quotation has a speech tag of its own, even one naming
        nobody in the cast (``they cried``).
        """
        quote = quotes[index]
        after_end = quotes[index + 1][0] if index + 1 < len(quotes) else len(paragraph)
        before_start = quotes[index - 1][1] if index else 0
        after = paragraph[quote[1] : min(after_end, quote[1] + 80)]
        before = paragraph[max(before_start, quote[0] - 80) : quote[0]]
        for text, patterns in ((after, self.tags_after), (before, self.tags_before)):
            for pattern in patterns:
                match = pattern.search(text)
                if match:
                    return self.mentions.cast.forms[match.group(1)], True
        # "'…,' she said": the pronoun most often points at whoever was named last.
        if _EN_PRONOUN_AFTER.search(after) or _EN_PRONOUN_BEFORE.search(before):
            return last_mentioned, True
        return None, _EN_ANY_TAG.search(after) is not None


@dataclass(frozen=True, slots=True)
class _Tag:
    """A Chinese speech tag: ``named`` (its speaker found), ``nameless`` (a tag naming no
    one in the cast), ``narration`` (a poem or letter) or ``none`` (no tag at all)."""

    kind: str
    speaker: str | None = None
    # Named by a bare given name (操曰), which counts as a mention.
    bare: bool = False


def _first_named(region: str, hits: list[Mention]) -> Mention | None:
    for position, key in hits:
        if position == 0 or region[position - 1] not in _CN_OBJECT_MARKERS:
            return position, key
    return None


def _hits_from(hits: list[Mention], start: int, end: int) -> list[Mention]:
    """The mentions between ``start`` and ``end``, positions made relative to ``start``."""
    first = _count_before(hits, start)
    return [(p - start, k) for p, k in hits[first : _count_before(hits, end)]]


def _has_nameless_subject(clause: str) -> bool:
    """Whether someone unnamed speaks in the clause (一人大叫曰), not is spoken to (对众曰)."""
    return any(
        m.start() == 0 or clause[m.start() - 1] not in _CN_OBJECT_MARKERS
        for m in _CN_SOMEONE.finditer(clause)
    )


def _is_verse(text: str) -> bool:
    """Whether a quotation is regulated verse: four or more lines of five or seven."""
    if len(text) < _VERSE_LINES * 5:
        return False  # too short to hold four lines of five
    lines = [*map(len, _CN_VERSE_LINE.findall(text))]
    return len(lines) >= _VERSE_LINES and len(set(lines)) == 1 and lines[0] in (5, 7)


def _is_bare_reply(paragraph: str, end: int, marks: _Marks) -> bool:
    """No speech tag, or one naming nobody (``答曰：``, ``遂曰：``): a turn of the conversation."""
    region = paragraph[marks.sentence_start(end) : end]
    return not _CN_SPEECH_END.search(region[-_TAG_TAIL:]) or len(region) <= _BARE_TAG_CHARS


@dataclass(frozen=True, slots=True)
class _Marks:
    """Where a paragraph's sentence ends and clause breaks are, found once for all its
    quotations: searching back from each quotation instead cost time in proportion to
    the text before it, for every quotation of a long paragraph."""

    sentence_ends: list[int]
    clause_breaks: list[int]

    @classmethod
    def of(cls, paragraph: str) -> _Marks:
        """The marks of one paragraph."""
        return cls(
            [*map(re.Match.start, _CN_SENTENCE_END.finditer(paragraph))],
            [*map(re.Match.start, _CN_CLAUSE_BREAK.finditer(paragraph))],
        )

    def sentence_start(self, end: int) -> int:
        """Where the sentence running up to ``end`` starts, at most ``_TAG_LOOKBACK`` back."""
        floor = max(0, end - _TAG_LOOKBACK)
        return max(floor, _last_before(self.sentence_ends, end) + 1)

    def clause_start(self, start: int, end: int) -> int:
        """Where the last clause of the tag ``start``..``end`` starts: after its last comma
        (or the like) before the tag's final character, else at ``start``."""
        return max(start, _last_before(self.clause_breaks, end - 1) + 1)


def _last_before(positions: list[int], end: int) -> int:
    """The last of the sorted ``positions`` before ``end``, or -1."""
    i = bisect_left(positions, end)
    return positions[i - 1] if i else -1


def _count_before(hits: list[Mention], position: int) -> int:
    """How many of the mentions, in text order, come before ``position``.

    ``(position,)`` sorts before every mention at ``position`` and after every one before
    it, so the tuples compare in C, with no key function called per step.
    """
    return bisect_left(hits, (position,))


def _inherit_paragraph_speaker(dialogue: list[Attributed], tagged: list[bool]) -> list[Attributed]:
    """Untagged quotations in a paragraph with a single named speaker are that speaker's."""
    speakers = {key for _, key in dialogue if key is not None}
    if len(speakers) != 1:
        return dialogue
    (speaker,) = speakers
    return [
        (quote, key if has_tag else speaker)
        for (quote, key), has_tag in zip(dialogue, tagged, strict=True)
    ]
