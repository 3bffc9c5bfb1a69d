"""The events a job's end announces, and the internal jobs that carry them out.

A user-visible job that ends ``completed``, ``failed`` or ``cancelled`` announces
``job.completed``, ``job.failed`` or ``job.cancelled``: to its ``callbackUrl`` (a
:data:`WEBHOOK` job) and to the events topic (an :data:`SNS` job). Each of those is an
ordinary job on the same queue, whose id is derived from the announced job and the event,
so announcing twice finds the first one (``AlreadyExists``) instead of queueing another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from service.jobs import Job, JobStatus
from service.models import isoformat

WEBHOOK = "webhook"
"""The job type that POSTs an event to the announced job's ``callbackUrl``."""
SNS = "sns"
"""The job type that publishes an event to the configured SNS topic."""

EVENT_TYPES: Mapping[JobStatus, str] = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}


def end_event(job: Job) -> str | None:
    """The event type a job in its current state announces; ``None`` while it is live."""
    return EVENT_TYPES.get(job.status)


def delivery_id(channel: str, job_id: str, event_type: str) -> str:
    """The id of the job that carries ``event_type`` of ``job_id`` over ``channel``.

    The same for every try, so a webhook's ``webhook-id`` is stable and a second
    announcement of the same end is recognised as already queued. One event per job and
    end state: a job redriven after failing that fails again does not announce twice.
    """
    return f"{channel}_{job_id}_{event_type.removeprefix('job.')}"


def event_body(event_type: str, job: Job, data: Mapping[str, Any]) -> str:
    """The JSON event: ``{"type", "timestamp", "data"}``, ``data`` being the job's view.

    ``timestamp`` is when the job ended (its last own change), so it is the same on every
    attempt; the attempt's own time travels in the ``webhook-timestamp`` header.
    """
    document = {"type": event_type, "timestamp": isoformat(job.updated_at), "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
