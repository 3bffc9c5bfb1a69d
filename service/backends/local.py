"""The embedded local backend: SQS, DynamoDB and S3 semantics on one machine, no AWS.

Queues, jobs, novels, idempotency keys and users' active-job slots live in one SQLite file,
``<data_dir>/storyboard.db``, which several processes may share; blobs are files under
``<data_dir>/blobs/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.backends.backend import Backend
from service.backends.local_blobs import LocalBlobStore
from service.backends.local_db import Database
from service.backends.local_idempotency import LocalIdempotencyStore
from service.backends.local_queue import LocalQueue, QueueSignals
from service.backends.local_quotas import LocalUserQuotas
from service.backends.local_records import LocalJobStore, LocalNovelStore
from service.settings import Settings

DATABASE_FILE = "storyboard.db"
BLOB_DIR = "blobs"


@asynccontextmanager
async def open_local_backend(
    settings: Settings, *, poll_interval_s: float = 0.1
) -> AsyncIterator[Backend]:
    """Open the local backend in ``settings.data_dir`` for the lifetime of the context.

    ``poll_interval_s`` bounds how late a waiting receive notices a message sent by another
    process; sends in this process wake it at once. An unusable data directory or database
    raises :class:`~service.ports.BackendError` naming the path.
    """
    db = await Database.open(settings.data_dir / DATABASE_FILE)
    try:
        blobs = await LocalBlobStore.open(settings.data_dir / BLOB_DIR)
        signals = QueueSignals()
        queue = LocalQueue(
            db,
            settings.queue_name,
            signals=signals,
            dlq=settings.dlq_name,
            max_receive_count=settings.max_receive_count,
            poll_interval_s=poll_interval_s,
            fair=settings.queue_order == "fair",
        )
        dlq = LocalQueue(db, settings.dlq_name, signals=signals, poll_interval_s=poll_interval_s)
        jobs = LocalJobStore(db)
        novels = LocalNovelStore(db)
        idempotency = LocalIdempotencyStore(db)
        yield Backend(
            name="local",
            queue=queue,
            dlq=dlq,
            jobs=jobs,
            novels=novels,
            blobs=blobs,
            idempotency=idempotency,
            quotas=LocalUserQuotas(db),
            probes=(queue, dlq, jobs, novels, idempotency, blobs),
        )
    finally:
        await db.close()
