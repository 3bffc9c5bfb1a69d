"""Decoding and normalisation of uploaded novel bytes."""

from __future__ import annotations

import codecs
import unicodedata

import pytest

from service.text import (
    EmptyTextError,
    TextDecodeError,
    count_chars,
    decode_text,
    guess_title,
    load_novel_bytes,
    normalise_text,
)
from tests.conftest import corpus_file


def _content(text: str) -> str:
    """The characters that carry meaning: no whitespace, no control characters, no BOM."""
    return "".join(
        ch
        for ch in text
        if not ch.isspace() and unicodedata.category(ch) != "Cc" and ch != "\ufeff"
    )


def test_decodes_utf8() -> None:
    assert decode_text("Alice 和 兔子 — ‘curious’".encode()) == "Alice 和 兔子 — ‘curious’"


def test_decodes_gb18030_when_not_utf8() -> None:
    text = "第一回　宴桃园豪杰三结义"
    assert decode_text(text.encode("gb18030")) == text


def test_decodes_the_gb18030_corpus_file() -> None:
    data = corpus_file("sanguo-yanyi.gb18030.txt").read_bytes()
    text = load_novel_bytes(data)
    assert text.startswith("第一回\u3000宴桃园豪杰三结义")
    assert "\u3000" in text
    assert "滚滚长江东逝水" in text
    assert "\r" not in text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + "中文 text".encode(), "中文 text"),
        ("中文 text".encode("utf-16"), "中文 text"),
        (codecs.BOM_UTF16_LE + "中文".encode("utf-16-le"), "中文"),
        (codecs.BOM_UTF16_BE + "中文".encode("utf-16-be"), "中文"),
        (codecs.BOM_UTF32_LE + "中文".encode("utf-32-le"), "中文"),
    ],
)
def test_byte_order_mark_decides_and_is_dropped(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


@pytest.mark.parametrize("data", [b"\x81\x20", b"abc\x81\x20def", b"\x80", b"\xff"])
def test_bytes_invalid_in_both_encodings_raise(data: bytes) -> None:
    with pytest.raises(TextDecodeError, match="not valid"):
        decode_text(data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(TextDecodeError, ValueError)
    assert issubclass(EmptyTextError, ValueError)


def test_utf8_bom_with_invalid_body_raises() -> None:
    with pytest.raises(TextDecodeError):
        decode_text(codecs.BOM_UTF8 + b"\x81\x20")


def test_line_endings_become_newlines() -> None:
    assert normalise_text("one\r\ntwo\rthree\n") == "one\ntwo\nthree"


def test_control_characters_removed_but_tabs_kept() -> None:
    assert normalise_text("a\x00b\x07c\td\x1be\x7f") == "abc\tde"


def test_form_feed_separates_lines_instead_of_gluing_words() -> None:
    assert normalise_text("end\fStart") == "end\nStart"


def test_leading_bom_character_dropped() -> None:
    assert normalise_text("\ufeff第一回") == "第一回"


def test_trailing_whitespace_stripped_but_inner_ideographic_space_kept() -> None:
    text = "    　　青山依旧在，几度夕阳红。　　白发渔樵　　\n next  \t"
    assert normalise_text(text) == "    　　青山依旧在，几度夕阳红。　　白发渔樵\n next"


def test_blank_line_runs_collapse_to_two() -> None:
    assert normalise_text("a\n\n\n\n\n\nb\n\nc") == "a\n\n\nb\n\nc"
    assert normalise_text("a\n \n\u3000\n\t\nb") == "a\n\n\nb"


def test_leading_and_trailing_blank_lines_stripped_keeping_indentation() -> None:
    assert normalise_text("\n\n  \n    indented\n\n\n") == "    indented"


def test_load_of_blank_upload_raises_empty_text() -> None:
    for data in (b"", b"   \r\n\t\x00 \n", "\ufeff\u3000\n".encode()):
        with pytest.raises(EmptyTextError):
            load_novel_bytes(data)


def test_load_decodes_and_normalises() -> None:
    assert load_novel_bytes(codecs.BOM_UTF8 + b"\r\n\r\nHello\r\nworld  \r\n") == "Hello\nworld"


@pytest.mark.parametrize("name", ["sanguo-yanyi.gb18030.txt", "alice-in-wonderland.txt"])
def test_normalisation_loses_no_characters(name: str) -> None:
    decoded = decode_text(corpus_file(name).read_bytes())
    normalised = normalise_text(decoded)
    assert _content(normalised) == _content(decoded)


def test_count_chars_counts_code_points() -> None:
    assert count_chars("第一回 abc") == 7
    assert count_chars("") == 0


# ------------------------------------------------------------------------------- titles

GUTENBERG_NEW = """\ufeffThe Project Gutenberg eBook of Alice's Adventures in Wonderland

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever.

Title: Alice's Adventures in Wonderland

Author: Lewis Carroll

Release date: June 27, 2008 [eBook #11]

*** START OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

CHAPTER I.
Down the Rabbit-Hole
"""

GUTENBERG_OLD = """Project Gutenberg's Alice's Adventures in Wonderland, by Lewis Carroll

This eBook is for the use of anyone anywhere at no cost and with
almost no restrictions whatsoever.

*** START OF THIS PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

Title: Not the header's
"""

GUTENBERG_WRAPPED_TITLE = """The Project Gutenberg EBook of The Works of Edgar Allan Poe, by Poe

Title: The Works of Edgar Allan Poe
       Volume 1

Author: Edgar Allan Poe
"""


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("三国演义\n\n第一回　宴桃园豪杰三结义\n\n　　话说天下大势。", "三国演义"),
        ("三国演义\n第一回　宴桃园豪杰三结义\n　　话说天下大势。", "三国演义"),
        ("《三国演义》\n罗贯中 著\n\n第一回　宴桃园豪杰三结义", "三国演义"),
        ("书名：斗破苍穹\n作者：天蚕土豆\n\n第一章 陨落的天才\n", "斗破苍穹"),
        ("www.example.com 免费txt下载\n\n红楼梦\n\n第一回　甄士隐梦幻识通灵", "红楼梦"),
        (
            "ALICE'S ADVENTURES IN WONDERLAND\n\nLewis Carroll\n\nCHAPTER I. Down the Rabbit-Hole",
            "ALICE'S ADVENTURES IN WONDERLAND",
        ),
        ("Moby Dick\n    Call me Ishmael. Some years ago, never mind how long", "Moby Dick"),
        ("1984\n\nPart One\n\nIt was a bright cold day in April.", "1984"),
        ("CIVIL WAR\n\nIt began in spring.", "CIVIL WAR"),
        ("  ***  \n\nThe Time Machine\n\nby H. G. Wells\n", "The Time Machine"),
        (GUTENBERG_NEW, "Alice's Adventures in Wonderland"),
        (GUTENBERG_OLD, "Alice's Adventures in Wonderland"),
        (GUTENBERG_WRAPPED_TITLE, "The Works of Edgar Allan Poe Volume 1"),
        (
            "The Project Gutenberg EBook of Pride and Prejudice, by Jane Austen\n\nTitle:",
            "Pride and Prejudice",
        ),
    ],
)
def test_a_title_line_gives_the_title(text: str, title: str) -> None:
    assert guess_title(text) == title


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n  \n",
        "*****\n\n-----",
        "第一回　宴桃园豪杰三结义\n　　话说天下大势，分久必合，合久必分。",
        "第一章 开始\n\n他走了。",
        "序章\n\n很久以前。",
        "CHAPTER I. Down the Rabbit-Hole\n\nAlice was beginning to get very tired.",
        "Chapter 1\n\nIt was late.",
        "BOOK ONE\n\nThe Sea",
        "Contents\n\nI. The Start\nII. The End",
        "IV.\n\nThe river rose.",
        "Prologue\n\nLong ago.",
        "话说天下大势，分久必合，合久必分。\n\n周末七国分争。",
        "“你好，”他说。\n\n她没有回答。",
        "'Good morning,' said Alice.\n\n'Good morning,' said the Hatter.",
        "It was the best of times, it was the worst of times.\n\nIt was the age.",
        "once upon a time\n\nthere was a king.",
        # The start of a hard-wrapped paragraph: the next line carries the sentence on.
        "Alice was beginning to get very tired\n"
        "of sitting by her sister on the bank, and of having nothing",
        "A very long line that goes on and on and has many more words than a title ever has",
        "www.example.com 免费txt下载\n\n第一章 陨落的天才",
    ],
)
def test_no_title_line_gives_none(text: str) -> None:
    assert guess_title(text) is None


def test_the_corpus_files_open_with_a_chapter_not_a_title() -> None:
    for name in ("sanguo-yanyi.gb18030.txt", "alice-in-wonderland.txt"):
        assert guess_title(load_novel_bytes(corpus_file(name).read_bytes())) is None
