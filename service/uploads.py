"""Storing an uploaded novel: its text in the blob store, its record in the novel store."""

from __future__ import annotations

from service.backends.backend import Backend
from service.models import new_id
from service.novels import Novel, text_key


async def store_novel(backend: Backend, user_id: str, title: str, text: str) -> Novel:
    """Write the text first, then the record, so a record never points at a missing text."""
    novel_id = new_id()
    key = text_key(novel_id)
    await backend.blobs.put(key, text.encode("utf-8"), content_type="text/plain; charset=utf-8")
    novel = Novel(novel_id=novel_id, user_id=user_id, title=title, chars=len(text), text_key=key)
    await backend.novels.create(novel)
    return novel
