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
from service.jobs import ErrorInfo, Job, JobStatus, Transition
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
    one is retried after a backoff until ``max_attempts`` attempts have started, and then
    dead-lettered. When the store cannot record the failure either, the message still
    comes back after the backoff, not after a whole visibility timeout, and the next
    delivery takes the job over from the stale ``running`` record.
    """

    store: JobStore
    backoff: Backoff
    max_attempts: int

    async def settle(self, job: Job, delivery: int, error: JobError) -> tuple[Outcome, str]:
        """Record the failure; the outcome for the message and a label for metrics."""
        info = ErrorInfo.of(error.code, error.message)
        if not error.transient:
            return await self._record(job, jobs.fail(delivery, info), DELETE, "failed")
        if job.attempts >= self.max_attempts:
            exhausted = jobs.retries_exhausted(job.attempts, error.message)
            return await self._record(job, jobs.fail(delivery, exhausted), DEAD_LETTER, "exhausted")
        delay = self.backoff.delay_s(job.attempts)
        next_at = utcnow() + timedelta(seconds=delay)
        later = jobs.retry_later(delivery, info, next_at)
        log.warning("job attempt failed; will retry", code=error.code, retry_in_s=delay)
        return await self._record(job, later, Outcome.retry(delay), "retried")

    async def _record(
        self, job: Job, transition: Transition, outcome: Outcome, label: str
    ) -> tuple[Outcome, str]:
        try:
            if transition.changes.get("status") == JobStatus.FAILED.value:
                await mark_failed(self.store, job.job_id, transition)
            else:
                await self.store.apply(job.job_id, transition)
        except Exception as exc:
            delay = self.backoff.delay_s(job.attempts)
            log.warning("could not record the failure; retrying soon", error=str(exc))
            return Outcome.retry(delay), "unrecorded"
        return outcome, label
