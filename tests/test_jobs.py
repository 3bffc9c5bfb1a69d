"""The job state machine's guards, evaluated in memory."""

from __future__ import annotations

import pytest

from service import jobs
from service.jobs import ErrorInfo, Job, JobStatus, StoryboardSummary
from service.models import utcnow


def _job(status: JobStatus, delivery: int) -> Job:
    return Job(job_id="j", novel_id="n", user_id="u", status=status, delivery=delivery)


SUMMARY = StoryboardSummary(title="t", chapters=1, scenes=1, panels=1, characters=0)
ERROR = ErrorInfo(code="boom", message="boom")


@pytest.mark.parametrize(
    ("status", "recorded", "attempt", "allowed"),
    [
        (JobStatus.QUEUED, 0, 1, True),
        (JobStatus.RUNNING, 1, 2, True),  # the previous delivery crashed
        (JobStatus.RUNNING, 1, 1, False),  # a duplicate of the running delivery
        (JobStatus.RUNNING, 3, 2, False),  # a stale delivery never takes a newer attempt's job
        (JobStatus.COMPLETED, 1, 2, False),
        (JobStatus.FAILED, 1, 2, False),
        (JobStatus.RETRYING, 1, 2, True),
        (JobStatus.CANCELLED, 0, 1, False),
    ],
)
def test_start_guard(status: JobStatus, recorded: int, attempt: int, allowed: bool) -> None:
    assert jobs.start(attempt).guard.allows(_job(status, recorded)) is allowed


def test_writes_of_the_owning_attempt_only() -> None:
    running = _job(JobStatus.RUNNING, 2)
    for transition in (
        jobs.progress(2, 50, "x"),
        jobs.complete(2, "k", SUMMARY.to_doc()),
        jobs.fail(2, ERROR),
        jobs.retry_later(2, ERROR, utcnow()),
        jobs.release(2),
    ):
        assert transition.guard.allows(running)
    for transition in (
        jobs.progress(1, 50, "x"),
        jobs.complete(3, "k", SUMMARY.to_doc()),
        jobs.fail(1, ERROR),
        jobs.release(3),
    ):
        assert not transition.guard.allows(running)


def test_completed_job_takes_no_more_writes() -> None:
    done = _job(JobStatus.COMPLETED, 1)
    assert not jobs.progress(1, 95, "late").guard.allows(done)
    assert not jobs.fail(1, ERROR).guard.allows(done)
    assert not jobs.cancel().guard.allows(done)
    assert not jobs.exhausted(ERROR).guard.allows(done)
    assert not jobs.complete(1, "k", SUMMARY.to_doc()).guard.allows(done)


def test_transient_failure_waits_for_retry_and_final_failure_ends() -> None:
    later = jobs.retry_later(1, ERROR, utcnow())
    assert later.changes["status"] == "retrying"
    assert later.changes["nextAttemptAt"].endswith("Z")
    assert jobs.fail(1, ERROR).changes["status"] == "failed"
    assert jobs.fail(1, ERROR).changes["error"] == {"code": "boom", "message": "boom"}


def test_cancel_ends_any_live_job() -> None:
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING):
        assert jobs.cancel().guard.allows(_job(status, 1))
    assert not jobs.cancel().guard.allows(_job(JobStatus.CANCELLED, 1))


def test_requeue_starts_a_dead_lettered_job_afresh() -> None:
    again = jobs.requeue()
    assert again.guard.allows(_job(JobStatus.FAILED, 3))
    assert not again.guard.allows(_job(JobStatus.COMPLETED, 1))
    assert not again.guard.allows(_job(JobStatus.CANCELLED, 1))
    assert again.changes["attempts"] == 0
    assert again.changes["error"] is None


def test_abandon_only_an_unstarted_queued_job() -> None:
    assert jobs.abandon(ERROR).guard.allows(_job(JobStatus.QUEUED, 0))
    assert not jobs.abandon(ERROR).guard.allows(_job(JobStatus.QUEUED, 1))
    assert not jobs.abandon(ERROR).guard.allows(_job(JobStatus.RUNNING, 1))


def test_job_round_trips_through_its_camel_case_document() -> None:
    job = _job(JobStatus.RUNNING, 2)
    doc = job.to_doc()
    assert {"jobId", "novelId", "userId", "createdAt", "updatedAt"} <= doc.keys()
    assert doc["createdAt"].endswith("Z")
    assert Job.model_validate(doc) == job
