"""Cursors for the newest-first lists, shared by every backend.

A cursor names the position of the last record a page returned (``<createdAt>#<id>``, the
sort key both backends order by) and carries a digest of that position and of the list it
belongs to: the user, the kind of record and the filters. A cursor that is malformed,
altered, or issued for another user or other filters fails the digest and raises
:class:`~service.ports.InvalidCursor`.

The digest has no secret in it, so it makes cursors tamper-evident, not unforgeable. What
keeps users apart is the query: every list is scoped to the caller's own records, so even a
forged position can only move within them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence

from service.ports import InvalidCursor

VERSION = 1
MAX_CURSOR_CHARS = 512
_POSITION = re.compile(r"[\w:.+\-]{1,64}#[\w\-]{1,128}", re.ASCII)
"""What our positions look like: a timestamp, ``#``, a record id."""


def list_scope(kind: str, user_id: str, *filters: str | None) -> str:
    """The identity of one list: what a cursor is bound to."""
    return json.dumps([kind, user_id, *filters], ensure_ascii=True)


def position(sort_key: str, record_id: str) -> str:
    """The position of a record in its list."""
    return f"{sort_key}#{record_id}"


def split_position(value: str) -> tuple[str, str]:
    """``(sort_key, record_id)`` of a position."""
    sort_key, _, record_id = value.partition("#")
    return sort_key, record_id


def encode_cursor(scope: str, after: str) -> str:
    """The opaque cursor of the list ``scope`` that resumes after position ``after``."""
    body = {"v": VERSION, "p": after, "d": _digest(scope, after)}
    raw = json.dumps(body, separators=(",", ":")).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(scope: str, cursor: str) -> str:
    """The position a cursor of the list ``scope`` resumes after; InvalidCursor if the
    list did not issue it."""
    if not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise InvalidCursor("the cursor is empty or too long")
    try:
        padded = cursor.encode("ascii") + b"=" * (-len(cursor) % 4)
        body = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    except (ValueError, binascii.Error):  # UnicodeError and JSONDecodeError are ValueErrors
        raise InvalidCursor("the cursor is not one this API issued") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise InvalidCursor("the cursor is not one this API issued")
    after, digest = body.get("p"), body.get("d")
    if not isinstance(after, str) or not isinstance(digest, str) or not _POSITION.fullmatch(after):
        raise InvalidCursor("the cursor is not one this API issued")
    if not hmac.compare_digest(digest, _digest(scope, after)):
        raise InvalidCursor("the cursor belongs to another list, or was altered")
    return after


def next_cursor(scope: str, positions: Sequence[str], limit: int) -> str | None:
    """The cursor after the ``limit``-th of ``positions`` (one more was fetched than a page
    holds, to tell whether another page follows), or ``None`` on the last page."""
    if len(positions) <= limit:
        return None
    return encode_cursor(scope, positions[limit - 1])


def _digest(scope: str, after: str) -> str:
    text = f"{scope}\n{after}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:32]
