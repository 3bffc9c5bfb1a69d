"""Image prompts in one language, built from a panel's structured fields.

A prompt names the framing, the place and time, who is in frame with a few words about
their looks, what happens and the mood, always in the prompt language
(``STORYBOARD_PROMPT_LANGUAGE``). When that is the novel's own language the fields are
used as written. An English prompt for a Chinese novel cannot translate freely, so it
uses what can be said in English for certain: names and places romanised with
``pypinyin`` (刘备 → Liu Bei, 长坂桥 → Changban Bridge), appearance and action words from
small vocabularies of classical fiction, and English words for shot, time and mood. A
Chinese prompt for an English novel keeps to shot, time, mood and how many people are in
frame. A shorter prompt in one language beats a longer one in two.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.analysis.offline_places import Mood, TimeOfDay
from service.analysis.offline_text import Language, clip, is_cjk, words
from service.storyboard import ShotType

ACTION_CHARS = 150
APPEARANCE_CHARS = 80
MAX_APPEARANCE_WORDS = 4
MAX_ACTION_WORDS = 3

_SHOTS: dict[Language, dict[ShotType, str]] = {
    "en": {
        ShotType.ESTABLISHING: "Establishing shot",
        ShotType.WIDE: "Wide shot",
        ShotType.MEDIUM: "Medium shot",
        ShotType.CLOSE_UP: "Close-up",
        ShotType.EXTREME_CLOSE_UP: "Extreme close-up",
        ShotType.OVER_THE_SHOULDER: "Over-the-shoulder shot",
    },
    "zh": {
        ShotType.ESTABLISHING: "远景建立镜头",
        ShotType.WIDE: "全景",
        ShotType.MEDIUM: "中景",
        ShotType.CLOSE_UP: "特写",
        ShotType.EXTREME_CLOSE_UP: "大特写",
        ShotType.OVER_THE_SHOULDER: "过肩镜头",
    },
}
_TIMES: dict[Language, dict[TimeOfDay, str]] = {
    "en": {"morning": "morning", "day": "daytime", "evening": "evening", "night": "night"},
    "zh": {"morning": "清晨", "day": "白天", "evening": "黄昏", "night": "夜晚"},
}
_MOODS: dict[Language, dict[Mood, str]] = {
    "en": {
        "angry": "angry",
        "fearful": "fearful",
        "grieving": "sorrowful",
        "joyful": "joyful",
        "tense": "tense",
    },
    "zh": {
        "angry": "愤怒",
        "fearful": "惊恐",
        "grieving": "悲伤",
        "joyful": "欢喜",
        "tense": "紧张",
    },
}
_STYLE: dict[Language, str] = {
    "en": "Comic storyboard panel, clean ink lines, consistent character designs.",
    "zh": "漫画分镜，线条干净，人物造型统一。",
}
_ZH_COUNTS = "一二三四"

# What classical Chinese fiction says of looks and dress, in English.
_LOOKS_EN: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"身长[七八九十]尺|身长一丈|魁梧|长大|身躯", "tall"),
        (r"面如冠玉|面白|白面|面如傅粉|粉面", "pale face"),
        (r"面如重枣|赤面|红脸|面如噀血|紫面", "red face"),
        (r"黑面|面如锅底|面黑|黑脸|面如黑漆", "dark face"),
        (r"长髯|美髯|髯长", "long beard"),
        (r"虎须|须|髯", "beard"),
        (r"白发|鬓白|皓首|须发皆白|发白", "white hair"),
        (r"环眼|豹头", "fierce round eyes"),
        (r"丹凤眼|凤目|凤眼", "phoenix eyes"),
        (r"卧蚕眉|浓眉|剑眉", "strong eyebrows"),
        (r"两耳垂肩|大耳", "long earlobes"),
        (r"双手过膝", "long arms"),
        (r"纶巾", "silk headscarf"),
        (r"羽扇", "feather fan"),
        (r"鹤氅|道袍|道服", "Taoist robe"),
        (r"袈裟|僧衣", "monk's robe"),
        (r"金甲|铠甲|银甲|披挂|甲胄", "armour"),
        (r"白袍", "white robe"),
        (r"红袍|绛袍|锦袍", "brocade robe"),
        (r"金冠|紫金冠|冠", "headdress"),
        (r"美貌|貌美|姿色|容貌美|花容|国色", "beautiful"),
        (r"俊|清秀|丰姿", "handsome"),
        (r"肥胖|肥|胖", "stout"),
        (r"瘦", "thin"),
        (r"毛脸|雷公嘴|猴", "monkey face"),
        (r"长嘴大耳|猪", "pig snout"),
        (r"光头|秃", "shaven head"),
        (r"少年|年少|童子", "young"),
        (r"年老|年迈|老者|老翁", "old"),
    )
)
# What happens in a passage of classical Chinese fiction, in English.
_ACTIONS_EN: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"交锋|厮杀|大战|交战|混战|斗", "fighting"),
        (r"纵马|拍马|跃马|骑|马上", "on horseback"),
        (r"射|弓|箭", "archery"),
        (r"刀|剑|枪|矛|戟|斧|棒|鞭", "weapons drawn"),
        (r"追|赶", "giving chase"),
        (r"败走|逃|奔走|走脱", "fleeing"),
        (r"放火|火起|烧|焚", "fire"),
        (r"船|舟|渡", "on boats"),
        (r"驾云|腾云|飞", "flying"),
        (r"变作|变化|化作|变成", "transforming"),
        (r"宴|饮酒|酒", "feasting"),
        (r"拜|叩首|跪", "bowing"),
        (r"哭|泣|泪", "weeping"),
        (r"大笑|笑", "laughing"),
        (r"修书|书信|写", "writing a letter"),
        (r"看书|观书|读", "reading"),
        (r"坐", "seated"),
        (r"睡|卧", "lying down"),
    )
)
_COMPOUND_SURNAMES = frozenset(
    words(
        "诸葛 司马 欧阳 夏侯 公孙 上官 东方 皇甫 尉迟 慕容 令狐 长孙 宇文 司徒 太史 端木 独孤"
        " 南宫 西门 轩辕 呼延 淳于 单于 百里 东郭 申屠 闻人 钟离"
    )
)
# A place suffix that English names as a word of its own: 长坂桥 → Changban Bridge.
_PLACE_WORDS = {
    "桥": "Bridge",
    "山": "Mountain",
    "殿": "Hall",
    "堂": "Hall",
    "厅": "Hall",
    "宫": "Palace",
    "寺": "Temple",
    "庙": "Temple",
    "关": "Pass",
    "江": "River",
    "河": "River",
    "湖": "Lake",
    "营": "Camp",
    "寨": "Camp",
    "府": "Mansion",
    "宅": "House",
    "园": "Garden",
    "庄": "Manor",
    "村": "Village",
    "洞": "Cave",
    "林": "Forest",
    "亭": "Pavilion",
    "楼": "Tower",
    "阁": "Pavilion",
    "台": "Terrace",
    "院": "Courtyard",
    "坡": "Slope",
    "谷": "Valley",
    "岭": "Ridge",
    "门": "Gate",
    "岛": "Island",
}
_PLACE_STEMS = {"后": "Rear", "前": "Front", "中": "Central", "大": "Great", "小": "Small"}
_PLACE_STEMS |= {"东": "East", "西": "West", "南": "South", "北": "North", "内": "Inner"}
_PLACE_STEMS |= {"店": "Inn", "家": "House", "城": "City", "帐": "Tent", "御": "Imperial"}
_PLACE_STEMS |= {"草": "Thatched", "水": "River", "本": "Home", "宫": "Palace", "相": "Minister's"}


@dataclass(frozen=True, slots=True)
class PromptFields:
    """What an image prompt is built from, in the novel's language.

    ``people`` are (name, looks) pairs, ``looks`` empty when nothing is known; ``action``
    is the narrative sentence that shows what happens; ``speakers`` counts who talks.
    """

    shot: ShotType
    location: str
    time: TimeOfDay | None
    mood: Mood | None
    crowd: bool
    people: Sequence[tuple[str, str]]
    action: str
    speakers: int


def image_prompt(fields: PromptFields, novel: Language, prompt: Language) -> str:
    """The panel's image prompt, in the prompt language only."""
    if prompt == "zh":
        return _chinese_prompt(fields, same=novel == "zh")
    if novel == "zh":
        return _english_prompt_of_chinese(fields)
    return _english_prompt(fields)


def _english_prompt(fields: PromptFields) -> str:
    who = "; ".join(
        f"{name} ({clip(looks, APPEARANCE_CHARS)})" if looks else name
        for name, looks in fields.people
    )
    action = clip(fields.action, ACTION_CHARS) if fields.action else _english_talk(fields)
    return _join_en(fields, fields.location, who, action)


def _english_prompt_of_chinese(fields: PromptFields) -> str:
    people = []
    for name, looks in fields.people:
        words = _looks_in_english(looks)
        people.append(
            f"{romanise_name(name)} ({', '.join(words)})" if words else romanise_name(name)
        )
    actions = _matches(_ACTIONS_EN, fields.action, MAX_ACTION_WORDS)
    talk = _english_talk(fields)
    action = ", ".join([*([talk] if talk else []), *actions])
    location = romanise_place(fields.location) if fields.location else ""
    return _join_en(fields, location, "; ".join(people), action[:1].upper() + action[1:])


def _english_talk(fields: PromptFields) -> str:
    if fields.crowd:
        return "a crowd fills the frame"
    if fields.speakers >= 2:
        return "in conversation"
    return "speaking" if fields.speakers == 1 else ""


def _join_en(fields: PromptFields, location: str, who: str, action: str) -> str:
    frame = _SHOTS["en"][fields.shot] + (f" at {location}" if location else "")
    if fields.time:
        frame += f", {_TIMES['en'][fields.time]}"
    parts = [
        f"{frame}.",
        f"Characters: {who}." if who else "No characters in frame.",
        f"Action: {action.rstrip('.')}." if action else "",
        f"Mood: {_MOODS['en'][fields.mood]}." if fields.mood else "",
        _STYLE["en"],
    ]
    return " ".join(part for part in parts if part)


def _chinese_prompt(fields: PromptFields, *, same: bool) -> str:
    frame = [_SHOTS["zh"][fields.shot]]
    if same and fields.location:
        frame.append(fields.location)
    if fields.time:
        frame.append(_TIMES["zh"][fields.time])
    parts = ["，".join(frame) + "。"]
    if same and fields.people:
        who = "；".join(
            f"{n}（{clip(looks, APPEARANCE_CHARS)}）" if looks else n for n, looks in fields.people
        )
        parts.append(f"人物：{who}。")
    elif fields.people:
        count = len(fields.people)
        parts.append(f"画面中有{_ZH_COUNTS[count - 1] if count <= 4 else '多'}个人物。")
    if same and fields.action:
        parts.append(f"画面：{clip(fields.action, ACTION_CHARS).rstrip('。')}。")
    elif fields.crowd or fields.speakers:
        parts.append("画面：" + ("人群聚集。" if fields.crowd else "人物交谈。"))
    if fields.mood:
        parts.append(f"氛围：{_MOODS['zh'][fields.mood]}。")
    parts.append(_STYLE["zh"])
    return "".join(parts)


@functools.cache
def _looks_in_english(looks: str) -> list[str]:
    """English words for what a Chinese appearance note says (one note per character)."""
    return _matches(_LOOKS_EN, looks, MAX_APPEARANCE_WORDS)


def _matches(
    vocabulary: tuple[tuple[re.Pattern[str], str], ...], text: str, limit: int
) -> list[str]:
    found = [words for pattern, words in vocabulary if pattern.search(text)]
    return list(dict.fromkeys(found))[:limit]


# --------------------------------------------------------------------------- romanising

# Characters whose most common reading is not the one they have in names and places:
# 长安 is Chang'an, 成都 Chengdu, 乐进 Yue Jin, 单福 Shan Fu.
_NAME_READINGS = {"长": "chang", "都": "du", "乐": "yue", "单": "shan", "曾": "zeng", "解": "xie"}
_PINYIN_LOCK = threading.Lock()
_readings: dict[str, str] | None = None


def _syllables(text: str) -> list[str]:
    """Toneless pinyin of each Chinese character of ``text``, in each one's most common
    reading (吕 → lu); other characters are left out."""
    return [syllable for ch in text if (syllable := _syllable(ch))]


@functools.cache
def _syllable(ch: str) -> str:
    global _readings
    with _PINYIN_LOCK:
        if _readings is None:
            _readings = _load_readings()
    reading = _NAME_READINGS.get(ch) or _readings.get(str(ord(ch)))
    if reading is None:
        return _fallback(ch) if is_cjk(ch) and not _readings else ""
    decomposed = unicodedata.normalize("NFD", reading.split(",")[0])
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _load_readings() -> dict[str, str]:
    """pypinyin's table of character readings (code point → readings), read once.

    The table alone loads in a tenth of the time the whole library takes (its phrase
    dictionary is most of that), and names and places need no more than the common
    reading of each character. Should a release ship the table differently, the table is
    empty and each character goes through the library's own call instead.
    """
    spec = importlib.util.find_spec("pypinyin")
    folders = spec.submodule_search_locations if spec else None
    table = Path(folders[0]) / "pinyin_dict.json" if folders else None
    if table is None or not table.is_file():
        return {}
    raw: dict[str, str] = json.loads(table.read_text(encoding="utf-8"))
    return raw


def _fallback(ch: str) -> str:
    from pypinyin import lazy_pinyin

    found = lazy_pinyin(ch, errors="ignore")
    return str(found[0]) if found else ""


@functools.cache
def romanise_name(name: str) -> str:
    """A Chinese name in pinyin, surname first: 刘备 → Liu Bei, 诸葛亮 → Zhuge Liang.

    Names without Chinese characters are returned as they are."""
    if not any(is_cjk(ch) for ch in name):
        return name
    if len(name) > 2 and name[:2] in _COMPOUND_SURNAMES:
        split = 2
    else:
        # A longer name without a known surname is a title or a nickname: one word.
        split = 1 if len(name) in (2, 3) else 0
    parts = [name[:split], name[split:]] if split else [name]
    return " ".join(_word(part) for part in parts)


@functools.cache
def romanise_place(place: str) -> str:
    """A Chinese place name in pinyin, a suffix English names as a word in English:
    涿县 → Zhuoxian, 长坂桥 → Changban Bridge, 后堂 → Rear Hall."""
    if not any(is_cjk(ch) for ch in place):
        return place
    suffix = _PLACE_WORDS.get(place[-1])
    if suffix is None or len(place) < 2:
        return _word(place)
    stem = place[:-1]
    return f"{_PLACE_STEMS.get(stem) or _word(stem)} {suffix}"


def _word(text: str) -> str:
    return "".join(_syllables(text)).capitalize()
