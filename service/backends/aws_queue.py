"""The SQS queue port.

Batch calls are split into chunks of ten, the SQS limit, and sent concurrently. A receipt
that SQS rejects (stale, unknown, malformed) is reported in :class:`BatchOutcome` with its
error code. A call that fails as a whole (SQS unreachable, access denied, queue gone) raises
:class:`BackendError`; repeating the batch is safe because deletes and visibility changes
are idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.backends.aws_clients import aws_call
from service.errors import BackendError
from service.ports import BatchOutcome, Message, QueueDepth
from service.queue_limits import MAX_BATCH, check_attributes

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import BatchResultErrorEntryTypeDef, MessageTypeDef

MAX_WAIT_S = 20
_GROUP_ID = re.compile(r"[!-~]{1,128}")
"""What SQS takes as a ``MessageGroupId``: 1-128 printable ASCII characters, no spaces."""

_ChunkCall = Callable[[list[tuple[str, str]]], Awaitable["list[BatchResultErrorEntryTypeDef]"]]
"""Sends one chunk of ``(entry id, receipt)`` pairs and returns the failed entries."""


async def resolve_queue_url(client: SQSClient, name: str, configured: str | None) -> str:
    """The configured URL, else the URL SQS reports for ``name``."""
    if configured:
        return configured
    with aws_call(f"sqs GetQueueUrl {name}"):
        response = await client.get_queue_url(QueueName=name)
    return response["QueueUrl"]


def sqs_group_id(group: str) -> str:
    """``group`` as an SQS ``MessageGroupId``: itself when SQS takes it, else a digest.

    User ids come from API keys and JWT claims, so they may hold spaces, non-ASCII letters
    or more than 128 characters; the digest keeps each such user one group of its own.
    """
    if _GROUP_ID.fullmatch(group):
        return group
    return "sha256-" + hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()


class SqsQueue:
    """A :class:`~service.ports.Queue` on one SQS queue.

    A standard queue is a fair queue once messages carry a ``MessageGroupId``: SQS then
    delivers quiet groups' messages before those of a group holding a large share of the
    messages in flight. With ``grouped=False`` no group is sent (first in, first out).
    """

    def __init__(self, client: SQSClient, url: str, *, grouped: bool = True) -> None:
        self._client = client
        self.url = url
        self._name = url.rstrip("/").rsplit("/", 1)[-1]
        self._grouped = grouped

    async def send(
        self,
        body: str,
        *,
        group: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue ``body`` in ``group`` with string message ``attributes``; the message id."""
        request: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body}
        if group is not None and self._grouped:
            request["MessageGroupId"] = sqs_group_id(group)
        checked = check_attributes(attributes)
        if checked:
            request["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value}
                for name, value in checked.items()
            }
        with aws_call(f"sqs SendMessage {self._name}"):
            response = await self._client.send_message(**request)
        return response["MessageId"]

    async def receive(
        self, *, max_messages: int, wait_s: float, visibility_s: int
    ) -> list[Message]:
        """Long-poll for up to ``max_messages``, hiding them for ``visibility_s`` seconds."""
        with aws_call(f"sqs ReceiveMessage {self._name}"):
            response = await self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(max(max_messages, 1), MAX_BATCH),
                # Rounding up keeps a sub-second wait a long poll rather than a sampled one.
                WaitTimeSeconds=min(max(math.ceil(wait_s), 0), MAX_WAIT_S),
                VisibilityTimeout=visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
                MessageAttributeNames=["All"],
            )
        return [_message(raw) for raw in response.get("Messages", [])]

    async def delete_batch(self, receipts: Sequence[str]) -> BatchOutcome:
        """Delete received messages, ten per call."""

        async def call(entries: list[tuple[str, str]]) -> list[BatchResultErrorEntryTypeDef]:
            response = await self._client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": entry_id, "ReceiptHandle": r} for entry_id, r in entries],
            )
            return response.get("Failed", [])

        return await self._run_batches(f"sqs DeleteMessageBatch {self._name}", receipts, call)

    async def change_visibility_batch(
        self, receipts: Sequence[str], visibility_s: int
    ) -> BatchOutcome:
        """Set the remaining invisibility of received messages, ten per call."""

        async def call(entries: list[tuple[str, str]]) -> list[BatchResultErrorEntryTypeDef]:
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": entry_id, "ReceiptHandle": r, "VisibilityTimeout": visibility_s}
                    for entry_id, r in entries
                ],
            )
            return response.get("Failed", [])

        action = f"sqs ChangeMessageVisibilityBatch {self._name}"
        return await self._run_batches(action, receipts, call)

    async def depth(self) -> QueueDepth:
        """Approximate counts of visible and in-flight messages."""
        with aws_call(f"sqs GetQueueAttributes {self._name}"):
            response = await self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        attributes = response.get("Attributes", {})
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", "0")),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
        )

    async def ping(self) -> None:
        """Raise :class:`BackendError` unless the queue answers a cheap attribute read."""
        with aws_call(f"sqs GetQueueAttributes {self._name}"):
            await self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])

    async def _run_batches(
        self, action: str, receipts: Sequence[str], call: _ChunkCall
    ) -> BatchOutcome:
        # A batch that repeats a receipt can be refused as a whole, and a caller can only
        # use one result per receipt, so duplicates go out once.
        unique = list(dict.fromkeys(receipts))
        chunks = [unique[i : i + MAX_BATCH] for i in range(0, len(unique), MAX_BATCH)]
        results = await asyncio.gather(
            *(_run_chunk(action, chunk, call) for chunk in chunks), return_exceptions=True
        )
        failed: dict[str, str] = {}
        for result in results:
            if isinstance(result, BaseException):
                raise result
            failed.update(result)
        return BatchOutcome(failed=failed)


async def _run_chunk(action: str, chunk: list[str], call: _ChunkCall) -> dict[str, str]:
    """Send one chunk; the failed receipts mapped to their error codes."""
    # Ids only need to be unique within one call; positions are.
    entries = [(str(index), receipt) for index, receipt in enumerate(chunk)]
    with aws_call(action):
        failures = await call(entries)
    by_id = dict(entries)
    failed: dict[str, str] = {}
    for entry in failures:
        receipt = by_id.get(entry["Id"])
        if receipt is None:
            raise BackendError(f"{action} reported an unknown entry id {entry['Id']!r}")
        failed[receipt] = entry.get("Code") or "Unknown"
    return failed


def _message(raw: MessageTypeDef) -> Message:
    attributes = raw.get("Attributes", {})
    return Message(
        message_id=raw["MessageId"],
        receipt=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        group=attributes.get("MessageGroupId"),
        attributes={
            name: value["StringValue"]
            for name, value in raw.get("MessageAttributes", {}).items()
            if "StringValue" in value
        },
    )
