"""Chapter, sentence and chunk splitting."""

from __future__ import annotations

import re

import pytest

from service.analysis.chapters import (
    Chapter,
    chunk_text,
    parse_chinese_number,
    parse_roman_number,
    split_chapters,
    split_sentences,
)
from service.text import load_novel_bytes
from tests.conftest import corpus_file

PARAGRAPH = "这是一段足够长的正文，用来确保每一章都有自己的内容，而不会被当作目录里的条目。" * 2
ENGLISH_PARAGRAPH = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, "
    "and of having nothing to do."
)


def _load(name: str) -> str:
    return load_novel_bytes(corpus_file(name).read_bytes())


def _titles(chapters: list[Chapter]) -> list[str]:
    return [c.title for c in chapters]


# --------------------------------------------------------------------------- the corpus


def test_sanguo_has_exactly_120_chapters() -> None:
    chapters = split_chapters(_load("sanguo-yanyi.gb18030.txt"))
    assert len(chapters) == 120
    assert [c.index for c in chapters] == list(range(1, 121))
    # The file pastes 第三十五回 twice; the copy is not a chapter of its own.
    assert [c.number for c in chapters] == list(range(1, 121))
    assert chapters[0].title == "第一回\u3000宴桃园豪杰三结义\u3000斩黄巾英雄首立功"
    assert chapters[-1].title.startswith("第一百二十回\u3000荐杜预老将献新谋")


def test_sanguo_bodies_hold_the_text_without_the_site_banner() -> None:
    chapters = split_chapters(_load("sanguo-yanyi.gb18030.txt"))
    assert chapters[0].start == 0
    assert "滚滚长江东逝水" in chapters[0].body
    assert chapters[-1].body.endswith("后人凭吊空牢骚。")
    assert all("www." not in c.body and "第一回" not in c.body[:10] for c in chapters)
    # Headings with a doubled ideographic space inside are tidied to one.
    assert "\u3000\u3000" not in chapters[80].title


def test_alice_has_exactly_12_chapters() -> None:
    chapters = split_chapters(_load("alice-in-wonderland.txt"))
    assert len(chapters) == 12
    assert [c.number for c in chapters] == list(range(1, 13))
    assert chapters[0].title == "CHAPTER I. Down the Rabbit-Hole"
    assert chapters[6].title == "CHAPTER VII. A Mad Tea-Party"
    assert chapters[-1].title == "CHAPTER XII. Alice's Evidence"
    assert chapters[0].body.startswith("Alice was beginning to get very tired")
    assert all(c.body and "CHAPTER" not in c.body for c in chapters)


# --------------------------------------------------------------------------- headings


def test_table_of_contents_is_not_chapters() -> None:
    toc = "\n".join(f"CHAPTER {n}. Part {n}" for n in ("I", "II", "III"))
    body = "\n\n".join(f"CHAPTER {n}. Part {n}\n\n{ENGLISH_PARAGRAPH}" for n in ("I", "II", "III"))
    text = f"Alice's Adventures in Wonderland\n\nContents\n\n{toc}\n\n\n{body}"
    chapters = split_chapters(text)
    assert _titles(chapters) == [
        "CHAPTER I. Part I",
        "CHAPTER II. Part II",
        "CHAPTER III. Part III",
    ]
    assert all(c.body == ENGLISH_PARAGRAPH for c in chapters)


def test_chinese_table_of_contents_with_blurbs_is_not_chapters() -> None:
    # Entries with a line of blurb each are longer than bare headings but still a TOC.
    toc = "\n".join(f"第{n}章　标题{n}\n　　本章简介。" for n in "一二三四")
    body = "\n".join(f"第{n}章　标题{n}\n　　{PARAGRAPH}" for n in "一二三四")
    chapters = split_chapters(f"目录\n{toc}\n\n{body}")
    assert [c.number for c in chapters] == [1, 2, 3, 4]
    assert all(c.body.strip() == PARAGRAPH for c in chapters)


def test_text_without_headings_is_one_untitled_chapter() -> None:
    text = f"{ENGLISH_PARAGRAPH}\n\nChapter one was dull, she thought.\n\n{ENGLISH_PARAGRAPH}"
    assert split_chapters(text) == [Chapter(index=1, title="", body=text, start=0)]


def test_empty_text_is_one_empty_chapter() -> None:
    assert split_chapters("") == [Chapter(index=1, title="", body="", start=0)]


@pytest.mark.parametrize(
    ("heading", "number"),
    [
        ("第一回　宴桃园", 1),
        ("第十二章 风起", 12),
        ("第二十三节", 23),
        ("第一百零五回", 105),
        ("第12章 风起", 12),
        ("第１２章：风起", 12),
        ("第三卷", 3),
        ("　　第两千零五章　尾巴", 2005),
        ("Chapter 7", 7),
        ("CHAPTER IV. The Rabbit Sends in a Little Bill", 4),
        ("Chapter Twenty-One: Home", 21),
        ("Chapter the First", 1),
    ],
)
def test_heading_forms(heading: str, number: int) -> None:
    (chapter,) = split_chapters(f"{heading}\n{PARAGRAPH}")
    assert chapter.number == number
    assert chapter.title == heading.strip()
    assert chapter.body == PARAGRAPH


def test_prologue_and_epilogue_words_are_chapters() -> None:
    text = "\n".join(f"{h}\n{PARAGRAPH}" for h in ("楔子", "第一章　开端", "尾声", "番外　后日谈"))
    assert _titles(split_chapters(text)) == ["楔子", "第一章\u3000开端", "尾声", "番外\u3000后日谈"]


@pytest.mark.parametrize(
    "line",
    [
        "第三回合，张飞挺矛又战。",
        "第一节课上，老师说了很多话",
        "尾声渐近，众人散去",
        "Chapter one was dull.",
    ],
)
def test_prose_that_starts_like_a_heading_is_not_one(line: str) -> None:
    text = f"第一章　开端\n{PARAGRAPH}\n{line}\n{PARAGRAPH}"
    assert len(split_chapters(text)) == 1


def test_site_banners_are_neither_headings_nor_text() -> None:
    text = (
        "本书由 www.example.com 整理\n"
        f"第一章　开端\n{PARAGRAPH}\n更多好书请访问 www.example.com\n{PARAGRAPH}\n"
        "------------------\n　　雨枫轩:www.rain8.com 整理校对"
    )
    (chapter,) = split_chapters(text)
    assert chapter.title == "第一章\u3000开端"
    assert chapter.body == f"{PARAGRAPH}\n{PARAGRAPH}"


def test_heading_stamped_with_a_site_address_is_still_a_heading() -> None:
    text = f"第一章　开端\n{PARAGRAPH}\n第二章　继续（www.example.com）\n{PARAGRAPH}"
    assert _titles(split_chapters(text)) == ["第一章\u3000开端", "第二章\u3000继续"]


def test_volume_heading_without_text_is_not_a_chapter() -> None:
    text = f"第一卷　风起\n\n第一章　开端\n{PARAGRAPH}\n第二章　继续\n{PARAGRAPH}"
    assert _titles(split_chapters(text)) == ["第一章\u3000开端", "第二章\u3000继续"]


def test_long_front_matter_is_kept_as_an_untitled_chapter() -> None:
    prologue = PARAGRAPH * 30
    chapters = split_chapters(f"{prologue}\n第一章　开端\n{PARAGRAPH}")
    assert _titles(chapters) == ["", "第一章\u3000开端"]
    assert chapters[0].body == prologue


def test_short_front_matter_is_dropped() -> None:
    chapters = split_chapters(f"三国演义\n作者：罗贯中\n\n第一章　开端\n{PARAGRAPH}")
    assert _titles(chapters) == ["第一章\u3000开端"]


def test_chapter_start_points_at_the_heading() -> None:
    text = f"第一章　开端\n{PARAGRAPH}\n\n    第二章　继续\n{PARAGRAPH}"
    chapters = split_chapters(text)
    assert [text[c.start : c.start + 3] for c in chapters] == ["第一章", "第二章"]


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("一", 1),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("一百", 100),
        ("一百一", 101),
        ("一百十", 110),
        ("一百二十", 120),
        ("两千零五", 2005),
        ("一万二千", 12000),
        ("一二〇", 120),
        ("１２", 12),
        ("42", 42),
        ("甲", None),
        ("", None),
    ],
)
def test_parse_chinese_number(numeral: str, value: int | None) -> None:
    assert parse_chinese_number(numeral) == value


@pytest.mark.parametrize(
    ("numeral", "value"),
    [("I", 1), ("iv", 4), ("IX", 9), ("XII", 12), ("XL", 40), ("MCMXC", 1990), ("IIII", None)],
)
def test_parse_roman_number(numeral: str, value: int | None) -> None:
    assert parse_roman_number(numeral) == value


# --------------------------------------------------------------------------- sentences


def test_split_chinese_sentences_keeps_closing_quotes() -> None:
    text = "角拜问姓名。老人曰：“吾乃南华老仙也。”言讫，化阵清风而去！真的吗？……好"
    assert split_sentences(text) == [
        "角拜问姓名。",
        "老人曰：“吾乃南华老仙也。”",
        "言讫，化阵清风而去！",
        "真的吗？……",
        "好",
    ]


def test_split_english_sentences() -> None:
    text = "'Oh dear!' said the Rabbit. It is 3.5 miles.\nShe ran off!\n\nNew paragraph"
    assert split_sentences(text) == [
        "'Oh dear!'",
        "said the Rabbit.",
        "It is 3.5 miles.",
        "She ran off!",
        "New paragraph",
    ]


def test_blank_line_ends_a_sentence() -> None:
    assert split_sentences("a heading\n\nthe text") == ["a heading", "the text"]


# --------------------------------------------------------------------------- chunks


def _sentence_ends(text: str) -> re.Pattern[str]:
    return re.compile(r"[。！？.!?…][”’」』\"']*$")


def test_chunks_respect_the_limit_and_sentence_boundaries() -> None:
    text = _load("alice-in-wonderland.txt")[:20_000]
    chunks = chunk_text(text, 1000)
    assert len(chunks) > 20
    assert all(len(c) <= 1000 for c in chunks)
    # Every chunk ends where a sentence does (the text's last chunk may not).
    ends = _sentence_ends(text)
    assert all(ends.search(c) for c in chunks[:-1])
    assert "".join("".join(chunks).split()) == "".join(text.split())


def test_chunks_of_chinese_text() -> None:
    text = _load("sanguo-yanyi.gb18030.txt")[:30_000]
    chunks = chunk_text(text, 800)
    assert all(len(c) <= 800 for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())
    assert sum(1 for c in chunks if _sentence_ends(text).search(c)) >= len(chunks) * 0.9


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("One. Two.", 100) == ["One. Two."]
    assert chunk_text("", 100) == []


def test_sentence_longer_than_the_limit_is_cut_at_clause_breaks() -> None:
    sentence = "，".join(["天下大势分久必合"] * 10) + "。"
    chunks = chunk_text(f"开始。{sentence}结束。", 30)
    assert chunks[0] == "开始。"
    assert chunks[-1] == "结束。"
    assert all(len(c) <= 30 for c in chunks)
    assert all(c.endswith(("，", "。")) for c in chunks)
    assert "".join(chunks) == f"开始。{sentence}结束。"


def test_chunk_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        chunk_text("text", 0)


def test_short_chapters_are_still_chapters() -> None:
    text = "第一回　桃园结义\n刘备曰：「吾欲伸大义于天下。」\n\n第二回　张飞怒鞭督邮\n张飞大怒。"
    chapters = split_chapters(text)
    assert _titles(chapters) == ["第一回\u3000桃园结义", "第二回\u3000张飞怒鞭督邮"]
    assert chapters[1].body == "张飞大怒。"


# --------------------------------------------------------------------------- front matter

NOTICE = (
    "本电子书仅供读者预览，请在下载二十四小时内删除，不得用作商业用途。版权归原作者所有。\n"
    + "出版说明\n"
    + "　　本书以通行本为底本，参校诸本，改正了明显的错字，统一了异体字。" * 80
    + "\n"
)
XIYOU_HEADINGS = [
    "第一回　灵根孕育源流出　心性修持大道生",
    "第二回　悟彻菩提真妙理　断魔归本合元神",
    "第三回　四海千山皆拱伏　九幽十类尽除名",
]


def _xiyou(toc: list[str]) -> str:
    body = "\n".join(f"{h}\n　　{PARAGRAPH}" for h in XIYOU_HEADINGS)
    return f"{NOTICE}西游记\n吴承恩　著\n目录\n" + "\n".join(toc) + f"\n\n{body}\n"


@pytest.mark.parametrize(
    "toc",
    [
        XIYOU_HEADINGS,  # the contents repeat the headings exactly
        ["第001回 灵根孕育源流出", "第002回 悟彻菩提真妙理", "第003回 四海千山皆拱伏"],
        ["第一回 灵根育孕源流出 心性修持大道生", "第二回　悟彻菩提", "第三回"],
    ],
)
def test_chinese_notice_and_contents_are_not_chapters(toc: list[str]) -> None:
    chapters = split_chapters(_xiyou(toc))
    assert _titles(chapters) == XIYOU_HEADINGS
    assert [c.index for c in chapters] == [1, 2, 3]
    assert [c.number for c in chapters] == [1, 2, 3]
    assert all(c.body.strip() == PARAGRAPH for c in chapters)


def test_long_chinese_preface_is_not_a_chapter() -> None:
    preface = "序言\n" + f"　　{PARAGRAPH}\n" * 40
    chapters = split_chapters(f"{preface}{XIYOU_HEADINGS[0]}\n　　{PARAGRAPH}\n后记\n{PARAGRAPH}")
    assert _titles(chapters) == XIYOU_HEADINGS[:1]
    assert chapters[0].body.strip() == PARAGRAPH


STORY = "\n\n".join([ENGLISH_PARAGRAPH] * 3)
GUTENBERG_HEAD = """The Project Gutenberg eBook of Dracula

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever.

Title: Dracula

Author: Bram Stoker

Release date: October 1, 1995 [eBook #345]

*** START OF THE PROJECT GUTENBERG EBOOK DRACULA ***

Produced by Chuck Greif and the Online Distributed Proofreading Team

DRACULA

by Bram Stoker

"""
GUTENBERG_TAIL = """
*** END OF THE PROJECT GUTENBERG EBOOK DRACULA ***

Updated editions will replace the previous one--the old editions will
be renamed.

START: FULL LICENSE

THE FULL PROJECT GUTENBERG LICENSE

Section 1. General Terms of Use and Redistributing Project Gutenberg-tm
electronic works

Chapter 2 of the licence is not a chapter of the book.
"""


def _gutenberg(contents: str, chapters: list[tuple[str, str]]) -> str:
    preface = "PREFACE\n\n" + "\n\n".join([ENGLISH_PARAGRAPH] * 25)
    body = "\n\n\n".join(f"{heading}\n\n{STORY}" for heading, _ in chapters)
    return f"{GUTENBERG_HEAD}CONTENTS\n\n{contents}\n\n{preface}\n\n\n{body}\n{GUTENBERG_TAIL}"


@pytest.mark.parametrize(
    "contents",
    [
        "CHAPTER I. Jonathan Harker's Journal\nCHAPTER II. Jonathan Harker's Journal",
        " CHAPTER I.     Jonathan Harker's Journal     1\n CHAPTER II.    Continued    14",
        "I. Jonathan Harker's Journal\nII. Continued",
    ],
)
def test_gutenberg_header_contents_preface_and_licence_are_not_chapters(contents: str) -> None:
    headings = [
        ("CHAPTER I. Jonathan Harker's Journal", "CHAPTER I. Jonathan Harker's Journal"),
        ("CHAPTER II. Jonathan Harker's Journal", "CHAPTER II. Jonathan Harker's Journal"),
    ]
    chapters = split_chapters(_gutenberg(contents, headings))
    assert _titles(chapters) == [title for _, title in headings]
    assert [c.index for c in chapters] == [1, 2]
    assert all(c.body == STORY for c in chapters)


def test_bare_heading_takes_its_title_from_the_next_line() -> None:
    text = _gutenberg(
        "CHAPTER I\nCHAPTER II",
        [("CHAPTER I\n\nJONATHAN HARKER'S JOURNAL", ""), ("CHAPTER II.\nThe Pool of Tears", "")],
    )
    chapters = split_chapters(text)
    assert _titles(chapters) == [
        "CHAPTER I. JONATHAN HARKER'S JOURNAL",
        "CHAPTER II. The Pool of Tears",
    ]
    assert all(c.body == STORY for c in chapters)


def test_bare_heading_does_not_swallow_the_first_line_of_prose() -> None:
    text = "CHAPTER I\n\nThe day was cold.\n\nCHAPTER II\nIt was a truth universally known\n"
    assert _titles(split_chapters(text)) == ["CHAPTER I", "CHAPTER II"]


def test_story_collection_numbers_are_headings() -> None:
    text = (
        "Contents\n\n   I.     A Scandal in Bohemia\n   II.    The Red-Headed League\n\n"
        f"I. A SCANDAL IN BOHEMIA\n\n{STORY}\n\nII. THE RED-HEADED LEAGUE\n\n{STORY}\n"
    )
    chapters = split_chapters(text)
    assert _titles(chapters) == ["I. A SCANDAL IN BOHEMIA", "II. THE RED-HEADED LEAGUE"]
    assert [c.number for c in chapters] == [1, 2]


def test_long_untitled_opening_without_front_matter_lines_is_still_a_prologue() -> None:
    prologue = "\n\n".join([ENGLISH_PARAGRAPH] * 25)
    chapters = split_chapters(
        f"DRACULA\n\nby Bram Stoker\n\n{prologue}\n\nCHAPTER I. Home\n\n{STORY}"
    )
    assert _titles(chapters) == ["", "CHAPTER I. Home"]
    assert chapters[0].body.endswith(prologue)


def test_a_breadcrumb_stamped_on_every_heading_is_not_part_of_it() -> None:
    body = "话说那猴王拜了师父，学得本事，回到山中，众猴欢喜。" * 8
    text = "《西游记》\n某某小说网 www.example.com\n\n" + "\n\n".join(
        f"《》目录 第{n}回　回目{n}\n\n    {body}" for n in "一二三四"
    )

    chapters = split_chapters(text)

    assert [c.title for c in chapters] == [f"第{n}回　回目{n}" for n in "一二三四"]
    assert [c.number for c in chapters] == [1, 2, 3, 4]
    assert all("目录" not in c.body for c in chapters)


def test_a_prefix_seen_before_one_heading_only_is_not_a_stamp() -> None:
    body = "众人坐定，各叙寒温，说了许多闲话，方才散去。" * 8
    text = f"第一回　相会\n\n{body}\n\n他翻到第二回看了一遍。\n\n第二回　离别\n\n{body}"

    assert [c.title for c in split_chapters(text)] == ["第一回　相会", "第二回　离别"]
