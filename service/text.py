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

__all__ = [
    "EmptyTextError",
    "TextDecodeError",
    "UnencodableTextError",
    "UnknownCharsetError",
    "count_chars",
    "decode_text",
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
