"""The extension point for job types: what a type declares, and what its handler gets.

A job type is a name, a handler factory, whether users see its jobs and, optionally, its
own retry rule. Its handler does
the work and returns a :class:`JobResult`; everything around it (taking the job, progress,
completion, retries with backoff, dead letters, shutdown) is the runner's, the same for
every type. To add a type, write one handler module that declares a :class:`JobType` and
add it to ``JOB_TYPES`` in ``service/runtime.py``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.backends.backend import Backend
from service.consumers.progress import ProgressWriter
from service.jobs import Job
from service.metrics import Metrics
from service.ports import Analyzer
from service.settings import Settings

JobEnded = Callable[[Job], Awaitable[None]]
"""Called with a job once it has reached an end state (``completed``, ``failed``,
``cancelled``), by whoever wrote that state or finds it on a redelivery; it must be
idempotent. It announces the end (webhook, events topic)."""

JobViewer = Callable[[Job], Mapping[str, Any]]
"""A job's public view, as ``GET /v1/jobs/{jobId}`` serves it."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished job leaves behind: a blob key and a small summary for its record."""

    key: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class JobContext:
    """One attempt of one job, as its handler sees it."""

    job: Job
    attempt: int
    """Which attempt this is: 1 for the first time the job starts."""
    progress: ProgressWriter


class JobHandler(Protocol):
    """Does a job's work; raises :class:`~service.errors.JobError` to fail or retry it."""

    async def __call__(self, context: JobContext) -> JobResult:
        """Run one attempt. Nothing it writes may be visible to users yet."""
        ...

    async def on_completed(self, job: Job) -> None:
        """Make a completed job's result visible (e.g. point its novel at it).

        Runs only after the guarded completion succeeded, and again if the message is
        redelivered after completion, so it must be idempotent.
        """
        ...


@dataclass(frozen=True, slots=True)
class HandlerDeps:
    """What handler factories may draw on; built once per worker process."""

    backend: Backend
    analyzer: Analyzer | None = None
    metrics: Metrics | None = None
    settings: Settings | None = None
    job_view: JobViewer | None = None


class Delays(Protocol):
    """How long to wait after a failed attempt."""

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> int:
        """Seconds to hide the message after failed attempt number ``attempt`` (1-based)."""
        ...


@dataclass(frozen=True, slots=True)
class RetryRule:
    """A job type's own retry delays and attempts, instead of the service's backoff."""

    delays: Delays
    max_attempts: int


@dataclass(frozen=True, slots=True)
class JobType:
    """A kind of job: its message ``type``, its handler factory, and who sees its jobs.

    Jobs of a type that is not ``user_visible`` (internal work such as deliveries) answer
    404 on the job routes, like a job that does not exist.
    """

    name: str
    build: Callable[[HandlerDeps], JobHandler | None]
    """The handler; ``None`` when the type is not configured in this process (its messages
    are then unknown here and dead-lettered)."""
    user_visible: bool = True
    retry: Callable[[Settings], RetryRule] | None = None
    """The type's own retry rule from the settings; ``None`` for the service's backoff."""
