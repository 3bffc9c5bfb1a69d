"""The job-type extension point: a second type goes through the same runner and policy.

``ChecksumJob`` is a tiny type declared here as a handler module would declare it, and
registered with one line (``(*JOB_TYPES, CHECKSUM)``). It hashes the novel's text, fails
transiently a set number of times first, and is internal (not user-visible).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.appkeys import RUNTIME
from service.consumers.job_types import HandlerDeps, JobContext, JobResult, JobType
from service.errors import JobError
from service.jobs import Job, JobStatus
from service.logs import configure_logging
from service.ports import BlobStore, NovelStore
from service.runtime import JOB_TYPES, Runtime, open_runtime
from service.uploads import store_novel
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually, job_finished, one_message_dead_lettered


class ChecksumJob:
    """Stores the SHA-256 of a novel's text, after failing ``failures`` attempts."""

    failures = 0
    seen: list[int] = []  # noqa: RUF012 - the attempts, shared across the one test's builds

    def __init__(self, novels: NovelStore, blobs: BlobStore) -> None:
        self._novels = novels
        self._blobs = blobs

    async def __call__(self, context: JobContext) -> JobResult:
        ChecksumJob.seen.append(context.attempt)
        if context.attempt <= ChecksumJob.failures:
            raise JobError("checksum_flaky", f"attempt {context.attempt} failed", transient=True)
        novel = await self._novels.get(context.job.novel_id)
        assert novel is not None
        digest = hashlib.sha256(await self._blobs.get(novel.text_key)).hexdigest()
        key = f"checksums/{context.job.job_id}"
        await self._blobs.put(key, digest.encode(), content_type="text/plain")
        return JobResult(key=key, summary={"sha256": digest})

    async def on_completed(self, job: Job) -> None:
        """Nothing to publish: the checksum is read from its blob."""


def _build(deps: HandlerDeps) -> ChecksumJob:
    return ChecksumJob(deps.backend.novels, deps.backend.blobs)


CHECKSUM = JobType(name="checksum", build=_build, user_visible=False)
TEXT = "It was a dark and stormy night."


async def _submit(runtime: Runtime) -> Job:
    novel = await store_novel(runtime.backend, "local", "A Title", TEXT)
    return await runtime.producer.submit(novel.novel_id, "local", job_type="checksum")


async def _ended(runtime: Runtime, job_id: str) -> Job:
    return await job_finished(runtime.backend.jobs, job_id)


async def test_a_second_type_retries_then_completes_with_its_result(
    make_settings: SettingsFactory,
) -> None:
    ChecksumJob.failures, ChecksumJob.seen = 1, []
    settings = await prepare(make_settings(receive_wait_s=0.5, retry_base_s=1))
    async with open_runtime(settings, job_types=(*JOB_TYPES, CHECKSUM)) as runtime:
        job = await _ended(runtime, (await _submit(runtime)).job_id)
        stored = await runtime.backend.blobs.get(f"checksums/{job.job_id}")
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    assert (job.status, job.attempts, ChecksumJob.seen) == (JobStatus.COMPLETED, 2, [1, 2])
    assert (job.result_key, job.summary) == (f"checksums/{job.job_id}", {"sha256": digest})
    assert stored.decode() == digest
    assert job.error is None


async def test_a_second_type_is_dead_lettered_when_its_retries_run_out(
    make_settings: SettingsFactory,
) -> None:
    ChecksumJob.failures, ChecksumJob.seen = 100, []
    settings = await prepare(make_settings(receive_wait_s=0.5, max_receive_count=2, retry_base_s=1))
    async with open_runtime(settings, job_types=(*JOB_TYPES, CHECKSUM)) as runtime:
        job = await _ended(runtime, (await _submit(runtime)).job_id)
        await one_message_dead_lettered(runtime.backend.queue, runtime.backend.dlq)
    assert (job.status, job.attempts, ChecksumJob.seen) == (JobStatus.FAILED, 2, [1, 2])
    assert job.error is not None
    assert job.error.code == "retries_exhausted"
    assert job.error.message == "gave up after 2 attempts: attempt 2 failed"


async def test_a_type_unknown_to_the_worker_is_dead_lettered_untouched(
    make_settings: SettingsFactory,
) -> None:
    settings = await prepare(make_settings(receive_wait_s=0.5))
    async with open_runtime(settings, worker=False) as runtime:
        job = await _submit(runtime)
    async with open_runtime(settings) as runtime:  # the default types: no checksum

        async def parked() -> bool:
            depth = await runtime.backend.dlq.depth()
            return depth.visible + depth.in_flight == 1

        await eventually(parked)
        # The dead-letter consumer ends the job failed once it reads the message.
        ended = await _ended(runtime, job.job_id)
    assert ended.attempts == 0  # never started: no handler ran
    assert ended.error is not None
    assert ended.error.code == "retries_exhausted"


async def test_jobs_of_an_internal_type_are_hidden_from_the_api(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(receive_wait_s=0.5)
    ChecksumJob.failures, ChecksumJob.seen = 0, []
    app = create_app(settings, worker=False)
    async with TestClient(TestServer(app)) as client:
        runtime = app[RUNTIME]
        job = await _submit(runtime)
        hidden = await client.get(f"/v1/jobs/{job.job_id}")
        cancel = await client.post(f"/v1/jobs/{job.job_id}/cancel")
        assert (hidden.status, cancel.status) == (404, 404)
        assert (await hidden.json())["error"]["code"] == "not_found"
        stored = await runtime.backend.jobs.get(job.job_id)
        assert stored is not None
        assert stored.status is JobStatus.QUEUED  # the refused cancel changed nothing


async def test_job_log_lines_carry_job_message_attempt_and_user(
    local_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    ChecksumJob.failures, ChecksumJob.seen = 0, []
    settings = local_settings(receive_wait_s=0.5)
    async with open_runtime(settings, job_types=(*JOB_TYPES, CHECKSUM)) as runtime:
        novel = await store_novel(runtime.backend, "reader-7", "A Title", TEXT)
        job = await runtime.producer.submit(novel.novel_id, "reader-7", job_type="checksum")
        await _ended(runtime, job.job_id)
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    started = [line for line in lines if line.get("event") == "job started"]
    assert len(started) == 1, lines
    assert started[0]["jobId"] == job.job_id
    assert started[0]["userId"] == "reader-7"
    assert started[0]["attempt"] == 1
    assert started[0]["messageId"]
