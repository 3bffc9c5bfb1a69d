"""The ``analyze`` job: novel text in, storyboard out, with progress as the seed reports it.

Stages: 10 % started, 30 % text fetched, 50 % analyzer ready, 50-90 % analysis,
90 % storyboard generated, 100 % written. The delivery's receive count is the attempt
number, and every write is guarded by it (see ``service.jobs``), so a stale or duplicate
delivery can never move a job backwards or overwrite a newer attempt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from consumers.outcome import Outcome
from consumers.progress import ProgressWriter
from service import jobs
from service.jobs import ErrorInfo, Job
from service.logs import get_logger
from service.messages import JobMessage
from service.novels import StoryboardRef, storyboard_key
from service.ports import (
    AnalysisError,
    Analyzer,
    BlobNotFound,
    BlobStore,
    JobStore,
    Message,
    NovelStore,
    NovelText,
)
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


class AnalyzeHandler:
    """Runs one delivery of an analyze job."""

    def __init__(self, deps: AnalyzeDeps) -> None:
        self._deps = deps

    async def __call__(self, message: JobMessage, delivery: Message) -> Outcome:
        attempt = delivery.receive_count
        job = await self._deps.jobs.apply(message.job_id, jobs.start(attempt))
        if job is None:
            return await self._not_started(message.job_id, attempt)
        log.info("job started")
        progress = ProgressWriter(self._deps.jobs, job.job_id, attempt)
        try:
            await self._run(job, attempt, progress)
        except asyncio.CancelledError:
            progress.cancel()
            raise
        except AnalysisError as exc:
            await progress.close()
            return await self._failed(job, attempt, exc.code, exc.message, transient=exc.transient)
        except Exception as exc:
            await progress.close()
            log.exception("job attempt crashed")
            return await self._failed(job, attempt, "internal_error", str(exc), transient=True)
        return Outcome.DELETE

    async def _run(self, job: Job, attempt: int, progress: ProgressWriter) -> None:
        text, title = await self._fetch(job)
        progress.report(30, "text fetched")
        analyzer = self._deps.analyzer
        progress.report(50, "analyzer ready")

        async def on_progress(fraction: float, stage: str) -> None:
            await progress.on_fraction(50, 90, fraction, stage)

        novel = NovelText(job.novel_id, title, text, job.job_id)
        storyboard = await analyzer.analyze(novel, on_progress)
        progress.report(90, "storyboard generated")
        key = await self._store(job, storyboard)
        await progress.close()
        done = await self._deps.jobs.apply(
            job.job_id, jobs.complete(attempt, key, storyboard.summary())
        )
        if done is None:
            log.warning("completion refused: a newer attempt owns the job")
        else:
            log.info("job completed", storyboard_key=key, panels=storyboard.summary().panels)

    async def _fetch(self, job: Job) -> tuple[str, str]:
        novel = await self._deps.novels.get(job.novel_id)
        if novel is None:
            raise AnalysisError("novel_not_found", "the novel no longer exists", transient=False)
        try:
            data = await self._deps.blobs.get(novel.text_key)
        except BlobNotFound:
            raise AnalysisError(
                "text_missing", "the novel's text is missing", transient=False
            ) from None
        return data.decode("utf-8"), novel.title

    async def _store(self, job: Job, storyboard: Storyboard) -> str:
        key = storyboard_key(job.novel_id, job.job_id)
        body = storyboard.model_dump_json(by_alias=True).encode("utf-8")
        await self._deps.blobs.put(key, body, content_type="application/json")
        ref = StoryboardRef(key=key, job_id=job.job_id, summary=storyboard.summary())
        await self._deps.novels.set_latest_storyboard(job.novel_id, ref)
        return key

    async def _not_started(self, job_id: str, attempt: int) -> Outcome:
        current = await self._deps.jobs.get(job_id)
        if current is None:
            # Left on the queue: the redrive policy parks it in the dead-letter queue.
            log.error("message for an unknown job")
            return Outcome.RETRY
        log.info(
            "duplicate or stale delivery skipped",
            status=current.status.value,
            recorded_attempts=current.attempts,
        )
        return Outcome.DELETE

    async def _failed(
        self, job: Job, attempt: int, code: str, message: str, *, transient: bool
    ) -> Outcome:
        exhausted = attempt >= self._deps.max_receive_count
        final = not transient or exhausted
        if transient and exhausted:
            message = f"{message} (gave up after {attempt} attempts)"
        error = ErrorInfo(code=code, message=message[:1000])
        await self._deps.jobs.apply(job.job_id, jobs.fail(attempt, error, final=final))
        log.warning("job attempt failed", code=code, final=final, transient=transient)
        # A transient failure leaves the message so the queue redelivers it (and, once
        # exhausted, moves it to the dead-letter queue); a permanent one is done with.
        return Outcome.RETRY if transient else Outcome.DELETE
