"""Crafted novels that try to make the offline analyzer take super-linear time.

Each is a repetition of what the heuristics look for (speech tags, quotation marks,
chapter headings, names), or of nothing they can split on (one endless line, no
sentence ends). The test suite checks that time per character stays flat as they grow;
``python -m bench`` reports the worst of them against 三国演义.
"""

from __future__ import annotations

from collections.abc import Callable

HostileText = Callable[[int], str]


def _lines(unit: str, per_line: int) -> HostileText:
    """``unit`` repeated ``per_line`` times a line, lines repeated up to ``size`` chars."""

    def make(size: int) -> str:
        line = unit * per_line + "\n"
        return (line * (size // len(line) + 1))[:size]

    return make


def _run(unit: str) -> HostileText:
    """``unit`` repeated with no line break at all."""

    def make(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return make


# name → how to make that text of a given size. Line lengths follow the texts that were
# slow: a 1,500-character line of ``曰：“`` took minutes before the analyzer was fixed.
HOSTILE_TEXTS: dict[str, HostileText] = {
    "tag-open-quote": _lines("曰：“", 375),
    "name-tag-quote": _lines("刘备曰“", 300),
    "closed-quotes": _lines("刘备曰：“走。”", 150),
    "open-quotes-no-ends": _run("“玄德"),
    "tags-no-quotes": _run("张飞问曰，"),
    "chapter-marks": _lines("第", 1000),
    "cn-headings": _lines("第一百二十三回 ", 100),
    "en-headings": _lines("CHAPTER ", 300),
    "toc-lines": _lines("第十回　刘玄德北海解围\n", 1),
    "straight-quotes": _run('"'),
    "en-said": _lines('"Yes," said Alice. ', 60),
    "en-open-quotes": _run('"Alice '),
    "letters": _run("a"),
    "cjk-no-punctuation": _run("刘备关羽张飞曹操"),
    "introductions": _run("姓刘名备，字玄德。"),
    "verse": _lines("滚滚长江东逝水，", 200),
    "blank-lines": _run("\n\n甲"),
}
