"""The job record and its state machine.

Every status change goes through a :class:`Guard`: a condition the stored record must meet for
the write to apply. Both job stores (DynamoDB and SQLite) evaluate the same guards atomically,
so the transition rules live here once:

* a ``completed`` job never goes back to ``running``;
* a delivery only moves a job forward if its number (the queue's receive count) is newer
  than the last one recorded, so a stale redelivery never overwrites a newer one;
* progress, completion and failure writes only apply for the delivery that owns the job.

The delivery number is the job's owner token (a fencing token): a worker owns the job from
the guarded ``start`` until a newer delivery's ``start`` succeeds, and its lease is the
message's visibility timeout, which the worker keeps extending while it is alive. A newer
delivery can only exist once that lease lapsed, and from then on every write of the older
delivery is refused. A worker writes its storyboard under a key of its own delivery, so
the one its completion publishes can only be the owner's.

``attempts`` counts something else: the times the job really started. A delivery that never
started the job (a duplicate, a receive cut short) does not count, and a worker that hands
the job back at shutdown takes its attempt back, so retries are spent only on real runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

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


LIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
MAX_ERROR_MESSAGE = 1000


class Progress(CamelModel):
    """How far a job has come: a percentage and the name of the stage it is in."""

    percentage: int = Field(ge=0, le=100)
    stage: str


class ErrorInfo(CamelModel):
    """A machine-readable code and a human message."""

    code: str
    message: str

    @classmethod
    def of(cls, code: str, message: str) -> ErrorInfo:
        """An error whose message is cut to a size a record can always hold."""
        return cls(code=code, message=message[:MAX_ERROR_MESSAGE])


def retries_exhausted(attempts: int | None, last_error: str | None = None) -> ErrorInfo:
    """The one wording for a job whose deliveries ran out, from the worker or the DLQ."""
    tried = f"after {attempts} attempts" if attempts else "after every delivery"
    detail = f": {last_error}" if last_error else "; its message is in the dead-letter queue"
    return ErrorInfo.of("retries_exhausted", f"gave up {tried}{detail}")


class StoryboardSummary(CamelModel):
    """Counts kept beside the pointer to a stored storyboard."""

    title: str
    chapters: int
    scenes: int
    panels: int
    characters: int


WebhookStatus = Literal["pending", "retrying", "delivered", "gone", "failed"]
OPEN_WEBHOOK: frozenset[str] = frozenset({"pending", "retrying"})
"""Webhook states that a later attempt may still replace; the others are final."""


class WebhookState(CamelModel):
    """Where the delivery of a job's end event to its ``callbackUrl`` stands."""

    status: WebhookStatus
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class EventRef(CamelModel):
    """For an internal notification job: the job whose end it announces, and the event."""

    job_id: str
    type: str


class JobSource(CamelModel):
    """What a job's worker needs of its novel, copied into the job when it is created, so
    the worker starts on the text without reading the novel's record first. A novel's title
    and text never change after upload; an erased novel's jobs are cancelled first."""

    title: str
    text_key: str


class Job(CamelModel):
    """One unit of work, stored in the job store and reported by ``GET /v1/jobs/{jobId}``.

    ``type`` names the job type that runs it. A completed job points at its result with
    ``result_key`` (a blob key) and keeps a small ``summary`` of it, both chosen by its type.
    """

    job_id: str
    novel_id: str
    user_id: str
    type: str = "analyze"
    status: JobStatus = JobStatus.QUEUED
    progress: Progress = Progress(percentage=0, stage="queued")
    attempts: int = 0
    delivery: int = 0
    error: ErrorInfo | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    result_key: str | None = None
    summary: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None
    started_at: datetime | None = None
    """When the latest attempt started: ``startedAt - createdAt`` is the first attempt's
    wait in the queue, the figure fair sharing between users keeps low."""
    usage: dict[str, int] | None = None
    version: int = 1
    """The record's version: 1 when created, one more with every write. Watchers (the
    job's event stream) compare it to tell a newer state from one they have seen."""
    callback_url: str | None = None
    webhook: WebhookState | None = None
    event: EventRef | None = None
    source: JobSource | None = None
    """The novel's title and text key, for jobs created with them (older ones read the
    novel)."""


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition on the stored job that a write requires.

    ``statuses`` must contain the stored status. ``delivery_below`` requires the stored
    ``delivery`` to be strictly less than it; ``delivery_equal`` requires equality.
    ``webhook_open_below`` requires the stored webhook state to be absent, or open
    (:data:`OPEN_WEBHOOK`) with fewer ``attempts`` than it.
    """

    statuses: frozenset[JobStatus]
    delivery_below: int | None = None
    delivery_equal: int | None = None
    webhook_open_below: int | None = None

    def allows(self, job: Job) -> bool:
        """Evaluate the guard in memory; stores that lack native conditions use this."""
        if job.status not in self.statuses:
            return False
        if self.delivery_below is not None and not job.delivery < self.delivery_below:
            return False
        if self.webhook_open_below is not None and not _webhook_open(job, self.webhook_open_below):
            return False
        return self.delivery_equal is None or job.delivery == self.delivery_equal


def _webhook_open(job: Job, below: int) -> bool:
    state = job.webhook
    return state is None or (state.status in OPEN_WEBHOOK and state.attempts < below)


@dataclass(frozen=True, slots=True)
class Transition:
    """A guarded write: the guard, the camelCase attributes it sets, and the counters it
    adds to (atomically, in the same write)."""

    guard: Guard
    changes: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        """What the write adds to: its own counters and, when it writes at all, ``version``,
        so every write the stores apply makes the record's version one larger."""
        if not self.changes and not self.add:
            return {}
        return {**self.add, "version": self.add.get("version", 0) + 1}


def applied(job: Job, transition: Transition) -> Job:
    """``job`` as a store holds it once ``transition`` has applied to it, worked out in memory.

    Exact when ``job`` is the stored record, as a store that applies a transition without
    reading it back (a transaction) must know it is, e.g. by a version condition.
    """
    doc = job.to_doc()
    doc.update(transition.changes)
    for attribute, amount in transition.counters().items():
        doc[attribute] = int(doc.get(attribute) or 0) + amount
    return Job.model_validate(doc)


def _stamp(changes: dict[str, Any]) -> dict[str, Any]:
    return {**changes, "updatedAt": isoformat(utcnow())}


def start(delivery: int) -> Transition:
    """The delivery with receive count ``delivery`` takes the job: one more attempt.

    A running job may be taken by a newer delivery: its previous worker died or lost the
    message, since a live worker keeps its message hidden.
    """
    now = isoformat(utcnow())
    return Transition(
        Guard(LIVE, delivery_below=delivery),
        {
            "status": JobStatus.RUNNING.value,
            "delivery": delivery,
            "progress": Progress(percentage=10, stage="started").to_doc(),
            "nextAttemptAt": None,
            "startedAt": now,
            "updatedAt": now,
        },
        add={"attempts": 1},
    )


def progress(delivery: int, percentage: int, stage: str) -> Transition:
    """The owning delivery reports progress."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), delivery_equal=delivery),
        _stamp({"progress": Progress(percentage=percentage, stage=stage).to_doc()}),
    )


def complete(
    delivery: int,
    result_key: str | None,
    summary: Mapping[str, Any] | None = None,
    usage: dict[str, int] | None = None,
) -> Transition:
    """The owning delivery finished and stored its result."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), delivery_equal=delivery),
        _stamp(
            {
                "status": JobStatus.COMPLETED.value,
                "progress": Progress(percentage=100, stage="completed").to_doc(),
                "error": None,
                "resultKey": result_key,
                "summary": dict(summary) if summary else None,
                "usage": usage or None,
            }
        ),
    )


def _failed(guard: Guard, error: ErrorInfo) -> Transition:
    # Every way of ending a job failed writes the same fields; only the guard differs.
    return Transition(
        guard,
        _stamp(
            {
                "status": JobStatus.FAILED.value,
                "error": error.to_doc(),
                "nextAttemptAt": None,
                "progress": Progress(percentage=0, stage="failed").to_doc(),
            }
        ),
    )


def fail(delivery: int, error: ErrorInfo) -> Transition:
    """The owning delivery failed for good."""
    return _failed(Guard(frozenset({JobStatus.RUNNING}), delivery_equal=delivery), error)


def retry_later(delivery: int, error: ErrorInfo, next_attempt_at: datetime) -> Transition:
    """The owning delivery failed transiently; the queue delivers the job again later."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), delivery_equal=delivery),
        _stamp(
            {
                "status": JobStatus.RETRYING.value,
                "error": error.to_doc(),
                "nextAttemptAt": isoformat(next_attempt_at),
                "progress": Progress(percentage=0, stage="waiting for retry").to_doc(),
            }
        ),
    )


def release(delivery: int) -> Transition:
    """A worker shutting down hands the job back unfinished and takes its attempt back."""
    return Transition(
        Guard(frozenset({JobStatus.RUNNING}), delivery_equal=delivery),
        _stamp(
            {
                "status": JobStatus.QUEUED.value,
                "progress": Progress(percentage=0, stage="released by a stopping worker").to_doc(),
            }
        ),
        add={"attempts": -1},
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
    return _failed(Guard(LIVE), error)


def requeue() -> Transition:
    """A dead-lettered job is redriven: it starts again cleanly from attempt one."""
    return Transition(
        Guard(frozenset({JobStatus.FAILED, *LIVE})),
        _stamp(
            {
                "status": JobStatus.QUEUED.value,
                "attempts": 0,
                "delivery": 0,
                "error": None,
                "nextAttemptAt": None,
                "progress": Progress(percentage=0, stage="queued").to_doc(),
            }
        ),
    )


def abandon(error: ErrorInfo) -> Transition:
    """A job whose message was never sent ends ``failed`` rather than staying queued."""
    return _failed(Guard(frozenset({JobStatus.QUEUED}), delivery_equal=0), error)


def webhook(state: WebhookState) -> Transition:
    """Record the webhook delivery of an ended job; never touches the job's own fields.

    Applies only while the stored state is absent or open with fewer attempts, so a late or
    repeated write never moves the state backwards, and a final state stays final. A
    ``pending`` state applies only where there is no state yet. ``updatedAt`` is left
    alone: it dates the job's own last change, which its storyboard pointer relies on.
    """
    below = 0 if state.status == "pending" else state.attempts + 1
    return Transition(Guard(ENDED, webhook_open_below=below), {"webhook": state.to_doc()})
