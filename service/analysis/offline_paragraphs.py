"""A chapter's paragraphs, read one at a time for what they contribute to the storyboard.

Paragraphs are blank-line or indentation separated blocks with their hard line wraps
re-joined; long ones are cut into beats of panel size. Reading a paragraph finds who it
mentions, who speaks its quotations, its narrative sentences, the places it names and
whether it opens a new scene, and notes what characters look like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from service.analysis.chapters import sentence_spans, split_sentences
from service.analysis.offline_dialogue import Attributed, Mentions, Quote, Speakers, find_quotes
from service.analysis.offline_looks import Looks
from service.analysis.offline_names import Cast, Mention
from service.analysis.offline_places import (
    is_verse,
    mood,
    opens_scene,
    places,
    shows_crowd,
    time_of_day,
)
from service.analysis.offline_scenes import TARGET_PANEL_CHARS, Para
from service.analysis.offline_text import Language, SpanCover, clip, count_between, is_cjk
from service.storyboard import UNKNOWN

# Longer paragraphs are read as several beats so that one panel never has to stand for a
# whole page of a classical novel's run-on paragraphs.
MAX_BEAT_CHARS = 2 * TARGET_PANEL_CHARS
DIALOGUE_CHARS = 160
# At least this many quotations of a paragraph are read, and more only one per this many
# characters (``_quotes_read``).
MIN_QUOTES_READ = 4
QUOTE_SPACING_CHARS = 10
# Below this mean paragraph length a chapter's paragraphs are packed together (``_packed``).
MIN_MEAN_PARAGRAPH_CHARS = 12

_CN_TAG_ONLY = re.compile(r"[^。！？]{0,12}(?:曰|道|云|说|问|答)[：:，,]?")
_EN_WORD = re.compile(r"[A-Za-z]+")

# --------------------------------------------------------------------------- splitting


def chapter_beats(body: str, language: Language) -> list[str]:
    """The chapter body as paragraphs, long ones cut into beats of panel size."""
    paragraphs = _split_paragraphs(body)
    if paragraphs and sum(map(len, paragraphs)) < MIN_MEAN_PARAGRAPH_CHARS * len(paragraphs):
        paragraphs = _packed(paragraphs)
    return [beat for paragraph in paragraphs for beat in _beats(paragraph, language)]


def _packed(paragraphs: list[str]) -> list[str]:
    """Runs of tiny paragraphs joined into pieces of about a panel's size.

    Reading a paragraph has a fixed cost, so a text cut into paragraphs of a character or
    two would cost many times more per character than prose; no novel's chapter has
    paragraphs that short on average, a crafted text does.
    """
    packed: list[str] = []
    run: list[str] = []
    size = 0
    for paragraph in paragraphs:
        run.append(paragraph)
        size += len(paragraph)
        if size >= TARGET_PANEL_CHARS:
            packed.append(_join_lines(run))
            run, size = [], 0
    if run:
        packed.append(_join_lines(run))
    return packed


def _split_paragraphs(body: str) -> list[str]:
    """Paragraphs with their hard line wraps re-joined.

    A blank line ends a paragraph, and so does an indented line: many Chinese files put
    one paragraph per ``　　``-indented line with no blank lines between them.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    for line in body.split("\n"):
        indented = line[:1].isspace()
        if not line.strip() or (indented and current):
            if current:
                paragraphs.append(_join_lines(current))
            current = []
        if line.strip():
            current.append(line.strip())
    if current:
        paragraphs.append(_join_lines(current))
    return paragraphs


def _join_lines(lines: list[str]) -> str:
    joined = lines[0]
    for line in lines[1:]:
        # Chinese has no spaces between words, so a wrap inside Chinese text joins tight.
        tight = is_cjk(joined[-1]) or is_cjk(line[0])
        joined += line if tight else " " + line
    return joined


def _beats(paragraph: str, language: Language) -> list[str]:
    """A paragraph cut on sentence ends outside quotations into pieces of panel size."""
    if len(paragraph) <= MAX_BEAT_CHARS:
        return [paragraph]
    quoted = SpanCover((start, stop) for start, stop, _ in find_quotes(paragraph, language))
    starts = [0]
    for _, end in sentence_spans(paragraph):
        inside_quote = quoted.covers(end, past_start=True)
        if not inside_quote and end - starts[-1] >= TARGET_PANEL_CHARS:
            starts.append(end)
    # A short tail reads better with the beat before it than as a panel of its own.
    if len(starts) > 1 and len(paragraph) - starts[-1] < TARGET_PANEL_CHARS // 3:
        starts.pop()
    bounds = zip(starts, [*starts[1:], len(paragraph)], strict=True)
    return [piece for a, b in bounds if (piece := paragraph[a:b].strip())]


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class Reader:
    """Reads paragraphs in order, remembering who was mentioned for bare names and ranking."""

    cast: Cast
    mentions: Mentions = field(init=False)
    speakers: Speakers = field(init=False)
    looks: Looks = field(init=False)

    def __post_init__(self) -> None:
        self.mentions = Mentions(self.cast)
        self.speakers = Speakers.of(self.mentions)
        self.looks = Looks(self.cast)

    def read(self, paragraph: str) -> Para:
        """Analyze the next paragraph (or beat) of the novel."""
        language = self.cast.language
        hits = self.cast.mentions_in(paragraph)
        quotes = find_quotes(paragraph, language)[: _quotes_read(paragraph)]
        dialogue, spoken = self.speakers.attribute(paragraph, quotes, hits)
        keys = [key for _, key in sorted([*hits, *spoken])]
        self.mentions.count(keys)
        quoted = [quote for quote, _ in dialogue]
        narrative = _narrative_sentences(paragraph, quoted, language)
        self.looks.describe(paragraph, narrative, dict.fromkeys(keys))
        told = "".join(narrative) if language == "zh" else " ".join(narrative)
        verse = is_verse(paragraph, language)
        return Para(
            size=len(paragraph),
            narrative=tuple(narrative),
            named=_mentions_within(paragraph, narrative, hits),
            dialogue=tuple((key, clip(text, DIALOGUE_CHARS)) for (_, _, text), key in dialogue),
            present=_present(hits, dialogue),
            places=()
            if verse
            else tuple(p for s in narrative for p in places(s, language, self.cast.forms)),
            scene_break=opens_scene(paragraph, language),
            verse=verse,
            time=time_of_day(told, language),
            mood=mood(paragraph, language),
            crowd=shows_crowd(told, language),
        )


def _quotes_read(paragraph: str) -> int:
    """How many of a paragraph's quotations are read as dialogue.

    Prose holds at most about one quotation per twenty characters (both corpus novels);
    a text packed denser is crafted, and reading every quotation of it would cost many
    times more per character than a novel. The rest stay in the narration.
    """
    return max(MIN_QUOTES_READ, len(paragraph) // QUOTE_SPACING_CHARS)


def _present(hits: list[Mention], dialogue: list[Attributed]) -> tuple[str, ...]:
    """Characters named outside the quotations or speaking them, in text order (an
    unknown speaker is no one to draw)."""
    if dialogue:
        quoted = SpanCover((a, b) for (a, b, _), _ in dialogue)
        outside = [(p, k) for p, k in hits if not quoted.covers(p)]
    else:
        outside = hits
    speakers = [(quote[0], k) for quote, k in dialogue if k is not None and k != UNKNOWN]
    return tuple(k for _, k in sorted([*outside, *speakers]))


def _mentions_within(paragraph: str, sentences: list[str], hits: list[Mention]) -> tuple[int, ...]:
    """How many mentions each sentence holds, found where the sentence first occurs."""
    positions = [position for position, _ in hits]
    counts = []
    for sentence in sentences:
        start = paragraph.find(sentence)
        counts.append(0 if start < 0 else count_between(positions, start, start + len(sentence)))
    return tuple(counts)


def _narrative_sentences(paragraph: str, quotes: list[Quote], language: Language) -> list[str]:
    """Sentences of the paragraph outside its dialogue, without leftover speech tags."""
    pieces = []
    position = 0
    for start, end, _ in quotes:
        pieces.append(paragraph[position:start])
        position = end
    pieces.append(paragraph[position:])
    # A blank line where each quotation was keeps its tag from gluing onto the next text.
    sentences = split_sentences("\n\n".join(pieces))
    return [s for s in sentences if _is_narrative(s, language)]


def _is_narrative(sentence: str, language: Language) -> bool:
    if language == "zh":
        # A bare tag is at most 14 characters long (``_CN_TAG_ONLY``).
        return len(sentence) >= 6 and (len(sentence) > 14 or not _CN_TAG_ONLY.fullmatch(sentence))
    words = _EN_WORD.findall(sentence)
    return len(words) >= 5 and sentence[0].isupper()
