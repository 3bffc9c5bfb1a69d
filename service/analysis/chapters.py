"""Splitting a normalised novel into chapters, sentences and size-bounded chunks.

Chapter headings are recognised line by line: Chinese ``第…回/章/节/卷/集/部/篇`` with
Chinese, Arabic or full-width numerals, ``序章/楔子/尾声/番外`` and their kin, and English
``Chapter N`` / ``CHAPTER IV.`` / ``Chapter the First``. Candidates are then filtered so
that tables of contents, volume headings without text of their own, duplicated pastes
and download-site banners never become chapters.

Front and back matter never become chapters either: a Project Gutenberg header and
licence are cut off at their ``*** START/END OF THE PROJECT GUTENBERG EBOOK`` lines, text
before the first heading is a chapter only when it is long and carries no front-matter
line (``CONTENTS``, ``PREFACE``, ``目录``, ``出版说明``, ``作者：`` …), and an afterword or
appendix after the last chapter is not part of it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Chapter",
    "chunk_text",
    "parse_chinese_number",
    "parse_roman_number",
    "sentence_spans",
    "split_chapters",
    "split_sentences",
]

# A heading line is short; anything longer is prose that happens to start like one.
MAX_HEADING_CHARS = 60
# Two or more candidates in a row with less text than this each are a table of contents
# when the same chapter numbers or titles turn up again later.
TOC_ENTRY_CHARS = 200
TOC_MIN_RUN = 2
# Text before the first heading becomes a chapter of its own only when it is long enough to
# be story (a prologue) rather than a title page, blurb or contents list.
FRONT_MATTER_MIN_CHARS = 2000

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_CN_NUMERAL = "零〇一二两三四五六七八九十百千万0-9０-９"

_CN_HEADING = re.compile(
    rf"第\s*(?P<num>[{_CN_NUMERAL}]+)\s*[回章节卷集部篇](?P<rest>.*)",
)
# 序言 and 后记 are a preface and an afterword, not story: see _FRONT_MATTER, _BACK_MATTER.
_CN_SPECIAL_HEADING = re.compile(
    r"(?P<word>序章|序幕|楔子|引子|尾声|番外篇?[一二三四五六七八九十0-9０-９]*)"
    r"(?P<rest>.*)",
)
_EN_HEADING = re.compile(
    r"(?:chapter|chap\.)\s+(?P<num>the\s+[a-z]+|[ivxlcdm]+|\d+|[a-z]+(?:-[a-z]+)?)"
    r"(?P<rest>.*)",
    re.IGNORECASE,
)
_EN_SPECIAL_HEADING = re.compile(r"(?P<word>prologue|epilogue)(?P<rest>.*)", re.IGNORECASE)
# Story collections number their stories with a Roman numeral and a title in capitals:
# "I. A SCANDAL IN BOHEMIA". Capitals only, so a numbered list in prose is not one.
_EN_NUMBERED_HEADING = re.compile(r"(?P<num>[IVXLC]+)\.\s+(?P<rest>[A-Z][A-Z0-9 ,'’\-:;!?&.]*)")
# Every heading form holds one of these; other lines need no closer look.
# Some download sites stamp a breadcrumb on every heading line (《》目录 第一回…). A short
# prefix with no sentence punctuation, repeated before several headings, is such a stamp.
_STAMPED_HEADING = re.compile(
    rf"^\s*(?P<stamp>[^\s。，！？；“”「」]{{1,16}}?)[\s\u3000]*(?=第\s*[{_CN_NUMERAL}]+\s*[回章节卷])",
    re.MULTILINE,
)
_MIN_STAMPED_HEADINGS = 3
# Searched over a whole stretch of text at once, one line start at a time (``^`` per line).
# Cased by hand rather than with IGNORECASE, which makes the engine case-fold every
# character of a Chinese text it scans.
_HEADING_HINT = re.compile(
    r"[第序楔引尾番]|[Cc][Hh][Aa][Pp]|[Pp][Rr][Oo][Ll][Oo][Gg]|[Ee][Pp][Ii][Ll][Oo][Gg]"
    r"|^[^\S\n]*[IVXLCivxlc]+\.",
    re.MULTILINE,
)
# A bare "CHAPTER I" may have its title on the next line (after at most one blank line).
_SUBTITLE_MAX_CHARS = 50
_CN_SUBTITLE_BAD = re.compile(r"[。，！？；：“”「」『』]")
_EN_SUBTITLE_WORD = re.compile(r"[A-Za-z][A-Za-z’'-]*")

# Project Gutenberg wraps every book in a header and a licence; the story is between.
_GUTENBERG_START = re.compile(
    r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
    re.IGNORECASE | re.MULTILINE,
)
_GUTENBERG_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the )?Project Gutenberg)",
    re.IGNORECASE | re.MULTILINE,
)
# A short line naming a part of a book that is not story: text before the first heading
# with such a line is front matter, however long.
_FRONT_MATTER = re.compile(
    r"(?:table of )?contents\b|preface\b|introduction\b|foreword\b|transcriber|produced by"
    r"|title:|author:|release date|copyright|all rights reserved|isbn|illustrat|translated by"
    r"|dedicat|editor|目\s*[录錄]|前\s*言|序\s*言|自序|序$|出版|版[权權]|作者|[编編]者|内容|內容"
    r"|简介|簡介|提要|凡例|声明|聲明|校注|整理",
    re.IGNORECASE,
)
_FRONT_MATTER_LINE_CHARS = 40
# An afterword, appendix or notes after the last chapter are not part of it.
_BACK_MATTER = re.compile(
    r"^[^\S\n]*(?:后记|後記|跋|附录|附錄|出版后记|afterword|appendix|appendices|end\s*notes"
    r"|notes|footnotes|glossary|index|transcriber['’]s notes?)[.:]?[^\S\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_ROMAN = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")

_EN_NUMBER_WORDS = {
    word: value
    for value, words in enumerate(
        [
            "zero",
            "one first",
            "two second",
            "three third",
            "four fourth",
            "five fifth",
            "six sixth",
            "seven seventh",
            "eight eighth",
            "nine ninth",
            "ten tenth",
            "eleven eleventh",
            "twelve twelfth",
            "thirteen thirteenth",
            "fourteen fourteenth",
            "fifteen fifteenth",
            "sixteen sixteenth",
            "seventeen seventeenth",
            "eighteen eighteenth",
            "nineteen nineteenth",
        ]
    )
    for word in words.split()
}
_EN_TENS = {
    "twenty": 20,
    "twentieth": 20,
    "thirty": 30,
    "thirtieth": 30,
    "forty": 40,
    "fortieth": 40,
    "fifty": 50,
    "fiftieth": 50,
    "sixty": 60,
    "sixtieth": 60,
    "seventy": 70,
    "seventieth": 70,
    "eighty": 80,
    "eightieth": 80,
    "ninety": 90,
    "ninetieth": 90,
}

# Download sites stamp their name and address into the files they distribute.
_BANNER = re.compile(
    r"https?://|www\.|\.(?:com|net|org|cn|cc|info)\b|txt下载|整理校对|本书由|电子书|首发",
    re.IGNORECASE,
)
_MAX_BANNER_CHARS = 100
_URL = re.compile(r"[(（【\[]?\s*(?:https?://|www\.)[^\s)）】\]]*\s*[)）】\]]?", re.IGNORECASE)
_DECORATION = re.compile(r"[\s\-=*_~—·.#]{3,}")
_SPACE_RUN = re.compile(r"\s+")
_LEADING_THE = re.compile(r"^the\s+")

_SENTENCE_END = re.compile(
    r"[。！？…]+[」』”’\"'）)】]*"  # CJK enders need no following space
    r"|[.!?]+[\"'”’)\]]*(?=\s|$)"  # Latin ones do, or 3.14 and e.g. would split
    r"|\n[^\S\n]*\n"  # a blank line always ends a sentence
)
_CLAUSE_BREAK = re.compile(r"[，,；;：:、\s]")


@dataclass(frozen=True, slots=True)
class Chapter:
    """One chapter: 1-based ``index`` in reading order, heading ``title``, ``body`` text.

    ``start`` is the offset of the heading (or of the text) in the novel; ``number`` is the
    number printed in the heading when it has one.
    """

    index: int
    title: str
    body: str
    start: int
    number: int | None = None


@dataclass(frozen=True, slots=True)
class _Heading:
    title: str
    number: int | None
    start: int  # offset of the heading text
    body_start: int  # offset just past the heading line


@dataclass(frozen=True, slots=True)
class _Candidate:
    heading: _Heading
    body: str

    @property
    def size(self) -> int:
        return _visible_len(self.body)


def split_chapters(text: str) -> list[Chapter]:
    """Chapters of a normalised novel, in reading order.

    Without any recognisable heading the whole text is one chapter with an empty title;
    callers that want a display name substitute the novel's own title. Text before the
    first heading is kept as an untitled chapter only when it is long enough to be a
    prologue (``FRONT_MATTER_MIN_CHARS``) and has no front-matter line; shorter or marked
    front matter (title page, notice, preface, contents) is dropped. A Gutenberg header
    and licence, and back matter after the last chapter, are never part of a chapter.
    """
    lo, hi = _story_span(text)
    headings = list(_find_headings(text, lo, hi))
    if headings:
        hi = _back_matter_start(text, headings[-1].body_start, hi)
    ends = [h.start for h in headings[1:]] + [hi] if headings else []
    candidates = [
        _Candidate(h, _clean_body(text[h.body_start : end]))
        for h, end in zip(headings, ends, strict=True)
    ]
    candidates = _drop_duplicates(_drop_empty(_drop_toc_runs(candidates)))
    chapters: list[tuple[str, str, int, int | None]] = []
    front = _clean_body(text[lo : headings[0].start] if headings else text[lo:hi])
    if not candidates or _is_prologue(front):
        chapters.append(("", front, lo, None))
    chapters.extend(
        (c.heading.title, c.body, c.heading.start, c.heading.number) for c in candidates
    )
    return [
        Chapter(index=i, title=title, body=body, start=start, number=number)
        for i, (title, body, start, number) in enumerate(chapters, start=1)
    ]


def _story_span(text: str) -> tuple[int, int]:
    """Offsets of the story inside a Project Gutenberg header and licence, if any."""
    start = _GUTENBERG_START.search(text)
    lo = start.end() if start else 0
    end = _GUTENBERG_END.search(text, lo)
    return lo, end.start() if end else len(text)


def _back_matter_start(text: str, last_heading_end: int, hi: int) -> int:
    """Where an afterword, appendix or notes begin after the last chapter heading."""
    found = _BACK_MATTER.search(text, last_heading_end, hi)
    return found.start() if found else hi


def _is_prologue(front: str) -> bool:
    """Whether text before the first heading is story rather than front matter."""
    if _visible_len(front) < FRONT_MATTER_MIN_CHARS:
        return False
    lines = (line.strip() for line in front.split("\n"))
    return not any(
        len(line) <= _FRONT_MATTER_LINE_CHARS and _FRONT_MATTER.match(line) for line in lines
    )


def _heading_stamps(text: str, lo: int, hi: int) -> frozenset[str]:
    """Prefixes stamped before at least three headings (see ``_STAMPED_HEADING``)."""
    counts = Counter(m["stamp"] for m in _STAMPED_HEADING.finditer(text, lo, hi))
    return frozenset(stamp for stamp, n in counts.items() if n >= _MIN_STAMPED_HEADINGS)


def _unstamped(line: str, stamps: frozenset[str]) -> str:
    stripped = line.strip()
    for stamp in stamps:
        if stripped.startswith(stamp):
            return stripped[len(stamp) :].lstrip(" \t\u3000")
    return stripped


def _find_headings(text: str, lo: int, hi: int) -> Iterator[_Heading]:
    lines = _lines(text, lo, hi)
    stamps = _heading_stamps(text, lo, hi)
    for i in _hinted_lines(text[lo:hi], lines, lo):
        offset, line = lines[i]
        stripped = _unstamped(line, stamps)
        # A site may stamp its address on a heading line; the heading still counts.
        if _is_banner(stripped):
            stripped = _URL.sub(" ", stripped).strip()
        if not stripped or len(stripped) > MAX_HEADING_CHARS or _is_banner(stripped):
            continue
        parsed = _parse_heading(stripped)
        if parsed is None:
            continue
        title, number = parsed
        start = offset + len(line) - len(line.lstrip())
        body_start = min(offset + len(line) + 1, hi)
        kind = _bare_kind(stripped)
        subtitle = _subtitle(lines, i, kind) if kind else None
        if subtitle is not None:
            sub_offset, sub_line = lines[subtitle]
            joiner = "\u3000" if kind == "zh" else ". "
            title = f"{title.rstrip('.')}{joiner}{sub_line.strip()}"
            body_start = min(sub_offset + len(sub_line) + 1, hi)
        yield _Heading(title, number, start, body_start)


def _hinted_lines(stretch: str, lines: list[tuple[int, str]], lo: int) -> list[int]:
    """Indices of the lines holding a heading hint, found by searching the stretch from
    one hinted line to the next rather than searching every line."""
    starts = [offset - lo for offset, _ in lines]
    found: list[int] = []
    position = 0
    while (match := _HEADING_HINT.search(stretch, position)) is not None:
        found.append(bisect_right(starts, match.start()) - 1)
        position = stretch.find("\n", match.start()) + 1
        if position == 0:
            break
    return found


def _lines(text: str, lo: int, hi: int) -> list[tuple[int, str]]:
    """The lines of ``text[lo:hi]`` with their offsets in ``text``."""
    lines: list[tuple[int, str]] = []
    offset = lo
    for line in text[lo:hi].split("\n"):
        lines.append((offset, line))
        offset += len(line) + 1
    return lines


def _bare_kind(heading: str) -> str | None:
    """``zh`` or ``en`` for a numbered heading with no title of its own, else ``None``."""
    match = _CN_HEADING.fullmatch(heading)
    if match and not match["rest"].strip():
        return "zh"
    match = _EN_HEADING.fullmatch(heading)
    if match and match["rest"].strip() in ("", "."):
        return "en"
    return None


def _subtitle(lines: list[tuple[int, str]], i: int, kind: str) -> int | None:
    """Index of the line holding the title of a bare heading (``CHAPTER I``), if any.

    The title comes on the next line or after one blank line, is short, and reads as a
    title: no sentence punctuation in Chinese; in English, capitalised words with a
    blank line after them, so the first line of a paragraph is never taken for one.
    """
    for j in (i + 1, i + 2):
        if j >= len(lines):
            return None
        line = lines[j][1].strip()
        if not line:
            continue
        if len(line) > _SUBTITLE_MAX_CHARS or _parse_heading(line) is not None:
            return None
        if kind == "zh":
            return None if _CN_SUBTITLE_BAD.search(line) else j
        alone = j + 1 >= len(lines) or not lines[j + 1][1].strip()
        return j if alone and _title_case(line) else None
    return None


def _title_case(line: str) -> bool:
    """Whether an English line reads as a title: capitalised words, no closing comma."""
    if not line[0].isupper() or line[-1] in ",;:" or any(q in line for q in '"‘“'):
        return False
    long_words = [w for w in _EN_SUBTITLE_WORD.findall(line) if len(w) >= 4]
    capitalised = sum(1 for w in long_words if w[0].isupper())
    return bool(long_words) and 2 * capitalised >= len(long_words)


def _parse_heading(line: str) -> tuple[str, int | None] | None:
    """The tidied title and printed number of a heading line, or ``None`` for prose."""
    title = _SPACE_RUN.sub(lambda m: m.group()[0], line)
    match = _CN_HEADING.fullmatch(line)
    if match and _plausible_cn_rest(match["rest"]):
        return title, parse_chinese_number(match["num"])
    match = _CN_SPECIAL_HEADING.fullmatch(line)
    if match and _plausible_cn_rest(match["rest"], need_separator=True):
        return title, None
    match = _EN_HEADING.fullmatch(line)
    if match and _plausible_en_rest(match["rest"]):
        number = _parse_english_number(match["num"])
        return (title, number) if number is not None else None
    match = _EN_SPECIAL_HEADING.fullmatch(line)
    if match and _plausible_en_rest(match["rest"]):
        return title, None
    match = _EN_NUMBERED_HEADING.fullmatch(line)
    if match and any(ch.isalpha() for ch in match["rest"]):
        return title, parse_roman_number(match["num"])
    return None


def _plausible_cn_rest(rest: str, *, need_separator: bool = False) -> bool:
    """Whether what follows ``第N回`` looks like a chapter title rather than a sentence."""
    if not rest:
        return True
    if "。" in rest or rest[-1] in "，,；;、：:":
        return False
    if rest[0].isspace() or rest[0] in ":：、.．-—·_":
        return True
    # Without a separator only a plain run of words is a title: 第三回合，张飞… is prose.
    return not need_separator and not any(ch in '，,！!？?；;：:“”"' for ch in rest)


def _plausible_en_rest(rest: str) -> bool:
    """Whether what follows ``Chapter N`` is a title (``. Down the Rabbit-Hole``)."""
    rest = rest.strip()
    if not rest:
        return True
    if rest[-1] in ",;":
        return False
    if rest[0] in ".:-—–_":
        return True
    # "Chapter one was dull" is prose; "Chapter 1 The Beginning" is a title.
    return rest[0].isupper() or rest[0].isdigit() or rest[0] in "'\"‘“("


def _is_banner(line: str) -> bool:
    return len(line) <= _MAX_BANNER_CHARS and _BANNER.search(line) is not None


def _clean_body(body: str) -> str:
    """Body text without site banners and trailing separator lines."""
    banners = _banner_lines(body)
    lines = [line for i, line in enumerate(body.split("\n")) if i not in banners]
    while lines and (not lines[-1].strip() or _DECORATION.fullmatch(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip("\n")


def _banner_lines(body: str) -> set[int]:
    """Indices of the lines that are site banners, looked at only where a banner's
    pattern matches rather than line by line."""
    found: set[int] = set()
    line, counted, position = 0, 0, 0
    while (match := _BANNER.search(body, position)) is not None:
        start = body.rfind("\n", 0, match.start()) + 1
        end = body.find("\n", match.end())
        end = len(body) if end < 0 else end
        line += body.count("\n", counted, start)
        counted = start
        if _is_banner(body[start:end].strip()):
            found.add(line)
        position = end + 1
    return found


def _visible_len(text: str) -> int:
    return sum(map(len, text.split()))


def _drop_toc_runs(candidates: list[_Candidate]) -> list[_Candidate]:
    """Remove tables of contents: short headings whose list starts over further on."""
    kept: list[_Candidate] = []
    i = 0
    while i < len(candidates):
        toc_end = _toc_end(candidates, i)
        if toc_end is None:
            kept.append(candidates[i])
            i += 1
        else:
            i = toc_end
    return kept


def _toc_end(candidates: list[_Candidate], i: int) -> int | None:
    """Index just past a table of contents that starts at candidate ``i``, if one does.

    A contents list is a run of headings with little or no text under each, and the first
    of them comes back later as the real chapter heading. Its last entry may run on into
    whatever stands between the list and the story (a preface, a notice).
    """
    first = candidates[i]
    if first.size >= TOC_ENTRY_CHARS:
        return None
    for j in range(i + 1, len(candidates)):
        if _same_heading(first.heading, candidates[j].heading):
            return j if j - i >= TOC_MIN_RUN else None
        last = j + 1 < len(candidates) and _same_heading(first.heading, candidates[j + 1].heading)
        if candidates[j].size >= TOC_ENTRY_CHARS and not last:
            return None
    return None


def _same_heading(a: _Heading, b: _Heading) -> bool:
    if a.number is not None and a.number == b.number:
        return True
    return a.title.casefold() == b.title.casefold()


def _drop_empty(candidates: list[_Candidate]) -> list[_Candidate]:
    """Remove headings with no text of their own: lone TOC lines, bare volume headings."""
    return [c for c in candidates if c.size > 0]


def _drop_duplicates(candidates: list[_Candidate]) -> list[_Candidate]:
    """Remove a chapter pasted twice in a row (same heading and same text)."""
    kept: list[_Candidate] = []
    for candidate in candidates:
        if kept and _same_chapter(kept[-1], candidate):
            continue
        kept.append(candidate)
    return kept


def _same_chapter(a: _Candidate, b: _Candidate) -> bool:
    return a.heading.title == b.heading.title and _SPACE_RUN.sub("", a.body) == _SPACE_RUN.sub(
        "", b.body
    )


def parse_chinese_number(numeral: str) -> int | None:
    """Value of a Chinese, Arabic or full-width numeral such as ``一百二十`` or ``１２``.

    A digit straight after 百 or 千 counts as units (``一百一`` is 101), the way old
    novels number their chapters; a string of bare digits (``一二〇``) is positional.
    Returns ``None`` for strings that are not numerals.
    """
    numeral = numeral.translate(_FULLWIDTH_DIGITS).strip()
    if not numeral:
        return None
    if numeral.isdigit():
        return int(numeral)
    if all(ch in _CN_DIGITS for ch in numeral):
        return int("".join(str(_CN_DIGITS[ch]) for ch in numeral))
    total = section = current = 0
    for ch in numeral:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (current or 1) * _CN_UNITS[ch]
            current = 0
        elif ch == "万":
            total += (section + current) * 10_000
            section = current = 0
        else:
            return None
    return total + section + current


def parse_roman_number(numeral: str) -> int | None:
    """Value of a Roman numeral in either case, or ``None`` if it is not one."""
    numeral = numeral.upper()
    if not numeral or not _ROMAN.fullmatch(numeral):
        return None
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for ch, nxt in zip(numeral, [*numeral[1:], ""], strict=True):
        value = values[ch]
        total += -value if nxt and values[nxt] > value else value
    return total


def _parse_english_number(token: str) -> int | None:
    token = _LEADING_THE.sub("", token.casefold()).strip()
    if token.isdigit():
        return int(token)
    roman = parse_roman_number(token)
    if roman is not None:
        return roman
    tens, _, units = token.partition("-")
    if tens in _EN_TENS:
        extra = _EN_NUMBER_WORDS.get(units, -1) if units else 0
        return _EN_TENS[tens] + extra if 0 <= extra < 10 else None
    return _EN_NUMBER_WORDS.get(token)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace-trimmed, in order.

    Chinese sentences end at ``。！？…`` and English ones at ``.!?`` followed by a space,
    in both cases together with any closing quotes or brackets; a blank line always ends
    a sentence. Line breaks inside a sentence are kept.
    """
    return [text[start:end] for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the sentences :func:`split_sentences` returns."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _append_trimmed(spans, text, start, match.end())
        start = match.end()
    _append_trimmed(spans, text, start, len(text))
    return spans


def _append_trimmed(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``max_chars`` characters on sentence boundaries.

    Sentences are packed greedily; a single sentence longer than ``max_chars`` is cut at
    its last clause break (comma, space …) that fits, or hard at the limit. Chunks are
    trimmed slices of the original text, so nothing but the whitespace between chunks is
    lost.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    chunks: list[str] = []
    chunk_start: int | None = None
    chunk_end = 0
    for start, end in sentence_spans(text):
        if chunk_start is not None and end - chunk_start <= max_chars:
            chunk_end = end
            continue
        if chunk_start is not None:
            chunks.append(text[chunk_start:chunk_end])
        if end - start <= max_chars:
            chunk_start, chunk_end = start, end
        else:
            chunks.extend(_split_long(text[start:end], max_chars))
            chunk_start = None
    if chunk_start is not None:
        chunks.append(text[chunk_start:chunk_end])
    return chunks


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pieces of one over-long sentence, each at most ``max_chars`` characters."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        cut = max_chars
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(rest, 0, max_chars)]
        if breaks and breaks[-1] > max_chars // 2:
            cut = breaks[-1]
        piece, rest = rest[:cut].strip(), rest[cut:].lstrip()
        if piece:
            pieces.append(piece)
    if rest.strip():
        pieces.append(rest.strip())
    return pieces
