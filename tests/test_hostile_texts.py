"""The offline analyzer's work grows linearly with the text, whatever the text holds.

Work is counted, not timed: the number of Python line events the analysis runs (every
loop iteration and comprehension element is one), which does not depend on the machine
or its load. A text eight times longer must cost at most ten times the work; a quadratic
path makes it cost about sixty-four. Scans inside the regular expression engine and
``str`` methods are not counted; ``python -m bench`` times the same texts at a million
characters (part 11), which catches those.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from harness.hostile_texts import HOSTILE_TEXTS
from service.analysis.offline import build_storyboard
from service.ports import NovelText

SMALL = 4_000
GROWTH = 8
MAX_WORK_RATIO = 10.0

# What the heuristics look for, and what they split on, as pieces of generated texts.
PIECES = [
    "曰", "：", "“", "”", "「", "」", "。", "，", "！", "？", "\n", "\n\n", "　　",
    "第", "回", "一百二十三", "卷", "刘备", "玄德", "张飞", "孔明", "姓刘名备，字玄德",
    "诗曰", "问曰", "笑道", "于", "城", "CHAPTER ", "Chapter I. ", "CONTENTS\n", '"',
    "'", "said", " Alice", " the Queen", ". ", ", ", "!", "?", "a", " ", "—",
    "*** START OF", "http://", "PREFACE\n",
]  # fmt: skip


def work(text: str) -> int:
    """Python line events run while analyzing ``text``."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        build_storyboard(NovelText("n1", "hostile", text))
    finally:
        sys.settrace(None)
    return count


def repeated(unit: str, size: int) -> str:
    """``unit`` repeated to exactly ``size`` characters."""
    return (unit * (size // len(unit) + 1))[:size]


def assert_linear(make: Any) -> None:
    small, large = work(make(SMALL)), work(make(SMALL * GROWTH))
    ratio = large / max(small, 1)
    assert ratio <= MAX_WORK_RATIO, (
        f"{GROWTH}x the text cost {ratio:.1f}x the work ({small}, {large})"
    )


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_each_crafted_text_costs_work_in_proportion_to_its_length(name: str) -> None:
    assert_linear(HOSTILE_TEXTS[name])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8), st.integers(1, 400))
def test_generated_repetitive_texts_cost_work_in_proportion_to_their_length(
    pieces: list[str], line_repeats: int
) -> None:
    unit = "".join(pieces)
    assume(unit.strip())  # an empty text is refused before any analysis
    note(f"unit {unit!r} x {line_repeats}")
    # Lines of the unit repeated, or one endless run when the unit holds no line break.
    line = unit * line_repeats + ("\n" if "\n" not in unit and line_repeats % 2 else "")
    assert_linear(lambda size: repeated(line, size))


def test_the_work_count_sees_a_quadratic_loop() -> None:
    """The measure itself: a loop over all earlier characters for each character shows."""

    def quadratic(size: int) -> int:
        return sum(1 for i in range(size) for _ in range(i // 100))

    def counted(size: int) -> int:
        count = 0

        def trace(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal count
            count += event == "line"
            return trace

        sys.settrace(trace)
        try:
            quadratic(size)
        finally:
            sys.settrace(None)
        return count

    assert counted(SMALL * GROWTH) / counted(SMALL) > MAX_WORK_RATIO
