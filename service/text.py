"""Decoding and normalisation of uploaded novel bytes.

Uploads arrive as raw bytes in whatever encoding the author's editor used. Chinese novels
circulate mostly as GB18030/GBK, everything else as UTF-8, and a few Windows editors write
UTF-16 with a byte order mark; a client that knows the encoding can declare it instead.
:func:`load_novel_bytes` turns any of these into one canonical string that the analyzers
can rely on: ``\\n`` line endings, no control characters, no trailing blanks, at most two
blank lines in a row and nothing real lost.
"""

from __future__ import annotations

import codecs
import re
from itertools import takewhile

__all__ = [
    "EmptyTextError",
    "TextDecodeError",
    "UnencodableTextError",
    "UnknownCharsetError",
    "count_chars",
    "decode_text",
    "guess_title",
    "load_novel_bytes",
    "normalise_text",
    "require_encodable",
]

# Longest marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Encodings tried, in order, when the bytes carry no byte order mark. UTF-8 goes first
# because it is strict enough that GB18030 text practically never passes it by accident,
# while GB18030 accepts most byte soup and so has to be the last resort.
_FALLBACK_ENCODINGS = ("utf-8", "gb18030")

# Python codecs a client must not pick by naming them as a charset: byte transforms, and
# text codecs that parse escapes or IDNA labels (punycode decodes in quadratic time).
_NOT_CHARSETS = frozenset(
    {
        "base64", "bz2", "hex", "quopri", "rot-13", "uu", "zlib",
        "idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined",
    }
)  # fmt: skip

# Vertical tab, form feed and the Unicode separators break lines in the source; turning
# them into newlines keeps the words on either side apart instead of gluing them.
_LINE_BREAKS = str.maketrans({"\v": "\n", "\f": "\n", "\u2028": "\n", "\u2029": "\n\n"})
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)
_EXCESS_BLANK_LINES = re.compile(r"\n{4,}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class TextDecodeError(ValueError):
    """The bytes are not text in any encoding the service accepts."""


class UnknownCharsetError(ValueError):
    """The declared charset names no character set the service decodes."""


class EmptyTextError(ValueError):
    """The upload holds no text once blanks and control characters are removed."""


class UnencodableTextError(ValueError):
    """The text holds a lone surrogate, half of a UTF-16 pair, which UTF-8 cannot store."""


def require_encodable(text: str) -> str:
    """Return ``text`` unchanged, or raise :class:`UnencodableTextError` at its first lone
    surrogate.

    Strict UTF-8 or GB18030 never decodes to one, but a JSON ``\\uD800`` escape or UTF-7
    can spell half a pair on its own. Such a string cannot be written as UTF-8, so it is
    refused where it comes in rather than failing where it is stored.
    """
    found = _SURROGATE.search(text)
    if found is not None:
        raise UnencodableTextError(
            f"lone surrogate U+{ord(found.group()):04X} at character {found.start()} "
            "is not valid Unicode text"
        )
    return text


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Decode novel bytes strictly in the declared ``charset``; without one, a byte order
    mark decides, else strict UTF-8, else GB18030.

    The byte order mark itself is not part of the result. Raises
    :class:`UnknownCharsetError` for a ``charset`` that is no character set, and
    :class:`TextDecodeError` when the bytes do not decode in the chosen encoding(s).
    """
    if charset is not None:
        return _decode_strict(data, (_checked_charset(charset),))
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode_strict(data[len(bom) :], (encoding,))
    return _decode_strict(data, _FALLBACK_ENCODINGS)


def _checked_charset(charset: str) -> str:
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):
        name = None
    if name is None or name in _NOT_CHARSETS:
        raise UnknownCharsetError(f"unknown charset {charset[:40]!r}")
    return charset


def _decode_strict(data: bytes, encodings: tuple[str, ...]) -> str:
    failure: UnicodeError | None = None
    for encoding in encodings:
        try:
            return data.decode(encoding, errors="strict")
        except UnicodeError as exc:  # a few codecs raise the base class, not a decode error
            failure = exc
        except LookupError:  # a codec Python knows, but for bytes to bytes
            raise UnknownCharsetError(f"unknown charset {encoding[:40]!r}") from None
    tried = " or ".join(encodings)
    where = ""
    if isinstance(failure, UnicodeDecodeError):
        where = f" (first bad byte at offset {failure.start})"
    raise TextDecodeError(f"the upload is not valid {tried} text{where}")


def normalise_text(text: str) -> str:
    """Canonical form of a decoded novel.

    Line endings become ``\\n``; a leading U+FEFF and C0 control characters other than
    ``\\n`` and ``\\t`` are removed; trailing whitespace (including the ideographic space
    U+3000) is stripped from every line; runs of three or more blank lines shrink to two;
    blank lines at the start and end go. Indentation and every other character stay.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.removeprefix("\ufeff")
    text = text.translate(_LINE_BREAKS)
    text = _CONTROL_CHARS.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _EXCESS_BLANK_LINES.sub("\n\n\n", text)
    return text.strip("\n")


def load_novel_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode (see :func:`decode_text`) and normalise an upload; raise
    :class:`EmptyTextError` if nothing is left."""
    text = normalise_text(decode_text(data, charset))
    if not text.strip():
        raise EmptyTextError("the upload contains no text")
    return text


def count_chars(text: str) -> int:
    """Length of the text in characters (code points), the unit limits are expressed in."""
    return len(text)


# ------------------------------------------------------------------------------- titles

# A title line is short: longer lines are prose, a blurb or a hard-wrapped paragraph.
MAX_TITLE_LINE_CHARS = 60
MAX_TITLE_LINE_WORDS = 12
# A declared title (``Title:`` in a Project Gutenberg header) may be longer.
MAX_DECLARED_TITLE_CHARS = 200
# Where declared titles are looked for: a Gutenberg header, or a file's front matter.
_HEADER_LINES = 60
_FRONT_LINES = 8

_GUTENBERG_FIRST = re.compile(
    r"\W*(?:the\s+)?project\s+gutenberg(?:'s|’s)?\s+"
    r"(?:e-?book|e-?text|book)?(?:\s+of|,)?\s*(?P<title>.*)",
    re.IGNORECASE,
)
_GUTENBERG_START = re.compile(r"\*{3}\s*start of (?:the|this) project gutenberg", re.IGNORECASE)
_DECLARED = re.compile(r"(?:title|书名|書名|标题|標題)\s*[:：]\s*(?P<title>.+)", re.IGNORECASE)
_BYLINE = re.compile(r",?\s+by\s+\S.*$", re.IGNORECASE)
_WRAPPED = re.compile(r"《(?P<a>[^》]+)》|〈(?P<b>[^〉]+)〉|【(?P<c>[^】]+)】|“(?P<d>[^”]+)”")
# Chapter, volume and section headings, contents and prefaces: they open many files
# without a title line and must not be taken for one.
_HEADING = re.compile(
    r"第\s*[零〇一二两三四五六七八九十百千万\d０-９]+\s*[回章节節卷集部篇]"
    r"|(?:序章|序幕|序言|序|楔子|引子|前言|目录|目錄|正文|尾声)(?:\W|$)"
    r"|(?:chapter|chap\.|book|part|volume|vol\.|canto|letter|section)\s+"
    r"(?:[ivxlcdm]+\b|\d+|the\s|one|two|three|first|second)"
    r"|(?:prologue|epilogue|preface|foreword|introduction|contents|table of contents)\b"
    # A bare chapter number: "IV.", "12", "3)". Four digits may be a year: "1984" is a title.
    r"|(?:(?=[ivxlcdm])m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})|\d{1,3})"
    r"(?:[.:)]|\s*$)",
    re.IGNORECASE,
)
# Lines that open a file without saying anything: site banners and decoration.
_NOISE = re.compile(r"https?://|www\.|txt下载|^[\W_]+$", re.IGNORECASE)
_SENTENCE_PUNCTUATION = re.compile(r"[。！？；，“”「」『』]|[.,;:：、…]$|^[\"'‘“「『(\-—]")


def guess_title(text: str) -> str | None:
    """The title a novel's text gives itself, or ``None`` if it gives none.

    In order: a Project Gutenberg header's ``Title:`` field, or the title in its first
    line (``The Project Gutenberg eBook of X, by Y``); a ``Title:`` / ``书名：`` line in
    the front matter; else the first line that says anything, when it is short, stands
    alone (a blank line, an indented paragraph, a heading or a short line follows) and
    reads like a title: not a chapter heading, contents or preface, not a sentence, not
    dialogue. ``《三国演义》`` gives ``三国演义``.
    """
    lines = text.lstrip("\ufeff").split("\n", _HEADER_LINES + 1)[:_HEADER_LINES]
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    gutenberg = _GUTENBERG_FIRST.fullmatch(lines[first].strip())
    if gutenberg is not None:
        return _gutenberg_title(lines[first:], gutenberg["title"])
    declared = _declared_title(lines[first : first + _FRONT_LINES])
    if declared is not None:
        return declared
    return _title_line(lines, first)


def _gutenberg_title(header: list[str], in_first_line: str) -> str | None:
    # The header ends where the book starts; a "Title:" line after that is the book's own.
    ends = [i for i, line in enumerate(header) if _GUTENBERG_START.match(line.strip())]
    declared = _declared_title(header[: ends[0]] if ends else header)
    return declared or _tidy(_BYLINE.sub("", in_first_line), MAX_DECLARED_TITLE_CHARS)


def _declared_title(front: list[str]) -> str | None:
    """The value of a ``Title:`` line, with the indented lines that continue it."""
    for i, line in enumerate(front):
        match = _DECLARED.fullmatch(line.strip())
        if match is not None:
            more = takewhile(lambda rest: rest[:1].isspace() and rest.strip(), front[i + 1 :])
            return _tidy(" ".join([match["title"], *more]), MAX_DECLARED_TITLE_CHARS)
    return None


def _title_line(lines: list[str], index: int) -> str | None:
    """The first line that is not noise, if it reads as a title."""
    while index < len(lines) and (not lines[index].strip() or _NOISE.search(lines[index])):
        index += 1
    if index >= len(lines):
        return None
    line = _unwrapped(lines[index].strip())
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if not _reads_as_title(line) or not _stands_alone(following):
        return None
    return _tidy(line, MAX_TITLE_LINE_CHARS)


def _unwrapped(line: str) -> str:
    match = _WRAPPED.fullmatch(line)
    return next(g for g in match.groups() if g) if match else line


def _reads_as_title(line: str) -> bool:
    words = line.split()
    return (
        0 < len(line) <= MAX_TITLE_LINE_CHARS
        and len(words) <= MAX_TITLE_LINE_WORDS
        and any(ch.isalnum() for ch in line)
        # A Latin-script title starts with a capital (or a digit); prose may not.
        and not line[0].islower()
        and _HEADING.match(line) is None
        and _SENTENCE_PUNCTUATION.search(line) is None
    )


def _stands_alone(following: str) -> bool:
    """Whether the next line starts something new, rather than continuing a paragraph."""
    stripped = following.strip()
    return (
        not stripped
        or following[:1].isspace()
        or len(stripped) <= MAX_TITLE_LINE_CHARS // 2
        or _HEADING.match(stripped) is not None
    )


def _tidy(title: str, limit: int) -> str | None:
    title = " ".join(title.split()).strip(" .,:;-—")
    return title if 0 < len(title) <= limit else None
