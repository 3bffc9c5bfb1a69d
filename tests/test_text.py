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
