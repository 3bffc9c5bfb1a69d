"""The dead-letter consumer: a message arriving in the DLQ ends its job ``failed``.

The message is kept for redrive (``storyboard dlq redrive``): after noting it, the handler
hides it for ``hold_s`` and sees it again only then, so the DLQ is read rarely and marking
is idempotent (a job that has already ended is left alone).
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError

from service import jobs
from service.consumers.job_types import JobEnded
from service.consumers.outcome import Outcome
from service.consumers.retry_policy import announce
from service.failures import mark_failed
from service.messages import JobMessage
from service.ports import JobStore, Message


class DeadLetterHandler:
    """Marks the jobs of dead-lettered messages failed and keeps the messages.

    Each ended job is announced (``on_ended``) every time its message is seen, so an
    announcement that failed, here or in the worker that dead-lettered it, is made up.
    """

    def __init__(self, store: JobStore, hold_s: int, on_ended: JobEnded | None = None) -> None:
        self._store = store
        self._hold = Outcome.retry(hold_s)
        self._on_ended = on_ended

    async def __call__(self, message: Message) -> Outcome:
        """Note one dead-lettered message."""
        try:
            body = JobMessage.model_validate_json(message.body)
        except ValidationError:
            return self._hold  # poison: kept for an operator to inspect
        structlog.contextvars.bind_contextvars(jobId=body.job_id, userId=body.user_id)
        exhausted = jobs.exhausted(jobs.retries_exhausted(None))
        failed = await mark_failed(self._store, body.job_id, exhausted)
        if self._on_ended is not None:
            ended = failed or await self._store.get(body.job_id)
            if ended is not None and ended.status in jobs.ENDED:
                await announce(self._on_ended, ended)
        return self._hold
