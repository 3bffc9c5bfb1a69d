"""Text basics of the offline analyzer: language, clipping, ranking and the jieba tagger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from service.analysis.offline_text import by_count, clip, detect_language, jieba_tagger


def test_language_is_chinese_when_ideographs_outnumber_letters() -> None:
    assert detect_language("第一回 话说天下大势，分久必合 (Sanguo)") == "zh"
    assert detect_language("Alice was beginning to get very tired. 爱丽丝") == "en"


def test_clip_joins_lines_and_cuts_with_an_ellipsis() -> None:
    assert clip("a  b\nc", 10) == "a b c"
    assert clip("abcdefghij", 5) == "abcd…"


def test_by_count_breaks_ties_by_name() -> None:
    assert by_count(["b", "a", "c"], {"a": 1, "b": 1, "c": 2}) == ["c", "a", "b"]


def test_the_jieba_tagger_is_loaded_once_and_shared_between_threads() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        taggers = list(pool.map(lambda _: jieba_tagger(), range(8)))
    assert all(tagger is taggers[0] for tagger in taggers)
    words = [(pair.word, pair.flag) for pair in taggers[0].lcut("刘备引兵徐州")]
    assert ("徐州", "ns") in words
