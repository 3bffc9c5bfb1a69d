"""The bundle of ports one backend provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.ports import (
    BlobArchive,
    EventTopic,
    IdempotencyStore,
    JobCatalog,
    JobStore,
    NovelStore,
    Pingable,
    Queue,
    UserQuotas,
)


@dataclass(frozen=True, slots=True)
class Backend:
    """Every port the service needs, from one backend."""

    name: str
    queue: Queue
    dlq: Queue
    jobs: JobStore
    novels: NovelStore
    blobs: BlobArchive
    idempotency: IdempotencyStore
    quotas: UserQuotas
    """Each user's active-job slots."""
    probes: Sequence[Pingable]
    topic: EventTopic | None = None
    """Where job events are published, when an events topic is configured."""

    @property
    def job_catalog(self) -> JobCatalog:
        """The job store's listing and erasure side; every backend's own job store has one."""
        # ``jobs`` is typed by what the runner needs, so a test can wrap it with a few
        # methods; lists and erasure need the backend's real store.
        if not isinstance(self.jobs, JobCatalog):
            raise TypeError(f"the {self.name} backend's job store cannot list or delete jobs")
        return self.jobs
