"""The job record and its state machine.

Every status change goes through a :class:`Guard`: a condition the stored record must meet for
the write to apply. Both job stores (DynamoDB and SQLite) evaluate the same guards atomically,
so the transition rules live here once:

* a ``completed`` job never goes back to ``running``;
* a delivery only moves a job forward if its attempt number (the queue's receive count) is
  newer than the last one recorded, so a stale redelivery never overwrites a newer attempt;
* progress, completion and failure writes only apply for the attempt that owns the job.

The attempt number is the job's owner token (a fencing token): a worker owns the job from
the guarded ``start`` until a newer delivery's ``start`` succeeds, and its lease is the
message's visibility timeout, which the worker keeps extending while it is alive. A newer
delivery can only exist once that lease lapsed, and from then on every write of the older
attempt is refused; before writing the storyboard a worker confirms it still owns the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from service.models import CamelModel, isoformat, utcnow


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
LIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
WAITING = frozenset({JobStatus.QUEUED, JobStatus.RETRYING})


class Progress(CamelModel):
    """How far a job has come, as the seed reported it."""

    percentage: int = Field(ge=0, le=100)
    stage: str


class ErrorInfo(CamelModel):
    """A machine-readable code and a human message."""

    code: str
    message: str


class StoryboardSummary(CamelModel):
    """Counts kept beside the pointer to a stored storyboard."""

    title: str
    chapters: int
    scenes: int
    panels: int
    characters: int


class Job(CamelModel):
    """One unit of work, stored in the job store and reported by ``GET /v1/jobs/{jobId}``."""

    job_id: str
    novel_id: str
    user_id: str
    type: str = "analyze"
    status: JobStatus = JobStatus.QUEUED
    progress: Progress = Progress(percentage=0, stage="queued")
    attempts: int = 0
    error: ErrorInfo | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    storyboard_key: str | None = None
    summary: StoryboardSummary | None = None
    next_attempt_at: datetime | None = None
    usage: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition on the stored job that a write requires.

    ``statuses`` must contain the stored status. ``attempts_below`` requires the stored
    ``attempts`` to be strictly less than it; ``attempts_equal`` requires equality.
    """

    statuses: frozenset[JobStatus]
    attempts_below: int | None = None
    attempts_equal: int | None = None

    def allows(self, job: Job) -> bool:
        """Evaluate the guard in memory; stores that lack native conditions use this."""
        if job.status not in self.statuses:
            return False
        if self.attempts_below is not None and not job.attempts < self.attempts_below:
            return False
        return self.attempts_equal is None or job.attempts == self.attempts_equal


@dataclass(frozen=True, slots=True)
class Transition:
    """A guarded write: the guard and the camelCase attributes it sets."""

    guard: Guard
    changes: dict[str, Any] = field(default_factory=dict)


def _stamp(changes: dict[str, Any]) -> dict[str, Any]:
    return {**changes, "updatedAt": isoformat(utcnow())}


def start(attempt: int) -> Transition:
    """A delivery with receive count ``attempt`` takes the job.

    A running job may be taken by a newer delivery: its previous worker died or lost the
    message, since a live worker keeps its message hidden.
    """
    return Transition(
        Guard(LIVE, attempts_below=attempt),
        _stamp(
            {
                "status": JobStatus.RUNNING.value,
                "attempts": attempt,
                "progress": Progress(percentage=10, stage="started").to_doc(),
                "nextAttemptAt": None,
            }
        ),
    )


def progress(attempt: int, percentage: int, stage: str) -> Transition:
    """The owning attempt reports progress."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), attempts_equal=attempt),
        _stamp({"progress": Progress(percentage=percentage, stage=stage).to_doc()}),
    )


def complete(
    attempt: int,
    storyboard_key: str,
    summary: StoryboardSummary,
    usage: dict[str, int] | None = None,
) -> Transition:
    """The owning attempt finished and wrote its storyboard."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), attempts_equal=attempt),
        _stamp(
            {
                "status": JobStatus.COMPLETED.value,
                "progress": Progress(percentage=100, stage="completed").to_doc(),
                "error": None,
                "storyboardKey": storyboard_key,
                "summary": summary.to_doc(),
                "usage": usage or None,
            }
        ),
    )


def fail(attempt: int, error: ErrorInfo) -> Transition:
    """The owning attempt failed for good."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), attempts_equal=attempt),
        _stamp(
            {
                "status": JobStatus.FAILED.value,
                "error": error.to_doc(),
                "progress": Progress(percentage=0, stage="failed").to_doc(),
            }
        ),
    )


def retry_later(attempt: int, error: ErrorInfo, next_attempt_at: datetime) -> Transition:
    """The owning attempt failed transiently; the queue delivers the job again later."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), attempts_equal=attempt),
        _stamp(
            {
                "status": JobStatus.RETRYING.value,
                "error": error.to_doc(),
                "nextAttemptAt": isoformat(next_attempt_at),
                "progress": Progress(percentage=0, stage="waiting for retry").to_doc(),
            }
        ),
    )


def release(attempt: int) -> Transition:
    """A worker shutting down hands the job back to the queue unfinished."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), attempts_equal=attempt),
        _stamp(
            {
                "status": JobStatus.QUEUED.value,
                "progress": Progress(percentage=0, stage="released by a stopping worker").to_doc(),
            }
        ),
    )


def cancel() -> Transition:
    """The owner cancels a job that has not ended."""
    return Transition(
        Guard(LIVE),
        _stamp(
            {
                "status": JobStatus.CANCELLED.value,
                "nextAttemptAt": None,
                "progress": Progress(percentage=0, stage="cancelled").to_doc(),
            }
        ),
    )


def exhausted(error: ErrorInfo) -> Transition:
    """The job's message reached the dead-letter queue: no more attempts will come."""
    return Transition(
        Guard(LIVE),
        _stamp(
            {
                "status": JobStatus.FAILED.value,
                "error": error.to_doc(),
                "nextAttemptAt": None,
                "progress": Progress(percentage=0, stage="failed").to_doc(),
            }
        ),
    )


def requeue() -> Transition:
    """A dead-lettered job is redriven: it starts again cleanly from attempt one."""
    return Transition(
        Guard(frozenset({JobStatus.FAILED, *LIVE})),
        _stamp(
            {
                "status": JobStatus.QUEUED.value,
                "attempts": 0,
                "error": None,
                "nextAttemptAt": None,
                "progress": Progress(percentage=0, stage="queued").to_doc(),
            }
        ),
    )


def abandon(error: ErrorInfo) -> Transition:
    """A job whose message was never sent ends ``failed`` rather than staying queued."""
    return Transition(
        Guard(frozenset({JobStatus.QUEUED}), attempts_equal=0),
        _stamp(
            {
                "status": JobStatus.FAILED.value,
                "error": error.to_doc(),
                "progress": Progress(percentage=0, stage="failed").to_doc(),
            }
        ),
    )
