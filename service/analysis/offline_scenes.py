"""Scenes and panels from read paragraphs: cutting, locations, shots and image prompts.

Each chapter is cut into at most ``MAX_SCENES_PER_CHAPTER`` scenes, preferring paragraphs
that open with a transition (``却说``, ``Meanwhile``), and each scene into at most
``MAX_PANELS_PER_SCENE`` panels of consecutive paragraphs. ``MAX_TOTAL_PANELS`` shrinks
the per-chapter share for novels with very many chapters, so even a long novel stays at a
few thousand panels. A scene is set at the place its paragraphs name most.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from service.analysis.chapters import Chapter
from service.analysis.offline_looks import VISUAL_CHARS
from service.analysis.offline_text import CJK, Language, by_count, clip
from service.storyboard import NARRATOR, Character, DialogueLine, Panel, Scene, ShotType

MAX_SCENES_PER_CHAPTER = 6
MAX_PANELS_PER_SCENE = 5
MAX_TOTAL_PANELS = 4000
# Even in a novel with thousands of chapters every chapter gets a panel of its own.
MIN_PANELS_PER_CHAPTER = 1
# Roughly how much source text one panel stands for before a chapter hits its cap.
TARGET_PANEL_CHARS = 250
MAX_PANEL_CHARACTERS = 4
MAX_SCENE_CHARACTERS = 8
MAX_PANEL_DIALOGUE = 3
# A spoken line claims a share of a panel, so talkative passages get more panels and
# fewer lines are left out for want of room.
DIALOGUE_WEIGHT = TARGET_PANEL_CHARS // MAX_PANEL_DIALOGUE

NARRATION_CHARS = 160
DESCRIPTION_CHARS = 200
SUMMARY_CHARS = 240
UNSPECIFIED_LOCATION = "unspecified location"

_PLACES = {
    "zh": re.compile(
        rf"(?:到|至|往|入|于|在|投|回|屯|守|奔|过|进|赴|离|出|近|望)"
        rf"(?P<place>[{CJK}]{{0,3}}?(?:城|州|郡|县|关|山|寨|营|宫|殿|府|亭|江|河|坡|谷|原|口|桥"
        rf"|村|寺|庄|园|阁|楼|台|堂|院|岭|林|溪|湖|川|洞|冈|泉|镇|都|阳|海))"
    ),
    "en": re.compile(
        r"\b(?:in|into|at|to|through|on|under|near|inside|across|towards?|from|round|reach(?:ed)?)"
        r"\s+the\s+(?P<place>(?:[a-z-]+\s+)?(?:hall|garden|house|wood|court|courtroom|kitchen"
        r"|pool|table|room|door|doorway|tree|sea|beach|river|bank|field|forest|castle|palace"
        r"|street|road|city|town|village|cottage|shop|church|sky|lake|hill|ground|croquet-ground"
        r"|rabbit-hole|well|window|shore|school|meadow|passage|cave|mountain|harbour|ship))\b"
    ),
}
# What a place word is printed with: 涿县, but "the garden".
_PLACE_PREFIX = {"zh": "", "en": "the "}
_SCENE_MARKERS = {
    "zh": re.compile(
        r"^(?:却说|且说|话说|再说|却表|且表|话分两头|次日|是夜|当夜|至晚|天明|数日后|不一日|却言)"
    ),
    "en": re.compile(
        r"^(?:Meanwhile|The next (?:day|morning)|Next (?:day|morning)|That (?:night|evening)"
        r"|Later|Some time|\*\s*\*\s*\*)"
    ),
}
_ACTION_WORDS = re.compile(r"战|杀|军|兵|阵|battle|fight|army|crowd|procession", re.IGNORECASE)
_DETAIL_WORDS = re.compile(r"泪|书信|印|剑|bottle|key|letter|tears|watch|cake", re.IGNORECASE)
_SHOT_LABELS = {
    ShotType.ESTABLISHING: "Establishing shot",
    ShotType.WIDE: "Wide shot",
    ShotType.MEDIUM: "Medium shot",
    ShotType.CLOSE_UP: "Close-up",
    ShotType.EXTREME_CLOSE_UP: "Extreme close-up",
    ShotType.OVER_THE_SHOULDER: "Over-the-shoulder shot",
}


@dataclass(frozen=True, slots=True)
class Para:
    """What one paragraph contributes to scenes and panels."""

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
class PanelDraft:
    """A panel before characters have ids: who is in it, what it shows and says."""

    shot: ShotType
    description: str
    keys: list[str]
    dialogue: list[tuple[str | None, str]]
    narration: str | None


@dataclass(slots=True)
class SceneDraft:
    """A scene before characters have ids."""

    chapter: Chapter
    summary: str
    location: str
    keys: list[str]
    panels: list[PanelDraft]


def places(text: str, language: Language) -> list[str]:
    """The places a text says someone goes to or is at, in order."""
    prefix = _PLACE_PREFIX[language]
    return [prefix + m["place"] for m in _PLACES[language].finditer(text)]


def opens_scene(paragraph: str, language: Language) -> bool:
    """Whether the paragraph opens with a transition to a new scene."""
    return _SCENE_MARKERS[language].match(paragraph) is not None


def panel_cap(chapter_count: int) -> int:
    """How many panels each chapter may have, so the whole novel fits the panel budget."""
    per_chapter = MAX_TOTAL_PANELS // max(chapter_count, 1)
    return max(
        MIN_PANELS_PER_CHAPTER, min(MAX_SCENES_PER_CHAPTER * MAX_PANELS_PER_SCENE, per_chapter)
    )


# --------------------------------------------------------------------------- cutting


def chapter_scenes(
    chapter: Chapter, paras: list[Para], cap: int, language: Language
) -> list[SceneDraft]:
    """The chapter's scenes, with at most ``cap`` panels between them."""
    wanted = _panel_count(paras, cap)
    scene_count = math.ceil(wanted / MAX_PANELS_PER_SCENE)
    per_scene = math.ceil(wanted / scene_count)
    runs = _partition([p.weight for p in paras], scene_count, [p.scene_break for p in paras])
    scenes: list[SceneDraft] = []
    previous_location: str | None = None
    for run in runs:
        paras_in_scene = [paras[i] for i in run]
        scene = _build_scene(chapter, paras_in_scene, previous_location, per_scene, language)
        previous_location = scene.location
        scenes.append(scene)
    return scenes


def _panel_count(paras: list[Para], cap: int) -> int:
    """Panels enough for the paragraphs' weight at one per target size, within the cap."""
    return max(1, min(cap, math.ceil(sum(p.weight for p in paras) / TARGET_PANEL_CHARS)))


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


def _build_scene(
    chapter: Chapter,
    paras: list[Para],
    inherited: str | None,
    cap: int,
    language: Language,
) -> SceneDraft:
    count = _panel_count(paras, cap)
    runs = _partition([p.weight for p in paras], count, [False] * len(paras))
    location = _scene_location([pl for p in paras for pl in p.places], inherited, chapter.title)
    panels = [
        _build_panel([paras[i] for i in run], first=n == 0, language=language)
        for n, run in enumerate(runs)
    ]
    keys = Counter(k for p in paras for k in p.present)
    narrative = [s for p in paras for s in p.narrative]
    spoken = [text for p in paras for _, text in p.dialogue]
    summary = " ".join(narrative[:2]) or " ".join(spoken[:1]) or chapter.title
    return SceneDraft(
        chapter=chapter,
        summary=clip(summary, SUMMARY_CHARS),
        location=location,
        keys=by_count(keys, keys)[:MAX_SCENE_CHARACTERS],
        panels=panels,
    )


def _scene_location(named_places: list[str], inherited: str | None, chapter_title: str) -> str:
    """Most named place in the scene; else where the previous scene was; else the chapter."""
    counts = Counter(named_places)
    # Counting keeps first-named order, which breaks ties between equally named places.
    first = {place: i for i, place in enumerate(counts)}
    candidates = [p for p in counts if len(p) >= 2] or list(counts)
    if candidates:
        return max(candidates, key=lambda place: (counts[place], -first[place]))
    return inherited or chapter_title or UNSPECIFIED_LOCATION


# --------------------------------------------------------------------------- panels


def _build_panel(paras: list[Para], *, first: bool, language: Language) -> PanelDraft:
    dialogue = [line for p in paras for line in p.dialogue][:MAX_PANEL_DIALOGUE]
    narrative = [s for p in paras for s in p.narrative]
    named = [n for p in paras for n in p.named]
    counts = Counter(k for p in paras for k in p.present)
    speakers = list(dict.fromkeys(k for k, _ in dialogue if k is not None))
    keys = list(dict.fromkeys([*speakers, *by_count(counts, counts)]))[:MAX_PANEL_CHARACTERS]
    description = _key_sentence(narrative, named) or _conversation(keys, dialogue, language)
    spoken = " ".join(text for _, text in dialogue)
    return PanelDraft(
        shot=_shot_type(first=first, keys=keys, speakers=speakers, text=f"{description} {spoken}"),
        description=clip(description, DESCRIPTION_CHARS),
        keys=keys,
        dialogue=dialogue,
        narration=clip(narrative[0], NARRATION_CHARS) if narrative else None,
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


# --------------------------------------------------------------------------- storyboard


def storyboard_scenes(drafts: list[SceneDraft], cast: dict[str, Character]) -> list[Scene]:
    """The finished scenes, characters referred to by id and panels numbered throughout."""
    panel_numbers = itertools.count(1)
    return [
        Scene(
            id=f"s{number}",
            chapter_index=draft.chapter.index,
            chapter_title=draft.chapter.title,
            summary=draft.summary,
            location=draft.location,
            character_ids=[cast[k].id for k in draft.keys if k in cast],
            panels=[
                _panel(panel, f"p{next(panel_numbers)}", draft.location, cast)
                for panel in draft.panels
            ],
        )
        for number, draft in enumerate(drafts, start=1)
    ]


def _panel(draft: PanelDraft, panel_id: str, location: str, cast: dict[str, Character]) -> Panel:
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


def _image_prompt(draft: PanelDraft, location: str, people: list[Character]) -> str:
    who = "; ".join(f"{c.name} ({clip(c.description, VISUAL_CHARS)})" for c in people)
    return " ".join(
        [
            f"{_SHOT_LABELS[draft.shot]} at {location}.",
            f"Characters: {who}." if who else "No characters in frame.",
            f"Action: {draft.description}" if draft.description else "",
            "Comic storyboard panel, clean ink lines, consistent character designs.",
        ]
    ).replace("  ", " ")
