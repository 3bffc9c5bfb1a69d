"""Creates a job record, then sends its message; a job is never left queued unsent.

The record is written first so that a worker never receives a message for a job that does
not exist yet. The novel is then pointed at the job as its latest, so the API can tell a
storyboard that is on its way from one that will never come. If that or the send fails, the
job is ended ``failed`` rather than left ``queued`` forever (``enqueue_failed``). A job for
a novel that went away or began to be erased meanwhile is deleted again, unsent: the
erasure may have looked for the novel's jobs before this one was written.

With an active-job quota, a user-visible job takes one of its user's slots before its
record is written (``TooManyActiveJobs`` when none is free), and a submission that does
not queue its job gives the slot back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from service import jobs
from service.failures import mark_failed
from service.jobs import ErrorInfo, Job, JobSource
from service.logs import get_logger
from service.messages import ANALYZE, JobMessage
from service.models import new_id
from service.ports import IdempotencyStore, JobCatalog, JobStore, NovelStore, Queue
from service.producers.quota import ActiveJobQuota

log = get_logger(__name__)


class EnqueueError(Exception):
    """The job could not be queued; its record has been marked failed."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class IdempotencyConflict(Exception):
    """Another request holds the key, and its job did not appear in time."""


class NovelGone(Exception):
    """The novel went away while its job was being created; nothing was queued."""


IDEMPOTENCY_TTL_S = 24 * 3600
OWNER_WAIT_S = 5.0
"""How long a repeat waits for the job of the request that claimed its key first."""
OWNER_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Submission:
    """The job a submission refers to, and whether it repeated an earlier one."""

    job: Job
    replayed: bool = False
    active_jobs: int | None = None
    """The slots the user holds after this submission, when a quota counts the job."""


class JobProducer:
    """Creates jobs and puts them on the queue.

    With ``novels``, each new job is recorded as its novel's latest job before it is sent;
    with ``quota``, each job it counts takes a slot first.
    """

    def __init__(
        self,
        jobs_store: JobStore,
        queue: Queue,
        idempotency: IdempotencyStore | None = None,
        novels: NovelStore | None = None,
        quota: ActiveJobQuota | None = None,
    ) -> None:
        self._jobs = jobs_store
        self._queue = queue
        self._idempotency = idempotency
        self._novels = novels
        self._quota = quota

    async def submit(
        self,
        novel_id: str,
        user_id: str,
        job_type: str = ANALYZE,
        *,
        callback_url: str | None = None,
        source: JobSource | None = None,
    ) -> Job:
        """Create a queued job and send its message; raise EnqueueError if the send fails.

        ``callback_url`` (already checked against the callback rules) is where the job's
        end event is POSTed; ``source`` (the novel's title and text key, when the caller
        has read the novel) saves the worker reading it again."""
        job = _new_job(novel_id, user_id, job_type, callback_url, source)
        await self._create_and_send(job)
        return job

    async def submit_once(
        self,
        novel_id: str,
        user_id: str,
        key: str | None,
        job_type: str = ANALYZE,
        *,
        callback_url: str | None = None,
        source: JobSource | None = None,
    ) -> Submission:
        """Like ``submit``, but a repeat with the same ``key`` within 24 h returns the job
        the first call created instead of a new one (with the first call's callback), and
        takes no second slot. Without a key, a plain ``submit``."""
        job = _new_job(novel_id, user_id, job_type, callback_url, source)
        if key is None or self._idempotency is None:
            return Submission(job, active_jobs=await self._create_and_send(job))
        scope = f"{user_id}:{novel_id}:{job_type}"
        owner = await self._idempotency.claim(scope, key, job.job_id, IDEMPOTENCY_TTL_S)
        if owner != job.job_id:
            earlier = await self._owners_job(owner)
            return Submission(earlier, replayed=True, active_jobs=await self._held(earlier))
        try:
            active = await self._create_and_send(job)
        except BaseException:
            # Nothing was queued under the key, so a retry of the request may claim it.
            await self._idempotency.release(scope, key, job.job_id)
            raise
        return Submission(job, active_jobs=active)

    async def _held(self, job: Job) -> int | None:
        if self._quota is None or not self._quota.counts(job):
            return None
        return await self._quota.held(job.user_id)

    async def _owners_job(self, owner: str) -> Job:
        """The job of the request that claimed the key first.

        Its record may not be written yet: that request claims, then creates. Starting a
        job of our own instead would make two jobs for one key, so wait for it.
        """
        deadline = time.monotonic() + OWNER_WAIT_S
        while (earlier := await self._jobs.get(owner)) is None:
            if time.monotonic() > deadline:
                raise IdempotencyConflict(
                    "another request with this Idempotency-Key is still in progress; retry"
                )
            await asyncio.sleep(OWNER_POLL_S)
        return earlier

    async def _create_and_send(self, job: Job) -> int | None:
        """Queue the job, in a slot of its user's when the quota counts it; the slots the
        user holds then (``None`` without a quota)."""
        if self._quota is None or not self._quota.counts(job):
            await self._queue_job(job)
            return None
        active = await self._quota.take(job)
        try:
            await self._queue_job(job)
        except BaseException:
            # The job will never run (it was failed, dropped, or never written).
            await _give_back(self._quota, job)
            raise
        return active

    async def _queue_job(self, job: Job) -> None:
        await self._jobs.create(job)
        await self._point_novel_at(job)
        message = JobMessage(
            job_id=job.job_id, novel_id=job.novel_id, user_id=job.user_id, type=job.type
        )
        try:
            await self._queue.send(message.to_body(), group=job.user_id)
        except Exception as exc:
            log.error("enqueue failed", jobId=job.job_id, error=str(exc))
            await self._abandon(job.job_id)
            raise EnqueueError(job.job_id, "the job queue is unavailable; try again later") from exc
        log.info("job queued", jobId=job.job_id, novelId=job.novel_id, userId=job.user_id)

    async def _point_novel_at(self, job: Job) -> None:
        """Make the job its novel's latest; NovelGone (the job failed) if the novel is gone."""
        if self._novels is None:
            return
        try:
            named = await self._novels.set_latest_job(job.novel_id, job.job_id, job.created_at)
        except BaseException:
            await self._abandon(job.job_id)
            raise
        if named:
            return
        novel = await self._novels.get(job.novel_id)
        if novel is None or novel.deleting_at is not None:
            await self._drop(job)
            raise NovelGone(f"novel {job.novel_id} no longer exists")

    async def _drop(self, job: Job) -> None:
        """Delete a job that must never run; a store that cannot delete gets it failed."""
        try:
            if isinstance(self._jobs, JobCatalog):
                await self._jobs.delete(job.job_id)
                return
        except Exception:
            log.exception("could not delete the job of a novel that is gone", jobId=job.job_id)
        await self._abandon(job.job_id, ErrorInfo.of("novel_not_found", "the novel is gone"))

    async def _abandon(self, job_id: str, error: ErrorInfo | None = None) -> None:
        error = error or ErrorInfo.of("enqueue_failed", "the job could not be queued")
        try:
            await mark_failed(self._jobs, job_id, jobs.abandon(error))
        except Exception:
            # The record store is failing too; the job stays queued with no message. It is
            # visible as queued with attempts 0 and an old createdAt, which operators alert on.
            log.exception("could not mark unsent job failed", jobId=job_id)


async def _give_back(quota: ActiveJobQuota, job: Job) -> None:
    try:
        await quota.give_back(job)
    except Exception:
        # The slot is reconciled away once its user reaches the limit.
        log.exception("could not give back the slot of an unqueued job", jobId=job.job_id)


def _new_job(
    novel_id: str,
    user_id: str,
    job_type: str,
    callback_url: str | None,
    source: JobSource | None,
) -> Job:
    return Job(
        job_id=new_id(),
        novel_id=novel_id,
        user_id=user_id,
        type=job_type,
        callback_url=callback_url,
        source=source,
    )
