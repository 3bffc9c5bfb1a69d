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
from service.jobs import ErrorInfo
from service.logs import get_logger
from service.messages import JobMessage
from service.ports import JobStore, Message

log = get_logger(__name__)

EXHAUSTED = ErrorInfo(
    code="retries_exhausted",
    message="the job failed on every delivery and was moved to the dead-letter queue",
)


class DeadLetterHandler:
    """Marks the jobs of dead-lettered messages failed and keeps the messages."""

    def __init__(self, store: JobStore, hold_s: int) -> None:
        self._store = store
        self._hold = Outcome.retry(hold_s)

    async def __call__(self, delivery: Message) -> Outcome:
        """Note one dead-lettered message."""
        try:
            message = JobMessage.model_validate_json(delivery.body)
        except ValidationError:
            return self._hold  # poison: kept for an operator to inspect
        structlog.contextvars.bind_contextvars(jobId=message.job_id)
        if await self._store.apply(message.job_id, jobs.exhausted(EXHAUSTED)) is not None:
            log.warning("job dead-lettered", code=EXHAUSTED.code)
        return self._hold
