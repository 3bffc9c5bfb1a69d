"""The ``analyze`` job: novel text in, storyboard out, with progress as the seed reports it.

Stages: 10 % started, 30 % text fetched, 50 % analyzer ready, 50-90 % analysis,
90 % storyboard generated, 100 % written. Taking the job, completion and failures are the
runner's (``service.consumers.runner``); this module only does the work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from service.consumers.job_types import HandlerDeps, JobContext, JobResult, JobType
from service.errors import BlobNotFound, JobError
from service.jobs import Job, StoryboardSummary
from service.messages import ANALYZE
from service.metrics import Metrics
from service.models import utcnow
from service.novels import (
    StoryboardRef,
    checkpoint_prefix,
    job_storyboards_prefix,
    legacy_storyboard_key,
    storyboard_key,
)
from service.ports import Analyzer, BlobArchive, NovelStore, NovelText
from service.storyboard import Storyboard


class AnalyzeHandler:
    """Runs one attempt of an analyze job."""

    def __init__(
        self,
        novels: NovelStore,
        blobs: BlobArchive,
        analyzer: Analyzer,
        metrics: Metrics | None = None,
    ) -> None:
        self._novels = novels
        self._blobs = blobs
        self._analyzer = analyzer
        self._metrics = metrics

    async def __call__(self, context: JobContext) -> JobResult:
        """Fetch the text, analyze it, store the storyboard and point the novel at it."""
        job, progress = context.job, context.progress
        mark = time.perf_counter()
        text, title = await self._fetch(job)
        mark = self._stage("fetch", mark)
        progress.report(30, "text fetched")
        progress.report(50, "analyzer ready")

        async def on_progress(fraction: float, stage: str) -> None:
            await progress.check()  # a chunk boundary: stop here if a write was refused
            await progress.on_fraction(50, 90, fraction, stage)

        novel = NovelText(job.novel_id, title, text, job.job_id)
        storyboard = _stamped(await self._analyzer.analyze(novel, on_progress), job)
        mark = self._stage("analyze", mark)
        progress.report(90, "storyboard generated")
        # A refused progress write means the job moved on; stop before the store. Nothing
        # else is checked here: the key is this delivery's own, so a superseded attempt's
        # storyboard is never the one the completion publishes.
        await progress.check()
        key = await self._store(job, storyboard)
        self._stage("store", mark)
        summary = storyboard.summary().to_doc()
        return JobResult(key=key, summary=summary, usage=storyboard.meta.usage)

    def publication(self, job: Job) -> StoryboardRef | None:
        """The novel's pointer at the completed job's storyboard, dated by its completion."""
        if job.result_key is None or job.summary is None:
            return None
        summary = StoryboardSummary.model_validate(job.summary)
        return StoryboardRef(
            key=job.result_key, job_id=job.job_id, summary=summary, created_at=job.updated_at
        )

    async def on_completed(self, job: Job) -> None:
        """Point the novel at the job's storyboard, unless a newer one is there already."""
        ref = self.publication(job)
        if ref is not None:
            await self._novels.set_latest_storyboard(job.novel_id, ref)

    async def on_discarded(self, job_id: str, novel_id: str) -> None:
        """Delete the storyboards and the checkpoints a job that will never complete wrote."""
        await self._blobs.delete_prefix(job_storyboards_prefix(novel_id, job_id))
        await self._blobs.delete(legacy_storyboard_key(novel_id, job_id))
        await self._blobs.delete_prefix(checkpoint_prefix(job_id))

    async def on_superseded(self, job: Job, deliveries: Sequence[int]) -> None:
        """Delete the storyboards those deliveries of the job wrote, by their known keys (no
        listing), all at once; a delivery that stored nothing costs one harmless delete."""
        keys = [storyboard_key(job.novel_id, job.job_id, delivery) for delivery in deliveries]
        results = await asyncio.gather(
            *(self._blobs.delete(key) for key in keys), return_exceptions=True
        )
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            raise failed[0]

    def _stage(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        if self._metrics is not None:
            self._metrics.stage_finished(stage, now - since)
        return now

    async def _fetch(self, job: Job) -> tuple[str, str]:
        """The text and title: from the job's copy of where they are, else (a job created
        without one) from the novel's record."""
        source = job.source
        if source is None:
            novel = await self._novels.get(job.novel_id)
            if novel is None:
                raise _novel_gone()
            source = novel.source()
        try:
            data = await self._blobs.get(source.text_key)
        except BlobNotFound:
            # The failure path may read the novel: an erased novel is the likely cause.
            if job.source is not None and await self._novels.get(job.novel_id) is None:
                raise _novel_gone() from None
            raise JobError("text_missing", "the novel's text is missing", transient=False) from None
        return data.decode("utf-8"), source.title

    async def _store(self, job: Job, storyboard: Storyboard) -> str:
        # The key is this delivery's own (see ``storyboard_key``), so a retry of the same
        # delivery overwrites rather than adds. The novel is pointed at it only once the job
        # has completed (``publication``).
        key = storyboard_key(job.novel_id, job.job_id, job.delivery)
        body = storyboard.model_dump_json(by_alias=True).encode("utf-8")
        await self._blobs.put(key, body, content_type="application/json")
        return key


def _novel_gone() -> JobError:
    return JobError("novel_not_found", "the novel no longer exists", transient=False)


def _stamped(storyboard: Storyboard, job: Job) -> Storyboard:
    """The storyboard with this job's provenance, whatever the analyzer filled in.

    The job id is what ties a served storyboard to the run that made it, so the handler
    sets it rather than trusting every analyzer to copy it from ``NovelText``.
    """
    meta = storyboard.meta
    meta.job_id = job.job_id
    if meta.created_at is None:
        meta.created_at = utcnow()
    return storyboard


def build(deps: HandlerDeps) -> AnalyzeHandler:
    """The handler, from a worker's dependencies; a worker always has an analyzer."""
    if deps.analyzer is None:
        raise ValueError("the analyze job type needs an analyzer")
    backend = deps.backend
    return AnalyzeHandler(backend.novels, backend.blobs, deps.analyzer, deps.metrics)


ANALYZE_JOB = JobType(name=ANALYZE, build=build, user_visible=True)
