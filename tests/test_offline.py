"""The offline analyzer: cast, dialogue attribution, scenes and panels."""

from __future__ import annotations

from typing import Any

import pytest

from service.analysis.offline import (
    MAX_PANELS_PER_SCENE,
    MAX_SCENES_PER_CHAPTER,
    MAX_TOTAL_PANELS,
    OfflineAnalyzer,
    build_storyboard,
)
from service.analysis.offline_prompts import romanise_name, romanise_place
from service.analysis.offline_text import Language, is_cjk
from service.errors import JobError
from service.ports import NovelText
from service.storyboard import NARRATOR, UNKNOWN, Character, DialogueLine, Storyboard
from service.text import load_novel_bytes
from tests.conftest import corpus_file

CHINESE_SAMPLE = """第一回　桃园结义

　　话说涿县有一人，姓刘名备，字玄德。生得身长七尺五寸，两耳垂肩，面如冠玉。

　　一日，玄德至涿县城中看榜。张飞厉声曰：“大丈夫不与国家出力，何故长叹？”玄德曰：“我本汉室宗亲，恨力不能，故长叹耳。”

　　张飞曰：“吾颇有资财，当招募乡勇，与公同举大事。”玄德大喜曰：“如此甚好。”

　　备曰：“可同入村店中饮酒。”众人曰：“愿随将军。”
"""

ENGLISH_SAMPLE = """CHAPTER I. A Mad Tea-Party

There was a table set out under a tree in the garden, and the March Hare and the Hatter
were having tea at it.

'Good morning,' said Alice.

'Good morning to you,' said the Hatter. 'Have some tea.'

Alice said, 'I don't see any tea.'

'There isn't any,' the Hatter replied.

'Then it wasn't very civil of you to offer it,' said Alice angrily.

'Nobody asked you,' muttered someone from under the table.
"""


def _board(title: str, text: str) -> Storyboard:
    return build_storyboard(NovelText(novel_id="n1", title=title, text=text))


def _by_name(board: Storyboard) -> dict[str, Character]:
    return {c.name: c for c in board.characters}


def _dialogue(board: Storyboard) -> list[DialogueLine]:
    return [line for s in board.scenes for p in s.panels for line in p.dialogue]


def _spoken_by(board: Storyboard) -> dict[str, str]:
    """Each line's text mapped to its speaker's name (or ``narrator``, ``unknown``)."""
    names = {c.id: c.name for c in board.characters} | {NARRATOR: NARRATOR, UNKNOWN: UNKNOWN}
    return {line.text: names[line.speaker_id] for line in _dialogue(board)}


def _comparable(board: Storyboard) -> dict[str, Any]:
    doc = board.to_doc()
    doc["meta"].pop("timings")
    doc["meta"].pop("createdAt")  # the time of the run, the one thing a re-run changes
    return doc


@pytest.fixture(scope="module")
def sanguo() -> Storyboard:
    text = load_novel_bytes(corpus_file("sanguo-yanyi.gb18030.txt").read_bytes())
    return _board("三国演义", text)


@pytest.fixture(scope="module")
def alice() -> Storyboard:
    text = load_novel_bytes(corpus_file("alice-in-wonderland.txt").read_bytes())
    return _board("Alice's Adventures in Wonderland", text)


# --------------------------------------------------------------------------- small samples


def test_chinese_dialogue_is_attributed_from_speech_tags() -> None:
    board = _board("三国", CHINESE_SAMPLE)
    assert _spoken_by(board) == {
        "大丈夫不与国家出力，何故长叹？": "张飞",
        "我本汉室宗亲，恨力不能，故长叹耳。": "刘备",
        "吾颇有资财，当招募乡勇，与公同举大事。": "张飞",
        "如此甚好。": "刘备",
        # A bare given name in a tag is the character of that given name.
        "可同入村店中饮酒。": "刘备",
        # A crowd is nobody in particular.
        "愿随将军。": UNKNOWN,
    }


def test_chinese_courtesy_name_is_an_alias() -> None:
    liu = _by_name(_board("三国", CHINESE_SAMPLE))["刘备"]
    assert "玄德" in liu.aliases
    assert "刘玄德" in liu.aliases
    assert liu.description == "生得身长七尺五寸，两耳垂肩，面如冠玉"


def test_english_dialogue_is_attributed_from_speech_tags() -> None:
    board = _board("Tea", ENGLISH_SAMPLE)
    assert _spoken_by(board) == {
        "Good morning,": "Alice",
        "Good morning to you,": "Hatter",
        # An untagged line in a paragraph with one named speaker is that speaker's.
        "Have some tea.": "Hatter",
        "I don't see any tea.": "Alice",
        "There isn't any,": "Hatter",
        "Then it wasn't very civil of you to offer it,": "Alice",
        "Nobody asked you,": UNKNOWN,
    }


def test_english_pronoun_tag_points_at_the_last_named() -> None:
    text = ENGLISH_SAMPLE + "\nThe Hatter opened his eyes very wide. 'Why?' he asked.\n"
    assert _spoken_by(_board("Tea", text))["Why?"] == "Hatter"


def test_scene_location_comes_from_place_words() -> None:
    board = _board("Tea", ENGLISH_SAMPLE)
    assert board.scenes[0].location == "the garden"
    chinese = _board("三国", CHINESE_SAMPLE)
    assert chinese.scenes[0].location == "涿县"


def test_a_scene_without_a_place_is_where_the_previous_one_was_never_the_chapter() -> None:
    board = _board("Story", "CHAPTER I. Morning\n\n" + "Alice sat still and said nothing. " * 20)
    assert {s.location for s in board.scenes} == {"unknown"}
    text = (
        "CHAPTER I. Morning\n\nAlice sat down in the garden and said nothing at all.\n\n"
        "CHAPTER II. Noon\n\n" + "Alice sat still and said nothing. " * 20
    )
    assert {s.location for s in _board("Story", text).scenes} == {"the garden"}


def test_untitled_text_uses_the_novel_title_for_its_chapter() -> None:
    board = _board("A Short Story", "Alice sat still and said nothing at all for a while.")
    assert board.meta.chapter_count == 1
    assert board.scenes[0].chapter_title == "A Short Story"
    assert board.scenes[0].chapter_index == 1


def _assert_prompts_name_the_characters_and_the_place(board: Storyboard, language: str) -> None:
    """Each prompt names its place and characters in the prompt language, and only in it:
    romanised when an English prompt draws a Chinese novel."""
    chinese = any(is_cjk(ch) for ch in board.characters[0].name)
    names = {c.id: c.name for c in board.characters}
    for scene in board.scenes:
        for panel in scene.panels:
            prompt = panel.image_prompt
            assert any(is_cjk(ch) for ch in prompt) == (language == "zh")
            if scene.location in ("unknown", "未知"):
                assert "unknown" not in prompt
                assert "未知" not in prompt
            elif language == "en" and chinese:
                assert romanise_place(scene.location) in prompt
            elif language == "en" or chinese:
                assert scene.location in prompt
            if language == "en" and chinese:
                assert all(romanise_name(names[i]) in prompt for i in panel.character_ids)
            elif language == "en" or chinese:
                assert all(names[i] in prompt for i in panel.character_ids)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_image_prompts_name_the_characters_and_the_place(language: Language) -> None:
    for title, text in (("Tea", ENGLISH_SAMPLE), ("三国", CHINESE_SAMPLE)):
        board = build_storyboard(NovelText("n1", title, text), language)
        assert board.meta.prompt_language == language
        _assert_prompts_name_the_characters_and_the_place(board, language)


def test_an_english_prompt_of_a_chinese_novel_is_built_from_fields_not_pasted_text() -> None:
    board = build_storyboard(NovelText("n1", "三国", CHINESE_SAMPLE), "en")
    prompts = [p.image_prompt for s in board.scenes for p in s.panels]
    assert prompts[0].startswith("Establishing shot at Zhuoxian")
    assert any("Liu Bei (tall, pale face" in prompt for prompt in prompts)
    assert any("Zhang Fei" in prompt and "In conversation" in prompt for prompt in prompts)


def test_ids_are_sequential_and_the_first_panel_establishes() -> None:
    board = _board("Tea", ENGLISH_SAMPLE)
    panels = [p for s in board.scenes for p in s.panels]
    assert [c.id for c in board.characters] == [
        f"c{i}" for i in range(1, len(board.characters) + 1)
    ]
    assert [s.id for s in board.scenes] == [f"s{i}" for i in range(1, len(board.scenes) + 1)]
    assert [p.id for p in panels] == [f"p{i}" for i in range(1, len(panels) + 1)]
    assert panels[0].shot_type == "establishing"
    assert all(p.description and p.image_prompt for p in panels)


def test_meta_describes_the_run() -> None:
    board = _board("Tea", ENGLISH_SAMPLE)
    assert board.meta.analyzer == "offline"
    assert board.meta.chapter_count == board.meta.chunk_count == 1
    assert set(board.meta.timings) == {"analyzeS"}
    assert board.meta.analyzer_version == OfflineAnalyzer.version
    assert board.meta.created_at is not None
    assert board.meta.job_id is None  # no job: a storyboard built outside the pipeline
    assert board.meta.prompt_version is None
    assert board.novel_id == "n1"
    assert board.title == "Tea"


def test_meta_names_the_job_that_made_it() -> None:
    board = build_storyboard(NovelText("n1", "Tea", ENGLISH_SAMPLE, job_id="job-7"))
    doc = board.to_doc()["meta"]
    assert doc["jobId"] == "job-7"
    assert doc["analyzer"] == "offline"
    assert doc["analyzerVersion"] == OfflineAnalyzer.version
    assert doc["createdAt"].endswith("Z")


def test_empty_text_is_a_permanent_analysis_error() -> None:
    with pytest.raises(JobError) as caught:
        _board("Nothing", "  \n ")
    assert caught.value.code == "empty_text"
    assert not caught.value.transient


async def test_analyze_reports_progress_and_returns_a_storyboard() -> None:
    reports: list[tuple[float, str]] = []

    async def on_progress(fraction: float, stage: str) -> None:
        reports.append((fraction, stage))

    analyzer = OfflineAnalyzer()
    novel = NovelText(novel_id="n1", title="Tea", text=ENGLISH_SAMPLE)
    board = await analyzer.analyze(novel, on_progress)
    assert analyzer.name == "offline"
    assert reports[0][0] == 0.0
    assert reports[-1] == (1.0, "storyboard built")
    assert _comparable(board) == _comparable(build_storyboard(novel))


Reports = list[tuple[float, str]]


async def _progress_of(title: str, text: str) -> tuple[Storyboard, Reports]:
    reports: Reports = []

    async def on_progress(fraction: float, stage: str) -> None:
        reports.append((fraction, stage))

    board = await OfflineAnalyzer().analyze(NovelText("n1", title, text), on_progress)
    return board, reports


def _assert_moves_per_chapter(reports: Reports, chapters: int) -> None:
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions)
    assert (fractions[0], fractions[-1]) == (0.0, 1.0)
    # Each chapter moves the bar twice: once for its paragraphs, once for its scenes.
    assert len(set(fractions)) >= 2 * chapters
    stages = {stage for _, stage in reports}
    assert {f"paragraphs {chapters}/{chapters}", f"scenes {chapters}/{chapters}"} <= stages
    assert f"scenes 1/{chapters}" in stages


def _days(count: int) -> str:
    return "\n\n".join(
        f"CHAPTER {n}. Day {n}\n\n'Good morning,' said Alice on day {n}.\n\n"
        f"The Hatter poured the tea for the {n}th time."
        for n in range(1, count + 1)
    )


async def test_progress_moves_per_chapter_of_a_generated_novel() -> None:
    board, reports = await _progress_of("Days", _days(25))
    assert board.meta.chapter_count == 25
    _assert_moves_per_chapter(reports, 25)


async def test_progress_moves_per_chapter_of_sanguo() -> None:
    text = load_novel_bytes(corpus_file("sanguo-yanyi.gb18030.txt").read_bytes())
    board, reports = await _progress_of("三国演义", text)
    assert board.meta.chapter_count == 120
    _assert_moves_per_chapter(reports, 120)
    # Stepping through threads builds exactly what the one-call build does.
    assert _comparable(board) == _comparable(build_storyboard(NovelText("n1", "三国演义", text)))


async def test_a_failing_progress_report_stops_the_analysis() -> None:
    # The job's callback raises when the job was cancelled; no later step may run.
    reports: Reports = []

    async def on_progress(fraction: float, stage: str) -> None:
        reports.append((fraction, stage))
        if stage.startswith("paragraphs 2/"):
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        await OfflineAnalyzer().analyze(NovelText("n1", "Days", _days(5)), on_progress)
    assert reports[-1][1].startswith("paragraphs 2/")


async def test_analyze_wraps_failures_as_analysis_errors() -> None:
    async def on_progress(fraction: float, stage: str) -> None:
        return None

    with pytest.raises(JobError) as caught:
        await OfflineAnalyzer().analyze(NovelText("n1", "Empty", ""), on_progress)
    assert caught.value.code == "empty_text"


# --------------------------------------------------------------------------- the corpus


def test_sanguo_main_characters_rank_at_the_top(sanguo: Storyboard) -> None:
    top = [c.name for c in sanguo.characters[:10]]
    assert {"刘备", "关羽", "张飞", "曹操", "诸葛亮"} <= set(top)
    assert top[:3] == ["刘备", "诸葛亮", "曹操"]
    assert sanguo.characters[0].mentions > sanguo.characters[10].mentions


def test_sanguo_aliases_are_merged(sanguo: Storyboard) -> None:
    cast = _by_name(sanguo)
    assert {"玄德", "刘玄德"} <= set(cast["刘备"].aliases)
    assert {"孔明", "诸葛孔明"} <= set(cast["诸葛亮"].aliases)
    assert {"云长", "关公", "关云长"} <= set(cast["关羽"].aliases)
    assert "翼德" in cast["张飞"].aliases
    assert "孟德" in cast["曹操"].aliases
    # Nobody is listed twice under another of their names.
    names = [c.name for c in sanguo.characters]
    aliases = {a for c in sanguo.characters for a in c.aliases}
    assert not aliases & set(names)
    assert len(names) == len(set(names))


def test_sanguo_descriptions_are_visual(sanguo: Storyboard) -> None:
    cast = _by_name(sanguo)
    assert "面如冠玉" in cast["刘备"].description
    assert "面如重枣" in cast["关羽"].description
    assert "豹头环眼" in cast["张飞"].description
    assert "纶巾" in cast["诸葛亮"].description


def test_sanguo_dialogue_is_attributed(sanguo: Storyboard) -> None:
    spoken = _spoken_by(sanguo)
    assert spoken["我为天子，当乘此车盖。"] == "刘备"
    # 忽一人厉声言曰: someone not yet named speaks.
    assert spoken["大丈夫不与国家出力，何故长叹？"] == UNKNOWN
    assert (
        spoken[
            "吾庄后有一桃园，花开正盛；明日当于园中祭告天地，我三人结为兄弟，协力同心，然后可图大事。"
        ]
        == "张飞"
    )
    lines = _dialogue(sanguo)
    attributed = [line for line in lines if line.speaker_id not in (NARRATOR, UNKNOWN)]
    assert len(attributed) >= 0.5 * len(lines)
    speakers = {line.speaker_id for line in attributed}
    assert {c.id for c in sanguo.characters[:5]} <= speakers


def test_sanguo_storyboard_has_a_sane_size(sanguo: Storyboard) -> None:
    summary = sanguo.summary()
    assert summary.chapters == 120
    assert sanguo.meta.chunk_count == 120
    assert 500 <= summary.panels <= MAX_TOTAL_PANELS
    per_chapter: dict[int, int] = {}
    for scene in sanguo.scenes:
        per_chapter[scene.chapter_index] = per_chapter.get(scene.chapter_index, 0) + 1
        assert 1 <= len(scene.panels) <= MAX_PANELS_PER_SCENE
    assert sorted(per_chapter) == list(range(1, 121))
    assert max(per_chapter.values()) <= MAX_SCENES_PER_CHAPTER


def test_alice_main_characters_rank_at_the_top(alice: Storyboard) -> None:
    top = [c.name for c in alice.characters[:10]]
    assert top[0] == "Alice"
    assert {"White Rabbit", "Queen of Hearts", "Hatter"} <= set(top)
    assert "Rabbit" in _by_name(alice)["White Rabbit"].aliases
    assert "Queen" in _by_name(alice)["Queen of Hearts"].aliases
    stop_words = {"The", "And", "I", "She", "It", "Chapter", "CHAPTER", "Oh", "What"}
    assert not stop_words & {c.name for c in alice.characters}


def test_alice_dialogue_is_attributed(alice: Storyboard) -> None:
    spoken = _spoken_by(alice)
    assert spoken["Oh dear! Oh dear! I shall be late!"] == "White Rabbit"
    assert spoken["What a curious feeling!"] == "Alice"
    lines = _dialogue(alice)
    assert sum(line.speaker_id not in (NARRATOR, UNKNOWN) for line in lines) >= 0.6 * len(lines)
    assert sum(line.speaker_id == NARRATOR for line in lines) <= 0.1 * len(lines)


def test_alice_storyboard_covers_every_chapter(alice: Storyboard) -> None:
    assert alice.meta.chapter_count == 12
    assert {s.chapter_index for s in alice.scenes} == set(range(1, 13))
    assert alice.scenes[0].chapter_title == "CHAPTER I. Down the Rabbit-Hole"
    assert "pink eyes" in _by_name(alice)["White Rabbit"].description


@pytest.mark.parametrize("name", ["sanguo", "alice"])
def test_corpus_storyboards_validate_and_prompts_are_complete(
    name: str, request: pytest.FixtureRequest
) -> None:
    board: Storyboard = request.getfixturevalue(name)
    # Round-tripping through the wire form re-runs every validator, speaker ids included.
    again = Storyboard.model_validate(board.to_doc())
    assert again == board
    _assert_prompts_name_the_characters_and_the_place(board, "en")


def test_many_chapters_share_a_bounded_panel_budget() -> None:
    talk = "\n".join(["　　张飞曰：“走。”玄德曰：“好。”"] * 10)
    text = "\n".join(f"第{n}章　标题\n{talk}" for n in range(1, 801))
    board = _board("长篇", text)
    assert board.meta.chapter_count == 800
    assert {s.chapter_index for s in board.scenes} == set(range(1, 801))
    assert board.summary().panels <= MAX_TOTAL_PANELS


def test_analysis_is_deterministic() -> None:
    text = load_novel_bytes(corpus_file("alice-in-wonderland.txt").read_bytes())
    first = _board("Alice", text)
    second = _board("Alice", text)
    assert _comparable(first) == _comparable(second)
