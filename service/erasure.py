"""Erasing a novel and everything made from it, for the right to erasure.

One request at a time erases a novel. It first claims the novel (a guarded write marking it
``deletingAt``); from then on the API answers 404 for it and no new job can be made its
latest, so a request creating a job for it drops that job. Then, in this order:

1. the novel's waiting and running jobs are cancelled with the guarded cancel, so no worker
   can complete one any more; a worker in the middle of one stops at its next progress
   write or at its completion, and removes what it wrote (``service.consumers.runner``).
   Their active-job slots are freed: a deleted job is announced to no one, so the end
   hook that frees the others never runs for these;
2. the text, every storyboard, each job's result and each job's checkpoints are deleted;
3. the job records, then the novel record, are deleted;
4. the novel's jobs are listed once more: a job recorded just before the claim can reach
   DynamoDB's index a moment late, and is erased the same way.

A claim older than :data:`LEASE_S` counts as abandoned (its process died mid-erasure), so a
later request can take the erasure over. An erasure that fails releases its claim, so the
request can be retried at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from service import jobs
from service.backends.backend import Backend
from service.jobs import Job
from service.logs import get_logger
from service.models import utcnow
from service.novels import Novel, checkpoint_prefix, storyboard_prefix
from service.ports import MAX_PAGE

T = TypeVar("T")

LEASE_S = 120
"""How long a claim keeps other erasures of the same novel out."""
CONCURRENCY = 8
"""Deletes in flight at once for one erasure."""

log = get_logger(__name__)


async def erase_novel(backend: Backend, novel: Novel) -> bool:
    """Erase ``novel`` and everything made from it; False if it is gone already or another
    erasure of it is under way."""
    at = utcnow()
    claimed = await backend.novels.claim_deletion(
        novel.novel_id, at, stale_before=at - timedelta(seconds=LEASE_S)
    )
    if claimed is None:
        return False
    try:
        found = await _jobs_of(backend, claimed)
        await _stop_and_empty(backend, found)
        await backend.blobs.delete(claimed.text_key)
        await backend.blobs.delete_prefix(storyboard_prefix(claimed.novel_id))
        await _each(found, lambda job: backend.job_catalog.delete(job.job_id))
        await backend.novels.delete(claimed.novel_id)
        erased = {job.job_id for job in found}
        late = [job for job in await _jobs_of(backend, claimed) if job.job_id not in erased]
        await _stop_and_empty(backend, late)
        await _each(late, lambda job: backend.job_catalog.delete(job.job_id))
    except BaseException:
        await _release(backend, claimed.novel_id, at)
        raise
    log.info("novel erased", novelId=claimed.novel_id, jobs=len(found) + len(late))
    return True


async def _stop_and_empty(backend: Backend, found: list[Job]) -> None:
    """Cancel the jobs that have not ended, free their slots, then delete what each one
    wrote."""
    await _each(found, lambda job: backend.jobs.apply(job.job_id, jobs.cancel()))
    await _each(found, lambda job: backend.quotas.release(job.user_id, job.job_id))
    await _each(found, lambda job: _delete_outputs(backend, job))


async def _jobs_of(backend: Backend, novel: Novel) -> list[Job]:
    """Every job of the novel, of any type: its list, and its latest job by id."""
    found: dict[str, Job] = {}
    cursor: str | None = None
    while True:
        page = await backend.job_catalog.list_for_user(
            novel.user_id, limit=MAX_PAGE, after=cursor, novel_id=novel.novel_id
        )
        found.update((job.job_id, job) for job in page.items)
        if (cursor := page.next_cursor) is None:
            break
    if novel.latest_job_id is not None and novel.latest_job_id not in found:
        latest = await backend.jobs.get(novel.latest_job_id)
        if latest is not None:
            found[latest.job_id] = latest
    return list(found.values())


async def _delete_outputs(backend: Backend, job: Job) -> None:
    await backend.blobs.delete_prefix(checkpoint_prefix(job.job_id))
    if job.result_key is not None:
        await backend.blobs.delete(job.result_key)


async def _each(items: Iterable[T], act: Callable[[T], Awaitable[object]]) -> None:
    """``act`` on every item, a few at a time; the first failure cancels the rest."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> None:
        async with limit:
            await act(item)

    tasks = {asyncio.ensure_future(one(item)) for item in items}
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _release(backend: Backend, novel_id: str, at: datetime) -> None:
    try:
        await backend.novels.release_deletion(novel_id, at)
    except Exception as exc:
        # The claim lapses by itself after LEASE_S; until then the novel answers 404.
        log.warning("could not release a failed erasure", novelId=novel_id, error=str(exc))
