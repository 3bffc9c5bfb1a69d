"""Create the AWS resources the service needs: queue, dead-letter queue, table and bucket,
and the events topic when one is configured.

Safe to run any number of times. Existing resources are kept; queue attributes are set to
the configured values on every run, so a changed visibility timeout or receive limit takes
effect without recreating the queue. The table's TTL is enabled on ``expiresAt`` if it is
not already, and a table made before the list indexes existed gets them added, one
UpdateTable at a time as DynamoDB requires, waiting while each one backfills.
SNS's CreateTopic is idempotent by name, which comes from the configured ARN.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from service.backends.aws_clients import aws_call, error_code, open_clients
from service.backends.aws_records import EXPIRES_AT, INDEXES
from service.errors import BackendError
from service.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        GlobalSecondaryIndexTypeDef,
    )
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.literals import BucketLocationConstraintType
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

    QueueAttributes = dict[QueueAttributeNameType, str]

RETENTION_S = 14 * 24 * 3600
"""The SQS maximum, so a message outlives any outage we would still want to recover from."""

TABLE_WAIT_DELAY_S = 2
TABLE_WAIT_ATTEMPTS = 90
INDEX_WAIT_S = 3600
"""How long bootstrap waits for a new index to backfill a table that already holds items."""

_QUEUE_EXISTS = frozenset({"QueueAlreadyExists", "QueueNameExists"})


@dataclass(frozen=True, slots=True)
class BootstrapReport:
    """What bootstrap found or created."""

    queue_url: str
    dlq_url: str
    table: str
    bucket: str
    topic_arn: str | None = None


async def bootstrap(settings: Settings) -> BootstrapReport:
    """Create every resource that is missing and bring queue attributes up to date."""
    async with open_clients(settings) as clients:
        dlq_url = await ensure_queue(
            clients.sqs, settings.dlq_name, {"MessageRetentionPeriod": str(RETENTION_S)}
        )
        dlq_arn = await queue_arn(clients.sqs, dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
        queue_url = await ensure_queue(
            clients.sqs,
            settings.queue_name,
            {
                "VisibilityTimeout": str(settings.visibility_timeout_s),
                "MessageRetentionPeriod": str(RETENTION_S),
                "RedrivePolicy": json.dumps(redrive),
            },
        )
        await ensure_table(clients.dynamodb, settings.table_name)
        await ensure_time_to_live(clients.dynamodb, settings.table_name, EXPIRES_AT)
        await ensure_bucket(clients.s3, settings.bucket, settings.aws_region)
        topic_arn = None
        if clients.sns is not None and settings.events_topic_arn is not None:
            topic_arn = await ensure_topic(clients.sns, topic_name(settings.events_topic_arn))
    return BootstrapReport(
        queue_url=queue_url,
        dlq_url=dlq_url,
        table=settings.table_name,
        bucket=settings.bucket,
        topic_arn=topic_arn,
    )


def topic_name(arn: str) -> str:
    """The topic name, the last part of its ARN."""
    return arn.rsplit(":", 1)[-1]


async def ensure_topic(client: SNSClient, name: str) -> str:
    """The ARN of topic ``name``, created if missing (CreateTopic returns an existing one)."""
    with aws_call(f"sns CreateTopic {name}"):
        response = await client.create_topic(Name=name)
    return response["TopicArn"]


async def ensure_queue(client: SQSClient, name: str, attributes: QueueAttributes) -> str:
    """The URL of queue ``name``, created if missing, with ``attributes`` applied."""
    with aws_call(f"sqs CreateQueue {name}"):
        try:
            response = await client.create_queue(QueueName=name, Attributes=attributes)
            return response["QueueUrl"]
        except ClientError as exc:
            # SQS refuses to create an existing queue with different attributes.
            if error_code(exc) not in _QUEUE_EXISTS:
                raise
        url = (await client.get_queue_url(QueueName=name))["QueueUrl"]
        await client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


async def queue_arn(client: SQSClient, url: str) -> str:
    """The ARN of the queue at ``url``, which a redrive policy names."""
    with aws_call("sqs GetQueueAttributes QueueArn"):
        response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]


def key_attributes() -> list[AttributeDefinitionTypeDef]:
    """The string attributes that key the table and its indexes."""
    names = ["pk", "sk", *sorted({name for keys in INDEXES.values() for name in keys})]
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def index_definitions() -> list[GlobalSecondaryIndexTypeDef]:
    """The list indexes: every attribute projected, so a list needs no reads of the table."""
    return [
        {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": partition, "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
        for name, (partition, sort) in INDEXES.items()
    ]


async def ensure_table(client: DynamoDBClient, table: str) -> None:
    """Create the single table (``pk`` and ``sk`` strings, on demand, with the list indexes)
    and wait until ACTIVE; add the indexes to a table that lacks them."""
    with aws_call(f"dynamodb CreateTable {table}"):
        try:
            await client.create_table(
                TableName=table,
                AttributeDefinitions=key_attributes(),
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=index_definitions(),
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
        waiter = client.get_waiter("table_exists")
        await waiter.wait(
            TableName=table,
            WaiterConfig={"Delay": TABLE_WAIT_DELAY_S, "MaxAttempts": TABLE_WAIT_ATTEMPTS},
        )
    for index in index_definitions():
        await ensure_index(client, table, index)


async def ensure_index(
    client: DynamoDBClient, table: str, index: GlobalSecondaryIndexTypeDef
) -> None:
    """Add ``index`` to the table unless it has it, and wait until it is ACTIVE.

    An index of the same name on other keys is an error: the lists would read wrong items.
    """
    name = index["IndexName"]
    with aws_call(f"dynamodb UpdateTable {table} {name}"):
        existing = (await index_states(client, table)).get(name)
        if existing is None:
            try:
                await client.update_table(
                    TableName=table,
                    AttributeDefinitions=key_attributes(),
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )
            except ClientError:
                # A concurrent bootstrap may have asked for it between the check and here.
                existing = (await index_states(client, table)).get(name)
                if existing is None:
                    raise
        if existing is not None and existing[1] != _keys(index):
            raise BackendError(
                f"table {table} has an index {name} keyed on {existing[1]}, not {_keys(index)}"
            )
        await _wait_until_active(client, table, name)


async def index_states(
    client: DynamoDBClient, table: str
) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each global secondary index of the table: its status and its keys."""
    description = (await client.describe_table(TableName=table))["Table"]
    return {
        index["IndexName"]: (index.get("IndexStatus", "ACTIVE"), _keys(index))
        for index in description.get("GlobalSecondaryIndexes", [])
    }


def _keys(index: Any) -> list[tuple[str, str]]:
    return [(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]]


async def _wait_until_active(client: DynamoDBClient, table: str, name: str) -> None:
    # The table's own waiter does not look at indexes; a new one backfills for a while.
    for _ in range(max(1, INDEX_WAIT_S // TABLE_WAIT_DELAY_S)):
        state = (await index_states(client, table)).get(name)
        if state is not None and state[0] == "ACTIVE":
            return
        await asyncio.sleep(TABLE_WAIT_DELAY_S)
    raise BackendError(f"index {name} of table {table} is still not ACTIVE; run bootstrap again")


async def ensure_time_to_live(client: DynamoDBClient, table: str, attribute: str) -> None:
    """Have DynamoDB delete items once the epoch seconds in ``attribute`` have passed.

    Enabling TTL again, or on another attribute, fails in DynamoDB, so this enables it only
    where it is off; TTL on a different attribute is left alone and raises BackendError.
    """
    with aws_call(f"dynamodb UpdateTimeToLive {table}"):
        if await time_to_live_attribute(client, table) == attribute:
            return
        try:
            await client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
            )
        except ClientError as exc:
            # A concurrent bootstrap may have enabled it between the check and the update.
            if error_code(exc) != "ValidationException":
                raise
            if await time_to_live_attribute(client, table) != attribute:
                raise


async def time_to_live_attribute(client: DynamoDBClient, table: str) -> str | None:
    """The attribute the table's TTL is enabled (or being enabled) on, or ``None``."""
    response = await client.describe_time_to_live(TableName=table)
    description = response.get("TimeToLiveDescription", {})
    if description.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
        return None
    return description.get("AttributeName")


async def ensure_bucket(client: S3Client, bucket: str, region: str) -> None:
    """Create the bucket in ``region`` unless this account already owns it."""
    with aws_call(f"s3 CreateBucket {bucket}"):
        try:
            if region == "us-east-1":
                # us-east-1 is the default location and rejects it as a LocationConstraint.
                await client.create_bucket(Bucket=bucket)
            else:
                await client.create_bucket(
                    Bucket=bucket,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", region)
                    },
                )
        except ClientError as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
