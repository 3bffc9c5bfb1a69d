"""The cast of an English novel: who speaks, who acts, and the fullest form of each name.

Candidates come from speech tags (``said the Hatter``, ``Mrs. Bennet said``), from a
capitalised ``the X`` that recurs as the subject of a sentence (``the Knave was standing``)
and from appositions (``Bill, the Lizard``). A short form then folds into the one full form
the text clearly means by it: ``Cat`` into ``Cheshire Cat``, ``Queen`` into ``Queen of
Hearts``, ``Darcy`` into ``Mr. Darcy``, ``the Count`` into ``Count Dracula``. Where two
full forms compete (``Mr. Bennet`` and ``Mrs. Bennet``) the short form is left alone, and
two forms join only when the text links them (``Mr. Sherlock Holmes`` makes ``Mr. Holmes``
and ``Sherlock Holmes`` one man).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.analysis.offline_text import words

# English verbs of speech, as a regular expression alternation.
SPEECH_VERBS = (
    "said|says|say|cried|asked|thought|replied|exclaimed|shouted|remarked|whispered|added"
    "|repeated|answered|observed|continued|began|went on|interrupted|screamed|growled|sighed"
    "|called|muttered|pleaded|roared|sobbed|inquired|returned|yelled|murmured|grunted"
    "|snapped|suggested|explained|insisted|declared|demanded|urged|retorted|protested"
    "|gasped|panted|said to herself|said to himself"
)

# A name must be seen in this many speech tags before it is believed.
MIN_TAG_COUNT = 2
# A ``the X`` that acts this often as a sentence's subject is a character.
MIN_SUBJECT_COUNT = 2
# ... and must be named this often in all.
MIN_THE_MENTIONS = 4
# A full form must occur this often to become the display name of its short form.
MIN_FULL_FORM_COUNT = 2

# Titles that belong to a name when one follows (Mr. Darcy, Count Dracula).
_TITLES = frozenset(
    words(
        "mr mr. mrs mrs. ms ms. dr dr. st st. miss sir lady lord count countess captain colonel"
        " professor inspector doctor madame monsieur uncle aunt king queen prince princess"
    )
)
_TITLE = r"(?:Mr|Mrs|Ms|Dr|St)\.?|Miss|Sir|Lady|Lord|Count|Countess|Captain|Colonel|Professor"
_CAP = r"[A-Z][a-z]+(?:-[A-Za-z][a-z]+)*"
_PHRASE = rf"(?:[Tt]he\s+)?(?:(?:{_TITLE})\s+)?{_CAP}(?:\s+{_CAP}){{0,2}}"
_TAGS = (
    re.compile(rf"\b(?:{SPEECH_VERBS})\s+(?P<n>{_PHRASE})"),
    re.compile(rf"(?P<n>{_PHRASE})\s+(?:{SPEECH_VERBS})\b"),
)
# A capitalised phrase in the middle of a sentence (so not capitalised for starting one),
# or led by a title: Cheshire Cat, Queen of Hearts, Mr. Sherlock Holmes.
_FULL_FORM = re.compile(
    rf"(?:(?<=[a-z,;:] )|(?<=[a-z,;:]  ))(?P<a>{_CAP}(?:\s+(?:of\s+)?{_CAP}){{1,2}})\b"
    rf"|\b(?P<t>(?:{_TITLE})\s+{_CAP}(?:\s+{_CAP})?)\b"
)
# ``the Knave was standing``: a capitalised noun after ``the`` and the verb it is subject of.
_THE_SUBJECT = re.compile(
    rf"\b[Tt]he\s+(?P<x>{_CAP})(?:\s+of\s+{_CAP})?(?:,\s+who\b|\s+(?P<v>[a-z]+)\b)"
)
_AUXILIARIES = frozenset(
    words(
        "was is had has did does would could will should might must can shall seemed began"
        " went came looked took made gave got felt knew saw heard stood sat ran shook"
    )
)
# ``Bill, the Lizard)`` and ``the poor little Lizard, Bill,``.
_APPOSITION = re.compile(
    rf"\b(?P<n>{_CAP}),\s+the\s+(?:[a-z]+\s+){{0,3}}(?P<x>{_CAP})(?=[,.;:!?)'\"’”])"
    rf"|\bthe\s+(?:[a-z]+\s+){{0,3}}(?P<x2>{_CAP}),\s+(?P<n2>{_CAP})(?=[,.;:!?)'\"’”])"
)
# Capitalised words that start sentences or address people but never name a character.
_STOP = frozenset(
    words(
        """the a an and but or so then when what which who whom why how where here there this
    that these those it its i you he she we they me him her us them my your his our
    their oh ah well yes no not now just only very do don come let if in on at of for
    with as by to from up down out off over one all some any everybody nobody somebody
    everything nothing anything something chapter mr mrs miss sir madam lady lord
    majesty please thank thanks good dear poor still again never ever soon once while
    after before perhaps indeed really sure certainly quite hush stop wait look listen
    alas ugh ahem hm hmm would could should shall will can may might must other
    another each every both first last next said says"""
    )
)


@dataclass(slots=True)
class EnglishName:
    """A character's display name (its fullest form) and the shorter forms of it."""

    key: str
    aliases: list[str] = field(default_factory=list)

    def add(self, alias: str) -> None:
        """Another form of the name, unless the character already goes by it."""
        if alias != self.key and alias not in self.aliases:
            self.aliases.append(alias)


def discover_english(paragraphs: Sequence[str]) -> list[EnglishName]:
    """Characters of an English novel, most evidenced first, short forms folded in."""
    text = " ".join(paragraphs)
    tags = _tag_counts(text)
    candidates = Counter({n: c for n, c in tags.items() if c >= MIN_TAG_COUNT})
    for name, count in _subjects(text).items():
        candidates.setdefault(name, count)
    full = _full_forms(text)
    people = _fold(candidates, full)
    _add_appositions(text, people)
    return list(people.values())


def _tag_counts(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for tag in _TAGS:
        for match in tag.finditer(text):
            name = clean_name(match["n"])
            if name:
                counts[name] += 1
    return counts


def clean_name(phrase: str) -> str:
    """A phrase without the stop words around it, a title kept before a name (Mr. Darcy)."""
    parts = phrase.split()
    while len(parts) > 1 and parts[0].casefold() in _STOP and parts[0].casefold() not in _TITLES:
        parts.pop(0)
    if len(parts) == 1 and parts[0].casefold() in _STOP:
        return ""
    while parts and parts[-1].casefold() in _STOP:
        parts.pop()
    # ``of`` may join a title to its domain (Queen of Hearts), no other small word a name.
    inner = parts[2:] if len(parts) == 3 and parts[1] == "of" else parts[1:]
    if not parts or any(w.casefold() in _STOP for w in inner):
        return ""
    if parts[0].casefold() in _STOP and parts[0].casefold() not in _TITLES:
        return ""
    return " ".join(parts)


def _subjects(text: str) -> Counter[str]:
    """Capitalised ``the X`` nouns that recur as a sentence's subject (the Knave, the Lizard)."""
    acts: Counter[str] = Counter()
    for match in _THE_SUBJECT.finditer(text):
        verb = match["v"]
        if verb is None or verb in _AUXILIARIES or verb.endswith("ed"):
            acts[match["x"]] += 1
    believed: Counter[str] = Counter()
    for name, count in acts.items():
        if count >= MIN_SUBJECT_COUNT and name.casefold() not in _STOP:
            mentions = len(re.findall(rf"\b[Tt]he\s+{re.escape(name)}\b", text))
            if mentions >= MIN_THE_MENTIONS:
                believed[name] = mentions
    return believed


def _full_forms(text: str) -> Counter[str]:
    """Capitalised multi-word forms and how often each occurs."""
    counts: Counter[str] = Counter()
    for match in _FULL_FORM.finditer(text):
        form = clean_name(" ".join((match["a"] or match["t"]).split()))
        if " " in form:
            counts[form] += 1
    return counts


def _fold(candidates: Counter[str], full: Counter[str]) -> dict[str, EnglishName]:
    """Each candidate under its fullest form, short forms as aliases."""
    people: dict[str, EnglishName] = {}
    owner: dict[str, str] = {}
    ranked = sorted(candidates, key=lambda n: (-candidates[n], n))
    for name in ranked:
        key = full_form_of(name, full) or name
        key = owner.get(key, key)
        person = people.setdefault(key, EnglishName(key))
        for form in (name, *_short_forms(key)):
            if form not in owner or owner[form] == key:
                owner[form] = key
                person.add(form)
    return people


def full_form_of(name: str, full: Counter[str]) -> str | None:
    """The one full form the text clearly means by a name, if any.

    ``Cat`` means ``Cheshire Cat``, ``Queen`` ``Queen of Hearts`` and ``Count`` (a title)
    ``Count Dracula``; ``Bennet`` means no one while ``Mr. Bennet`` and ``Mrs. Bennet``
    both occur.
    """
    groups = _linked(f for f in full if full[f] >= MIN_FULL_FORM_COUNT and _contains(f, name))
    if not groups:
        return None
    totals = sorted(((sum(full[f] for f in g), g) for g in groups), key=lambda t: -t[0])
    if len(totals) > 1 and totals[0][0] < 2 * totals[1][0]:
        return None
    return _display(totals[0][1], full)


def _contains(form: str, name: str) -> bool:
    if form == name or " " in name:
        return form.endswith(" " + name) and form != name
    words = form.split()
    if words[-1] == name:
        return True
    if name.casefold() in _TITLES:
        return words[0] == name
    return len(words) == 3 and words[1] == "of" and words[0] == name


def _linked(forms: Iterable[str]) -> list[list[str]]:
    """Forms grouped by the person they name: ``Mr. Holmes`` and ``Sherlock Holmes`` are one
    when ``Mr. Sherlock Holmes`` is among them too."""
    groups: list[list[str]] = []
    for form in sorted(forms, key=lambda f: (-len(f), f)):
        home = next((g for g in groups if any(_expands(big, form) for big in g)), None)
        if home is None:
            groups.append([form])
        else:
            home.append(form)
    return groups


def _expands(big: str, small: str) -> bool:
    """Whether ``small`` is ``big`` without some of its words (Mr. Holmes of Mr. Sherlock
    Holmes); ``Miss`` is left out, as it is shared by sisters."""
    big_words, small_words = big.split(), small.split()
    if len(big_words) <= len(small_words) or big_words[-1] != small_words[-1]:
        return False
    if "Miss" in small_words:
        return False
    rest = iter(big_words)
    return all(word in rest for word in small_words)


def _display(group: list[str], full: Counter[str]) -> str:
    """The most specific form of a group that is not the longest with a title and a given
    name (``Sherlock Holmes`` rather than ``Mr. Sherlock Holmes``) unless that is all."""
    untitled = [f for f in group if f.split()[0].casefold() not in _TITLES]
    pool = untitled or group
    return max(pool, key=lambda f: (full[f], len(f.split()), f))


def _short_forms(key: str) -> list[str]:
    """Forms a full name goes by: ``Cat`` of ``Cheshire Cat``, ``Queen`` of ``Queen of
    Hearts``; a title and surname keep their title (``Mrs. Bennet`` is no ``Bennet``)."""
    words = key.split()
    if len(words) == 1 or words[0].casefold() in _TITLES:
        return []
    if len(words) == 3 and words[1] == "of":
        return [words[0]]
    if len(words) == 3 and words[1] == "the":
        return [words[0], words[2]]
    return [words[-1]]


def _add_appositions(text: str, people: dict[str, EnglishName]) -> None:
    """``Bill, the Lizard``: a name and a ``the X`` noun put side by side are one character,
    shown as ``Bill the Lizard``."""
    pairs: Counter[tuple[str, str]] = Counter()
    for match in _APPOSITION.finditer(text):
        name, noun = match["n"] or match["n2"], match["x"] or match["x2"]
        if name.casefold() not in _STOP and noun.casefold() not in _STOP and name != noun:
            pairs[(name, noun)] += 1
    for (name, noun), _ in sorted(pairs.items(), key=lambda p: (-p[1], p[0])):
        if not _is_proper(text, name) or _word_count(text, noun) < 2:
            continue
        merged = EnglishName(f"{name} the {noun}", [name, noun])
        for part in (name, noun):
            old = people.pop(part, None)
            for alias in old.aliases if old is not None else []:
                merged.add(alias)
        people[merged.key] = merged


def _word_count(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text))


def _is_proper(text: str, name: str) -> bool:
    """A recurring name used mostly without ``the``: Bill is, the King and the Gryphon are not."""
    total = _word_count(text, name)
    with_article = len(re.findall(rf"\b[Tt]he\s+{re.escape(name)}\b", text))
    return total >= MIN_THE_MENTIONS and with_article * 2 < total
