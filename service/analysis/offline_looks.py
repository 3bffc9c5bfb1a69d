"""What characters look like: the first sentence describing each one's looks.

Only sentences about appearance count: in Chinese two looks words (身长, 面如, 髯…) near
the name; in English a described feature ("a White Rabbit with pink eyes", "wore a
crown", "a large blue caterpillar"), never a body part in an action ("it just grazed his
nose", "opened his eyes"). A character without such a sentence has no appearance note:
an image prompt is better without one than with a random line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.analysis.offline_names import CN_INTRODUCTION, Cast
from service.analysis.offline_text import Language, clip

# How long a character's description gets.
VISUAL_CHARS = 80

# English features and the words that describe them.
_EN_FEATURES = (
    r"(?:eyes|hair|face|whiskers|beard|moustache|tail|wings|paws|claws|spectacles|nose|ears"
    r"|shell|cloak|gown|robe|coat|waistcoat|hat|crown|feathers|teeth|grin|skin|neck"
    r"|scales|dress|apron|cap|boots|uniform|livery)"
)
_EN_LOOKS = (
    r"(?:pink|white|red|green|blue|black|golden|gold|silver|grey|gray|brown|yellow|crimson"
    r"|long|short|large|little|great|tiny|huge|bright|curly|scaly|sharp|round|thin|fat"
    r"|sleek|shaggy|wrinkled|bald|tall|velvet|silk|powdered|curled|tall)"
)

_VISUAL = {
    "zh": re.compile(
        # Armour put on (披甲上马) is an action; armour worn (金甲, 铠) a look.
        r"身长|生得|面如|面若|唇若|眉|眼|髯|须|耳|头戴|身披|身穿|袍|铠|盔|[金银铁]甲|貌|肤|腰|手执|手提"
    ),
    "en": re.compile(
        rf"\b(?:with|has|had|having)\s+(?:(?:a|an|his|her|its|their|two)\s+)?"
        rf"(?:{_EN_LOOKS}[\s,]+){{0,2}}{_EN_FEATURES}\b"
        rf"|\b(?:wore|wearing|worn|dressed\s+in|had\s+on|clad\s+in)\b"
        rf"|\b{_EN_LOOKS}\s+(?:[a-z-]+\s+)?{_EN_FEATURES}\b"
        rf"|\b(?:was|looked|is|seemed)\s+(?:very\s+|rather\s+|quite\s+)?"
        rf"(?:tall|short|fat|stout|thin|tiny|huge|old|young|pale|ugly|handsome|beautiful)\b",
        re.IGNORECASE,
    ),
}
# How many looks words a sentence needs to describe someone's looks.
_MIN_CUES = {"zh": 2, "en": 1}
# How far after a name its looks may start: 玄德见孔明身长八尺 is about 孔明, "a White
# Rabbit with pink eyes" about the Rabbit.
_NAME_TO_CUE = {"zh": 4, "en": 30}


@dataclass(slots=True)
class Looks:
    """Each character's description, gathered as the paragraphs are read."""

    cast: Cast
    descriptions: dict[str, str] = field(default_factory=dict)

    def describe(self, paragraph: str, narrative: list[str], keys: Iterable[str]) -> None:
        """Take descriptions from the narrative sentences of the next paragraph."""
        for sentence in narrative:
            found = _visual_subject(self.cast, paragraph, sentence)
            if found is not None and found[0] not in self.descriptions:
                subject, at = found
                # 玄德见孔明身长八尺…: what comes before the subject's name is not their look.
                look = sentence[at:] if self.cast.language == "zh" else sentence
                self.descriptions[subject] = _visual_clauses(look, self.cast.language)
        del keys  # who is on stage does not change what the sentences say of looks

    def of(self, key: str, default: str) -> str:
        """The character's looks, else ``default``."""
        return self.descriptions.get(key) or default


def _visual_subject(cast: Cast, paragraph: str, sentence: str) -> tuple[str, int] | None:
    """Whom a sentence describes, and where their name starts, if it describes looks."""
    language = cast.language
    cues = [m.start() for m in _VISUAL[language].finditer(sentence)]
    if len(cues) < _MIN_CUES[language]:
        return None
    if language == "zh":
        introduced = _introduced_near(cast, paragraph, sentence)
        if introduced is not None:
            return introduced, 0
    hits = cast.mention_spans(sentence)
    # The looks belong to the name they follow most closely.
    window = _NAME_TO_CUE[language]
    near = [
        (cue - end, start, key)
        for start, end, key in hits
        for cue in cues
        if 0 <= cue - end <= window
    ]
    if near:
        _, start, key = min(near)
        # "Alice noticed, had powdered hair": a clause break between name and looks
        # means the looks are someone else's.
        end = start + len(sentence[start:].split(",")[0])
        if language == "en" and not any(start <= cue <= end for cue in cues):
            return None
        return key, start
    # English looks are rarely stated right after the name, and then not reliably theirs.
    sole = language == "zh" and len({key for _, _, key in hits}) == 1
    return (hits[0][2], hits[0][0]) if sole else None


def _introduced_near(cast: Cast, paragraph: str, sentence: str) -> str | None:
    """The character a ``姓刘名备`` introduction next to the sentence names.

    Looks are given just before the introduction (…面如冠玉…姓刘名备) or just after it.
    """
    at = max(paragraph.find(sentence), 0)
    after = CN_INTRODUCTION.search(paragraph, at, at + len(sentence) + 120)
    before = list(CN_INTRODUCTION.finditer(paragraph, max(at - 60, 0), at))
    for match in [after, *reversed(before)]:
        if match is not None and match["s"] + match["g"] in cast.people:
            return str(match["s"] + match["g"])
    return None


def _visual_clauses(sentence: str, language: Language) -> str:
    clauses = re.split(r"[，；：,;:]", sentence)
    kept = [c.strip() for c in clauses if _VISUAL[language].search(c)]
    joiner = "，" if language == "zh" else ", "
    return clip(joiner.join(kept) or sentence, VISUAL_CHARS).rstrip("。！？.!?")
