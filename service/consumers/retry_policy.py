"""What happens after a failed attempt: the backoff, and the policy that applies it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from service import jobs
from service.consumers.job_types import Delays, JobEnded
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


SCHEDULE_MAX_WAIT_S = MAX_VISIBILITY_S - 300
"""The longest wait a schedule may ask for. SQS counts its 12 h visibility limit from the
receive, and the attempt that failed took some of that; five minutes cover it."""


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
class Schedule:
    """Fixed waits, one per retry, as in the Standard Webhooks spec's example.

    Each wait is one hidden message, so a retry costs one receive and a delivery's attempts
    fit the queue's redrive limit; the price is that no wait can exceed
    :data:`SCHEDULE_MAX_WAIT_S` (the spec's 14, 20 and 24 h become just under 12 h).
    """

    delays_s: tuple[int, ...]

    @property
    def max_attempts(self) -> int:
        """The first attempt and one per wait."""
        return len(self.delays_s) + 1

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> int:
        """The wait after failed attempt ``attempt``; the last wait repeats past the end."""
        index = max(0, min(attempt, len(self.delays_s)) - 1)
        return cap_wait(self.delays_s[index])


def cap_wait(seconds: float) -> int:
    """A wait in whole seconds that one hidden message can last: 1 s to just under 12 h."""
    return max(1, min(SCHEDULE_MAX_WAIT_S, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Turns a failed attempt into the job's next state and the message's fate.

    The same rules for every job type, with each type's own delays and attempts: a
    permanent failure ends the job ``failed``; a transient one is retried after a backoff
    (or the wait the error names) until ``max_attempts`` attempts have started, and then
    dead-lettered. When the store cannot record the failure either, the message still
    comes back after the backoff, not after a whole visibility timeout, and the next
    delivery takes the job over from the stale ``running`` record. A job that ends is
    announced (``on_ended``) before its message goes.
    """

    store: JobStore
    backoff: Delays
    max_attempts: int
    on_ended: JobEnded | None = None

    async def settle(self, job: Job, delivery: int, error: JobError) -> tuple[Outcome, str]:
        """Record the failure; the outcome for the message and a label for metrics."""
        info = ErrorInfo.of(error.code, error.message)
        if not error.transient:
            return await self._record(job, jobs.fail(delivery, info), DELETE, "failed")
        if job.attempts >= self.max_attempts:
            exhausted = jobs.retries_exhausted(job.attempts, error.message)
            return await self._record(job, jobs.fail(delivery, exhausted), DEAD_LETTER, "exhausted")
        delay = self._delay(job, error)
        next_at = utcnow() + timedelta(seconds=delay)
        later = jobs.retry_later(delivery, info, next_at)
        log.warning("job attempt failed; will retry", code=error.code, retry_in_s=delay)
        return await self._record(job, later, Outcome.retry(delay), "retried")

    def _delay(self, job: Job, error: JobError) -> int:
        if error.retry_after_s is not None:
            return max(1, min(MAX_VISIBILITY_S, error.retry_after_s))
        return self.backoff.delay_s(job.attempts)

    async def _record(
        self, job: Job, transition: Transition, outcome: Outcome, label: str
    ) -> tuple[Outcome, str]:
        try:
            if transition.changes.get("status") == JobStatus.FAILED.value:
                failed = await mark_failed(self.store, job.job_id, transition)
                # Unannounced, the message is kept so that its redelivery announces the end
                # again; a dead letter goes all the same: the dead-letter consumer announces.
                announced = failed is None or await self._announce(failed)
                if not announced and outcome is DELETE:
                    return Outcome.retry(self.backoff.delay_s(job.attempts)), "unannounced"
            else:
                await self.store.apply(job.job_id, transition)
        except Exception as exc:
            delay = self.backoff.delay_s(job.attempts)
            log.warning("could not record the failure; retrying soon", error=str(exc))
            return Outcome.retry(delay), "unrecorded"
        return outcome, label

    async def _announce(self, job: Job) -> bool:
        if self.on_ended is None:
            return True
        return await announce(self.on_ended, job)


async def announce(on_ended: JobEnded, job: Job) -> bool:
    """Announce an ended job; False (logged) if that failed and must be tried again."""
    try:
        await on_ended(job)
    except Exception as exc:
        log.warning("could not queue the job's end events; will retry", error=str(exc))
        return False
    return True
