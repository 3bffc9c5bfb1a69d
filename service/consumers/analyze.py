"""The ``analyze`` job: novel text in, storyboard out, with progress as the seed reports it.

Stages: 10 % started, 30 % text fetched, 50 % analyzer ready, 50-90 % analysis,
90 % storyboard generated, 100 % written. The delivery's receive count is the attempt
number, and every write is guarded by it (see ``service.jobs``), so a stale or duplicate
delivery can never move a job backwards or overwrite a newer attempt.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from service import jobs
from service.consumers.outcome import DEAD_LETTER, DELETE, Outcome
from service.consumers.progress import JobStopped, ProgressWriter
from service.consumers.retry_policy import Backoff
from service.errors import BlobNotFound, JobError
from service.jobs import ErrorInfo, Job
from service.logs import get_logger
from service.messages import JobMessage
from service.metrics import Metrics
from service.models import utcnow
from service.novels import StoryboardRef, storyboard_key
from service.ports import Analyzer, BlobStore, JobStore, Message, NovelStore, NovelText
from service.storyboard import Storyboard

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AnalyzeDeps:
    """What the analyze job needs from the backend and the process."""

    jobs: JobStore
    novels: NovelStore
    blobs: BlobStore
    analyzer: Analyzer
    max_receive_count: int
    backoff: Backoff
    metrics: Metrics | None = None


class AnalyzeHandler:
    """Runs one delivery of an analyze job."""

    def __init__(self, deps: AnalyzeDeps) -> None:
        self._deps = deps

    async def __call__(self, message: JobMessage, delivery: Message) -> Outcome:
        attempt = delivery.receive_count
        job = await self._deps.jobs.apply(message.job_id, jobs.start(attempt))
        if job is None:
            return await self._not_started(message.job_id)
        log.info("job started")
        started = time.perf_counter()
        outcome, label = await self._attempt(job, attempt)
        if self._deps.metrics is not None:
            self._deps.metrics.job_finished(label, time.perf_counter() - started)
        return outcome

    async def _attempt(self, job: Job, attempt: int) -> tuple[Outcome, str]:
        progress = ProgressWriter(self._deps.jobs, job.job_id, attempt)
        try:
            await self._run(job, attempt, progress)
        except asyncio.CancelledError:
            progress.cancel()
            await self._release(job.job_id, attempt)
            raise
        except JobStopped as stopped:
            log.info("job attempt stopped", reason=stopped.reason)
            return DELETE, "stopped"
        except JobError as exc:
            await progress.close()
            return await self._failed(job, attempt, exc.code, exc.message, transient=exc.transient)
        except Exception as exc:
            await progress.close()
            log.exception("job attempt crashed")
            return await self._failed(job, attempt, "internal_error", str(exc), transient=True)
        return DELETE, "completed"

    def _stage(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        if self._deps.metrics is not None:
            self._deps.metrics.stage_finished(stage, now - since)
        return now

    async def _run(self, job: Job, attempt: int, progress: ProgressWriter) -> None:
        mark = time.perf_counter()
        text, title = await self._fetch(job)
        mark = self._stage("fetch", mark)
        progress.report(30, "text fetched")
        progress.report(50, "analyzer ready")

        async def on_progress(fraction: float, stage: str) -> None:
            await progress.check()  # a chunk boundary: stop here if the job was cancelled
            await progress.on_fraction(50, 90, fraction, stage)

        novel = NovelText(job.novel_id, title, text, job.job_id)
        storyboard = await self._deps.analyzer.analyze(novel, on_progress)
        mark = self._stage("analyze", mark)
        await progress.confirm(90, "storyboard generated")
        key = await self._store(job, storyboard)
        self._stage("store", mark)
        summary = storyboard.summary()
        done = await self._deps.jobs.apply(
            job.job_id, jobs.complete(attempt, key, summary, storyboard.meta.usage)
        )
        if done is None:
            log.warning("completion refused: the job was cancelled or taken over")
        else:
            log.info("job completed", storyboard_key=key, panels=summary.panels)

    async def _fetch(self, job: Job) -> tuple[str, str]:
        novel = await self._deps.novels.get(job.novel_id)
        if novel is None:
            raise JobError("novel_not_found", "the novel no longer exists", transient=False)
        try:
            data = await self._deps.blobs.get(novel.text_key)
        except BlobNotFound:
            raise JobError("text_missing", "the novel's text is missing", transient=False) from None
        return data.decode("utf-8"), novel.title

    async def _store(self, job: Job, storyboard: Storyboard) -> str:
        # The key is the job's own, so a retry or duplicate overwrites rather than adds.
        key = storyboard_key(job.novel_id, job.job_id)
        body = storyboard.model_dump_json(by_alias=True).encode("utf-8")
        await self._deps.blobs.put(key, body, content_type="application/json")
        ref = StoryboardRef(key=key, job_id=job.job_id, summary=storyboard.summary())
        await self._deps.novels.set_latest_storyboard(job.novel_id, ref)
        return key

    async def _not_started(self, job_id: str) -> Outcome:
        current = await self._deps.jobs.get(job_id)
        if current is None:
            log.error("message for an unknown job")
            return DEAD_LETTER
        log.info(
            "delivery skipped",
            status=current.status.value,
            recorded_attempts=current.attempts,
        )
        return DELETE

    async def _release(self, job_id: str, attempt: int) -> None:
        try:
            await self._deps.jobs.apply(job_id, jobs.release(attempt))
        except Exception as exc:
            log.warning("could not hand the job back", error=str(exc))

    async def _failed(
        self, job: Job, attempt: int, code: str, message: str, *, transient: bool
    ) -> tuple[Outcome, str]:
        if not transient:
            await self._deps.jobs.apply(job.job_id, jobs.fail(attempt, _error(code, message)))
            log.warning("job failed", code=code)
            return DELETE, "failed"
        if attempt >= self._deps.max_receive_count:
            error = _error("retries_exhausted", f"gave up after {attempt} attempts: {message}")
            await self._deps.jobs.apply(job.job_id, jobs.fail(attempt, error))
            log.warning("job failed: retries exhausted", code=code)
            return DEAD_LETTER, "exhausted"
        delay = self._deps.backoff.delay_s(attempt)
        next_at = utcnow() + timedelta(seconds=delay)
        await self._deps.jobs.apply(
            job.job_id, jobs.retry_later(attempt, _error(code, message), next_at)
        )
        log.warning("job attempt failed; will retry", code=code, retry_in_s=delay)
        return Outcome.retry(delay), "retried"


def _error(code: str, message: str) -> ErrorInfo:
    return ErrorInfo(code=code, message=message[:1000])
