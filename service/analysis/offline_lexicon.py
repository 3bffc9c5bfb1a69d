"""What jieba's bundled dictionary says about Chinese words: how common, and which part of speech.

The dictionary (``dict.txt`` of the ``jieba`` package: word, frequency, tag per line) is the
same one ``jieba.posseg`` tags with, so a word tagged ``nr*`` there is one the tagger calls
a person's name. The offline analyzer asks it only about candidate names it has already
found in the text, which is far cheaper than tagging a whole novel: importing
``jieba.posseg`` and building its prefix dictionary costs seconds, reading the file once
a fraction of that. The package is located without importing it, so nothing logs and no
cache file is written anywhere.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Tags of the nouns that may stand for one person: common (n), other proper (nz) and
# place (ns) nouns, which the dictionary gives to many a novel's nicknames (大圣, 三藏).
_NOUN_TAGS = frozenset({"n", "nz", "ns", "nt", "ng"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A dictionary word's frequency in jieba's corpus and its part-of-speech tag."""

    frequency: int
    tag: str

    @property
    def is_name(self) -> bool:
        """Tagged as a person's name (``nr``, ``nrfg``, ``nrt``)."""
        return self.tag.startswith("nr")

    @property
    def is_noun(self) -> bool:
        """Tagged as a noun that is not a person's name."""
        return self.tag in _NOUN_TAGS


def dictionary_path() -> Path:
    """Where jieba's bundled dictionary is, found without importing (and so loading) jieba."""
    spec = importlib.util.find_spec("jieba")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeError("the jieba package is not installed; it is a dependency")
    return Path(next(iter(locations))) / "dict.txt"


@cache
def _dictionary() -> str:
    """The dictionary's text, read once per process."""
    return dictionary_path().read_text(encoding="utf-8")


def lookup(words: Collection[str]) -> dict[str, Entry]:
    """The dictionary entries of those of the words it has (of two to four characters)."""
    wanted = {w for w in words if 2 <= len(w) <= 4}
    if not wanted:
        return {}
    # Only lines starting with a wanted word's first character are parsed at all.
    firsts = re.escape("".join(sorted({w[0] for w in wanted})))
    line = re.compile(rf"^([{firsts}]\S{{1,3}}) (\d+) ([a-z]+)$", re.MULTILINE)
    return {
        word: Entry(int(frequency), tag)
        for word, frequency, tag in line.findall(_dictionary())
        if word in wanted
    }
