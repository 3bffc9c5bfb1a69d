"""Inspecting the dead-letter queue and moving its messages back to the main queue.

Both walk the DLQ with receives (a message received here is hidden briefly, then made
visible again unless it was moved). A redriven job is reset to ``queued`` with no attempts
and no error before its message is sent, so its first new delivery starts it cleanly.
Poison messages (no readable job) and jobs that can no longer run (completed, cancelled,
deleted) stay in the DLQ.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from pydantic import ValidationError

from service import jobs
from service.backends.backend import Backend
from service.messages import JobMessage
from service.ports import Message

WALK_VISIBILITY_S = 60


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message in the DLQ."""

    message_id: str
    job_id: str | None
    size: int
    sha256: str


@dataclass(slots=True)
class RedriveReport:
    """What a redrive did."""

    moved: list[str] = field(default_factory=list)
    kept: list[DeadLetter] = field(default_factory=list)
    hidden: int = 0


def describe(message: Message) -> DeadLetter:
    """A message's identity, without its body (which may hold user text)."""
    raw = message.body.encode("utf-8", "replace")
    try:
        job_id: str | None = JobMessage.model_validate_json(message.body).job_id
    except ValidationError:
        job_id = None
    return DeadLetter(message.message_id, job_id, len(raw), hashlib.sha256(raw).hexdigest())


async def _walk(backend: Backend) -> AsyncIterator[Message]:
    seen: set[str] = set()
    while True:
        batch = await backend.dlq.receive(max_messages=10, wait_s=1, visibility_s=WALK_VISIBILITY_S)
        fresh = [m for m in batch if m.message_id not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message.message_id)
            yield message


async def list_dead_letters(backend: Backend) -> tuple[list[DeadLetter], int]:
    """Every visible DLQ message, and how many others are hidden right now."""
    found: list[Message] = [m async for m in _walk(backend)]
    await backend.dlq.change_visibility_batch([m.receipt for m in found], 0)
    hidden = (await backend.dlq.depth()).in_flight
    return [describe(m) for m in found], hidden


async def redrive(backend: Backend, job_ids: Collection[str] | None) -> RedriveReport:
    """Move the messages of ``job_ids`` (every job's when ``None``) back to the main queue."""
    report = RedriveReport()
    keep: list[str] = []
    async for message in _walk(backend):
        letter = describe(message)
        chosen = letter.job_id is not None and (job_ids is None or letter.job_id in job_ids)
        if chosen and letter.job_id and await _restart(backend, letter.job_id, message):
            report.moved.append(letter.job_id)
        else:
            report.kept.append(letter)
            keep.append(message.receipt)
    await backend.dlq.change_visibility_batch(keep, 0)
    report.hidden = (await backend.dlq.depth()).in_flight - len(keep)
    return report


async def _restart(backend: Backend, job_id: str, message: Message) -> bool:
    if await backend.jobs.apply(job_id, jobs.requeue()) is None:
        return False
    # With its attributes, the redriven job's next attempt joins the trace it started in.
    await backend.queue.send(message.body, group=message.group, attributes=message.attributes)
    await backend.dlq.delete_batch([message.receipt])
    return True
