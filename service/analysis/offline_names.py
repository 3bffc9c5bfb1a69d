"""The cast of a novel: candidate names, their ranking, and aliases merged into characters.

Chinese names come from ``姓刘名备，字玄德`` introductions (courtesy names become aliases),
from ``X曰：“`` speech tags seen often enough to believe, from ``庞统字士元`` courtesy
names of known characters and from ``关公``-style honorifics. English names come from
speech tags, recurring ``the X`` subjects and appositions, each under its fullest form
(:mod:`~service.analysis.offline_english_names`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from service.analysis.offline_english_names import discover_english
from service.analysis.offline_lexicon import Entry, lookup
from service.analysis.offline_text import CJK, Language, by_count, words

# Where a character is mentioned in a text, and which character it is.
Mention: TypeAlias = tuple[int, str]

# A name must be seen in this many speech tags before it is believed.
MIN_TAG_COUNT = 2
# Without a known surname a Chinese speech-tag name needs more evidence.
MIN_TAG_COUNT_WITHOUT_SURNAME = 5
# A name that speaks only once must be mentioned this often to count.
MIN_MINOR_MENTIONS = 4
# A surname and a given name that speaks (``卓曰``) must be mentioned this often to count.
MIN_NAME_MENTIONS = 10
# A word this often after a determiner (一个小妖, 众小妖, 我师父) is a common noun.
MAX_DETERMINER_SHARE = 0.08
# How often a nickname must point at one character before it is merged into them.
MIN_NICKNAME_VOTES = 3

# --------------------------------------------------------------------------- vocabularies

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
_COMPOUND_SURNAMES = words(
    "司马 上官 欧阳 夏侯 诸葛 闻人 东方 赫连 皇甫 尉迟 公羊 澹台 公冶 宗政 濮阳 淳于 单于"
    " 太叔 申屠 公孙 仲孙 轩辕 令狐 钟离 宇文 长孙 慕容 鲜于 闾丘 司徒 司空 端木 百里 东郭"
    " 南宫 呼延 太史 万俟 拓跋 独孤 第五 西门"
)

_COMPOUND_SET = frozenset(_COMPOUND_SURNAMES)
# Dictionary tags of nouns a surname-led word may be a person under (not places: 成都).
_PERSON_NOUN_TAGS = frozenset({"n", "nz"})

# Characters that never sit inside a name but often follow one in a speech tag.
_CN_NOT_NAME = set(
    "曰说道问答叫呼喝骂怒喜笑叹惊泣哭谏奏告报谓对略诗之其众皆乃遂又亦也乎哉了着这那些我你他吾汝"
    "声叱指令付嘱劝止等触出"
)
# Roles, titles and groups that speak but are not one identifiable person.
_CN_GENERIC = frozenset(
    words(
        "左右 使者 童子 众将 诸将 众官 百官 军士 将士 壮士 小童 牧童 先主 后主 丞相 天子 陛下 皇帝"
        " 太后 主公 将军 太守 都督 军师 先生 国舅 皇叔 使君 明公 诸公 世子 公子 小校 从人 近臣 侍臣"
        " 门吏 探马 细作 守将 老将 夫人 谋士 二将 三将 使臣 天使 土人 老人 众人 二人 三人 其人 此人"
        " 一人 贼将 小卒 军校 部将 众军 百姓 父老 侍者 家人 妇人 道人 长老 老者 书生 太医 女子 哨马"
        " 伏路 流星 守门 门人 大将 上将 小将 官军"
    )
)
_CN_DIGITS_ALL = set("一二三四五六七八九十两百千数")
_CN_GROUP_LEADS = tuple("众诸群各")
_CN_DETERMINERS = set("个些众诸各每几两我你他她俺咱吾汝其的")
# ``道号水镜先生`` after an introduction: another name, and a title to strip from it.
_CN_STYLE_NAME = re.compile(
    rf"(?:道号|法名|法号|混名|绰号|诨名|别号)(?:为|曰|叫做|唤做)?(?P<y>[{CJK}]{{2,5}}?)(?=[，。；：、”])"
)
_CN_STYLE_TITLES = words("先生 上人 居士 道人 真人 处士")
_CN_TITLE_ENDINGS = tuple("王帝主后侯相臣吏官卒兵军人")
_CN_LEADS = words("却说 且说 话说 只见 但见 当下 于是 次日 忽 乃 遂 因 又 便 却 时 亦")
# Any run of them that leaves something behind.
_CN_LEADS_RE = re.compile(f"(?:{'|'.join(_CN_LEADS)})+(?=.)", re.DOTALL)
# ``姓刘名备，字玄德``: a character introduced with surname, given and courtesy names.
CN_INTRODUCTION = re.compile(
    rf"(?:复|覆)?姓(?P<s>[{CJK}]{{1,2}}?)，?名(?P<g>[{CJK}]{{1,2}}?)"
    rf"(?=[，。；、”：]|字)(?:，?字(?P<z>[{CJK}]{{2}})"
    rf"(?:，(?:后|又)改(?:字)?(?P<z2>[{CJK}]{{2}}))?)?"
)
# Anchored at 字 (the name before it is read back from there): a pattern opening with a
# character class would be tried at every position of the novel.
_CN_COURTESY = re.compile(rf"字(?P<z>[{CJK}]{{2}})(?=[，。；])")
_CJK_CHAR = re.compile(f"[{CJK}]")
# A speech tag's verb and the quotation after it; the speaker is read back from the verb.
_CN_QUOTE_AFTER_TAG = re.compile(r"[道曰说][：:]“(?P<q>[^”]{0,300})")
_CN_TAIL = re.compile(f"[{CJK}]+$")
# ``我已有名了，叫做孙悟空``, ``吾乃常山赵子龙也``: a speaker naming themself. The first
# person must lead the verb, so ``我还有个师兄，叫做…`` (someone else) is no such claim.
_CN_SELF_NAMING = re.compile(
    rf"(?:^|[，。！？；、])(?:我|吾|俺|老孙|老猪|贫僧|小人|在下)"
    rf"(?:乃|是|便是|就是|正是|叫做|唤做|名唤|名叫"
    rf"|(?:[已原本]?有个?|的|今)?(?:法名|道号|名字|名)了?，?(?:叫做|唤做|是|乃|为)?)"
    rf"(?P<y>[{CJK}]{{2,5}})"
)
_CN_TAG = re.compile(rf"(?<![{CJK}])(?P<clause>[{CJK}]{{1,8}}?)(?:曰|道)[：:，,]?(?=[“「『\"])")

# --------------------------------------------------------------------------- the cast


@dataclass(slots=True)
class Person:
    """A character while the cast is being worked out, keyed by its display name."""

    key: str
    surname: str = ""
    aliases: list[str] = field(default_factory=list)
    # A noun used for one character (呆子, 行者) rather than a name.
    nickname: bool = False

    def add_alias(self, alias: str) -> None:
        """Add another name for the character, unless it is already one of theirs."""
        if alias and alias != self.key and alias not in self.aliases:
            self.aliases.append(alias)

    @property
    def forms(self) -> list[str]:
        """Every name the character goes by, the display name first."""
        return [self.key, *self.aliases]

    @property
    def given(self) -> str:
        """The given name after a known surname (``备`` of ``刘备``), else empty."""
        return self.key[len(self.surname) :] if self.surname else ""


@dataclass(slots=True)
class Cast:
    """Everyone the text names, with every surface form mapped to its character."""

    language: Language
    people: dict[str, Person]
    forms: dict[str, str]
    # A one-character given name (``操``) to the characters who bear it.
    holders: dict[str, list[str]]
    pattern: re.Pattern[str] | None
    # Each character whose given name is one of ``holders``, to that name.
    shared_given: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, language: Language, people: Iterable[Person]) -> Cast:
        """The cast of these people, earlier people winning a form they share."""
        by_key = {p.key: p for p in people}
        forms: dict[str, str] = {}
        holders: dict[str, list[str]] = {}
        for person in by_key.values():
            for form in person.forms:
                forms.setdefault(form, person.key)
            if language == "zh" and len(person.given) == 1:
                holders.setdefault(person.given, []).append(person.key)
        shared = {p.key: p.given for p in by_key.values() if p.given in holders}
        return cls(language, by_key, forms, holders, _forms_pattern(language, forms), shared)

    def mention_spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, character)`` of each mention of a character in the text."""
        if self.pattern is None:
            return []
        return [(m.start(), m.end(), self.forms[m.group()]) for m in self.pattern.finditer(text)]

    def mentions_in(self, text: str) -> list[Mention]:
        """``(start, character)`` of each mention of a character in the text."""
        return [(start, key) for start, _, key in self.mention_spans(text)]


def _forms_pattern(language: Language, forms: dict[str, str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    alternation = _trie(sorted(forms))
    if language == "en":
        return re.compile(rf"\b(?:{alternation})\b")
    return re.compile(alternation)


def _trie(forms: Sequence[str]) -> str:
    """An alternation of the forms as a prefix tree, longest match first.

    A flat alternation of hundreds of names makes the regular expression engine try
    each in turn at every position of the text; sharing prefixes (刘(?:备|禅|玄德))
    rejects a position after one character. Longer continuations come before the end of
    a shorter form, so 刘玄德 wins over 刘 and "White Rabbit" over "White".
    """
    heads: dict[str, list[str]] = {}
    ends_here = False
    for form in forms:
        if form:
            heads.setdefault(form[0], []).append(form[1:])
        else:
            ends_here = True
    branches = [re.escape(head) + _trie(rest) for head, rest in sorted(heads.items())]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends_here else body


def discover_cast(language: Language, paragraphs: Sequence[str]) -> Cast:
    """The characters the paragraphs name, with their aliases merged."""
    if language == "zh":
        return Cast.build(language, _discover_chinese(paragraphs))
    return Cast.build(language, _discover_english(paragraphs))


def strip_leads(clause: str) -> str:
    """A Chinese clause without the connectives it opens with (``却说``, ``忽``, ``乃``)."""
    match = _CN_LEADS_RE.match(clause)
    return clause[match.end() :] if match else clause


def _surname_of(name: str) -> str:
    if len(name) > 2 and name[:2] in _COMPOUND_SET:
        return name[:2]
    return name[0] if len(name) >= 2 and name[0] in _SURNAMES else ""


# --------------------------------------------------------------------------- Chinese


@dataclass(slots=True)
class _Found:
    """People found so far, and the character each surface form already belongs to."""

    people: dict[str, Person] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)

    def merge(self, person: Person) -> None:
        """Add a person, or their names to whoever already goes by their display name."""
        key = self.forms.get(person.key, person.key)
        target = self.people.setdefault(key, Person(key, person.surname, nickname=person.nickname))
        for form in person.forms:
            if self.forms.setdefault(form, key) == key:
                target.add_alias(form)

    def alias(self, key: str, alias: str) -> None:
        """Give the character ``key`` another name."""
        self.people[key].add_alias(alias)
        self.forms[alias] = key


def _discover_chinese(paragraphs: Sequence[str]) -> list[Person]:
    """Characters of a Chinese novel, courtesy names, nicknames and honorifics merged."""
    text = "\n".join(paragraphs)
    found = _Found()
    for person in _chinese_introductions(text):
        found.merge(person)
    tags, bare = _chinese_tag_counts(text)
    candidates = [*_believed_tag_names(tags, text), *_full_names_of_bare(text, bare)]
    lexicon = lookup({*candidates, *(c[len(_surname_of(c)) :] for c in candidates)})
    evidence = _Evidence(text, tags, bare, lexicon, groups(text, candidates))
    honorifics = _add_tag_names(found, evidence, by_count(dict.fromkeys(candidates), tags))
    _add_courtesy_names(text, found)
    _add_honorifics(text, honorifics, found)
    merge_nicknames(found, evidence)
    merge_self_namings(found, text)
    return list(found.people.values())


def _chinese_introductions(text: str) -> Iterator[Person]:
    """People introduced as ``姓刘名备，字玄德`` (courtesy and style names become aliases)."""
    for match in CN_INTRODUCTION.finditer(text):
        surname, given = match["s"], match["g"]
        person = Person(surname + given, surname)
        for courtesy in (match["z"], match["z2"]):
            if courtesy:
                person.add_alias(courtesy)
                person.add_alias(surname + courtesy)
        style = _CN_STYLE_NAME.search(text, match.end(), match.end() + 30)
        # 道号 belongs to the person introduced unless a quotation ends in between.
        if style is not None and "”" not in text[match.end() : style.start()]:
            for alias in _style_names(style["y"]):
                person.add_alias(alias)
        yield person


def _style_names(name: str) -> list[str]:
    """``水镜先生`` and ``水镜``: a style name with and without its title."""
    for title in _CN_STYLE_TITLES:
        if name.endswith(title) and len(name) - len(title) >= 2:
            return [name, name[: -len(title)]]
    return [name]


def _chinese_tag_counts(text: str) -> tuple[Counter[str], Counter[str]]:
    """How often each name opens a ``X曰：“`` speech tag, and each bare given name (``卓曰``)."""
    clauses = [strip_leads(m["clause"]) for m in _CN_TAG.finditer(text)]
    # Judged once per distinct clause: a text may repeat one tag a million times.
    named = {c: _name_like(c) for c in set(clauses) if 2 <= len(c) <= 3}
    exact = Counter(c for c in clauses if named.get(c, False))
    counts = Counter(exact)
    for clause in clauses:
        if len(clause) > 3 or clause not in exact:
            prefix = next((clause[:n] for n in (3, 2) if clause[:n] in exact), None)
            if prefix is not None and len(clause) > len(prefix):
                counts[prefix] += 1
    # 公曰 is an honorific, not a given name.
    bare = Counter(c for c in clauses if len(c) == 1 and c not in _CN_NOT_NAME and c != "公")
    return counts, bare


def _believed_tag_names(tags: Counter[str], text: str) -> list[str]:
    """Speech-tag names seen often enough to believe.

    A surname-led name that speaks once counts too when the narration names it often: a
    minor character's one line is theirs, not an unknown speaker's.
    """
    strong = {
        name
        for name, count in tags.items()
        if (count >= MIN_TAG_COUNT and _surname_of(name)) or count >= MIN_TAG_COUNT_WITHOUT_SURNAME
    }
    minor = occurrences(text, [n for n in tags if n not in strong and _surname_of(n)])
    return [n for n in tags if n in strong or minor.get(n, 0) >= MIN_MINOR_MENTIONS]


def occurrences(text: str, names: Iterable[str]) -> Counter[str]:
    """How often each name occurs in the text, in one pass rather than one per name.

    Every start position counts its longest name, so 玄德 inside 刘玄德 counts for both;
    only a name that is the start of a longer one in the list is missed there.
    """
    wanted = sorted(set(names))
    if not wanted:
        return Counter()
    # Searching on from one character past each match finds overlapping names, and the
    # engine can skip to the next possible first character, which a lookahead defeats.
    pattern = re.compile(_trie(wanted))
    counts: Counter[str] = Counter()
    match = pattern.search(text)
    while match is not None:
        counts[match.group()] += 1
        match = pattern.search(text, match.start() + 1)
    return counts


def _full_names_of_bare(text: str, bare: Counter[str]) -> list[str]:
    """Full names behind bare given names in speech tags: ``卓曰`` speaks for 董卓.

    Majors are often named in full in narration but tagged by their given name alone, so
    a surname plus a given name that speaks, mentioned often, is a candidate.
    """
    givens = "".join(sorted(g for g, n in bare.items() if n >= MIN_TAG_COUNT))
    if not givens:
        return []
    # Two patterns that each open with a set of literals the engine can skip ahead to; one
    # alternation of both is tried at every position of the novel.
    given = f"[{re.escape(givens)}]"
    compound = list(re.finditer(f"(?:{'|'.join(_COMPOUND_SURNAMES)}){given}", text))
    counts = Counter(m.group() for m in compound)
    # 马昭 inside 司马昭 is no name of its own.
    taken = {m.start() + 1 for m in compound}
    single = re.finditer(f"[{''.join(sorted(_SURNAMES))}]{given}", text)
    counts.update(m.group() for m in single if m.start() not in taken)
    return [n for n, c in counts.items() if c >= MIN_NAME_MENTIONS and _name_like(n)]


@dataclass(slots=True)
class _Evidence:
    """What the text and the dictionary say about candidate names."""

    text: str
    tags: Counter[str]
    bare: Counter[str]
    lexicon: dict[str, Entry]
    groups: set[str] = field(default_factory=set)

    def kind(self, word: str) -> str:
        """``name``, ``nickname`` (a noun used for one person: 八戒, 呆子) or ``""`` (not one)."""
        entry = self.lexicon.get(word)
        surname = _surname_of(word)
        if entry is not None and entry.is_name:
            return "name"
        # 西门庆 and 解宝 are nouns to the dictionary but speak; 成都 is a place.
        if entry is not None and surname:
            speaks = self.tags[word] >= MIN_TAG_COUNT
            return "name" if entry.tag in _PERSON_NOUN_TAGS and speaks else ""
        if entry is not None:
            # A dictionary word that is not a name: a nickname only if it speaks often.
            speaks = self.tags[word] >= MIN_TAG_COUNT_WITHOUT_SURNAME
            return "nickname" if entry.is_noun and speaks else ""
        # 大叫曰, 一人出曰, 二夫人曰: an adverb or a count the dictionary does not know.
        if word[0] == "大" or word[0] in _CN_DIGITS_ALL:
            return ""
        if surname and len(word) == 3:
            rest = self.lexicon.get(word[len(surname) :])
            # 松自思 is 张松's given name and a verb, 孙行者 a surname and a nickname.
            if rest is not None and not (rest.is_noun or rest.is_name):
                return ""
        if surname or self.tags[word] >= MIN_TAG_COUNT_WITHOUT_SURNAME:
            return "name"
        return ""


def _add_tag_names(found: _Found, evidence: _Evidence, candidates: list[str]) -> list[str]:
    """Add candidate names as people or aliases; return the honorifics left to place."""
    forms = found.forms
    honorifics = []
    for candidate in candidates:
        # 孔明嘱 and 荀攸进 are a name and the verb of its speech tag.
        if candidate in forms or candidate[:-1] in forms or candidate[:-1] in candidates:
            continue
        if _is_fragment(candidate, found, candidates):
            continue
        owner = _surname_plus_alias_owner(candidate, found)
        if owner is not None:
            found.alias(owner, candidate)
        elif _is_honorific(candidate):
            honorifics.append(candidate)
        elif candidate in evidence.groups:
            continue
        elif (kind := evidence.kind(candidate)) == "name":
            found.merge(Person(candidate, _surname_of(candidate)))
        elif kind == "nickname":
            found.merge(Person(candidate, "", nickname=True))
    return honorifics


def _is_fragment(candidate: str, found: _Found, candidates: list[str]) -> bool:
    """松自思 (of 张松自思): someone's one-character given name, then a verb.

    The dictionary is no help here: it learnt 松自思 as a name from this very novel.
    """
    if len(candidate) != 3 or _surname_of(candidate[1:]):
        return False
    givens = {p.given for p in found.people.values()}
    givens.update(c[1] for c in candidates if len(c) == 2 and _surname_of(c))
    return candidate[0] in givens


def _name_like(word: str) -> bool:
    surname = _surname_of(word)
    if word in _CN_GENERIC or word in _COMPOUND_SURNAMES:
        return False
    if any(ch in _CN_NOT_NAME for ch in word[len(surname) :]):
        return False
    # 众将曰, 诸将曰: a group, not a name.
    if word[0] in _CN_GROUP_LEADS:
        return False
    # 汉中王, 魏主, 何后, 温侯: titles; but 甘夫人 names one woman.
    return not (word.endswith(_CN_TITLE_ENDINGS) and not word.endswith("夫人"))


def _is_honorific(word: str) -> bool:
    return len(word) == 2 and word[1] == "公"


def _surname_plus_alias_owner(word: str, found: _Found) -> str | None:
    """The owner when ``word`` is a surname plus a known alias (刘 + 玄德)."""
    surname = _surname_of(word)
    owner = found.forms.get(word[len(surname) :]) if surname else None
    return owner if owner is not None and found.people[owner].surname == surname else None


def _add_courtesy_names(text: str, found: _Found) -> None:
    """Aliases from ``庞统字士元`` where the name before 字 is already a character."""
    for match in _CN_COURTESY.finditer(text):
        before = text[max(match.start() - 3, 0) : match.start()]
        names = [before[-n:] for n in (3, 2) if len(before) >= n]
        name = next((n for n in names if _all_cjk(n) and n in found.forms), None)
        courtesy = match["z"]
        if name is None or courtesy in found.forms or not _name_like(courtesy):
            continue
        person = found.people[found.forms[name]]
        for alias in (courtesy, person.surname + courtesy if person.surname else ""):
            if alias and alias not in found.forms:
                found.alias(person.key, alias)


def _all_cjk(word: str) -> bool:
    return all(_CJK_CHAR.match(ch) for ch in word)


def _add_honorifics(text: str, honorifics: list[str], found: _Found) -> None:
    """``关公`` in speech tags: a surname plus 公 names the clearly best-known bearer of it.

    Only honorifics that speak count: a bare ``魏公`` in narration is as likely a title
    (the Duke of Wei) as a person of that surname.
    """
    by_surname: dict[str, list[str]] = {}
    for key, person in found.people.items():
        if len(person.surname) == 1:
            by_surname.setdefault(person.surname, []).append(key)
    for honorific in honorifics:
        keys = by_surname.get(honorific[0], [])
        if not keys or honorific in found.forms:
            continue
        seen = occurrences(text, [f for k in keys for f in found.people[k].forms])
        counts = {k: sum(seen[f] for f in found.people[k].forms) for k in keys}
        ranked = by_count(keys, counts)
        runner_up = counts[ranked[1]] if len(ranked) > 1 else 0
        # Only a bearer who dominates the surname can be meant by the bare honorific.
        if counts[ranked[0]] >= 2 * runner_up:
            found.alias(ranked[0], honorific)


def groups(text: str, words: Iterable[str]) -> set[str]:
    """Those of the words that name a kind of person (小妖, 师父, 庄客) rather than one person.

    Such words follow determiners and possessives (一个小妖, 众小妖, 我师父) far more often
    than names do.
    """
    wanted = sorted(set(words), key=lambda w: (-len(w), w))
    if not wanted:
        return set()
    total: Counter[str] = Counter()
    determined: Counter[str] = Counter()
    for match in re.finditer(_trie(sorted(wanted)), text):
        word = match.group()
        total[word] += 1
        if match.start() and text[match.start() - 1] in _CN_DETERMINERS:
            determined[word] += 1
    found = {w for w in wanted if w.startswith(_CN_GROUP_LEADS)}
    return found | {w for w, n in total.items() if determined[w] / n >= MAX_DETERMINER_SHARE}


def merge_nicknames(found: _Found, evidence: _Evidence) -> None:
    """Merge each nickname (呆子, 大圣) into the one character the text ties it to."""
    nicknames = [p.key for p in found.people.values() if p.nickname]
    for key in sorted(nicknames, key=lambda k: (-evidence.tags[k], k)):
        owner = _nickname_owner(found, evidence.text, key)
        if owner is not None and owner != key:
            _absorb(found, owner, key)


def _nickname_owner(found: _Found, text: str, nickname: str) -> str | None:
    """The character a nickname belongs to, by a surname before it.

    ``孙行者`` (a surname before the nickname, as before a given name) points at the one
    孙 there is. Weaker evidence (a nickname next to a name: 大圣孙悟空, but also 八戒沙僧)
    is left alone: a nickname kept as its own character is better than one merged into
    the wrong person.
    """
    votes: Counter[str] = Counter()
    _add_surname_votes(found, text, nickname, votes)
    ranked = by_count(votes, votes)
    if not ranked or votes[ranked[0]] < MIN_NICKNAME_VOTES:
        return None
    runner_up = votes[ranked[1]] if len(ranked) > 1 else 0
    return ranked[0] if votes[ranked[0]] >= 2 * runner_up else None


def _add_surname_votes(found: _Found, text: str, nickname: str, votes: Counter[str]) -> None:
    """``孙行者``: a nickname that takes a surname as a given name does names that character."""
    for person in found.people.values():
        if not person.nickname and person.given == nickname:
            votes[person.key] += text.count(person.key)


def merge_self_namings(found: _Found, text: str) -> None:
    """Merge a speaker into the name they say is theirs (大圣道：“我已有名了，叫做孙悟空”).

    The statement is taken as proof when both forms share a surname (孙大圣, 孙悟空), so a
    name-dropping line (我是唐僧差来的) does not merge two people; without a shared
    surname it must be made repeatedly and point at one name.
    """
    votes: Counter[tuple[str, str]] = Counter()
    for speaker, named in _self_namings(found, text):
        votes[(speaker, named)] += 1
    for (speaker, named), count in sorted(votes.items(), key=lambda v: (-v[1], v[0])):
        if speaker not in found.people or named not in found.people or speaker == named:
            continue
        same_surname = bool(found.people[speaker].surname) and (
            found.people[speaker].surname == found.people[named].surname
        )
        rivals = sum(n for (s, o), n in votes.items() if s == speaker and o != named)
        if same_surname or (count >= MIN_NICKNAME_VOTES and count >= 2 * rivals):
            _absorb(found, named, speaker)


def _self_namings(found: _Found, text: str) -> Iterator[tuple[str, str]]:
    """``(speaker, name)`` for each quotation in which its speaker names themself."""
    for quote in _CN_QUOTE_AFTER_TAG.finditer(text):
        clause = _CN_TAIL.search(text, max(quote.start() - 8, 0), quote.start())
        speaker = _longest_form(strip_leads(clause.group()), found) if clause else None
        if speaker is None:
            continue
        for claim in _CN_SELF_NAMING.finditer(quote["q"]):
            named = _longest_form(claim["y"], found, possessive=False)
            if named is not None:
                yield speaker, named


def _longest_form(words: str, found: _Found, possessive: bool = True) -> str | None:
    """The character whose longest form opens ``words``; not one followed by 的 (唐僧的徒弟)
    unless ``possessive``."""
    for size in (4, 3, 2):
        form = words[:size]
        if len(form) == size and form in found.forms:
            if not possessive and words[size : size + 1] in ("的", "之"):
                return None
            return found.forms[form]
    return None


def _absorb(found: _Found, owner: str, nickname: str) -> None:
    """Make a nickname and every form of its character aliases of ``owner``."""
    person = found.people.pop(nickname)
    for form in person.forms:
        found.people[owner].add_alias(form)
        found.forms[form] = owner


# --------------------------------------------------------------------------- English


def _discover_english(paragraphs: Sequence[str]) -> list[Person]:
    """Characters of an English novel, each under its fullest name."""
    return [Person(name.key, aliases=name.aliases) for name in discover_english(paragraphs)]
