"""The bundle of ports one backend provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.ports import BlobStore, IdempotencyStore, JobStore, NovelStore, Pingable, Queue


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
