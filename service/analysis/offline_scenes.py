"""Scenes and panels from read paragraphs: cutting, locations, shots and image prompts.

A chapter is cut into scenes where the story moves: a paragraph that opens with a
transition (``却说``, ``次日``, ``Meanwhile``), goes to a new place, or brings a new set of
people on stage starts a new scene once the current one has some length; a scene longer
than ``MAX_PANELS_PER_SCENE`` panels' worth of text is cut anyway. Each scene is cut into
panels of consecutive paragraphs. ``MAX_TOTAL_PANELS`` shrinks the per-chapter share for
novels with very many chapters (weakest scene breaks merge first), so even a long novel
stays at a few thousand panels.

A scene is set at the place its narration names most; a scene that names none is where
the previous scene was. A panel's framing follows what it shows: the first panel at a new
place establishes it, crowds and armies are wide, two speakers over the shoulder or
medium, a single emotional line a close-up.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from service.analysis.chapters import Chapter
from service.analysis.offline_places import Mood, TimeOfDay
from service.analysis.offline_prompts import PromptFields, image_prompt
from service.analysis.offline_text import Language, by_count, clip
from service.storyboard import (
    NARRATOR,
    UNKNOWN,
    Character,
    DialogueLine,
    Panel,
    Scene,
    ShotType,
)

MAX_SCENES_PER_CHAPTER = 12
MAX_PANELS_PER_SCENE = 8
MAX_TOTAL_PANELS = 4000
# Even in a novel with thousands of chapters every chapter gets a panel of its own.
MIN_PANELS_PER_CHAPTER = 1
# Roughly how much source text one panel stands for before a chapter hits its cap.
TARGET_PANEL_CHARS = 250
MAX_PANELS_PER_CHAPTER = 30
MAX_PANEL_CHARACTERS = 4
MAX_SCENE_CHARACTERS = 8
MAX_PANEL_DIALOGUE = 3
# A spoken line claims a share of a panel, so talkative passages get more panels and
# fewer lines are left out for want of room.
DIALOGUE_WEIGHT = TARGET_PANEL_CHARS // MAX_PANEL_DIALOGUE
# How much text a scene needs before a break of each strength may end it: a transition
# word ends it soonest, a new place next, a new set of people only a longer one.
_BREAK_MIN_WEIGHT = {
    4: 0,
    3: 3 * TARGET_PANEL_CHARS,
    2: 4 * TARGET_PANEL_CHARS,
    1: 6 * TARGET_PANEL_CHARS,
}
_MAX_SCENE_WEIGHT = MAX_PANELS_PER_SCENE * TARGET_PANEL_CHARS

NARRATION_CHARS = 160
DESCRIPTION_CHARS = 200
SUMMARY_CHARS = 240
UNKNOWN_LOCATION = {"zh": "未知", "en": "unknown"}
GENERIC_LOOKS = {"zh": "书中人物", "en": "a character from the story"}

_DETAIL_WORDS = re.compile(
    r"书信|密书|印绶|玉玺|宝剑|锦囊|bottle|key|letter|ring|watch|locket|note", re.IGNORECASE
)
_EMOTIONAL: frozenset[Mood] = frozenset({"angry", "fearful", "grieving"})


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
    # Places the narration names, each weighted 2 (being there) or 1 (heading there).
    places: tuple[tuple[str, int], ...]
    scene_break: bool
    time: TimeOfDay | None = None
    mood: Mood | None = None
    crowd: bool = False
    verse: bool = False

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
    action: str = ""
    mood: Mood | None = None
    crowd: bool = False


@dataclass(slots=True)
class SceneDraft:
    """A scene before characters have ids. ``location`` is empty when no scene so far
    has named a place."""

    chapter: Chapter
    summary: str
    location: str
    keys: list[str]
    panels: list[PanelDraft]
    time: TimeOfDay | None = None


def panel_cap(chapter_count: int) -> int:
    """How many panels each chapter may have, so the whole novel fits the panel budget."""
    per_chapter = MAX_TOTAL_PANELS // max(chapter_count, 1)
    return max(MIN_PANELS_PER_CHAPTER, min(MAX_PANELS_PER_CHAPTER, per_chapter))


# --------------------------------------------------------------------------- cutting


def chapter_scenes(
    chapter: Chapter,
    paras: list[Para],
    cap: int,
    language: Language,
    previous_location: str = "",
) -> list[SceneDraft]:
    """The chapter's scenes, with at most ``cap`` panels between them.

    ``previous_location`` is where the story last was (the previous chapter's last
    scene), for a scene that names no place of its own.
    """
    runs = _merge_to(_scene_runs(paras), min(cap, MAX_SCENES_PER_CHAPTER), paras)
    counts = _panel_shares([sum(paras[i].weight for i in run) for run, _ in runs], paras, cap)
    scenes: list[SceneDraft] = []
    location, time = previous_location, None
    for (run, _), count in zip(runs, counts, strict=True):
        scene = _build_scene(chapter, [paras[i] for i in run], location, time, count, language)
        scene_panels_establish(scene, new_place=not scenes or scene.location != location)
        location, time = scene.location, scene.time
        scenes.append(scene)
    return scenes


def _scene_runs(paras: list[Para]) -> list[tuple[range, int]]:
    """Runs of paragraphs that make one scene each, with the strength of the break that
    starts each run (0 for the first)."""
    runs: list[tuple[range, int]] = []
    start, weight, strength_at_start = 0, 0, 0
    place = ""
    for i, para in enumerate(paras):
        strength = _break_strength(paras, i, start, place) if i > start else 0
        forced = weight + para.weight > _MAX_SCENE_WEIGHT and weight > 0
        if i > start and (forced or (strength and weight >= _BREAK_MIN_WEIGHT[strength])):
            runs.append((range(start, i), strength_at_start))
            start, weight, strength_at_start, place = i, 0, strength, ""
        weight += para.weight
        place = place or _main_place(para)
    if paras:
        runs.append((range(start, len(paras)), strength_at_start))
    return runs


def _break_strength(paras: list[Para], i: int, start: int, place: str) -> int:
    """How strongly paragraph ``i`` starts a new scene: 3 a transition, 2 a new place,
    1 a new set of people on stage, 0 none."""
    para = paras[i]
    if start == 0 and para.scene_break and any(p.verse for p in paras[:i]):
        return 4  # the poem a chapter opens with, up to the story's 话说, is a scene
    if para.scene_break:
        return 3
    here = _main_place(para)
    if here and place and here != place:
        return 2
    before = {k for p in paras[max(start, i - 2) : i] for k in p.present}
    after = {k for p in paras[i : i + 2] for k in p.present}
    return 1 if before and after and not before & after else 0


def _main_place(para: Para) -> str:
    """The place a paragraph says someone is at (weight 2), if any."""
    return next((place for place, weight in para.places if weight >= 2), "")


def _merge_to(
    runs: list[tuple[range, int]], limit: int, paras: list[Para]
) -> list[tuple[range, int]]:
    """Merge the weakest breaks (then the shortest scenes) until at most ``limit`` remain.

    Each step joins the run whose break has the least ``(strength, size of the pair,
    position)``. A heap of those keys, with the two keys a merge changes pushed again and
    stale ones skipped, makes this O(runs log runs) rather than a scan of every run and
    paragraph per merge, which a chapter of thousands of forced breaks made quadratic.
    """
    limit = max(limit, 1)
    if len(runs) <= limit:
        return list(runs)
    chain = _RunChain(runs, [sum(paras[i].weight for i in run) for run, _ in runs])
    while chain.count > limit:
        chain.merge_weakest()
    return chain.runs()


class _RunChain:
    """Runs as a linked list, with a heap of the keys of the breaks between them."""

    def __init__(self, runs: list[tuple[range, int]], sizes: list[int]) -> None:
        self.count = len(runs)
        self.starts = [run.start for run, _ in runs]
        self.stops = [run.stop for run, _ in runs]
        self.strengths = [strength for _, strength in runs]
        self.sizes = sizes
        self.prev = list(range(-1, self.count - 1))
        self.next = list(range(1, self.count + 1))
        self.alive = [True] * self.count
        self.version = [0] * self.count
        self.heap = [self._key(k) for k in range(1, self.count)]
        heapq.heapify(self.heap)

    def _key(self, k: int) -> tuple[int, int, int, int]:
        """Run ``k``'s break (which joins it to the run before) as it stands now."""
        return (self.strengths[k], self.sizes[self.prev[k]] + self.sizes[k], k, self.version[k])

    def merge_weakest(self) -> None:
        """Join the weakest break's run onto the run before it."""
        while True:
            _, _, k, version = heapq.heappop(self.heap)
            if self.alive[k] and version == self.version[k]:
                break
        first = self.prev[k]
        self.alive[k] = False
        self.sizes[first] += self.sizes[k]
        self.stops[first] = self.stops[k]
        self.next[first] = after = self.next[k]
        if after < len(self.alive):
            self.prev[after] = first
        self.count -= 1
        for changed in (first, after):
            if 0 < changed < len(self.alive) and self.prev[changed] >= 0:
                self.version[changed] += 1
                heapq.heappush(self.heap, self._key(changed))

    def runs(self) -> list[tuple[range, int]]:
        """The runs left, in order."""
        return [
            (range(self.starts[k], self.stops[k]), self.strengths[k])
            for k in range(len(self.alive))
            if self.alive[k]
        ]


def _panel_shares(sizes: list[int], paras: list[Para], cap: int) -> list[int]:
    """Panels for each scene: the chapter's panels shared out by weight, at least one
    each and at most ``MAX_PANELS_PER_SCENE``."""
    if not sizes:
        return []
    total = max(len(sizes), min(cap, _panel_count(sum(sizes))))
    exact = [total * size / max(sum(sizes), 1) for size in sizes]
    shares = [min(MAX_PANELS_PER_SCENE, max(1, math.floor(x))) for x in exact]
    # Largest remainders first get what is left; ties go to the earlier scene.
    order = sorted(range(len(sizes)), key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    for k in itertools.islice(itertools.cycle(order), 4 * len(order)):
        if sum(shares) >= total:
            break
        if shares[k] < MAX_PANELS_PER_SCENE and shares[k] < math.ceil(exact[k]):
            shares[k] += 1
    return shares


def _panel_count(weight: int) -> int:
    """Panels enough for this weight of text at one per target size."""
    return max(1, math.ceil(weight / TARGET_PANEL_CHARS))


def _partition(sizes: Sequence[int], parts: int) -> list[range]:
    """Cut items into at most ``parts`` runs of similar total size."""
    if not sizes:
        return []
    parts = max(1, min(parts, len(sizes)))
    target = sum(sizes) / parts
    runs: list[range] = []
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        # Cut when this item would overshoot the target by more than we are short of it.
        full = acc >= target or acc + size - target > target - acc
        if i > start and len(runs) < parts - 1 and full:
            runs.append(range(start, i))
            start, acc = i, 0
        acc += size
    runs.append(range(start, len(sizes)))
    return runs


# --------------------------------------------------------------------------- scenes


def _build_scene(
    chapter: Chapter,
    paras: list[Para],
    inherited: str,
    inherited_time: TimeOfDay | None,
    count: int,
    language: Language,
) -> SceneDraft:
    runs = _partition([p.weight for p in paras], count)
    location = scene_location([pl for p in paras for pl in p.places]) or inherited
    panels: list[PanelDraft] = []
    for run in runs:
        previous = panels[-1].shot if panels else None
        panels.append(_build_panel([paras[i] for i in run], previous, location, language))
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
        time=next((p.time for p in paras if p.time), None) or inherited_time,
    )


def scene_location(named_places: Sequence[tuple[str, int]]) -> str:
    """The place a scene's narration names most (by weight), first named winning ties;
    empty when it names none."""
    weights: Counter[str] = Counter()
    for place, weight in named_places:
        weights[place] += weight
    # Counting keeps first-named order, which breaks ties between equally named places.
    first = {place: i for i, place in enumerate(weights)}
    if not weights:
        return ""
    return max(weights, key=lambda place: (weights[place], -first[place]))


def scene_panels_establish(scene: SceneDraft, *, new_place: bool) -> None:
    """Open a scene at a new place (or a chapter's first scene) with an establishing shot,
    unless the scene is a single panel, which has to show its action instead."""
    if new_place and len(scene.panels) > 1:
        scene.panels[0].shot = ShotType.ESTABLISHING


# --------------------------------------------------------------------------- panels


def _build_panel(
    paras: list[Para], previous: ShotType | None, location: str, language: Language
) -> PanelDraft:
    dialogue = [line for p in paras for line in p.dialogue][:MAX_PANEL_DIALOGUE]
    narrative = [s for p in paras for s in p.narrative]
    named = [n for p in paras for n in p.named]
    counts = Counter(k for p in paras for k in p.present)
    speakers = list(dict.fromkeys(k for k, _ in dialogue if k not in (None, UNKNOWN)))
    keys = list(dict.fromkeys([*speakers, *by_count(counts, counts)]))[:MAX_PANEL_CHARACTERS]
    narration = clip(narrative[0], NARRATION_CHARS) if narrative else None
    action = _key_sentence(narrative, named)
    feeling = next((p.mood for p in paras if p.mood), None)
    crowd = any(p.crowd for p in paras)
    spoken = " ".join(text for _, text in dialogue)
    shot = _shot_type(
        keys=keys,
        speakers=len(speakers),
        lines=len(dialogue),
        feeling=feeling,
        crowd=crowd,
        detail=_DETAIL_WORDS.search(f"{action} {spoken}") is not None,
        exclaimed=any(text.rstrip("”’'\" ").endswith(("！", "!")) for _, text in dialogue),
        previous=previous,
    )
    return PanelDraft(
        shot=shot,
        description=_description(location, keys, speakers, action, narration, crowd, language),
        keys=keys,
        dialogue=dialogue,
        narration=narration,
        action=action,
        mood=feeling,
        crowd=crowd,
    )


def _key_sentence(narrative: list[str], named: list[int]) -> str:
    """The narrative sentence naming the most characters: the one that shows who acts."""
    if not narrative:
        return ""
    scored = [
        (count, -i, sentence)
        for i, (sentence, count) in enumerate(zip(narrative, named, strict=True))
    ]
    return max(scored)[2]


def _description(
    location: str,
    keys: list[str],
    speakers: list[str],
    action: str,
    narration: str | None,
    crowd: bool,
    language: Language,
) -> str:
    """What the panel shows, for the artist: where, who, and what they do.

    The narration is the panel's caption; the description names the place and the people
    and adds the sentence that shows the action only when the caption is not already it.
    """
    shown = action if action and clip(action, NARRATION_CHARS) != narration else ""
    if language == "zh":
        who = "、".join(keys)
        doing = "交谈" if len(speakers) >= 2 else "说话" if speakers else ""
        if len(keys) > 1 and len(speakers) == 1:
            doing = f"；{speakers[0]}说话"
        head = "，".join(part for part in (location, "众人聚集" if crowd else "") if part)
        parts = [f"{head}：" if head else "", f"{who}{doing}。" if who else "", shown]
        return clip("".join(parts).rstrip("：") or f"景物：{action}", DESCRIPTION_CHARS)
    who = _english_list(keys)
    doing = " talk" if len(speakers) >= 2 else " speaks" if len(speakers) == 1 else ""
    if len(keys) > 1 and doing == " speaks":
        doing = f": {speakers[0]} speaks"
    parts = [
        f"At {location}." if location else "",
        "A crowd gathers." if crowd else "",
        f"{who}{doing}." if who else "",
        shown,
    ]
    return clip(" ".join(p for p in parts if p) or f"Scenery: {action}", DESCRIPTION_CHARS)


def _english_list(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + f" and {names[-1]}"


def _shot_type(
    *,
    keys: list[str],
    speakers: int,
    lines: int,
    feeling: Mood | None,
    crowd: bool,
    detail: bool,
    exclaimed: bool,
    previous: ShotType | None,
) -> ShotType:
    """Framing from what the panel shows: who is in it, who talks, what happens."""
    if crowd or (len(keys) >= MAX_PANEL_CHARACTERS and speakers < 2):
        return ShotType.WIDE
    if speakers >= 2:
        # A two-way exchange cuts between over-the-shoulder and medium framings.
        return (
            ShotType.MEDIUM
            if previous == ShotType.OVER_THE_SHOULDER
            else ShotType.OVER_THE_SHOULDER
        )
    if speakers == 1:
        emotional = (feeling in _EMOTIONAL or exclaimed) and lines <= 2 and len(keys) <= 2
        return ShotType.CLOSE_UP if emotional else ShotType.MEDIUM
    if detail:
        return ShotType.EXTREME_CLOSE_UP
    if len(keys) == 1 and feeling in _EMOTIONAL:
        return ShotType.CLOSE_UP
    return ShotType.MEDIUM if keys else ShotType.WIDE


# --------------------------------------------------------------------------- storyboard


@dataclass(frozen=True, slots=True)
class Languages:
    """The novel's language and the language its image prompts are written in."""

    novel: Language
    prompt: Language


def storyboard_scenes(
    drafts: list[SceneDraft], cast: dict[str, Character], languages: Languages
) -> list[Scene]:
    """The finished scenes, characters referred to by id and panels numbered throughout."""
    panel_numbers = itertools.count(1)
    unknown = UNKNOWN_LOCATION[languages.novel]
    return [
        Scene(
            id=f"s{number}",
            chapter_index=draft.chapter.index,
            chapter_title=draft.chapter.title,
            summary=draft.summary,
            location=draft.location or unknown,
            character_ids=[cast[k].id for k in draft.keys if k in cast],
            panels=[
                _panel(panel, f"p{next(panel_numbers)}", draft, cast, languages)
                for panel in draft.panels
            ],
        )
        for number, draft in enumerate(drafts, start=1)
    ]


def _speaker_id(key: str | None, cast: dict[str, Character]) -> str:
    """A line's speaker: a character's id, ``unknown``, or the narrator for ``None``."""
    if key is not None and key in cast:
        return cast[key].id
    return UNKNOWN if key == UNKNOWN else NARRATOR


def _panel(
    draft: PanelDraft,
    panel_id: str,
    scene: SceneDraft,
    cast: dict[str, Character],
    languages: Languages,
) -> Panel:
    people = [cast[k] for k in draft.keys if k in cast]
    dialogue = [
        DialogueLine(speaker_id=_speaker_id(k, cast), text=text) for k, text in draft.dialogue
    ]
    generic = GENERIC_LOOKS[languages.novel]
    fields = PromptFields(
        shot=draft.shot,
        location=scene.location,
        time=scene.time,
        mood=draft.mood,
        crowd=draft.crowd,
        people=[(c.name, "" if c.description == generic else c.description) for c in people],
        action=draft.action,
        speakers=len({k for k, _ in draft.dialogue if k not in (None, UNKNOWN)}),
    )
    return Panel(
        id=panel_id,
        shot_type=draft.shot,
        description=draft.description,
        character_ids=[c.id for c in people],
        dialogue=dialogue,
        narration=draft.narration,
        image_prompt=image_prompt(fields, languages.novel, languages.prompt),
    )
