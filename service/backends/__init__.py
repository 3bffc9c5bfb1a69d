"""Backend selection: one bundle of ports, AWS or local, chosen from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.ports import BlobStore, IdempotencyStore, JobStore, NovelStore, Pingable, Queue
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Backend:
    """Every port the service needs, from one backend."""

    name: str
    queue: Queue
    dlq: Queue
    jobs: JobStore
    novels: NovelStore
    blobs: BlobStore
    idempotency: IdempotencyStore
    probes: Sequence[Pingable]


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """Open the configured backend's clients for the lifetime of the context."""
    if settings.resolved_backend == "aws":
        from service.backends.aws import open_aws_backend

        async with open_aws_backend(settings) as backend:
            yield backend
    else:
        from service.backends.local import open_local_backend

        async with open_local_backend(settings) as backend:
            yield backend
