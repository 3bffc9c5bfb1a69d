"""Scenes, places, shots and image prompts of the offline analyzer, on hand-made passages."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.analysis.offline import build_storyboard
from service.analysis.offline_places import is_verse, places, time_of_day
from service.analysis.offline_prompts import romanise_name, romanise_place
from service.analysis.offline_scenes import MAX_PANELS_PER_SCENE, Para, _merge_to, panel_cap
from service.analysis.offline_text import is_cjk
from service.ports import NovelText
from service.storyboard import Panel, ShotType, Storyboard

FILLER = "众人各自收拾行装，一路无话，只是赶路，天色渐渐变了，风吹草木，尘土飞扬。"
JOURNEY = f"""第一回　桃园结义

　　滚滚长江东逝水，浪花淘尽英雄。

　　话说刘备，字玄德，在涿县城中看榜。{FILLER * 12}

　　刘备曰：“大丈夫当为国出力！”张飞曰：“吾愿同往。”{FILLER * 10}

　　次日，刘备进兵徐州。{FILLER * 12}

　　刘备大怒曰：“贼子安敢如此！”{FILLER * 8}

　　却说十万大军列阵于城下，旌旗蔽日。{FILLER * 12}

　　刘备曰：“可退。”张飞曰：“不可。”刘备曰：“听我言。”张飞曰：“罢了。”

第二回　再会

　　{FILLER * 8}
"""
MUSING = "She thought it over for a while, and the birds sang, and nothing at all happened. " * 12
ALICE = f"""CHAPTER I. The Garden

Alice walked into the garden and sat down under a tree with her sister.
'What a lovely day!' said Alice. 'It is,' said the Rabbit.

{MUSING}

The next morning Alice went to the kitchen, where the Duchess was nursing a baby.
'Sneeze!' cried the Duchess angrily. 'I won't,' said Alice.

{MUSING}

CHAPTER II. Later

Alice sat still and thought about what she had seen for a very long while.
"""


def _board(text: str, prompt: str = "en") -> Storyboard:
    return build_storyboard(NovelText("n1", "Sample", text), prompt)  # type: ignore[arg-type]


def _panels(board: Storyboard) -> list[Panel]:
    return [p for s in board.scenes for p in s.panels]


def test_scenes_split_where_place_time_or_people_change() -> None:
    board = _board(JOURNEY)
    first = [s for s in board.scenes if s.chapter_index == 1]
    assert [s.location for s in first] == ["未知", "涿县", "徐州", "徐州"]
    # The opening poem is a scene of its own and is set nowhere in particular.
    assert first[0].summary.startswith("滚滚长江")
    # The next chapter names no place: it is where the story last was.
    assert {s.location for s in board.scenes if s.chapter_index == 2} == {"徐州"}
    assert all(1 <= len(s.panels) <= MAX_PANELS_PER_SCENE for s in board.scenes)


def test_locations_are_places_never_fragments_or_chapter_titles() -> None:
    assert places("刘备进兵徐州，过江，回到本寨，入城。", "zh") == [("徐州", 2)]
    assert places("进兵发至黎阳。", "zh") == [("黎阳", 2)]
    assert places("She went to London and then into the garden.", "en", ["Alice"]) == [
        ("the garden", 2),
        ("London", 2),
    ]
    assert places("She ran to Alice in March.", "en", ["Alice"]) == []
    board = _board(ALICE)
    titles = {s.chapter_title for s in board.scenes}
    assert [s.location for s in board.scenes] == ["the garden", "the kitchen", "the kitchen"]
    assert not titles & {s.location for s in board.scenes}


def test_shot_types_follow_what_the_panel_shows() -> None:
    board = _board(JOURNEY)
    shots = {p.narration: p.shot_type for p in _panels(board) if p.narration}
    assert shots["却说十万大军列阵于城下，旌旗蔽日。"] == ShotType.WIDE
    by_line = {p.dialogue[0].text: p.shot_type for p in _panels(board) if p.dialogue}
    assert by_line["贼子安敢如此！"] == ShotType.CLOSE_UP
    assert by_line["可退。"] in {ShotType.OVER_THE_SHOULDER, ShotType.MEDIUM}
    # A scene at a new place opens with an establishing shot, when it has room for one.
    for before, scene in zip(board.scenes, board.scenes[1:], strict=False):
        if len(scene.panels) > 1 and scene.location != before.location:
            assert scene.panels[0].shot_type == ShotType.ESTABLISHING
    assert len(Counter(p.shot_type for p in _panels(board))) >= 4


def test_descriptions_say_what_the_panel_shows_and_narration_is_the_caption() -> None:
    for board in (_board(JOURNEY), _board(ALICE)):
        for panel in _panels(board):
            assert panel.description != panel.narration
    alice = _board(ALICE)
    assert _panels(alice)[0].description.startswith("At the garden.")


@pytest.mark.parametrize(("text", "prompt"), [(JOURNEY, "en"), (ALICE, "en"), (JOURNEY, "zh")])
def test_prompts_are_in_one_language(text: str, prompt: str) -> None:
    for panel in _panels(_board(text, prompt)):
        has_cjk = any(is_cjk(ch) for ch in panel.image_prompt)
        assert has_cjk == (prompt == "zh"), panel.image_prompt


def test_a_chinese_prompt_of_an_english_novel_names_no_one_in_latin_letters() -> None:
    for panel in _panels(_board(ALICE, "zh")):
        assert not any(ch.isascii() and ch.isalpha() for ch in panel.image_prompt)


def test_english_prompt_of_a_chinese_novel_uses_romanised_fields() -> None:
    prompts = [p.image_prompt for p in _panels(_board(JOURNEY))]
    assert any(p.startswith("Establishing shot at Xuzhou") for p in prompts)
    assert any("Characters: Liu Bei" in p and "Mood: angry." in p for p in prompts)
    assert any("Zhang Fei" in p and "In conversation" in p for p in prompts)


@pytest.mark.parametrize(
    ("name", "roman"),
    [("刘备", "Liu Bei"), ("诸葛亮", "Zhuge Liang"), ("孙悟空", "Sun Wukong"), ("Alice", "Alice")],
)
def test_romanise_name(name: str, roman: str) -> None:
    assert romanise_name(name) == roman


@pytest.mark.parametrize(
    ("place", "roman"),
    [
        ("涿县", "Zhuoxian"),
        ("长坂桥", "Changban Bridge"),
        ("成都", "Chengdu"),
        ("后堂", "Rear Hall"),
        ("花果山", "Huaguo Mountain"),
    ],
)
def test_romanise_place(place: str, roman: str) -> None:
    assert romanise_place(place) == roman


def test_verse_and_time_of_day() -> None:
    assert is_verse("滚滚长江东逝水，浪花淘尽英雄。是非成败转头空。", "zh")
    assert not is_verse("玄德谢别二客，便命良匠打造双股剑，又造青龙偃月刀。", "zh")
    assert time_of_day("是夜二更时分，布提刀径入帐中。", "zh") == "night"
    assert time_of_day("The next morning Alice woke.", "en") == "morning"


def test_a_long_novel_stays_within_the_panel_budget() -> None:
    assert panel_cap(4000) == 1
    assert panel_cap(10) == 30


def _merge_one_at_a_time(
    runs: list[tuple[range, int]], limit: int, paras: list[Para]
) -> list[tuple[range, int]]:
    """The merge rule stated directly: join the run with the least (break strength, pair
    size, position) onto the one before, one merge at a time."""
    runs = list(runs)
    while len(runs) > max(limit, 1):
        sizes = [sum(paras[i].weight for i in run) for run, _ in runs]
        j = min(range(1, len(runs)), key=lambda k: (runs[k][1], sizes[k - 1] + sizes[k], k))
        (first, strength), (second, _) = runs[j - 1], runs[j]
        runs[j - 1 : j + 1] = [(range(first.start, second.stop), strength)]
    return runs


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=40),
    cuts=st.data(),
    limit=st.integers(min_value=0, max_value=12),
)
def test_merging_scenes_matches_the_rule_stated_directly(
    sizes: list[int], cuts: st.DataObject, limit: int
) -> None:
    paras = [Para(size, (), (), (), (), (), False) for size in sizes]
    bounds = sorted(cuts.draw(st.sets(st.integers(1, len(sizes) - 1))) if len(sizes) > 1 else [])
    starts = [0, *bounds]
    strengths = [0, *(cuts.draw(st.integers(0, 4)) for _ in bounds)]
    runs = [
        (range(a, b), strength)
        for a, b, strength in zip(starts, [*bounds, len(sizes)], strengths, strict=True)
    ]
    assert _merge_to(runs, limit, paras) == _merge_one_at_a_time(runs, limit, paras)
