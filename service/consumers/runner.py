"""Runs each received message through its job type's handler under one policy for every type.

Parse the body (a poison message goes to the dead-letter queue at once), take the job with
the attempt-guarded ``start``, run the handler, then complete the job or hand the failure
to the :class:`FailurePolicy`. The message's receive count is the delivery number, and
every write is guarded by it (see ``service.jobs``), so a stale or duplicate delivery can
never move a job backwards or overwrite a newer one. Only a delivery that starts the job
counts as an attempt.

Each attempt runs under :mod:`~service.consumers.stopping`: past its deadline it is stopped
and fails for good with ``job_timeout``. A job cancelled or deleted (its novel erased) under
a running attempt ends that attempt at its next guarded write or the watcher's next read of
the job, whichever comes first, and a handler that implements :class:`Discarding` removes
what the attempt wrote: a blob stored just before the cancel landed would otherwise stay
behind. A later delivery of such a job does the same, so a removal that failed is tried
again.
A handler that implements :class:`Superseding` also removes what superseded deliveries of
a job that did complete wrote: the delivery that completes removes its predecessors'
outputs, and a delivery whose completion a newer one refused removes its own.

Once a job has ended, the runner announces it (``on_ended``) before its message is deleted,
and again on any redelivery of an ended job, so a crash in between loses no end event.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import structlog
from pydantic import ValidationError

from service import jobs
from service.consumers.job_types import JobContext, JobEnded, JobHandler, JobResult
from service.consumers.outcome import DEAD_LETTER, DELETE, Outcome
from service.consumers.progress import JobStopped, ProgressWriter
from service.consumers.retry_policy import FailurePolicy, announce
from service.consumers.stopping import StopRules, run_stoppable
from service.errors import JobError
from service.jobs import Job, JobStatus, Transition
from service.logs import get_logger
from service.messages import JobMessage
from service.metrics import Metrics
from service.novels import StoryboardRef
from service.ports import JobStore, Message, PublishingJobStore

log = get_logger(__name__)

ANNOUNCE_RETRY_S = 10
"""How soon a message comes back when its job's end could not be announced."""


@runtime_checkable
class Publishing(Protocol):
    """A handler whose ``on_completed`` only points the job's novel at its result, so that a
    store that can (:class:`~service.ports.PublishingJobStore`) writes it with the
    completion, in one request."""

    def publication(self, job: Job) -> StoryboardRef | None:
        """The pointer ``on_completed`` would write for the completed ``job``."""
        ...


@runtime_checkable
class Discarding(Protocol):
    """A handler that can remove what an attempt of a job that will never complete wrote."""

    async def on_discarded(self, job_id: str, novel_id: str) -> None:
        """Delete the job's outputs; idempotent, as it may run more than once."""
        ...


@runtime_checkable
class Superseding(Protocol):
    """A handler that can remove what given deliveries of a job wrote, once they can never
    complete (a newer delivery owns the job, or completed it)."""

    async def on_superseded(self, job: Job, deliveries: Sequence[int]) -> None:
        """Delete those deliveries' outputs by their known keys; missing ones are fine."""
        ...


class JobRunner:
    """The consumer's dispatch: one received message in, its fate out."""

    def __init__(
        self,
        handlers: Mapping[str, JobHandler],
        store: JobStore,
        policy: FailurePolicy,
        metrics: Metrics | None = None,
        *,
        policies: Mapping[str, FailurePolicy] | None = None,
        on_ended: JobEnded | None = None,
        stopping: StopRules | None = None,
    ) -> None:
        self._handlers = dict(handlers)
        self._store = store
        self._policy = policy
        self._policies = dict(policies or {})
        self._metrics = metrics
        self._on_ended = on_ended
        self._stopping = stopping or StopRules()

    @property
    def types(self) -> list[str]:
        """The job types this runner can run."""
        return sorted(self._handlers)

    async def dispatch(self, message: Message) -> Outcome:
        """Run one received message.

        A poison message (a body that does not parse, or names an unknown type) is logged
        once with its size and hash and moved to the dead-letter queue at once: retrying
        it cannot help, and nothing is lost.
        """
        try:
            body = JobMessage.model_validate_json(message.body)
        except ValidationError as exc:
            log.error("poison message", **_fingerprint(message.body), problems=exc.error_count())
            return DEAD_LETTER
        structlog.contextvars.bind_contextvars(jobId=body.job_id, userId=body.user_id)
        handler = self._handlers.get(body.type)
        if handler is None:
            log.error("poison message: unknown type", type=body.type[:64], known=self.types)
            return DEAD_LETTER
        return await self._run(handler, body, message.receive_count)

    async def _run(self, handler: JobHandler, body: JobMessage, delivery: int) -> Outcome:
        job_id = body.job_id
        try:
            job = await self._store.apply(job_id, jobs.start(delivery))
        except asyncio.CancelledError:
            # Shut down mid-write: the start may have landed, and an unreleased start
            # would keep an attempt that never ran. A release that finds no start is refused.
            await self._release(job_id, delivery)
            raise
        if job is None:
            return await self._not_started(handler, body)
        structlog.contextvars.bind_contextvars(attempt=job.attempts)
        log.info("job started", type=job.type, delivery=delivery)
        started = time.perf_counter()
        outcome, label = await self._attempt(handler, job, delivery)
        if self._metrics is not None:
            self._metrics.job_finished(label, time.perf_counter() - started)
        return outcome

    async def _attempt(self, handler: JobHandler, job: Job, delivery: int) -> tuple[Outcome, str]:
        progress = ProgressWriter(self._store, job.job_id, delivery, version=job.version)
        policy = self._policies.get(job.type, self._policy)
        try:
            work = handler(JobContext(job, job.attempts, progress))
            result = await run_stoppable(work, self._store, job.job_id, delivery, self._stopping)
            await progress.close()
            return await self._complete(handler, job, delivery, result, progress.version)
        except asyncio.CancelledError:
            progress.cancel()
            await self._release(job.job_id, delivery)
            raise
        except JobStopped as stopped:
            await progress.close()
            log.info("job attempt stopped", reason=stopped.reason)
            if stopped.final:
                return await self._discard_and_announce(handler, job), "stopped"
            return DELETE, "stopped"
        except JobError as exc:
            await progress.close()
            return await self._settle(policy, job, delivery, exc)
        except Exception as exc:
            await progress.close()
            log.exception("job attempt crashed")
            crash = JobError("internal_error", str(exc), transient=True)
            return await self._settle(policy, job, delivery, crash)

    async def _settle(
        self, policy: FailurePolicy, job: Job, delivery: int, error: JobError
    ) -> tuple[Outcome, str]:
        """Let the failure policy settle a failed attempt, counting its code."""
        outcome, label = await policy.settle(job, delivery, error)
        if self._metrics is not None:
            self._metrics.job_failed(error.code, label)
        return outcome, label

    async def _complete(
        self, handler: JobHandler, job: Job, delivery: int, result: JobResult, version: int | None
    ) -> tuple[Outcome, str]:
        transition = jobs.complete(delivery, result.key, result.summary, result.usage)
        done, published = await self._write_completion(handler, job, transition, version)
        if done is None:
            current = await self._store.get(job.job_id)
            if current is None or current.status is JobStatus.CANCELLED:
                # The cancel (or the erasure) landed after the result was stored.
                log.info("completion refused: the job was cancelled or deleted")
                return await self._discard_and_announce(handler, job), "stopped"
            log.warning("completion refused: the job was taken over")
            if current.result_key != result.key:
                # This delivery's output can never be published: only the owner's is.
                await self._tidy(handler, job, [delivery])
            return DELETE, "stopped"
        log.info("job completed", result_key=result.key)
        # Only a completed job's result is published: a cancel that won the race leaves
        # nothing visible.
        if not published:
            await handler.on_completed(done)
        # Earlier deliveries can no longer complete; a first delivery has none (no request).
        await self._tidy(handler, done, range(1, delivery))
        return await self._announce(done), "completed"

    async def _tidy(self, handler: JobHandler, job: Job, deliveries: Sequence[int]) -> None:
        """Remove superseded deliveries' outputs; best effort, as the job's own result is
        safe either way and a leftover only costs storage."""
        if not deliveries or not isinstance(handler, Superseding):
            return
        try:
            await handler.on_superseded(job, deliveries)
        except Exception as exc:
            log.warning("could not remove superseded deliveries' outputs", error=str(exc))

    async def _write_completion(
        self, handler: JobHandler, job: Job, transition: Transition, version: int | None
    ) -> tuple[Job | None, bool]:
        """The completed job (``None`` if refused), and whether its result was published in
        the same write: when the handler's publication is a pointer the store can write
        with it, and this attempt knows the job's version (every write it made answered)."""
        if (
            version is not None
            and isinstance(handler, Publishing)
            and isinstance(self._store, PublishingJobStore)
        ):
            seen = job.model_copy(update={"version": version})
            ref = handler.publication(jobs.applied(seen, transition))
            if ref is not None:
                return await self._store.complete_and_point(seen, transition, ref), True
        return await self._store.apply(job.job_id, transition), False

    async def _not_started(self, handler: JobHandler, body: JobMessage) -> Outcome:
        current = await self._store.get(body.job_id)
        if current is None:
            # Records are written before their messages: this one was deleted (its novel
            # erased) or never ours. Remove anything an earlier attempt left, and park the
            # message with the other unrunnable ones.
            log.error("message for an unknown job")
            await self._discard(handler, body.job_id, body.novel_id)
            return DEAD_LETTER
        log.info("delivery skipped", status=current.status.value, attempts=current.attempts)
        if current.status is JobStatus.COMPLETED:
            # A worker may have died between completing and publishing; publishing again
            # is idempotent, so a redelivery repairs it.
            await handler.on_completed(current)
        if current.status is JobStatus.CANCELLED:
            outcome = await self._discard(handler, body.job_id, body.novel_id)
            return await self._announce(current) if outcome is DELETE else outcome
        if current.status in jobs.ENDED:
            # Likewise for its end events: a crash after the end write lost nothing.
            return await self._announce(current)
        return DELETE

    async def _discard_and_announce(self, handler: JobHandler, job: Job) -> Outcome:
        """Discard a stopped attempt's outputs, then announce the end if a cancel made it
        (a deleted job has nobody left to tell); a failed discard comes back for both."""
        outcome = await self._discard(handler, job.job_id, job.novel_id)
        if outcome is not DELETE or self._on_ended is None:
            return outcome
        current = await self._store.get(job.job_id)
        if current is None or current.status not in jobs.ENDED:
            return DELETE
        return await self._announce(current)

    async def _announce(self, job: Job) -> Outcome:
        """DELETE once the job's end is announced; a retry soon if that failed, so the
        redelivery announces it again before the message goes."""
        if self._on_ended is None or await announce(self._on_ended, job):
            return DELETE
        return Outcome.retry(ANNOUNCE_RETRY_S)

    async def _discard(self, handler: JobHandler, job_id: str, novel_id: str) -> Outcome:
        """Remove what attempts of a job that will never complete wrote; if that fails,
        the message comes back soon and its delivery tries again."""
        if not isinstance(handler, Discarding):
            return DELETE
        try:
            await handler.on_discarded(job_id, novel_id)
        except Exception as exc:
            log.warning("could not remove a stopped job's outputs", error=str(exc))
            return Outcome.retry(self._policy.backoff.delay_s(1))
        return DELETE

    async def _release(self, job_id: str, delivery: int) -> None:
        try:
            await self._store.apply(job_id, jobs.release(delivery))
        except Exception as exc:
            log.warning("could not hand the job back", error=str(exc))


def _fingerprint(body: str) -> dict[str, object]:
    raw = body.encode("utf-8", "replace")
    return {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
