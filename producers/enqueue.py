"""Creates a job record, then sends its message; a job is never left queued unsent.

The record is written first so that a worker never receives a message for a job that does
not exist yet. If the send then fails, the job is ended ``failed`` with ``enqueue_failed``
rather than left ``queued`` forever.
"""

from __future__ import annotations

import uuid

from service import jobs
from service.jobs import ErrorInfo, Job
from service.logs import get_logger
from service.messages import ANALYZE, JobMessage
from service.ports import JobStore, Queue

log = get_logger(__name__)


class EnqueueError(Exception):
    """The job could not be queued; its record has been marked failed."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


def new_id() -> str:
    """A fresh opaque id (UUID4 hex, safe in keys and paths)."""
    return uuid.uuid4().hex


class JobProducer:
    """Creates jobs and puts them on the queue."""

    def __init__(self, jobs_store: JobStore, queue: Queue) -> None:
        self._jobs = jobs_store
        self._queue = queue

    async def submit(self, novel_id: str, user_id: str, job_type: str = ANALYZE) -> Job:
        """Create a queued job and send its message; raise EnqueueError if the send fails."""
        job = Job(job_id=new_id(), novel_id=novel_id, user_id=user_id, type=job_type)
        await self._jobs.create(job)
        message = JobMessage(job_id=job.job_id, novel_id=novel_id, user_id=user_id, type=job_type)
        try:
            await self._queue.send(message.to_body())
        except Exception as exc:
            log.error("enqueue failed", jobId=job.job_id, error=str(exc))
            await self._abandon(job.job_id)
            raise EnqueueError(job.job_id, "the job queue is unavailable; try again later") from exc
        log.info("job queued", jobId=job.job_id, novelId=novel_id, userId=user_id)
        return job

    async def _abandon(self, job_id: str) -> None:
        error = ErrorInfo(code="enqueue_failed", message="the job could not be queued")
        try:
            await self._jobs.apply(job_id, jobs.abandon(error))
        except Exception:
            # The record store is failing too; the job stays queued with no message. It is
            # visible as queued with attempts 0 and an old createdAt, which operators alert on.
            log.exception("could not mark unsent job failed", jobId=job_id)
