"""Storing an uploaded novel, and the limits an upload must keep to.

The API and the one-shot ``storyboard analyze`` apply the same limits with the same
words, so a file refused by one is refused by the other.
"""

from __future__ import annotations

from service.backends.backend import Backend
from service.models import new_id
from service.novels import Novel, text_key
from service.settings import Settings

BODY_TOO_LARGE = "request body is too large"
"""What the API's 413 says."""


class UploadRefused(Exception):
    """An upload over one of the limits: the HTTP status and error code the API answers
    with, and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_upload_size(size: int, settings: Settings) -> None:
    """Refuse an upload of ``size`` bytes over ``max_body_bytes`` (the API's 413)."""
    limit = settings.max_body_bytes
    if size > limit:
        raise UploadRefused(
            413,
            "payload_too_large",
            f"{BODY_TOO_LARGE}: the limit is {limit} bytes (STORYBOARD_MAX_BODY_BYTES)",
        )


def check_novel_length(text: str, settings: Settings) -> None:
    """Refuse a decoded text over ``max_novel_chars`` characters (the API's 422)."""
    limit = settings.max_novel_chars
    if len(text) > limit:
        raise UploadRefused(
            422, "novel_too_large", f"the novel has {len(text)} characters; the limit is {limit}"
        )


async def store_novel(backend: Backend, user_id: str, title: str, text: str) -> Novel:
    """Write the text first, then the record, so a record never points at a missing text."""
    novel_id = new_id()
    key = text_key(novel_id)
    await backend.blobs.put(key, text.encode("utf-8"), content_type="text/plain; charset=utf-8")
    novel = Novel(novel_id=novel_id, user_id=user_id, title=title, chars=len(text), text_key=key)
    await backend.novels.create(novel)
    return novel
