"""Where and when a passage is set: place names, times of day, moods and scene transitions.

Places are read from narration only (a place named in speech is talked about, not where
the speakers stand). A Chinese place is a word ending in a place suffix (州, 城, 山, 殿 …)
after a verb of being or going somewhere (在, 至, 入, 往 …), trimmed of what the verb took
along (引兵徐州 → 徐州) and refused when it is only a suffix or a bare pointer to one
(江, 城, 本寨). An English place is "the garden" after a preposition, or a capitalised
name after one that is no character of the cast, month or language ("in London").
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from service.analysis.offline_text import CJK, Language, words

TimeOfDay = Literal["morning", "day", "evening", "night"]
Mood = Literal["angry", "fearful", "grieving", "joyful", "tense"]

_ZH_SUFFIXES = (
    "城州郡县关山寨营宫殿府亭江河坡谷原口桥村寺庄园阁楼台堂院岭林溪湖川洞冈泉镇都阳海峡岛门厅宅庙"
)
# Being or arriving somewhere counts double; heading somewhere counts once.
_ZH_AT = "到至入于在回屯守进抵驻居宿"
_ZH_TOWARD = "往投奔赴望过近"
_ZH_PLACE = re.compile(
    rf"(?P<verb>[{_ZH_AT}{_ZH_TOWARD}])(?P<place>[{CJK}]{{0,4}}?[{_ZH_SUFFIXES}])"
)
_ZH_VERBS = set(_ZH_AT + _ZH_TOWARD)
# What a verb takes along before the place: 进兵徐州, 回到本寨.
_ZH_TRIM = set("兵军马师众人来去了得之也而又复发引领率起退移") | _ZH_VERBS
# A pointer, not a name: 本寨, 此城, 其营.
_ZH_POINTERS = set("本此其该彼他我吾汝敌各诸两一二三四五六七八九十")
_ZH_NOT_PLACES = frozenset({"江山", "山河", "天下", "门下", "口中", "心中"})

_EN_PLACE_NOUNS = (
    "hall|garden|house|wood|woods|court|courtroom|kitchen|pool|room|door|doorway|tree|sea|beach"
    "|river|bank|field|forest|castle|palace|street|road|city|town|village|cottage|shop|church"
    "|lake|hill|ground|croquet-ground|rabbit-hole|well|window|shore|school|meadow|passage|cave"
    "|mountain|harbour|harbor|ship|library|parlour|parlor|drawing-room|study|chapel|inn|station"
    "|train|carriage|coach|office|square|park|churchyard|graveyard|tomb|crypt|cellar|attic"
    "|staircase|stairs|corridor|balcony|terrace|courtyard|yard|stable|barn|farm|moor|heath"
    "|valley|bridge|port|dock|island|camp|tower|ruins|abbey|cathedral|asylum|hospital|hotel"
    "|ballroom|theatre|theater|market|lane|hut|cabin|tent|deck|shed|bedroom|dining-room|hallway"
)
_EN_PREPOSITIONS = (
    r"in|into|at|to|through|on|under|near|inside|across|towards?|from|round|outside|within"
    r"|reach(?:ed)?|entered|left|visited"
)
_EN_THE_PLACE = re.compile(
    rf"\b(?:{_EN_PREPOSITIONS})\s+the\s+(?P<place>(?:[a-z-]+\s+)?(?:{_EN_PLACE_NOUNS}))\b"
)
_EN_NAMED_PLACE = re.compile(
    rf"\b(?:{_EN_PREPOSITIONS})\s+(?P<place>[A-Z][a-z]{{2,}}(?:\s+[A-Z][a-z]{{2,}}){{0,2}})\b"
)
_EN_NOT_PLACES = frozenset(
    words(
        "January February March April May June July August September October November December"
        " Monday Tuesday Wednesday Thursday Friday Saturday Sunday English French German Latin"
        " Italian Spanish Dutch Greek God Heaven Christ The This That These Those His Her Their"
        " Mister Mrs Miss Lord Lady Sir Madam Madame Captain Doctor Professor King Queen Prince"
        " Princess Uncle Aunt Father Mother Brother Sister Master Mistress Count Countess"
    )
)

_TIMES: dict[Language, tuple[tuple[TimeOfDay, re.Pattern[str]], ...]] = {
    "zh": (
        ("night", re.compile(r"是夜|当夜|夜半|半夜|深夜|入夜|夜深|[一二三四]更|月下|月明|夜间")),
        ("evening", re.compile(r"黄昏|傍晚|日暮|日落|天晚|至晚|天色已晚|薄暮")),
        ("morning", re.compile(r"天明|清晨|平明|黎明|拂晓|早晨|次早|五更|侵晨|凌晨")),
        ("day", re.compile(r"日中|正午|午时|晌午|白日|烈日")),
    ),
    "en": (
        ("night", re.compile(r"\b(?:night|midnight|moonlight|starlight)\b", re.IGNORECASE)),
        ("evening", re.compile(r"\b(?:evening|dusk|twilight|sunset)\b", re.IGNORECASE)),
        ("morning", re.compile(r"\b(?:morning|dawn|sunrise|daybreak)\b", re.IGNORECASE)),
        ("day", re.compile(r"\b(?:noon|midday|afternoon|sunshine)\b", re.IGNORECASE)),
    ),
}
_MOODS: dict[Language, tuple[tuple[Mood, re.Pattern[str]], ...]] = {
    "zh": (
        ("angry", re.compile(r"大怒|怒|叱|喝骂|大骂|咬牙")),
        ("fearful", re.compile(r"大惊|惊|惧|慌|骇|失色")),
        ("grieving", re.compile(r"哭|泣|泪|哀|悲|恸")),
        ("tense", re.compile(r"战|杀|斗|厮|围|追|刀|枪|箭")),
        ("joyful", re.compile(r"大喜|笑|喜|欢|乐")),
    ),
    "en": (
        ("angry", re.compile(r"\b(?:angr|furious|rage|shout|roar|scold)", re.IGNORECASE)),
        ("fearful", re.compile(r"\b(?:fright|afraid|terrif|scream|trembl|fear|alarm)", re.I)),
        ("grieving", re.compile(r"\b(?:tears|cry|cried|sob|weep|wept|sad|mourn)", re.I)),
        ("tense", re.compile(r"\b(?:fight|battle|sword|attack|chase|struggl)", re.IGNORECASE)),
        ("joyful", re.compile(r"\b(?:laugh|smil|delight|glad|happy|joy|merr)", re.IGNORECASE)),
    ),
}
_CROWDS = {
    "zh": re.compile(
        r"[数十百千万]万|[千万]人|[千万]余人|大军|两军|三军|人马|军马|百官|群臣|众将|列阵|布阵"
        r"|阵势|百姓|众妖|群妖|众僧"
    ),
    "en": re.compile(
        r"\b(?:army|armies|crowd|soldiers|troops|procession|jury|guests|multitude|everybody"
        r"|courtiers|the whole party|mob)\b",
        re.IGNORECASE,
    ),
}
_SCENE_MARKERS = {
    "zh": re.compile(
        r"^(?:却说|且说|话说|再说|却表|且表|话分两头|却言|且言|次日|明日|翌日|是夜|当夜|是日|至晚"
        r"|天明|平明|数日|不一日|不数日|不日|三日后|旬日|月余|半月|过了|忽一日|一日|时值|是时)"
    ),
    "en": re.compile(
        r"^(?:Meanwhile|The next (?:day|morning|evening)|Next (?:day|morning)"
        r"|That (?:night|evening)|Later|Some (?:time|days|weeks|hours) (?:later|after)"
        r"|The following|Early (?:the|next)"
        r"|Soon after|When (?:she|he|they) (?:reached|arrived|got)|\*\s*\*\s*\*)"
    ),
}


def places(text: str, language: Language, people: Collection[str] = ()) -> list[tuple[str, int]]:
    """The places a narrative text says someone is at or goes to, each with a weight:
    2 for being or arriving there, 1 for heading there. ``people`` are names that are never
    places (the cast)."""
    if language == "zh":
        return _chinese_places(text, people)
    found = [("the " + m["place"], 2) for m in _EN_THE_PLACE.finditer(text)]
    for match in _EN_NAMED_PLACE.finditer(text):
        name = match["place"]
        if name.split()[0] not in _EN_NOT_PLACES and name not in people:
            found.append((name, 2))
    return found


def _chinese_places(text: str, people: Collection[str]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for match in _ZH_PLACE.finditer(text):
        place = match["place"]
        # A second verb inside means the place starts after it: 进兵发至黎阳 → 黎阳.
        inner = [i for i, ch in enumerate(place[:-1]) if ch in _ZH_VERBS]
        if inner:
            place = place[inner[-1] + 1 :]
        while len(place) > 1 and place[0] in _ZH_TRIM:
            place = place[1:]
        if valid_chinese_place(place) and place not in people:
            found.append((place, 2 if match["verb"] in _ZH_AT else 1))
    return found


def valid_chinese_place(place: str) -> bool:
    """Whether a word ending in a place suffix names a place: not the suffix alone (江),
    not a pointer to one (本寨, 此城)."""
    if len(place) < 2 or place in _ZH_NOT_PLACES:
        return False
    return not (len(place) == 2 and place[0] in _ZH_POINTERS)


def time_of_day(text: str, language: Language) -> TimeOfDay | None:
    """The time of day a passage names first in the order night, evening, morning, day."""
    for label, pattern in _TIMES[language]:
        if pattern.search(text):
            return label
    return None


def mood(text: str, language: Language) -> Mood | None:
    """The strongest feeling a passage shows, if any."""
    for label, pattern in _MOODS[language]:
        if pattern.search(text):
            return label
    return None


def shows_crowd(text: str, language: Language) -> bool:
    """Whether a passage shows an army, a crowd or a court rather than a few people."""
    return _CROWDS[language].search(text) is not None


_VERSE_SIGNS = re.compile(r"调寄|诗曰|词曰|有诗为证|诗云|赞曰|歌曰")
_VERSE_LINE_CHARS = 40
_CLAUSE = re.compile(r"[，。；！？、,.;!?\s]+")


def is_verse(paragraph: str, language: Language) -> bool:
    """Whether a Chinese paragraph is a poem: a sign like 调寄 or 诗曰, or clauses nearly all
    of five or seven characters. A poem shows no place and starts no scene."""
    if language != "zh":
        return False
    if _VERSE_SIGNS.search(paragraph):
        return True
    # Counted on the clause lengths, which keeps the per-paragraph work in C.
    lengths = [*map(len, _CLAUSE.split(paragraph))]
    clauses = len(lengths) - lengths.count(0)
    if len(paragraph) <= _VERSE_LINE_CHARS and clauses >= 2:
        # A poem set one couplet a line: every clause four to seven characters.
        return all(4 <= n <= 7 for n in lengths if n)
    metred = lengths.count(4) + lengths.count(5) + lengths.count(7)
    return clauses >= 4 and metred >= 0.8 * clauses


def opens_scene(paragraph: str, language: Language) -> bool:
    """Whether the paragraph opens with a transition to a new scene or a new time."""
    return _SCENE_MARKERS[language].match(paragraph) is not None
