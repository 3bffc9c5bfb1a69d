"""The quality report: each number on small hand-built storyboards with known answers, the
``storyboard eval`` command end to end, and the bars the offline analyzer must meet on the
two corpus novels."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ROOT
from service.analysis.offline import build_storyboard
from service.ports import NovelText
from service.quality import (
    QualityInputError,
    QualityReport,
    Reference,
    entropy_bits,
    evaluate,
    evaluate_files,
    language_scripts,
    load_reference,
    normalise_name,
    script_of,
)
from service.storyboard import Storyboard
from service.text import load_novel_bytes
from tests.conftest import corpus_file

FIXTURES = ROOT / "tests" / "fixtures"
REFERENCES = {
    "sanguo-yanyi.gb18030.txt": FIXTURES / "sanguo-yanyi.reference.json",
    "alice-in-wonderland.txt": FIXTURES / "alice-in-wonderland.reference.json",
}


def _panel(n: int, shot: str = "medium", prompt: str = "A girl by a river.", **more: Any) -> Any:
    return {"id": f"p{n}", "shotType": shot, "description": "d", "imagePrompt": prompt, **more}


def _board(scenes: list[dict[str, Any]], characters: list[dict[str, Any]] | None = None) -> Any:
    return Storyboard.model_validate(
        {
            "novelId": "n1",
            "title": "Test",
            "characters": characters or [],
            "scenes": scenes,
            "meta": {"analyzer": "hand", "chapterCount": 0},
        }
    )


def _scene(n: int, chapter: int, title: str, location: str, panels: list[Any]) -> Any:
    return {
        "id": f"s{n}",
        "chapterIndex": chapter,
        "chapterTitle": title,
        "summary": "",
        "location": location,
        "panels": panels,
    }


def _cast(*names: str | tuple[str, list[str]]) -> list[dict[str, Any]]:
    cast = []
    for i, entry in enumerate(names, 1):
        name, aliases = entry if isinstance(entry, tuple) else (entry, [])
        cast.append({"id": f"c{i}", "name": name, "aliases": aliases})
    return cast


# ----------------------------------------------------------------------------- counts


def test_chapters_speakers_and_places_are_counted_on_a_hand_built_storyboard() -> None:
    cast = _cast("Alice")
    lines = [
        {"speakerId": "c1", "text": "Oh dear!"},
        {"speakerId": "c1", "text": "Curiouser!"},
        {"speakerId": "narrator", "text": "Said someone."},
        {"speakerId": "c1", "text": "Who are you?"},
    ]
    scenes = [
        _scene(1, 1, "CHAPTER I. Down the Rabbit-Hole", "the bank", [_panel(1, dialogue=lines)]),
        # A chapter title, a heading and nothing at all are no places.
        _scene(2, 1, "CHAPTER I. Down the Rabbit-Hole", "CHAPTER I. Down the Rabbit-Hole",
               [_panel(2), _panel(3)]),
        _scene(3, 2, "CHAPTER II. The Pool of Tears", "the pool of tears", [_panel(4)]),
        _scene(4, 2, "CHAPTER II. The Pool of Tears", "Chapter 2", [_panel(5)]),
        _scene(5, 3, "CHAPTER III. A Caucus-Race", "  ", [_panel(6)]),
        _scene(6, 3, "CHAPTER III. A Caucus-Race", "The Bank", [_panel(7)]),
    ]  # fmt: skip
    report = evaluate(_board(scenes, cast))
    assert report.chapters == 3
    assert report.first_chapter == "CHAPTER I. Down the Rabbit-Hole"
    assert report.front_matter_chapters == []
    assert (report.scenes, report.panels, report.characters) == (6, 7, 1)
    assert report.dialogue_lines == 4
    assert report.named_speaker_share == 0.75
    assert report.narrator_share == 0.25
    assert report.unknown_speaker_share == 0.0
    # Panels 1 and 7 are at the bank (one place, whatever the case), panel 4 by the pool:
    # a chapter's title without its heading may be a place.
    assert report.located_panel_share == pytest.approx(3 / 7)
    assert report.distinct_locations == 2


def test_chinese_chapter_titles_and_front_matter_are_recognised() -> None:
    scenes = [
        _scene(1, 1, "出版说明", "北京", [_panel(1)]),
        _scene(2, 2, "目录", "目录", [_panel(2)]),
        _scene(3, 3, "第一回　宴桃园豪杰三结义　斩黄巾英雄首立功", "桃园", [_panel(3)]),
        _scene(4, 3, "第一回　宴桃园豪杰三结义　斩黄巾英雄首立功",
               "宴桃园豪杰三结义　斩黄巾英雄首立功", [_panel(4)]),
        _scene(5, 4, "第二回　张翼德怒鞭督邮", "第二回", [_panel(5)]),
    ]  # fmt: skip
    report = evaluate(_board(scenes))
    assert report.front_matter_chapters == ["出版说明", "目录"]
    assert report.first_chapter == "出版说明"
    # 北京, 桃园 and chapter 1's title without its heading.
    assert report.located_panel_share == pytest.approx(3 / 5)


def test_a_storyboard_without_dialogue_or_panels_has_no_shares() -> None:
    report = evaluate(_board([]))
    assert report.chapters == 0
    assert report.named_speaker_share is None
    assert report.narrator_share is None
    assert report.located_panel_share is None
    assert report.shot_type_entropy_bits is None
    assert report.panels_per_10k_chars is None
    assert report.prompt_language_consistency is None


def test_unknown_speakers_are_counted_apart_from_the_narrator() -> None:
    lines = [{"speakerId": s, "text": "x"} for s in ("unknown", "narrator", "c1", "unknown")]
    board = _board([_scene(1, 1, "I", "a", [_panel(1, dialogue=lines)])], _cast("A"))
    report = evaluate(board)
    assert report.unknown_speaker_share == 0.5
    assert report.narrator_share == 0.25
    assert report.named_speaker_share == 0.25


# ------------------------------------------------------------------------ shot types


def test_shot_type_entropy_is_in_bits() -> None:
    assert entropy_bits([5]) == 0.0
    assert entropy_bits([1, 1]) == 1.0
    assert entropy_bits([2, 2, 2, 2]) == 2.0
    assert entropy_bits([3, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert entropy_bits([]) is None


def test_the_report_gives_each_shot_types_count_and_the_largest_share() -> None:
    shots = ["wide", "wide", "close-up", "medium"]
    scene = _scene(1, 1, "I", "a hall", [_panel(i, shot) for i, shot in enumerate(shots)])
    report = evaluate(_board([scene]))
    assert report.shot_types["wide"] == 2
    assert report.shot_types["over-the-shoulder"] == 0
    assert report.shot_type_entropy_bits == 1.5
    assert report.shot_type_entropy_max_bits == pytest.approx(math.log2(6))
    assert report.top_shot_share == 0.5


# ----------------------------------------------------------------------- text length


def test_panels_per_10k_chars_come_from_the_text_length_given_or_carried() -> None:
    scene = _scene(1, 1, "I", "a", [_panel(i) for i in range(5)])
    board = _board([scene])
    assert evaluate(board, text_chars=20_000).panels_per_10k_chars == 2.5
    carried = evaluate(board, meta={"textChars": 50_000})
    assert carried.text_chars == 50_000
    assert carried.panels_per_10k_chars == 1.0
    assert evaluate(board, meta={"textChars": 50_000}, text_chars=10_000).text_chars == 10_000


def test_the_text_length_is_counted_as_the_analyzer_reads_it(tmp_path: Path) -> None:
    novel = tmp_path / "novel.txt"
    novel.write_bytes("第一回\r\n话说天下大势。\r\n\r\n\r\n\r\n\r\n".encode("gb18030"))
    storyboard = tmp_path / "s.json"
    storyboard.write_text(json.dumps(_board([]).to_doc()))
    assert evaluate_files(storyboard, text=novel).text_chars == len("第一回\n话说天下大势。")


# ------------------------------------------------------------------- prompt language


def test_scripts_of_letters() -> None:
    assert [script_of(c) for c in "aé刘かカ한я1 ,"] == [
        "latin", "latin", "han", "kana", "kana", "hangul", "cyrillic", None, None, None,
    ]  # fmt: skip
    assert language_scripts("en") == {"latin"}
    assert language_scripts("zh-Hans") == {"han"}
    assert language_scripts("ja_JP") == {"han", "kana"}
    assert language_scripts("fr") == {"latin"}


def _prompted(*prompts: str) -> Any:
    panels = [_panel(i, prompt=p) for i, p in enumerate(prompts)]
    cast = _cast(("刘备", ["玄德"]), "关羽", "张飞")
    return _board([_scene(1, 1, "I", "a", panels)], cast)


ENGLISH = "Wide shot of Liu Bei, Guan Yu and Zhang Fei swearing an oath in the peach garden."
NAMES = "Wide shot of 刘备 (玄德), 关羽 and 张飞 swearing brotherhood in the peach garden."
STRANGER = "Wide shot of 刘备, 关羽 and 张飞 swearing brotherhood before 天公将军."
MIXED = (
    "Wide shot at 青州. Characters: 刘备 (生得身长七尺五寸，两耳垂肩). Action: 誓毕，拜玄德为兄。"
)
CHINESE = "远景：桃园中，刘备、关羽、张飞焚香再拜，结为兄弟。"


def test_a_prompt_is_in_one_language_when_95_percent_of_its_letters_are_in_its_script() -> None:
    report = evaluate(_prompted(ENGLISH, NAMES, MIXED, CHINESE), language="en")
    # English with the cast's names in Han passes; half Chinese or all Chinese does not.
    assert report.prompt_script == "latin"
    assert report.prompt_script_source == "declared language en"
    assert report.prompt_language_consistency == 0.5
    # Han letters that name no one in the cast are another language.
    assert evaluate(_prompted(STRANGER), language="en").prompt_language_consistency == 0.0


def test_without_a_declared_language_the_dominant_script_is_the_target() -> None:
    report = evaluate(_prompted(CHINESE, CHINESE, ENGLISH))
    assert report.prompt_script == "han"
    assert report.prompt_script_source == "the prompts' dominant script"
    assert report.prompt_language_consistency == pytest.approx(2 / 3)
    declared = evaluate(_prompted(CHINESE, CHINESE, ENGLISH), meta={"promptLanguage": "zh"})
    assert declared.prompt_script_source == "declared language zh"
    assert declared.prompt_language_consistency == pytest.approx(2 / 3)


# -------------------------------------------------------------------------- reference


def _reference(**more: Any) -> Reference:
    return Reference.model_validate(
        {
            "title": "西游记",
            "main": ["孙悟空", "唐僧", "猪八戒"],
            "characters": [
                {"name": "孙悟空", "aliases": ["悟空", "行者", "孙行者", "大圣", "齐天大圣"]},
                {"name": "唐僧", "aliases": ["三藏", "唐三藏", "玄奘"]},
                {"name": "猪八戒", "aliases": ["八戒", "呆子", "猪悟能", "悟能"]},
                {"name": "沙僧", "aliases": ["沙和尚", "悟净"]},
                {"name": "the White Rabbit", "aliases": ["Rabbit"]},
            ],
            **more,
        }
    )


def test_names_match_after_normalising() -> None:
    assert normalise_name("the White Rabbit") == normalise_name("White  rabbit")
    assert normalise_name("White-Rabbit") == "whiterabbit"
    assert normalise_name("诸葛·亮") == normalise_name("诸葛亮")
    assert normalise_name("Ｂｉｌｌ") == "bill"
    assert normalise_name("Theodore") == "theodore"


def test_recall_junk_and_duplicates_against_a_reference() -> None:
    cast = _cast(
        ("行者", ["孙行者"]),  # an alias of 孙悟空 as the name: 孙悟空 is found
        "师父",  # a form of address: junk
        ("三藏", []),
        "呆子",  # 猪八戒 under a nickname
        "大圣",  # 孙悟空 again, kept apart: a duplicate, not junk
        "WHITE RABBIT",
    )
    board = _board([], cast)
    score = evaluate(board, reference=_reference()).reference
    assert score is not None
    assert score.main_found == ["孙悟空", "唐僧", "猪八戒"]
    assert score.main_recall == 1.0
    assert score.junk == ["师父"]
    assert score.junk_share == pytest.approx(1 / 6)
    assert score.duplicates == ["大圣 (= 孙悟空)"]
    assert score.cast_missing == ["沙僧"]
    assert score.cast_recall == pytest.approx(4 / 5)


def test_recall_counts_only_the_top_ten_and_junk_only_the_top_twenty() -> None:
    fillers = [f"甲{i}" for i in range(24)]
    board = _board([], _cast(*fillers[:10], "悟空", *fillers[10:], "八戒"))
    score = evaluate(board, reference=_reference()).reference
    assert score is not None
    assert score.main_found == []  # 悟空 is 11th
    assert score.main_missing == ["孙悟空", "唐僧", "猪八戒"]
    assert score.junk_share == pytest.approx(19 / 20)
    assert len(score.junk) == 19


def test_a_cast_entry_is_matched_by_its_own_name_before_its_aliases() -> None:
    # A name wrongly merged into 沙僧's aliases does not make him 孙悟空.
    board = _board([], _cast(("沙僧", ["悟空"])))
    score = evaluate(board, reference=_reference()).reference
    assert score is not None
    assert score.main_found == []
    assert score.junk == []


def test_chapters_are_checked_against_the_reference() -> None:
    scenes = [_scene(1, 1, "出版说明", "a", [_panel(1)]), _scene(2, 2, "第一回 x", "a", [])]
    reference = _reference(chapters=1, firstChapter="第一回")
    score = evaluate(_board(scenes), reference=reference).reference
    assert score is not None
    assert score.chapters_expected == 1
    assert score.first_chapter_ok is False
    good = evaluate(_board(scenes[1:]), reference=reference).reference
    assert good is not None
    assert good.first_chapter_ok is True


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"title": "x", "characters": [{"name": "a"}]}, "main"),
        ({"title": "x", "main": ["b"], "characters": [{"name": "a"}]}, "main names no"),
        ({"title": "x", "main": ["a"], "characters": [{"name": "a"}, {"name": "a"}]},
         "more than once"),
        ({"title": "x", "main": ["a"], "characters": [{"name": ""}]}, "characters.0.name"),
        ([1, 2], "not a reference"),
    ],
)  # fmt: skip
def test_a_bad_reference_is_refused_with_what_is_wrong(
    tmp_path: Path, document: Any, complaint: str
) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(document))
    with pytest.raises(QualityInputError, match="is not a reference") as caught:
        load_reference(path)
    assert complaint in str(caught.value)


@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCES.values()))
def test_the_reference_files_are_valid_and_list_about_twenty_main_characters(name: str) -> None:
    reference = load_reference(FIXTURES / name)
    assert len(reference.main) == 10
    assert len(reference.characters) >= 20
    assert reference.main == [c.name for c in reference.characters[:10]]
    owners: dict[str, set[str]] = {}
    for character in reference.characters:
        for alias in (character.name, *character.aliases):
            owners.setdefault(normalise_name(alias), set()).add(character.name)
    shared = {key: names for key, names in owners.items() if len(names) > 1}
    assert not shared, "names that stand for two characters"


# -------------------------------------------------------------------------------- CLI


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "eval", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


STORY = "CHAPTER I. The Garden\n\nMary walked into the garden.\n\nCHAPTER II. The River\n"


def _story_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A hand-built storyboard of two chapters, its novel's text and a reference cast."""
    lines = [{"speakerId": "c1", "text": "Good morning."}, {"speakerId": "narrator", "text": "?"}]
    scenes = [
        _scene(1, 1, "CHAPTER I. The Garden", "the garden",
               [_panel(1, "wide", dialogue=lines), _panel(2, "close-up")]),
        _scene(2, 2, "CHAPTER II. The River", "CHAPTER II. The River", [_panel(3, "wide")]),
    ]  # fmt: skip
    board = _board(scenes, _cast("Mary", ("Tommy", ["Tom"]), "Someone"))
    storyboard = _write(tmp_path / "s.json", json.dumps(board.to_doc()))
    novel = _write(tmp_path / "novel.txt", STORY)
    reference = _write(tmp_path / "ref.json", json.dumps({
        "title": "The Garden", "chapters": 2, "firstChapter": "CHAPTER I.",
        "main": ["Mary", "Tom"],
        "characters": [{"name": "Mary"}, {"name": "Tom", "aliases": ["Thomas"]}],
    }))  # fmt: skip
    return storyboard, novel, reference


def test_eval_prints_a_table_and_writes_the_report_as_json(tmp_path: Path) -> None:
    storyboard, novel, reference = _story_files(tmp_path)
    out = tmp_path / "report.json"
    result = _eval(str(storyboard), "--reference", str(reference), "--text", str(novel),
                   "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = " ".join(result.stdout.split())
    assert "chapters 2, the first: CHAPTER I. The Garden" in table
    assert "named speaker 50.0%" in table
    assert "junk in top 20 0.33 (Someone)" in table
    report = json.loads(out.read_text())
    assert report["chapters"] == 2
    assert report["narratorShare"] == 0.5
    assert report["locatedPanelShare"] == pytest.approx(2 / 3)
    assert report["shotTypes"]["wide"] == 2
    assert report["textChars"] == len(STORY.strip())
    assert report["panelsPer10kChars"] == pytest.approx(3 * 10_000 / len(STORY.strip()))
    assert report["reference"]["mainRecall"] == 1.0
    assert report["reference"]["junk"] == ["Someone"]
    assert report["reference"]["firstChapterOk"] is True


def test_eval_out_dash_prints_only_json_on_stdout(tmp_path: Path) -> None:
    storyboard, _, _ = _story_files(tmp_path)
    result = _eval(str(storyboard), "--out", "-")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chapters"] == 2
    assert "named speaker" in result.stderr


def test_eval_reads_a_model_storyboard_and_names_the_model(tmp_path: Path) -> None:
    board = _board([_scene(1, 1, "Chapter 1", "the inn", [_panel(1)])], _cast("Mary"))
    document = board.to_doc()
    document["meta"].update(analyzer="llm", model="some-model", promptLanguage="en")
    result = _eval(str(_write(tmp_path / "s.json", json.dumps(document))))
    assert result.returncode == 0, result.stderr
    table = " ".join(result.stdout.split())
    assert "storyboard Test (llm, some-model)" in table
    assert "prompt language 100.0% in latin (declared language en)" in table


def test_eval_reads_an_offline_storyboard(tmp_path: Path) -> None:
    text = 'CHAPTER I. The Garden\n\n"Good morning," said Mary. "Is anyone here?"\n'
    storyboard = build_storyboard(NovelText("n1", "novel", text))
    path = _write(tmp_path / "s.json", json.dumps(storyboard.to_doc(), ensure_ascii=False))
    result = _eval(str(path), "--out", "-")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["analyzer"] == "offline"
    assert report["panels"] == sum(len(s.panels) for s in storyboard.scenes)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.json", "cannot read storyboard"),
        (lambda d: _write(d / "x.json", "{not json"), "is not JSON"),
        (lambda d: _write(d / "x.json", '{"title": "x"}'), "is not a storyboard: novelId"),
        (lambda d: _write(d / "x.json", "[]"), "is not a storyboard"),
        (lambda d: d, "cannot read storyboard"),
    ],
)
def test_eval_refuses_bad_storyboards_in_one_line(tmp_path: Path, make: Any, message: str) -> None:
    result = _eval(str(make(tmp_path)))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_eval_refuses_a_bad_reference_or_text(tmp_path: Path) -> None:
    storyboard = _write(tmp_path / "s.json", json.dumps(_board([]).to_doc()))
    bad = _eval(str(storyboard), "--reference", str(_write(tmp_path / "r.json", '{"title": 1}')))
    assert bad.returncode == 2
    assert "is not a reference" in bad.stderr
    absent = _eval(str(storyboard), "--reference", str(tmp_path / "none.json"))
    assert absent.returncode == 2
    assert "cannot read reference" in absent.stderr
    binary = tmp_path / "novel.bin"
    binary.write_bytes(b"\xff\xfe\x00\xd8")  # a UTF-16 BOM, then a lone surrogate
    text = _eval(str(storyboard), "--text", str(binary))
    assert text.returncode == 2
    assert "text" in text.stderr


# ------------------------------------------------------------------ the corpus novels


def _corpus_report(
    name: str, front_matter: str = "", end_matter: str = ""
) -> tuple[QualityReport, Storyboard]:
    text = front_matter + load_novel_bytes(corpus_file(name).read_bytes()) + end_matter
    storyboard = build_storyboard(NovelText("n1", name, text))
    reference = load_reference(REFERENCES[name])
    return evaluate(storyboard, reference=reference, text_chars=len(text)), storyboard


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_the_offline_analyzer_meets_the_bars_on_the_corpus_novels(
    name: str,
) -> None:
    report, _ = _corpus_report(name)
    score = report.reference
    assert score is not None
    assert score.main_recall >= 0.9, score.main_missing
    assert score.junk_share is not None
    assert score.junk_share <= 0.1, score.junk
    assert report.narrator_share is not None
    assert report.narrator_share <= 0.1
    assert report.chapters == score.chapters_expected
    assert score.first_chapter_ok, report.first_chapter
    assert report.front_matter_chapters == []


NOTICE_ZH = (
    "本书据通行本整理，校以多种旧刻，凡文字歧异之处，择善而从，不出校记。书中人名、地名、"
    "官名悉依原书，异体字、俗字改为通行规范字。原书回目对仗，今照录不改。整理者学识有限，"
    "错讹之处在所难免，恳请读者批评指正。本电子版由网友上传，仅供交流学习，请于下载后二十四"
    "小时内删除，版权归原作者及出版社所有。"
)
NOTICE_EN = (
    "This edition reprints the text of the first edition, with the author's later "
    "corrections. Spelling and punctuation have been kept as printed, save for evident "
    "misprints, which are silently corrected. The editor thanks the many readers who sent "
    "corrections to earlier printings of this edition, and the library that lent its copy. "
)


def _chinese_front_matter(text: str) -> str:
    """What a downloaded Chinese classic opens with: a notice long enough to pass for a
    prologue, the title and author, and a table of contents of every chapter heading."""
    headings = [line.strip() for line in text.splitlines() if re.match(r"第\S+回", line)]
    notice = [f"{n}、{NOTICE_ZH}" for n in "一二三四五六七八九十"]
    return "\n\n".join([
        "出版说明", *notice, "《三国演义》\n作者：罗贯中", "目录\n" + "\n".join(headings), "",
    ])  # fmt: skip


def _gutenberg_front_matter(text: str) -> str:
    """A Project Gutenberg header, a contents list of every chapter heading and a preface
    long enough to pass for a chapter."""
    headings = [line.strip() for line in text.splitlines() if line.startswith("CHAPTER ")]
    return "\n\n".join([
        "The Project Gutenberg eBook of Alice's Adventures in Wonderland, by Lewis Carroll",
        "This eBook is for the use of anyone anywhere in the United States and most other "
        "parts of the world at no cost and with almost no restrictions whatsoever.",
        "Title: Alice's Adventures in Wonderland\n\nAuthor: Lewis Carroll",
        "*** START OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***",
        "Alice's Adventures in Wonderland\n\nby Lewis Carroll",
        "Contents\n\n" + "\n".join(f" {h}" for h in headings),
        "PREFACE", *[NOTICE_EN] * 8, "",
    ])  # fmt: skip


GUTENBERG_END = (
    "\n\n*** END OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***\n\n"
    + "\n\n".join(
        ["Updated editions will replace the previous one--the old editions will be renamed.",
         "START: FULL LICENSE", "THE FULL PROJECT GUTENBERG LICENSE",
         "PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK"]
        + ["To protect the Project Gutenberg-tm mission of promoting the free distribution "
           "of electronic works, by using or distributing this work (or any other work "
           "associated in any way with the phrase \"Project Gutenberg\"), you agree to "
           "comply with all the terms of the Full Project Gutenberg-tm License."] * 6
    )
)  # fmt: skip
FRONT_MATTER = {
    "sanguo-yanyi.gb18030.txt": _chinese_front_matter,
    "alice-in-wonderland.txt": _gutenberg_front_matter,
}
END_MATTER = {"sanguo-yanyi.gb18030.txt": "", "alice-in-wonderland.txt": GUTENBERG_END}


@pytest.mark.parametrize("name", sorted(FRONT_MATTER))
def test_front_matter_and_contents_are_never_chapters(name: str) -> None:
    text = load_novel_bytes(corpus_file(name).read_bytes())
    report, storyboard = _corpus_report(name, FRONT_MATTER[name](text), END_MATTER[name])
    score = report.reference
    assert score is not None
    assert report.chapters == score.chapters_expected
    assert score.first_chapter_ok, report.first_chapter
    assert report.front_matter_chapters == []
    told = [p.narration or "" for s in storyboard.scenes for p in s.panels]
    assert not [t for t in told if "Gutenberg" in t or "下载" in t or "版权" in t]
