"""Erasing a novel against the races around it, on both backends: a worker storing its
result as the erasure lands, a job being created as it starts, and an erasure that fails."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from service.analysis.llm import Checkpoints
from service.backends.backend import Backend
from service.backends.local_blobs import LocalBlobStore
from service.erasure import LEASE_S, erase_novel
from service.errors import BackendError
from service.models import utcnow
from service.novels import Novel, checkpoint_prefix, storyboard_prefix
from service.ports import BlobArchive
from service.producers.enqueue import NovelGone
from service.runtime import build_consumer, open_runtime
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually


class _GatedStoryboards:
    """The real blob store, except that a storyboard write waits for ``proceed``: the
    moment between a worker confirming it owns its job and its completion, held open."""

    def __init__(self, blobs: BlobArchive) -> None:
        self._blobs = blobs
        self.reached = asyncio.Event()
        self.proceed = asyncio.Event()

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        if key.startswith("storyboards/"):
            self.reached.set()
            await self.proceed.wait()
        await self._blobs.put(key, data, content_type=content_type)

    async def get(self, key: str) -> bytes:
        return await self._blobs.get(key)

    async def delete(self, key: str) -> None:
        await self._blobs.delete(key)

    async def list_keys(self, prefix: str) -> list[str]:
        return await self._blobs.list_keys(prefix)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._blobs.delete_prefix(prefix)


class _FailingPrefixDeletes(_GatedStoryboards):
    """The real blob store, except that deleting by prefix fails as an outage would."""

    async def delete_prefix(self, prefix: str) -> int:
        raise BackendError("storage is failing")


async def _drained(backend: Backend) -> bool:
    depth = await backend.queue.depth()
    return depth.visible + depth.in_flight == 0


async def _nothing_left(backend: Backend, novel: Novel, job_id: str) -> None:
    for prefix in (f"novels/{novel.novel_id}/", storyboard_prefix(novel.novel_id)):
        assert await backend.blobs.list_keys(prefix) == [], prefix
    assert await backend.blobs.list_keys(checkpoint_prefix(job_id)) == []
    assert await backend.jobs.get(job_id) is None
    assert await backend.novels.get(novel.novel_id) is None


async def test_a_storyboard_stored_as_the_erasure_lands_is_removed(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5))
    async with open_runtime(settings, worker=False) as runtime:
        backend = runtime.backend
        novel = await store_novel(backend, "u", "Tale", "Once upon a time.")
        job = await runtime.producer.submit(novel.novel_id, "u")
        gate = _GatedStoryboards(backend.blobs)
        async with build_consumer(settings, replace(backend, blobs=gate), CountingAnalyzer()):
            await asyncio.wait_for(gate.reached.wait(), 30)
            assert await erase_novel(backend, novel)
            gate.proceed.set()  # the storyboard lands after the erasure deleted everything
            await eventually(lambda: _drained(backend))
        parked = await backend.dlq.depth()
        await _nothing_left(backend, novel, job.job_id)
    assert parked.visible + parked.in_flight == 0


async def test_a_job_created_as_the_erasure_starts_is_dropped_unsent(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        backend = runtime.backend
        novel = await store_novel(backend, "u", "Tale", "Once upon a time.")
        at = utcnow()
        assert await backend.novels.claim_deletion(novel.novel_id, at, stale_before=at)
        with pytest.raises(NovelGone):
            await runtime.producer.submit(novel.novel_id, "u")
        listed = await backend.job_catalog.list_for_user("u", limit=10)
        drained = await _drained(backend)
    assert listed.items == [], "the job record was deleted again"
    assert drained, "and its message never sent"


async def test_a_failed_erasure_can_be_retried_at_once(make_settings: SettingsFactory) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        backend = runtime.backend
        novel = await store_novel(backend, "u", "Tale", "Once upon a time.")
        job = await runtime.producer.submit(novel.novel_id, "u")
        failing = replace(backend, blobs=_FailingPrefixDeletes(backend.blobs))
        with pytest.raises(BackendError):
            await erase_novel(failing, novel)
        after_failure = await backend.novels.get(novel.novel_id)
        assert await erase_novel(backend, novel)
        await _nothing_left(backend, novel, job.job_id)
    assert after_failure is not None
    assert after_failure.deleting_at is None, "the claim was released"


async def test_an_abandoned_erasure_is_taken_over_after_its_lease(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings())
    async with open_runtime(settings, worker=False) as runtime:
        backend = runtime.backend
        novel = await store_novel(backend, "u", "Tale", "Once upon a time.")
        job = await runtime.producer.submit(novel.novel_id, "u")
        now = utcnow()
        recent = now - timedelta(seconds=LEASE_S / 2)
        assert await backend.novels.claim_deletion(novel.novel_id, recent, stale_before=recent)
        assert not await erase_novel(backend, novel), "a live claim keeps others out"
        old = now - timedelta(seconds=LEASE_S * 2)
        await backend.novels.release_deletion(novel.novel_id, recent)
        assert await backend.novels.claim_deletion(novel.novel_id, old, stale_before=old)
        assert await erase_novel(backend, novel), "a process that died mid-erasure"
        await _nothing_left(backend, novel, job.job_id)


def test_checkpoints_live_under_the_prefix_the_erasure_deletes(tmp_path: Path) -> None:
    checkpoints = Checkpoints(LocalBlobStore(tmp_path), "job-7")
    for kind in ("a", "b"):
        assert checkpoints.key(kind, 3).startswith(checkpoint_prefix("job-7"))
