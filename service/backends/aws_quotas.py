"""Active-job slots as one DynamoDB item per user, on the records' table.

The item (``pk`` = ``QUOTA#<userId>``, ``sk`` = ``QUOTA``) holds ``active``, a map of job id
to the time the job took its slot. Taking a slot is one conditional UpdateItem::

    SET active.#job = :now
    IF attribute_exists(active) AND attribute_not_exists(active.#job)
       AND size(active) < :limit

so DynamoDB, not the caller, decides which of many concurrent takers get the last slots.
Giving one back is ``REMOVE active.#job``, conditional on the slot being there: a second
release of the same job changes nothing, where a decremented counter would free a slot
some other job holds. A map update cannot create its parent, so a user's first take
creates the item with an empty map (``if_not_exists``) and tries again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.backends.aws_clients import aws_call, error_code
from service.backends.aws_records import CONDITION_FAILED, from_attribute, to_attribute
from service.errors import BackendError
from service.models import isoformat
from service.ports import QuotaGrant

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

ACTIVE = "active"
ACQUIRE_ATTEMPTS = 3
"""Conditional writes one take tries while the record keeps changing under it."""


def quota_key(user_id: str) -> dict[str, AttributeValueTypeDef]:
    """The primary key of a user's slot item."""
    return {"pk": {"S": f"QUOTA#{user_id}"}, "sk": {"S": "QUOTA"}}


class DynamoUserQuotas:
    """A :class:`~service.ports.UserQuotas` of conditional map updates on one table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def acquire(self, user_id: str, job_id: str, *, limit: int, at: datetime) -> QuotaGrant:
        """Give the job a slot if it holds one or the user holds fewer than ``limit``.

        A refused write is followed by a consistent read, which tells a full record from a
        missing one or from a slot this job holds already.
        """
        for _ in range(ACQUIRE_ATTEMPTS):
            held = await self._take(user_id, job_id, limit, isoformat(at))
            if held is not None:
                return QuotaGrant(granted=True, held=held)
            slots = await self._slots(user_id)
            if slots is None:
                await self._create(user_id)
            elif job_id in slots:
                return QuotaGrant(granted=True, held=len(slots))
            elif len(slots) >= limit:
                return QuotaGrant(granted=False, held=len(slots))
        raise BackendError(f"the slots of user {user_id} kept changing; try again")

    async def release(self, user_id: str, job_id: str) -> None:
        """``REMOVE active.#job`` if the job holds a slot."""
        with aws_call(f"dynamodb UpdateItem {self._table}"):
            try:
                await self._client.update_item(
                    TableName=self._table,
                    Key=quota_key(user_id),
                    UpdateExpression="REMOVE #active.#job",
                    ConditionExpression="attribute_exists(#active.#job)",
                    ExpressionAttributeNames={"#active": ACTIVE, "#job": job_id},
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise

    async def held(self, user_id: str) -> dict[str, datetime]:
        """The user's slots, read consistently."""
        slots = await self._slots(user_id)
        return {job_id: datetime.fromisoformat(taken) for job_id, taken in (slots or {}).items()}

    async def _take(self, user_id: str, job_id: str, limit: int, taken_at: str) -> int | None:
        """The conditional take: the slots held after it, or ``None`` if it was refused."""
        with aws_call(f"dynamodb UpdateItem {self._table}"):
            try:
                response = await self._client.update_item(
                    TableName=self._table,
                    Key=quota_key(user_id),
                    UpdateExpression="SET #active.#job = :now",
                    # attribute_exists first: moto fails the request, where DynamoDB fails the
                    # condition, when size() meets a missing map.
                    ConditionExpression="attribute_exists(#active)"
                    " AND attribute_not_exists(#active.#job) AND size(#active) < :limit",
                    ExpressionAttributeNames={"#active": ACTIVE, "#job": job_id},
                    ExpressionAttributeValues={
                        ":now": to_attribute(taken_at),
                        ":limit": to_attribute(limit),
                    },
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                return None
        return len(response.get("Attributes", {}).get(ACTIVE, {}).get("M", {}))

    async def _slots(self, user_id: str) -> dict[str, str] | None:
        """The ``active`` map, or ``None`` when the user has no item yet."""
        with aws_call(f"dynamodb GetItem {self._table}"):
            response = await self._client.get_item(
                TableName=self._table, Key=quota_key(user_id), ConsistentRead=True
            )
        item = response.get("Item")
        if item is None:
            return None
        active = from_attribute(item.get(ACTIVE, {"M": {}}))
        if not isinstance(active, dict):
            raise BackendError(f"malformed slot item of user {user_id}")
        return {str(job_id): str(taken) for job_id, taken in active.items()}

    async def _create(self, user_id: str) -> None:
        """Create the user's item with no slots, leaving one made meanwhile as it is."""
        with aws_call(f"dynamodb UpdateItem {self._table}"):
            await self._client.update_item(
                TableName=self._table,
                Key=quota_key(user_id),
                UpdateExpression="SET #active = if_not_exists(#active, :empty)",
                ExpressionAttributeNames={"#active": ACTIVE},
                ExpressionAttributeValues={":empty": to_attribute({})},
            )
