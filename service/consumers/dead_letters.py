"""The dead-letter consumer: a message arriving in the DLQ ends its job ``failed``.

The message is kept for redrive (``storyboard dlq redrive``): after noting it, the handler
hides it for ``hold_s`` and sees it again only then, so the DLQ is read rarely and marking
is idempotent (a job that has already ended is left alone).
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError

from service import jobs
from service.consumers.outcome import Outcome
from service.failures import mark_failed
from service.messages import JobMessage
from service.ports import JobStore, Message


class DeadLetterHandler:
    """Marks the jobs of dead-lettered messages failed and keeps the messages."""

    def __init__(self, store: JobStore, hold_s: int) -> None:
        self._store = store
        self._hold = Outcome.retry(hold_s)

    async def __call__(self, message: Message) -> Outcome:
        """Note one dead-lettered message."""
        try:
            body = JobMessage.model_validate_json(message.body)
        except ValidationError:
            return self._hold  # poison: kept for an operator to inspect
        structlog.contextvars.bind_contextvars(jobId=body.job_id, userId=body.user_id)
        await mark_failed(self._store, body.job_id, jobs.exhausted(jobs.retries_exhausted(None)))
        return self._hold
