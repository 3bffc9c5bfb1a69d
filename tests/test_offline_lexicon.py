"""jieba's bundled dictionary as a lookup of candidate words."""

from __future__ import annotations

import sys

from service.analysis.offline_lexicon import dictionary_path, lookup


def test_the_dictionary_tags_names_and_common_words() -> None:
    entries = lookup(["董卓", "师父", "上前", "不是一个词语"])
    assert entries["董卓"].is_name
    assert entries["师父"].is_noun
    assert not entries["师父"].is_name
    assert not entries["上前"].is_noun
    assert not entries["上前"].is_name
    assert "不是一个词语" not in entries


def test_looking_up_does_not_import_jieba() -> None:
    # Importing jieba (and its tokenizer) costs more than reading the dictionary.
    lookup(["曹操"])
    assert dictionary_path().is_file()
    assert "jieba" not in sys.modules
