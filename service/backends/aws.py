"""The AWS backend: SQS queues, one DynamoDB table for records, one S3 bucket for blobs.

The ports live in ``aws_queue``, ``aws_records`` and ``aws_blobs``; client construction and
error translation in ``aws_clients``, which ``service.bootstrap`` shares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.backends.aws_blobs import S3BlobStore
from service.backends.aws_clients import open_clients
from service.backends.aws_queue import SqsQueue, resolve_queue_url
from service.backends.aws_quotas import DynamoUserQuotas
from service.backends.aws_records import DynamoIdempotencyStore, DynamoJobStore, DynamoNovelStore
from service.backends.aws_topic import SnsTopic
from service.backends.backend import Backend
from service.settings import Settings

__all__ = ["open_aws_backend"]


@asynccontextmanager
async def open_aws_backend(settings: Settings) -> AsyncIterator[Backend]:
    """Open the AWS clients and yield the backend; the clients close when the context ends.

    Queue URLs come from the settings when given, else from SQS by name, so a missing queue
    fails here with :class:`~service.ports.BackendError` rather than on the first receive.
    """
    async with open_clients(settings) as clients:
        queue_url = await resolve_queue_url(clients.sqs, settings.queue_name, settings.queue_url)
        dlq_url = await resolve_queue_url(clients.sqs, settings.dlq_name, settings.dlq_url)
        grouped = settings.queue_order == "fair"
        queue = SqsQueue(clients.sqs, queue_url, grouped=grouped)
        jobs = DynamoJobStore(clients.dynamodb, settings.table_name)
        blobs = S3BlobStore(clients.s3, settings.bucket)
        topic = None
        if clients.sns is not None and settings.events_topic_arn is not None:
            topic = SnsTopic(clients.sns, settings.events_topic_arn)
        yield Backend(
            name="aws",
            queue=queue,
            dlq=SqsQueue(clients.sqs, dlq_url, grouped=grouped),
            jobs=jobs,
            novels=DynamoNovelStore(clients.dynamodb, settings.table_name),
            blobs=blobs,
            idempotency=DynamoIdempotencyStore(clients.dynamodb, settings.table_name),
            quotas=DynamoUserQuotas(clients.dynamodb, settings.table_name),
            # The DLQ and the novel records are not on the job path, and the idempotency
            # keys share the jobs' table; these three are.
            probes=(queue, jobs, blobs),
            topic=topic,
        )
