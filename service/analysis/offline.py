"""The offline analyzer: a deterministic, heuristic storyboard without any model or network.

It exists so the pipeline works end to end with no API key, and as the baseline any model
backed analyzer has to beat. Everything is derived from the text with regular expressions
and counting, so the same text always yields the same storyboard.

How it reads a novel:

* chapters come from :func:`service.analysis.chapters.split_chapters`; paragraphs are
  blank-line or indentation separated blocks with their hard line wraps re-joined;
* the cast comes from speech tags (``玄德曰：“…”``, ``said the Hatter``), Chinese
  ``姓刘名备，字玄德`` introductions (which also merge courtesy names into one character)
  and ``关公``-style honorifics; characters are ranked by how often any of their names is
  mentioned, and a bare given name in a speech tag (``操曰``) counts for the character
  with that given name last mentioned;
* each quotation is attributed to the character named in its speech tag, else to the
  narrator;
* each chapter is cut into at most ``MAX_SCENES_PER_CHAPTER`` scenes, preferring
  paragraphs that open with a transition (``却说``, ``Meanwhile``), and each scene into at
  most ``MAX_PANELS_PER_SCENE`` panels of consecutive paragraphs. ``MAX_TOTAL_PANELS``
  shrinks the per-chapter share for novels with very many chapters, so even a long novel
  stays at a few thousand panels.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from service.analysis.chapters import Chapter, sentence_spans, split_chapters, split_sentences
from service.ports import AnalysisError, NovelText, ProgressCallback
from service.storyboard import (
    NARRATOR,
    Character,
    DialogueLine,
    Meta,
    Panel,
    Scene,
    ShotType,
    Storyboard,
)

__all__ = [
    "MAX_PANELS_PER_SCENE",
    "MAX_SCENES_PER_CHAPTER",
    "MAX_TOTAL_PANELS",
    "OfflineAnalyzer",
    "build_storyboard",
]

Language = Literal["zh", "en"]

MAX_SCENES_PER_CHAPTER = 6
MAX_PANELS_PER_SCENE = 5
MAX_TOTAL_PANELS = 4000
# Even in a novel with thousands of chapters every chapter gets a panel of its own.
MIN_PANELS_PER_CHAPTER = 1
# Roughly how much source text one panel stands for before a chapter hits its cap.
TARGET_PANEL_CHARS = 250
# Longer paragraphs are read as several beats so that one panel never has to stand for a
# whole page of a classical novel's run-on paragraphs.
MAX_BEAT_CHARS = 2 * TARGET_PANEL_CHARS
MAX_PANEL_CHARACTERS = 4
MAX_SCENE_CHARACTERS = 8
MAX_PANEL_DIALOGUE = 3
# A spoken line claims a share of a panel, so talkative passages get more panels and
# fewer lines are left out for want of room.
DIALOGUE_WEIGHT = TARGET_PANEL_CHARS // MAX_PANEL_DIALOGUE
# The cast lists the most mentioned characters plus anyone who appears in a panel.
TOP_CHARACTERS = 30
# A name must be seen in this many speech tags before it is believed.
MIN_TAG_COUNT = 2
# Without a known surname a Chinese speech-tag name needs more evidence.
MIN_TAG_COUNT_WITHOUT_SURNAME = 5

DIALOGUE_CHARS = 160
NARRATION_CHARS = 160
DESCRIPTION_CHARS = 200
SUMMARY_CHARS = 240
VISUAL_CHARS = 80
UNSPECIFIED_LOCATION = "unspecified location"

# --------------------------------------------------------------------------- text basics

_CJK_RANGES = (("\u2e80", "\u9fff"), ("\uf900", "\ufaff"), ("\uff00", "\uffef"))
_CJK = "\u4e00-\u9fff"


def _is_cjk(ch: str) -> bool:
    return any(lo <= ch <= hi for lo, hi in _CJK_RANGES)


def _detect_language(text: str) -> Language:
    """Chinese when ideographs outnumber Latin letters in the opening of the text."""
    sample = text[:20_000]
    cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in sample if ch.isascii() and ch.isalpha())
    return "zh" if cjk > latin else "en"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


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


def _beats(paragraph: str, language: Language) -> list[str]:
    """A paragraph cut on sentence ends outside quotations into pieces of panel size."""
    if len(paragraph) <= MAX_BEAT_CHARS:
        return [paragraph]
    quotes = _find_quotes(paragraph, language)
    starts = [0]
    for _, end in sentence_spans(paragraph):
        inside_quote = any(start < end < stop for start, stop, _ in quotes)
        if not inside_quote and end - starts[-1] >= TARGET_PANEL_CHARS:
            starts.append(end)
    # A short tail reads better with the beat before it than as a panel of its own.
    if len(starts) > 1 and len(paragraph) - starts[-1] < TARGET_PANEL_CHARS // 3:
        starts.pop()
    bounds = zip(starts, [*starts[1:], len(paragraph)], strict=True)
    return [piece for a, b in bounds if (piece := paragraph[a:b].strip())]


def _join_lines(lines: list[str]) -> str:
    joined = lines[0]
    for line in lines[1:]:
        # Chinese has no spaces between words, so a wrap inside Chinese text joins tight.
        tight = _is_cjk(joined[-1]) or _is_cjk(line[0])
        joined += line if tight else " " + line
    return joined


# --------------------------------------------------------------------------- vocabularies


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated word lists, kept readable as one string in the source."""
    return tuple(text.split())


_SURNAMES = set(
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章"
    "云苏潘葛奚范彭郎鲁韦昌马苗凤花方俞任袁柳酆鲍史唐费廉岑薛雷贺倪汤滕殷罗毕郝邬安常"
    "乐于傅皮卞齐康伍余元卜顾孟平黄穆萧尹姚邵湛汪祁毛禹狄米贝臧计伏成戴谈宋茅庞熊纪舒"
    "屈项祝董梁杜阮蓝闵席季麻强贾路娄危江童颜郭梅盛林刁钟徐邱骆高夏蔡田樊胡凌霍虞万支"
    "柯昝管卢莫经房裘缪干解应宗丁宣贲邓郁单杭洪包左石崔吉钮龚程嵇邢滑裴陆荣翁荀羊於惠"
    "甄曲家封芮羿储靳汲邴糜松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫宁仇栾暴"
    "甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄印宿白怀蒲邰鄂索咸籍赖卓蔺屠蒙池乔阴胥苍"
    "双闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍郤璩桑桂濮牛寿边扈燕冀郏浦尚农温别庄晏柴瞿阎充"
    "慕连茹习宦艾鱼容古易慎戈廖庾终暨居衡步耿满弘匡寇广禄阙欧殳沃利蔚越夔隆师巩厍聂晁"
    "勾敖融冷訾辛阚简饶曾毋沙乜养鞠须丰巢关蒯查荆红游竺权逯盖益桓文"
)
_COMPOUND_SURNAMES = _words(
    "司马 上官 欧阳 夏侯 诸葛 闻人 东方 赫连 皇甫 尉迟 公羊 澹台 公冶 宗政 濮阳 淳于 单于"
    " 太叔 申屠 公孙 仲孙 轩辕 令狐 钟离 宇文 长孙 慕容 鲜于 闾丘 司徒 司空 端木 百里 东郭"
    " 南宫 呼延 太史 万俟 拓跋 独孤 第五"
)

# Characters that never sit inside a name but often follow one in a speech tag.
_CN_NOT_NAME = set(
    "曰说道问答叫呼喝骂怒喜笑叹惊泣哭谏奏告报谓对略诗之其众皆乃遂又亦也乎哉者了着这那些我你他吾汝"
    "声叱指令付嘱劝止等触出"
)
# Roles, titles and groups that speak but are not one identifiable person.
_CN_GENERIC = frozenset(
    _words(
        "左右 使者 童子 众将 诸将 众官 百官 军士 将士 壮士 小童 牧童 先主 后主 丞相 天子 陛下 皇帝"
        " 太后 主公 将军 太守 都督 军师 先生 国舅 皇叔 使君 明公 诸公 世子 公子 小校 从人 近臣 侍臣"
        " 门吏 探马 细作 守将 老将 夫人 谋士 二将 三将 使臣 天使 土人 老人 众人 二人 三人 其人 此人"
        " 一人 贼将 小卒 军校 部将 众军 百姓 父老 侍者 家人 妇人 道人 长老 老者 书生 太医 女子 哨马"
        " 伏路 流星 守门 门人 大将 上将 小将 官军"
    )
)
_CN_DIGITS_ALL = set("一二三四五六七八九十两百千数")
_CN_TITLE_ENDINGS = tuple("王帝主后侯相臣吏官卒兵军人")
_CN_LEADS = _words("却说 且说 话说 只见 但见 当下 于是 次日 忽 乃 遂 因 又 便 却 时 亦")
# A name right after one of these is the one spoken to, not the speaker.
_CN_OBJECT_MARKERS = set("问谓告对与向见令命教使遣唤请拜呼叱骂劝谢")
_CN_SPEECH_END = re.compile(r"(?:[曰道云说言问答叫喝骂呼叹笑奏告谏][：:，,]?|[：:])$")
_CN_SCENE_MARKERS = re.compile(
    r"^(?:却说|且说|话说|再说|却表|且表|话分两头|次日|是夜|当夜|至晚|天明|数日后|不一日|却言)"
)
_CN_SEED = re.compile(
    rf"(?:复|覆)?姓(?P<s>[{_CJK}]{{1,2}}?)，?名(?P<g>[{_CJK}]{{1,2}}?)"
    rf"(?=[，。；、”：]|字)(?:，?字(?P<z>[{_CJK}]{{2}})"
    rf"(?:，(?:后|又)改(?:字)?(?P<z2>[{_CJK}]{{2}}))?)?"
)
_CN_COURTESY = re.compile(rf"(?P<n>[{_CJK}]{{2,3}})字(?P<z>[{_CJK}]{{2}})(?=[，。；])")
_CN_TAG = re.compile(rf"(?<![{_CJK}])(?P<clause>[{_CJK}]{{1,8}}?)(?:曰|道)[：:，,]?(?=[“「『\"])")
_CN_QUOTES = re.compile(r"“[^“”]*”?|「[^「」]*」?|『[^『』]*』?")
_CN_SENTENCE_START = re.compile(r"[。！？”」』]")
_CN_TAG_ONLY = re.compile(r"[^。！？]{0,12}(?:曰|道|云|说|问|答)[：:，,]?")
_CN_PLACE = re.compile(
    rf"(?:到|至|往|入|于|在|投|回|屯|守|奔|过|进|赴|离|出|近|望)"
    rf"(?P<place>[{_CJK}]{{0,3}}?(?:城|州|郡|县|关|山|寨|营|宫|殿|府|亭|江|河|坡|谷|原|口|桥"
    rf"|村|寺|庄|园|阁|楼|台|堂|院|岭|林|溪|湖|川|洞|冈|泉|镇|都|阳|海))"
)
_CN_VISUAL = re.compile(
    r"身长|生得|面如|面若|唇若|眉|眼|髯|须|耳|头戴|身披|身穿|披|袍|甲|貌|肤|腰|手执|手提"
)

_EN_VERBS = (
    "said|says|say|cried|asked|thought|replied|exclaimed|shouted|remarked|whispered|added"
    "|repeated|answered|observed|continued|began|went on|interrupted|screamed|growled|sighed"
    "|called|muttered|pleaded|roared|sobbed|inquired|returned|yelled|murmured|grunted"
    "|snapped|suggested|explained|insisted|declared|demanded|urged|retorted|protested"
    "|gasped|panted|said to herself|said to himself"
)
_EN_CAP = r"[A-Z][a-z]+(?:-[A-Za-z][a-z]+)*"
_EN_PHRASE = rf"(?:[Tt]he\s+)?{_EN_CAP}(?:\s+{_EN_CAP}){{0,2}}"
_EN_TAGS = (
    re.compile(rf"\b(?:{_EN_VERBS})\s+(?P<n>{_EN_PHRASE})"),
    re.compile(rf"(?P<n>{_EN_PHRASE})\s+(?:{_EN_VERBS})\b"),
)
# Capitalised words that start sentences or address people but never name a character.
_EN_STOP = frozenset(
    _words(
        "the a an and but or so then when what which who whom why how where here there this"
        " that these those it its i you he she we they me him her us them my your his our"
        " their oh ah well yes no not now just only very do don come let if in on at of for"
        " with as by to from up down out off over one all some any everybody nobody somebody"
        " everything nothing anything something chapter mr mrs miss sir madam lady lord"
        " majesty please thank thanks good dear poor still again never ever soon once while"
        " after before perhaps indeed really sure certainly quite hush stop wait look listen"
        " alas ugh ahem hm hmm would could should shall will can may might must other"
        " another each every both first last next"
    )
)
_EN_SCENE_MARKERS = re.compile(
    r"^(?:Meanwhile|The next (?:day|morning)|Next (?:day|morning)|That (?:night|evening)"
    r"|Later|Some time|\*\s*\*\s*\*)"
)
_EN_PLACE = re.compile(
    r"\b(?:in|into|at|to|through|on|under|near|inside|across|towards?|from|round|reach(?:ed)?)"
    r"\s+the\s+(?P<place>(?:[a-z-]+\s+)?(?:hall|garden|house|wood|court|courtroom|kitchen"
    r"|pool|table|room|door|doorway|tree|sea|beach|river|bank|field|forest|castle|palace"
    r"|street|road|city|town|village|cottage|shop|church|sky|lake|hill|ground|croquet-ground"
    r"|rabbit-hole|well|window|shore|school|meadow|passage|cave|mountain|harbour|ship))\b"
)
_EN_VISUAL = re.compile(
    r"\b(?:eyes|hair|face|wore|wearing|dressed|coat|waistcoat|hat|crown|grin|grinned|whiskers"
    r"|beard|tail|wings|paws|claws|spectacles|tall|fat|thin|tiny|pink|white|red|green|blue"
    r"|black|golden|silver|scaly|feathers|nose|ears|shell|cloak|gown|robe)\b",
    re.IGNORECASE,
)
_EN_WORD = re.compile(r"[A-Za-z]+")
_EN_ANY_TAG = re.compile(rf"^[\s,;:—-]*(?:[\w']+\s+){{0,3}}?(?:{_EN_VERBS})\b")
_EN_PRONOUN_AFTER = re.compile(
    rf"^[\s,;:—-]*(?:(?:she|he)\s+(?:\w+ly\s+)?(?:{_EN_VERBS})|(?:{_EN_VERBS})\s+(?:she|he))\b"
)
_EN_PRONOUN_BEFORE = re.compile(
    rf"\b(?:[Ss]he|[Hh]e)\s+(?:\w+ly\s+)?(?:{_EN_VERBS})\b[^'\"‘’“”]{{0,40}}$"
)


# --------------------------------------------------------------------------- the cast


@dataclass(slots=True)
class _Person:
    """A character while the cast is being worked out, keyed by its display name."""

    key: str
    surname: str = ""
    aliases: list[str] = field(default_factory=list)

    def add_alias(self, alias: str) -> None:
        if alias and alias != self.key and alias not in self.aliases:
            self.aliases.append(alias)

    @property
    def forms(self) -> list[str]:
        return [self.key, *self.aliases]


@dataclass(slots=True)
class _Cast:
    """Everyone the text names, with every surface form mapped to its character."""

    language: Language
    people: dict[str, _Person]
    forms: dict[str, str]
    # A one-character given name (``操``) to the characters who bear it.
    holders: dict[str, list[str]]
    pattern: re.Pattern[str] | None
    # English only: tag patterns after a quotation, then before one.
    tags_after: tuple[re.Pattern[str], ...] = ()
    tags_before: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(cls, language: Language, people: Iterable[_Person]) -> _Cast:
        by_key = {p.key: p for p in people}
        forms: dict[str, str] = {}
        holders: dict[str, list[str]] = {}
        for person in by_key.values():
            for form in person.forms:
                forms.setdefault(form, person.key)
            given = person.key[len(person.surname) :] if person.surname else ""
            if language == "zh" and len(given) == 1:
                holders.setdefault(given, []).append(person.key)
        pattern = _forms_pattern(language, forms)
        cast = cls(language, by_key, forms, holders, pattern)
        if language == "en" and pattern is not None:
            names = pattern.pattern
            cast.tags_after = (
                re.compile(rf"^[\s,;:—-]*(?:{_EN_VERBS})\s+(?:the\s+)?({names})"),
                re.compile(rf"^[\s,;:—-]*(?:[Tt]he\s+)?({names})\s+(?:\w+ly\s+)?(?:{_EN_VERBS})\b"),
            )
            cast.tags_before = (
                re.compile(rf"({names})\s+(?:\w+ly\s+)?(?:{_EN_VERBS})\b[^'\"‘’“”]{{0,40}}$"),
                re.compile(rf"(?:{_EN_VERBS})\s+(?:the\s+)?({names})[^'\"‘’“”]{{0,40}}$"),
            )
        return cast


def _forms_pattern(language: Language, forms: dict[str, str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    # Longest first so 刘玄德 wins over 玄德 and "White Rabbit" over "Rabbit".
    alternation = "|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f)))
    if language == "en":
        return re.compile(rf"\b(?:{alternation})\b")
    return re.compile(alternation)


def _surname_of(name: str) -> str:
    for compound in _COMPOUND_SURNAMES:
        if name.startswith(compound) and len(name) > len(compound):
            return compound
    return name[0] if len(name) >= 2 and name[0] in _SURNAMES else ""


def _discover_cast(language: Language, paragraphs: Sequence[str]) -> _Cast:
    if language == "zh":
        return _Cast.build(language, _discover_chinese(paragraphs))
    return _Cast.build(language, _discover_english(paragraphs))


def _discover_chinese(paragraphs: Sequence[str]) -> list[_Person]:
    """Characters of a Chinese novel, courtesy names and honorifics merged."""
    text = "\n".join(paragraphs)
    people: dict[str, _Person] = {}
    forms: dict[str, str] = {}
    for person in _chinese_seeds(text):
        _merge_person(people, forms, person)
    candidates = _chinese_tag_candidates(text)
    believed = set(candidates)
    honorifics = []
    for candidate in candidates:
        # 孔明嘱 and 荀攸进 are a name and the verb of its speech tag.
        if candidate in forms or candidate[:-1] in forms or candidate[:-1] in believed:
            continue
        owner = _surname_plus_alias_owner(candidate, people, forms)
        if owner is not None:
            people[owner].add_alias(candidate)
            forms[candidate] = owner
        elif _is_honorific(candidate):
            honorifics.append(candidate)
        else:
            _merge_person(people, forms, _Person(candidate, _surname_of(candidate)))
    _add_courtesy_names(text, people, forms)
    _add_honorifics(text, honorifics, people, forms)
    return list(people.values())


def _merge_person(people: dict[str, _Person], forms: dict[str, str], person: _Person) -> None:
    key = forms.get(person.key, person.key)
    target = people.setdefault(key, _Person(key, person.surname))
    for form in person.forms:
        if forms.setdefault(form, key) == key:
            target.add_alias(form)


def _chinese_seeds(text: str) -> Iterator[_Person]:
    """People introduced as ``姓刘名备，字玄德`` (courtesy names become aliases)."""
    for match in _CN_SEED.finditer(text):
        surname, given = match["s"], match["g"]
        person = _Person(surname + given, surname)
        for courtesy in (match["z"], match["z2"]):
            if courtesy:
                person.add_alias(courtesy)
                person.add_alias(surname + courtesy)
        yield person


def _chinese_tag_candidates(text: str) -> list[str]:
    """Names seen in ``X曰：“`` speech tags often enough to believe, most frequent first."""
    clauses = [_strip_leads(m["clause"]) for m in _CN_TAG.finditer(text)]
    exact = Counter(c for c in clauses if 2 <= len(c) <= 3 and _name_like(c))
    counts = Counter(exact)
    for clause in clauses:
        if len(clause) > 3 or clause not in exact:
            prefix = next((clause[:n] for n in (3, 2) if clause[:n] in exact), None)
            if prefix is not None and len(clause) > len(prefix):
                counts[prefix] += 1
    believed = [
        name
        for name, count in counts.items()
        if count >= MIN_TAG_COUNT and (_surname_of(name) or count >= MIN_TAG_COUNT_WITHOUT_SURNAME)
    ]
    return sorted(believed, key=lambda n: (-counts[n], n))


def _strip_leads(clause: str) -> str:
    changed = True
    while changed:
        changed = False
        for lead in _CN_LEADS:
            if clause.startswith(lead) and len(clause) > len(lead):
                clause, changed = clause[len(lead) :], True
    return clause


def _name_like(word: str) -> bool:
    surname = _surname_of(word)
    if word in _CN_GENERIC or word in _COMPOUND_SURNAMES:
        return False
    if any(ch in _CN_NOT_NAME for ch in word[len(surname) :]):
        return False
    # 大叫曰, 一人出曰, 二夫人曰: an adverb or a count, not a name.
    if word[0] == "大" or word[0] in _CN_DIGITS_ALL:
        return False
    # 汉中王, 魏主, 何后, 温侯: titles; but 甘夫人 names one woman.
    return not (word.endswith(_CN_TITLE_ENDINGS) and not word.endswith("夫人"))


def _is_honorific(word: str) -> bool:
    return len(word) == 2 and word[1] == "公"


def _surname_plus_alias_owner(
    word: str, people: dict[str, _Person], forms: dict[str, str]
) -> str | None:
    """The owner when ``word`` is a surname plus a known alias (刘 + 玄德)."""
    surname = _surname_of(word)
    owner = forms.get(word[len(surname) :]) if surname else None
    return owner if owner is not None and people[owner].surname == surname else None


def _add_courtesy_names(text: str, people: dict[str, _Person], forms: dict[str, str]) -> None:
    """Aliases from ``庞统字士元`` where the name before 字 is already a character."""
    for match in _CN_COURTESY.finditer(text):
        name = next((match["n"][-n:] for n in (3, 2) if match["n"][-n:] in forms), None)
        courtesy = match["z"]
        if name is None or courtesy in forms or not _name_like(courtesy):
            continue
        person = people[forms[name]]
        for alias in (courtesy, person.surname + courtesy if person.surname else ""):
            if alias and alias not in forms:
                person.add_alias(alias)
                forms[alias] = person.key


def _add_honorifics(
    text: str, honorifics: list[str], people: dict[str, _Person], forms: dict[str, str]
) -> None:
    """``关公`` in speech tags: a surname plus 公 names the clearly best-known bearer of it.

    Only honorifics that speak count: a bare ``魏公`` in narration is as likely a title
    (the Duke of Wei) as a person of that surname.
    """
    by_surname: dict[str, list[str]] = {}
    for key, person in people.items():
        if len(person.surname) == 1:
            by_surname.setdefault(person.surname, []).append(key)
    for honorific in honorifics:
        keys = by_surname.get(honorific[0], [])
        if not keys or honorific in forms:
            continue
        counts = {k: sum(text.count(f) for f in people[k].forms) for k in keys}
        ranked = sorted(keys, key=lambda k: (-counts[k], k))
        runner_up = counts[ranked[1]] if len(ranked) > 1 else 0
        # Only a bearer who dominates the surname can be meant by the bare honorific.
        if counts[ranked[0]] >= 2 * runner_up:
            people[ranked[0]].add_alias(honorific)
            forms[honorific] = ranked[0]


def _discover_english(paragraphs: Sequence[str]) -> list[_Person]:
    """Characters of an English novel from ``said X`` / ``X said`` speech tags."""
    counts: Counter[str] = Counter()
    for paragraph in paragraphs:
        for tag in _EN_TAGS:
            for match in tag.finditer(paragraph):
                name = _clean_english_name(match["n"])
                if name:
                    counts[name] += 1
    believed = sorted(
        (n for n, c in counts.items() if c >= MIN_TAG_COUNT), key=lambda n: (-counts[n], n)
    )
    return _merge_english_titles(believed, counts)


def _clean_english_name(phrase: str) -> str:
    words = phrase.split()
    while words and words[0].casefold() in _EN_STOP:
        words.pop(0)
    while words and words[-1].casefold() in _EN_STOP:
        words.pop()
    if not words or any(w.casefold() in _EN_STOP for w in words):
        return ""
    return " ".join(words)


def _merge_english_titles(names: list[str], counts: Counter[str]) -> list[_Person]:
    """Fold ``Rabbit`` into ``White Rabbit``: the longer name is the more specific."""
    people = {name: _Person(name) for name in names if " " in name}
    for name in names:
        if " " in name:
            continue
        owners = [p for p in people.values() if p.key.split()[-1] == name]
        if owners:
            max(owners, key=lambda p: (counts[p.key], p.key)).add_alias(name)
        else:
            people[name] = _Person(name)
    return list(people.values())


# --------------------------------------------------------------------------- paragraphs


@dataclass(frozen=True, slots=True)
class _Para:
    """What one paragraph contributes to panels."""

    size: int
    narrative: tuple[str, ...]
    # How many character mentions each narrative sentence holds.
    named: tuple[int, ...]
    dialogue: tuple[tuple[str | None, str], ...]
    # Characters on stage: named in the narration or speaking, not just talked about.
    present: tuple[str, ...]
    places: tuple[str, ...]
    scene_break: bool

    @property
    def weight(self) -> int:
        """How much panel space the paragraph needs: its text, plus room for each line."""
        return self.size + DIALOGUE_WEIGHT * len(self.dialogue)


@dataclass(slots=True)
class _Reader:
    """Reads paragraphs in order, remembering who was mentioned last for bare names."""

    cast: _Cast
    recent: dict[str, str] = field(default_factory=dict)
    mentions: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, int] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    first_narrative: dict[str, str] = field(default_factory=dict)
    last_key: str | None = None

    def read(self, paragraph: str) -> _Para:
        """Analyze the next paragraph (or beat) of the novel."""
        hits = self._mentions(paragraph)
        quotes = _find_quotes(paragraph, self.cast.language)
        dialogue, spoken = self._attribute(paragraph, quotes, hits)
        keys = [key for _, key in sorted([*hits, *spoken])]
        for key in keys:
            self.mentions[key] += 1
            self.first_seen.setdefault(key, len(self.first_seen))
        self._remember(keys)
        self.last_key = keys[-1] if keys else self.last_key
        quoted = [q for q, _ in dialogue]
        narrative = _narrative_sentences(paragraph, quoted, self.cast.language)
        self._describe(paragraph, narrative, dict.fromkeys(keys))
        outside = [(p, k) for p, k in hits if not any(a <= p < b for a, b, _ in quoted)]
        speakers = [(q[0], k) for q, k in dialogue if k is not None]
        return _Para(
            size=len(paragraph),
            narrative=tuple(narrative),
            named=tuple(_mentions_within(paragraph, sentence, hits) for sentence in narrative),
            dialogue=tuple((key, _clip(text, DIALOGUE_CHARS)) for (_, _, text), key in dialogue),
            present=tuple(k for _, k in sorted([*outside, *speakers])),
            places=tuple(p for s in narrative for p in _places(s, self.cast.language)),
            scene_break=_is_scene_break(paragraph, self.cast.language),
        )

    def _mentions(self, text: str) -> list[tuple[int, str]]:
        if self.cast.pattern is None:
            return []
        return [(m.start(), self.cast.forms[m.group()]) for m in self.cast.pattern.finditer(text)]

    def _remember(self, keys: Iterable[str]) -> None:
        for key in keys:
            person = self.cast.people[key]
            given = key[len(person.surname) :] if person.surname else ""
            if given in self.cast.holders:
                self.recent[given] = key

    def _attribute(
        self, paragraph: str, quotes: list[tuple[int, int, str]], hits: list[tuple[int, str]]
    ) -> tuple[list[tuple[tuple[int, int, str], str | None]], list[tuple[int, str]]]:
        """Speaker of each quotation that is dialogue; bare-name speakers as extra hits."""
        dialogue: list[tuple[tuple[int, int, str], str | None]] = []
        spoken: list[tuple[int, str]] = []
        tagged: list[bool] = []
        seen = 0
        for quote in quotes:
            while seen < len(hits) and hits[seen][0] < quote[0]:
                self._remember([hits[seen][1]])
                seen += 1
            last = hits[seen - 1][1] if seen else self.last_key
            if self.cast.language == "zh":
                speaker, bare = self._chinese_speaker(paragraph, quote)
                if bare and speaker is not None:
                    spoken.append((quote[0], speaker))
                if speaker is not None or _looks_like_speech(quote[2]):
                    dialogue.append((quote, speaker))
            else:
                speaker, has_tag = _english_speaker(
                    self.cast, paragraph, quotes, len(dialogue), last
                )
                dialogue.append((quote, speaker))
                tagged.append(has_tag)
        if self.cast.language == "en":
            dialogue = _inherit_paragraph_speaker(dialogue, tagged)
        return dialogue, spoken

    def _chinese_speaker(
        self, paragraph: str, quote: tuple[int, int, str]
    ) -> tuple[str | None, bool]:
        """Speaker named in the tag before a Chinese quotation; ``bare`` for ``操曰``."""
        before = paragraph[: quote[0]]
        if not _CN_SPEECH_END.search(before):
            return None, False
        starts = list(_CN_SENTENCE_START.finditer(before))
        region = before[starts[-1].end() if starts else 0 :]
        lead = len(region) - len(_strip_leads(region))
        named = self._first_named(region)
        bare = self._bare_given_name(region[lead : lead + 1])
        if bare is not None and (named is None or lead < named[0]):
            return bare, True
        return (named[1] if named else None), False

    def _first_named(self, region: str) -> tuple[int, str] | None:
        for position, key in self._mentions(region):
            if position == 0 or region[position - 1] not in _CN_OBJECT_MARKERS:
                return position, key
        return None

    def _bare_given_name(self, char: str) -> str | None:
        holders = self.cast.holders.get(char)
        if not holders:
            return None
        if char in self.recent:
            return self.recent[char]
        return max(holders, key=lambda k: (self.mentions[k], -len(k), k))

    def _describe(self, paragraph: str, narrative: list[str], keys: Iterable[str]) -> None:
        for sentence in narrative:
            found = _visual_subject(self.cast, paragraph, sentence)
            if found is not None and found[0] not in self.descriptions:
                subject, at = found
                # 玄德见孔明身长八尺…: what comes before the subject's name is not their look.
                look = sentence[at:] if self.cast.language == "zh" else sentence
                self.descriptions[subject] = _visual_clauses(look, self.cast.language)
        for key in keys:
            if key in self.first_narrative:
                continue
            forms = self.cast.people[key].forms
            first = next((s for s in narrative if any(f in s for f in forms)), None)
            if first is not None:
                self.first_narrative[key] = _clip(first, VISUAL_CHARS)


def _mentions_within(paragraph: str, sentence: str, hits: list[tuple[int, str]]) -> int:
    start = paragraph.find(sentence)
    if start < 0:
        return 0
    return sum(1 for position, _ in hits if 0 <= position - start < len(sentence))


def _looks_like_speech(text: str) -> bool:
    """A Chinese quotation without a tag is dialogue if long or sentence-like, not a term."""
    return len(text) >= 12 or (len(text) >= 4 and any(ch in "。！？，" for ch in text))


def _find_quotes(paragraph: str, language: Language) -> list[tuple[int, int, str]]:
    """``(start, end, inner text)`` of each quotation in the paragraph."""
    if language == "zh":
        spans = [(m.start(), m.end()) for m in _CN_QUOTES.finditer(paragraph)]
        spans += _straight_quote_spans(paragraph, '"')
        spans.sort()
    else:
        spans = _english_quote_spans(paragraph)
    quotes = []
    for start, end in spans:
        inner = paragraph[start + 1 : end].strip().strip("”」』\"'’")
        if inner.strip():
            quotes.append((start, end, inner.strip()))
    return quotes


def _straight_quote_spans(text: str, mark: str) -> list[tuple[int, int]]:
    positions = [m.start() for m in re.finditer(re.escape(mark), text)]
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


def _english_speaker(
    cast: _Cast,
    paragraph: str,
    quotes: list[tuple[int, int, str]],
    index: int,
    last_mentioned: str | None,
) -> tuple[str | None, bool]:
    """Speaker named next to an English quotation (``'…,' said Alice`` or ``Alice said, '…'``).

    The flag tells whether the quotation has a speech tag of its own, even one naming
    nobody in the cast (``they cried``).
    """
    quote = quotes[index]
    after_end = quotes[index + 1][0] if index + 1 < len(quotes) else len(paragraph)
    before_start = quotes[index - 1][1] if index else 0
    after = paragraph[quote[1] : min(after_end, quote[1] + 80)]
    before = paragraph[max(before_start, quote[0] - 80) : quote[0]]
    for text, patterns in ((after, cast.tags_after), (before, cast.tags_before)):
        for pattern in patterns:
            match = pattern.search(text)
            if match:
                return cast.forms[match.group(1)], True
    # "'…,' she said": the pronoun most often points at whoever was named last.
    if _EN_PRONOUN_AFTER.search(after) or _EN_PRONOUN_BEFORE.search(before):
        return last_mentioned, True
    return None, _EN_ANY_TAG.search(after) is not None


def _inherit_paragraph_speaker(
    dialogue: list[tuple[tuple[int, int, str], str | None]], tagged: list[bool]
) -> list[tuple[tuple[int, int, str], str | None]]:
    """Untagged quotations in a paragraph with a single named speaker are that speaker's."""
    speakers = {key for _, key in dialogue if key is not None}
    if len(speakers) != 1:
        return dialogue
    (speaker,) = speakers
    return [
        (quote, key if has_tag else speaker)
        for (quote, key), has_tag in zip(dialogue, tagged, strict=True)
    ]


def _narrative_sentences(
    paragraph: str, quotes: list[tuple[int, int, str]], lang: Language
) -> list[str]:
    """Sentences of the paragraph outside its dialogue, without leftover speech tags."""
    pieces = []
    position = 0
    for start, end, _ in quotes:
        pieces.append(paragraph[position:start])
        position = end
    pieces.append(paragraph[position:])
    # A blank line where each quotation was keeps its tag from gluing onto the next text.
    sentences = split_sentences("\n\n".join(pieces))
    return [s for s in sentences if _is_narrative(s, lang)]


def _is_narrative(sentence: str, language: Language) -> bool:
    if language == "zh":
        return len(sentence) >= 6 and not _CN_TAG_ONLY.fullmatch(sentence)
    words = _EN_WORD.findall(sentence)
    return len(words) >= 5 and sentence[0].isupper()


def _places(paragraph: str, language: Language) -> list[str]:
    if language == "zh":
        return [m["place"] for m in _CN_PLACE.finditer(paragraph)]
    return ["the " + m["place"] for m in _EN_PLACE.finditer(paragraph)]


def _is_scene_break(paragraph: str, language: Language) -> bool:
    markers = _CN_SCENE_MARKERS if language == "zh" else _EN_SCENE_MARKERS
    return markers.match(paragraph) is not None


def _visual_subject(cast: _Cast, paragraph: str, sentence: str) -> tuple[str, int] | None:
    """Whom a sentence describes, and where their name starts, if it describes looks."""
    visual = _CN_VISUAL if cast.language == "zh" else _EN_VISUAL
    cues = [m.start() for m in visual.finditer(sentence)]
    if len(cues) < (2 if cast.language == "zh" else 1):
        return None
    if cast.language == "zh":
        seeded = _introduced_near(cast, paragraph, sentence)
        if seeded is not None:
            return seeded, 0
    if cast.pattern is None:
        return None
    hits = [(m.start(), m.end(), cast.forms[m.group()]) for m in cast.pattern.finditer(sentence)]
    # The looks belong to the name they follow most closely: 玄德见孔明身长八尺 is about
    # 孔明, "a White Rabbit with pink eyes" about the Rabbit.
    window = 4 if cast.language == "zh" else 30
    near = [
        (cue - end, start, key)
        for start, end, key in hits
        for cue in cues
        if 0 <= cue - end <= window
    ]
    if near:
        _, start, key = min(near)
        return key, start
    # English looks are rarely stated right after the name, and then not reliably theirs.
    sole = cast.language == "zh" and len({key for _, _, key in hits}) == 1
    return (hits[0][2], hits[0][0]) if sole else None


def _introduced_near(cast: _Cast, paragraph: str, sentence: str) -> str | None:
    """The character a ``姓刘名备`` introduction next to the sentence names.

    Looks are given just before the introduction (…面如冠玉…姓刘名备) or just after it.
    """
    at = max(paragraph.find(sentence), 0)
    after = _CN_SEED.search(paragraph, at, at + len(sentence) + 120)
    before = list(_CN_SEED.finditer(paragraph, max(at - 60, 0), at))
    for seed in [after, *reversed(before)]:
        if seed is not None and seed["s"] + seed["g"] in cast.people:
            return str(seed["s"] + seed["g"])
    return None


def _visual_clauses(sentence: str, language: Language) -> str:
    visual = _CN_VISUAL if language == "zh" else _EN_VISUAL
    clauses = re.split(r"[，；：,;:]", sentence)
    kept = [c.strip() for c in clauses if visual.search(c)]
    joiner = "，" if language == "zh" else ", "
    return _clip(joiner.join(kept) or sentence, VISUAL_CHARS).rstrip("。！？.!?")


# --------------------------------------------------------------------------- scenes, panels


@dataclass(slots=True)
class _PanelDraft:
    shot: ShotType
    description: str
    keys: list[str]
    dialogue: list[tuple[str | None, str]]
    narration: str | None


@dataclass(slots=True)
class _SceneDraft:
    chapter: Chapter
    summary: str
    location: str
    keys: list[str]
    panels: list[_PanelDraft]


def _partition(sizes: Sequence[int], parts: int, preferred: Sequence[bool]) -> list[range]:
    """Cut items into at most ``parts`` runs of similar total size, at preferred items if near."""
    if not sizes:
        return []
    parts = max(1, min(parts, len(sizes)))
    target = sum(sizes) / parts
    runs: list[range] = []
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        # Cut when this item would overshoot the target by more than we are short of it.
        closer = acc + size - target > target - acc
        full = acc >= target or closer or (preferred[i] and acc >= 0.6 * target)
        if i > start and len(runs) < parts - 1 and full:
            runs.append(range(start, i))
            start, acc = i, 0
        acc += size
    runs.append(range(start, len(sizes)))
    return runs


def _chapter_scenes(
    chapter: Chapter, paras: list[_Para], panel_cap: int, language: Language
) -> list[_SceneDraft]:
    weights = [p.weight for p in paras]
    wanted = max(1, min(panel_cap, math.ceil(sum(weights) / TARGET_PANEL_CHARS)))
    scene_count = math.ceil(wanted / MAX_PANELS_PER_SCENE)
    per_scene = math.ceil(wanted / scene_count)
    runs = _partition(weights, scene_count, [p.scene_break for p in paras])
    scenes: list[_SceneDraft] = []
    previous_location: str | None = None
    for run in runs:
        paras_in_scene = [paras[i] for i in run]
        scene = _build_scene(chapter, paras_in_scene, previous_location, per_scene, language)
        previous_location = scene.location
        scenes.append(scene)
    return scenes


def _build_scene(
    chapter: Chapter,
    paras: list[_Para],
    inherited: str | None,
    panel_cap: int,
    language: Language,
) -> _SceneDraft:
    weights = [p.weight for p in paras]
    count = max(1, min(panel_cap, math.ceil(sum(weights) / TARGET_PANEL_CHARS)))
    runs = _partition(weights, count, [False] * len(paras))
    location = _scene_location(paras, inherited, chapter.title)
    panels = [
        _build_panel([paras[i] for i in run], first=n == 0, language=language)
        for n, run in enumerate(runs)
    ]
    keys = Counter(k for p in paras for k in p.present)
    on_stage = [k for k, _ in sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))]
    narrative = [s for p in paras for s in p.narrative]
    spoken = [text for p in paras for _, text in p.dialogue]
    summary = " ".join(narrative[:2]) or " ".join(spoken[:1]) or chapter.title
    return _SceneDraft(
        chapter=chapter,
        summary=_clip(summary, SUMMARY_CHARS),
        location=location,
        keys=on_stage[:MAX_SCENE_CHARACTERS],
        panels=panels,
    )


def _scene_location(paras: list[_Para], inherited: str | None, chapter_title: str) -> str:
    """Most named place in the scene; else where the previous scene was; else the chapter."""
    places = Counter(place for p in paras for place in p.places)
    named = [p for p in places if len(p) >= 2] or list(places)
    if named:
        order: dict[str, int] = {}
        for place in (pl for p in paras for pl in p.places):
            order.setdefault(place, len(order))
        return max(named, key=lambda pl: (places[pl], -order[pl]))
    return inherited or chapter_title or UNSPECIFIED_LOCATION


def _build_panel(paras: list[_Para], *, first: bool, language: Language) -> _PanelDraft:
    dialogue = [line for p in paras for line in p.dialogue][:MAX_PANEL_DIALOGUE]
    narrative = [s for p in paras for s in p.narrative]
    named = [n for p in paras for n in p.named]
    counts = Counter(k for p in paras for k in p.present)
    speakers = list(dict.fromkeys(k for k, _ in dialogue if k is not None))
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    keys = list(dict.fromkeys([*speakers, *ranked]))[:MAX_PANEL_CHARACTERS]
    key_sentence = _key_sentence(narrative, named)
    description = key_sentence or _conversation(keys, dialogue, language)
    spoken = " ".join(text for _, text in dialogue)
    return _PanelDraft(
        shot=_shot_type(first=first, keys=keys, speakers=speakers, text=f"{description} {spoken}"),
        description=_clip(description, DESCRIPTION_CHARS),
        keys=keys,
        dialogue=dialogue,
        narration=_clip(narrative[0], NARRATION_CHARS) if narrative else None,
    )


def _conversation(keys: list[str], dialogue: list[tuple[str | None, str]], lang: Language) -> str:
    """What a panel of pure dialogue shows: who talks, and their first line."""
    if not dialogue:
        return ""
    line = dialogue[0][1]
    if lang == "zh":
        return f"{'、'.join(keys)}对话：“{line}”" if keys else f"“{line}”"
    return f'{" and ".join(keys)} talking: "{line}"' if keys else f'"{line}"'


def _key_sentence(narrative: list[str], named: list[int]) -> str:
    """The narrative sentence naming the most characters: the one that shows who acts."""
    if not narrative:
        return ""
    scored = [
        (count, -i, sentence)
        for i, (sentence, count) in enumerate(zip(narrative, named, strict=True))
    ]
    return max(scored)[2]


_ACTION_WORDS = re.compile(r"战|杀|军|兵|阵|battle|fight|army|crowd|procession", re.IGNORECASE)
_DETAIL_WORDS = re.compile(r"泪|书信|印|剑|bottle|key|letter|tears|watch|cake", re.IGNORECASE)


def _shot_type(*, first: bool, keys: list[str], speakers: list[str], text: str) -> ShotType:
    """Framing from what the panel shows: who is in it, who talks, what happens."""
    if first:
        return ShotType.ESTABLISHING
    if len(speakers) >= 2:
        return ShotType.OVER_THE_SHOULDER
    if speakers:
        return ShotType.CLOSE_UP if "！" in text or "!" in text else ShotType.MEDIUM
    if len(keys) >= 3 or _ACTION_WORDS.search(text):
        return ShotType.WIDE
    if _DETAIL_WORDS.search(text):
        return ShotType.EXTREME_CLOSE_UP
    return ShotType.MEDIUM if keys else ShotType.WIDE


# --------------------------------------------------------------------------- assembly

_SHOT_LABELS = {
    ShotType.ESTABLISHING: "Establishing shot",
    ShotType.WIDE: "Wide shot",
    ShotType.MEDIUM: "Medium shot",
    ShotType.CLOSE_UP: "Close-up",
    ShotType.EXTREME_CLOSE_UP: "Extreme close-up",
    ShotType.OVER_THE_SHOULDER: "Over-the-shoulder shot",
}


def _panel_cap(chapter_count: int) -> int:
    per_chapter = MAX_TOTAL_PANELS // max(chapter_count, 1)
    return max(
        MIN_PANELS_PER_CHAPTER, min(MAX_SCENES_PER_CHAPTER * MAX_PANELS_PER_SCENE, per_chapter)
    )


def _rank(reader: _Reader, scenes: list[_SceneDraft]) -> list[str]:
    """Characters worth listing, most mentioned first, ties in order of first appearance."""
    ranked = sorted(reader.mentions, key=lambda k: (-reader.mentions[k], reader.first_seen[k], k))
    used = {k for s in scenes for p in s.panels for k in [*p.keys, *(d for d, _ in p.dialogue)]}
    return [k for i, k in enumerate(ranked) if i < TOP_CHARACTERS or k in used]


def _characters(reader: _Reader, keys: list[str]) -> list[Character]:
    generic = "书中人物" if reader.cast.language == "zh" else "a character from the story"
    return [
        Character(
            id=f"c{i}",
            name=key,
            aliases=list(reader.cast.people[key].aliases),
            description=reader.descriptions.get(key) or reader.first_narrative.get(key) or generic,
            mentions=reader.mentions[key],
        )
        for i, key in enumerate(keys, start=1)
    ]


def _scenes(drafts: list[_SceneDraft], cast: dict[str, Character]) -> list[Scene]:
    scenes: list[Scene] = []
    panel_number = 0
    for number, draft in enumerate(drafts, start=1):
        panels = []
        for panel in draft.panels:
            panel_number += 1
            panels.append(_panel(panel, f"p{panel_number}", draft.location, cast))
        scenes.append(
            Scene(
                id=f"s{number}",
                chapter_index=draft.chapter.index,
                chapter_title=draft.chapter.title,
                summary=draft.summary,
                location=draft.location,
                character_ids=[cast[k].id for k in draft.keys if k in cast],
                panels=panels,
            )
        )
    return scenes


def _panel(draft: _PanelDraft, panel_id: str, location: str, cast: dict[str, Character]) -> Panel:
    people = [cast[k] for k in draft.keys if k in cast]
    dialogue = [
        DialogueLine(speaker_id=cast[k].id if k in cast else NARRATOR, text=text)
        for k, text in draft.dialogue
    ]
    return Panel(
        id=panel_id,
        shot_type=draft.shot,
        description=draft.description,
        character_ids=[c.id for c in people],
        dialogue=dialogue,
        narration=draft.narration,
        image_prompt=_image_prompt(draft, location, people),
    )


def _image_prompt(draft: _PanelDraft, location: str, people: list[Character]) -> str:
    who = "; ".join(f"{c.name} ({_clip(c.description, VISUAL_CHARS)})" for c in people)
    return " ".join(
        [
            f"{_SHOT_LABELS[draft.shot]} at {location}.",
            f"Characters: {who}." if who else "No characters in frame.",
            f"Action: {draft.description}" if draft.description else "",
            "Comic storyboard panel, clean ink lines, consistent character designs.",
        ]
    ).replace("  ", " ")


def build_storyboard(novel: NovelText) -> Storyboard:
    """The offline storyboard of a novel; CPU-bound, so call it off the event loop."""
    started = time.perf_counter()
    if not novel.text.strip():
        raise AnalysisError("empty_text", "the novel has no text to analyze", transient=False)
    language = _detect_language(novel.text)
    chapters = split_chapters(novel.text)
    paragraphs = [
        [beat for p in _split_paragraphs(c.body) for beat in _beats(p, language)] for c in chapters
    ]
    reader = _Reader(_discover_cast(language, [p for ps in paragraphs for p in ps]))
    cap = _panel_cap(len(chapters))
    drafts: list[_SceneDraft] = []
    for chapter, texts in zip(chapters, paragraphs, strict=True):
        if chapter.title == "" and len(chapters) == 1:
            chapter = Chapter(chapter.index, novel.title, chapter.body, chapter.start)
        drafts.extend(_chapter_scenes(chapter, [reader.read(t) for t in texts], cap, language))
    characters = _characters(reader, _rank(reader, drafts))
    cast = {c.name: c for c in characters}
    return Storyboard(
        novel_id=novel.novel_id,
        title=novel.title,
        characters=characters,
        scenes=_scenes(drafts, cast),
        meta=Meta(
            analyzer=OfflineAnalyzer.name,
            chunk_count=len(chapters),
            chapter_count=len(chapters),
            timings={"analyzeS": round(time.perf_counter() - started, 3)},
        ),
    )


class OfflineAnalyzer:
    """Heuristic analyzer that needs no model, network or randomness."""

    name = "offline"

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Build the storyboard in a worker thread, reporting start and finish."""
        await on_progress(0.0, "splitting chapters")
        try:
            storyboard = await asyncio.to_thread(build_storyboard, novel)
        except AnalysisError:
            raise
        except Exception as exc:
            # A deterministic analyzer fails the same way every time: retrying cannot help.
            raise AnalysisError(
                "offline_failed", f"offline analysis failed: {exc}", transient=False
            ) from exc
        await on_progress(1.0, "storyboard built")
        return storyboard
