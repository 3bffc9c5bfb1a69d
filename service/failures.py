"""Ending a job ``failed``: the one write and the one log line, whoever decides it.

The worker (a permanent failure, or retries run out), the dead-letter consumer and the
producer (a message that could not be sent) each pick the transition whose guard fits
their situation; the write and its record in the logs are the same for all three.
"""

from __future__ import annotations

from service.jobs import Job, Transition
from service.logs import get_logger
from service.ports import JobStore

log = get_logger(__name__)


async def mark_failed(store: JobStore, job_id: str, transition: Transition) -> Job | None:
    """Apply a failing transition; the failed job, or ``None`` when its guard refused."""
    job = await store.apply(job_id, transition)
    if job is not None and job.error is not None:
        log.warning("job failed", jobId=job_id, code=job.error.code)
    return job
