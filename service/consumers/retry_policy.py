"""What happens after a failed attempt: the backoff, and the policy that applies it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from service import jobs
from service.consumers.outcome import DEAD_LETTER, DELETE, Outcome
from service.errors import JobError
from service.failures import mark_failed
from service.jobs import ErrorInfo
from service.logs import get_logger
from service.models import utcnow
from service.ports import JobStore
from service.queue_limits import MAX_VISIBILITY_S

_RNG = random.Random()

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff from the receive count, with jitter, capped.

    Half the delay is fixed and half random ("equal jitter"), so retries of jobs that failed
    together spread out without ever retrying at once.
    """

    base_s: float
    cap_s: float

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> int:
        """Seconds to hide the message after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        jittered = ceiling / 2 + (rng or _RNG).uniform(0, ceiling / 2)
        return max(1, min(MAX_VISIBILITY_S, math.ceil(jittered)))


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Turns a failed attempt into the job's next state and the message's fate.

    The same for every job type: a permanent failure ends the job ``failed``; a transient
    one is retried after a backoff until the delivery limit, and then dead-lettered.
    """

    store: JobStore
    backoff: Backoff
    max_receive_count: int

    async def settle(self, job_id: str, attempt: int, error: JobError) -> tuple[Outcome, str]:
        """Record the failure; the outcome for the message and a label for metrics."""
        info = ErrorInfo.of(error.code, error.message)
        if not error.transient:
            await mark_failed(self.store, job_id, jobs.fail(attempt, info))
            return DELETE, "failed"
        if attempt >= self.max_receive_count:
            exhausted = jobs.retries_exhausted(attempt, error.message)
            await mark_failed(self.store, job_id, jobs.fail(attempt, exhausted))
            return DEAD_LETTER, "exhausted"
        delay = self.backoff.delay_s(attempt)
        next_at = utcnow() + timedelta(seconds=delay)
        await self.store.apply(job_id, jobs.retry_later(attempt, info, next_at))
        log.warning("job attempt failed; will retry", code=error.code, retry_in_s=delay)
        return Outcome.retry(delay), "retried"
