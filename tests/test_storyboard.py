"""Storyboard provenance: every new storyboard names the run that made it."""

from __future__ import annotations

from service.analysis.sleeping import SleepAnalyzer
from service.jobs import JobStatus
from service.runtime import open_runtime
from service.storyboard import Storyboard
from service.uploads import store_novel
from tests.conftest import SettingsFactory, prepare
from tests.waiting import job_finished

# A storyboard as stored before the provenance fields existed.
STORED_BEFORE = {
    "novelId": "n1",
    "title": "Old",
    "characters": [],
    "scenes": [],
    "meta": {"analyzer": "offline", "chunkCount": 1, "chapterCount": 1},
}


def test_a_storyboard_stored_before_provenance_still_reads() -> None:
    board = Storyboard.model_validate(STORED_BEFORE)
    assert board.meta.analyzer == "offline"
    assert board.meta.job_id is None
    assert board.meta.created_at is None
    assert board.meta.analyzer_version is None
    assert board.meta.prompt_version is None


async def test_a_job_through_the_runtime_stamps_its_own_id(
    local_settings: SettingsFactory,
) -> None:
    settings = await prepare(local_settings(receive_wait_s=0.5))
    async with open_runtime(settings, analyzer=SleepAnalyzer(latency_s=0.0)) as runtime:
        novel = await store_novel(runtime.backend, "local", "Tea", "Once upon a time.")
        submitted = await runtime.producer.submit(novel.novel_id, "local")
        job = await job_finished(runtime.backend.jobs, submitted.job_id)
        assert job.result_key is not None
        data = await runtime.backend.blobs.get(job.result_key)
    assert job.status is JobStatus.COMPLETED
    meta = Storyboard.model_validate_json(data).meta
    assert meta.job_id == job.job_id
    assert (meta.analyzer, meta.analyzer_version) == ("sleep", SleepAnalyzer.version)
    assert meta.created_at is not None
