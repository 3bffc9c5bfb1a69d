"""Job, novel and idempotency-key records in one DynamoDB table.

Key design (string keys ``pk`` HASH and ``sk`` RANGE):

===============  ====================================  =========
record           pk                                    sk
===============  ====================================  =========
novel            ``NOVEL#<id>``                        ``NOVEL``
job              ``JOB#<id>``                          ``JOB``
idempotency key  ``IDEMP#<scope>#<sha256(key) hex>``   ``IDEMP``
user's slots     ``QUOTA#<userId>``                    ``QUOTA``
===============  ====================================  =========

The slot items are ``service.backends.aws_quotas``'s.

Every record is read and written by its full key; the sort key leaves room for items that
belong to a record (e.g. ``pk=NOVEL#<id>, sk=STORYBOARD#<job>``) without a migration.

The lists (a user's novels, a user's jobs, a user's jobs of one novel) are Queries of two
global secondary indexes, newest first, never a Scan. Novel and job items carry their keys:

* ``byUser``: partition ``gsi1pk`` = ``USER#<uid>#NOVEL`` or ``USER#<uid>#JOB``, sort
  ``gsi1sk`` = ``<createdAt>#<id>``;
* ``byUserNovel`` (jobs only): partition ``gsi2pk`` = ``USER#<uid>#NOVEL#<novelId>``, sort
  ``gsi1sk`` again.

``createdAt`` is written with milliseconds and ``Z``, so the sort key orders by time, then
id. Items written before the indexes existed lack these attributes and are in no list.

An item holds the record's camelCase attributes as top-level DynamoDB attributes, nested
objects as maps, so a guarded write can name ``status`` or ``attempts``
in a condition and replace only the attributes a transition changes.

An idempotency item holds ``jobId`` and ``expiresAt`` (whole epoch seconds), the attribute
the table's TTL deletes expired items by. That deletion is lazy, so claims treat an item
whose ``expiresAt`` has passed as absent.

JSON values map to AttributeValues as ``S``, ``N``, ``BOOL``, ``NULL``, ``L`` and ``M``.
Numbers come back as ``int`` when their text has no fraction or exponent. DynamoDB stores
numbers normalised, so a float with an integral value (``2.0``) may come back as ``2``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog
from botocore.exceptions import ClientError

from service.backends.aws_clients import aws_call, error_code
from service.backends.paging import decode_cursor, list_scope, next_cursor, position
from service.errors import AlreadyExists, BackendError
from service.jobs import OPEN_WEBHOOK, Guard, Job, JobStatus, Transition, applied
from service.models import isoformat
from service.novels import Novel, StoryboardRef
from service.ports import Page

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
Item: TypeAlias = "dict[str, AttributeValueTypeDef]"

USER_PARTITION, NOVEL_PARTITION, LIST_SORT = "gsi1pk", "gsi2pk", "gsi1sk"
BY_USER, BY_USER_NOVEL = "byUser", "byUserNovel"
INDEXES = {BY_USER: (USER_PARTITION, LIST_SORT), BY_USER_NOVEL: (NOVEL_PARTITION, LIST_SORT)}
"""Every global secondary index: its name, partition key and sort key (all strings)."""
KEY_ATTRIBUTES = ("pk", "sk", USER_PARTITION, NOVEL_PARTITION, LIST_SORT)
"""Attributes that are keys of the table or an index, not part of any record."""
FILTERED_OVERFETCH = 4
"""How many items a filtered list Query reads per item it still needs."""
MAX_QUERY_LIMIT = 1000
DELETING_AT = "deletingAt"
MAX_DIGITS, MIN_EXPONENT, MAX_EXPONENT = 38, -130, 125
"""DynamoDB's number limits: 38 significant digits, magnitudes from 1E-130 to under 1E+126."""
CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELLED = "TransactionCanceledException"
EXPIRES_AT = "expiresAt"
"""The attribute DynamoDB's TTL deletes items by, in epoch seconds."""
BATCH_GET_MAX = 100
"""Keys one BatchGetItem call may ask for."""
BATCH_GET_ROUNDS, BATCH_GET_BACKOFF_S = 3, 0.05
"""Calls a batch read makes for keys DynamoDB left unprocessed, and the base backoff."""
CLAIM_ATTEMPTS = 3
"""Conditional writes a claim tries before giving up on a key that keeps changing hands."""

log = structlog.get_logger(__name__)


def job_key(job_id: str) -> Item:
    """The primary key of a job item."""
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def novel_key(novel_id: str) -> Item:
    """The primary key of a novel item."""
    return {"pk": {"S": f"NOVEL#{novel_id}"}, "sk": {"S": "NOVEL"}}


def job_index_keys(job: Job) -> Item:
    """The index attributes of a job item: in its user's jobs and in its novel's."""
    return {
        USER_PARTITION: {"S": f"USER#{job.user_id}#JOB"},
        NOVEL_PARTITION: {"S": f"USER#{job.user_id}#NOVEL#{job.novel_id}"},
        LIST_SORT: {"S": position(isoformat(job.created_at), job.job_id)},
    }


def novel_index_keys(novel: Novel) -> Item:
    """The index attributes of a novel item: in its user's novels."""
    return {
        USER_PARTITION: {"S": f"USER#{novel.user_id}#NOVEL"},
        LIST_SORT: {"S": position(isoformat(novel.created_at), novel.novel_id)},
    }


def idempotency_key(scope: str, key: str) -> Item:
    """The primary key of an idempotency item; the client's key is hashed to a fixed size."""
    # surrogatepass: a lone surrogate from a lenient decoder still hashes, never raises.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return {"pk": {"S": f"IDEMP#{scope}#{digest}"}, "sk": {"S": "IDEMP"}}


def to_attribute(value: Any) -> AttributeValueTypeDef:
    """The DynamoDB AttributeValue of a JSON value."""
    if value is None:
        return {"NULL": True}
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": number_text(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(entry) for entry in value]}
    if isinstance(value, Mapping):
        return {"M": {str(key): to_attribute(entry) for key, entry in value.items()}}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def number_text(value: int | float) -> str:
    """The ``N`` text of a number, or ValueError if DynamoDB could not store it exactly."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"DynamoDB cannot store the number {value!r}")
    # The shortest repr of a float is exact and Decimal renders it in a notation DynamoDB parses.
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if number:
        # Counted by hand: Decimal.normalize() would round to the context's 28 digits.
        digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
        if digits > MAX_DIGITS or not MIN_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
    return str(number)


def from_attribute(attribute: Mapping[str, Any]) -> JsonValue:
    """The JSON value of a DynamoDB AttributeValue."""
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        return _number(str(attribute["N"]))
    if "BOOL" in attribute:
        return bool(attribute["BOOL"])
    if "NULL" in attribute:
        return None
    if "L" in attribute:
        return [from_attribute(entry) for entry in attribute["L"]]
    if "M" in attribute:
        return {key: from_attribute(entry) for key, entry in attribute["M"].items()}
    raise ValueError(f"unsupported DynamoDB attribute type: {sorted(attribute)}")


def _number(text: str) -> int | float:
    if any(mark in text for mark in ".eE"):
        return float(text)
    return int(text)


def to_item(key: Item, document: Mapping[str, Any]) -> Item:
    """An item of ``document``'s top-level attributes under ``key``."""
    clash = set(document) & set(KEY_ATTRIBUTES)
    if clash:
        raise ValueError(f"record attributes clash with the table key: {sorted(clash)}")
    return {**key, **{name: to_attribute(value) for name, value in document.items()}}


def from_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, JsonValue]:
    """The record document of an item, without the table key."""
    return {
        name: from_attribute(value) for name, value in item.items() if name not in KEY_ATTRIBUTES
    }


class _Expression:
    """Placeholders for an expression: every attribute name and value goes by reference.

    Names always go through ``#`` placeholders because record attributes such as
    ``status`` are DynamoDB reserved words.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValueTypeDef] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = to_attribute(value)
        return placeholder


def _unset(expr: _Expression, attribute: str) -> str:
    """The condition that ``attribute`` is missing or null."""
    name = expr.name(attribute)
    return f"(attribute_not_exists({name}) OR attribute_type({name}, {expr.value('NULL')}))"


def guard_condition(guard: Guard, expr: _Expression) -> str:
    """The ConditionExpression that holds exactly when ``guard.allows`` the stored job."""
    statuses = ", ".join(expr.value(status.value) for status in sorted(guard.statuses))
    parts = [f"attribute_exists({expr.name('pk')})", f"{expr.name('status')} IN ({statuses})"]
    if guard.delivery_below is not None:
        parts.append(f"{expr.name('delivery')} < {expr.value(guard.delivery_below)}")
    if guard.delivery_equal is not None:
        parts.append(f"{expr.name('delivery')} = {expr.value(guard.delivery_equal)}")
    if guard.webhook_open_below is not None:
        parts.append(_webhook_open_condition(guard.webhook_open_below, expr))
    return " AND ".join(parts)


def _webhook_open_condition(below: int, expr: _Expression) -> str:
    # A job without a webhook state stores it as NULL (or not at all, if older), and a path
    # into either does not exist.
    attempts = f"{expr.name('webhook')}.{expr.name('attempts')}"
    status = f"{expr.name('webhook')}.{expr.name('status')}"
    open_states = ", ".join(expr.value(state) for state in sorted(OPEN_WEBHOOK))
    return (
        f"(attribute_not_exists({attempts}) OR "
        f"({status} IN ({open_states}) AND {attempts} < {expr.value(below)}))"
    )


def set_clause(
    changes: Mapping[str, Any], expr: _Expression, add: Mapping[str, int] | None = None
) -> str:
    """The UpdateExpression setting every changed attribute (``None`` sets NULL) and adding
    to every counter in ``add`` (a missing counter counts as zero)."""
    clash = (set(changes) | set(add or {})) & set(KEY_ATTRIBUTES)
    if clash:
        raise ValueError(f"a record update cannot change the table key: {sorted(clash)}")
    sets = [f"{expr.name(attribute)} = {expr.value(value)}" for attribute, value in changes.items()]
    for attribute, amount in (add or {}).items():
        name = expr.name(attribute)
        sets.append(f"{name} = if_not_exists({name}, {expr.value(0)}) + {expr.value(amount)}")
    return "SET " + ", ".join(sets)


class _Table:
    """Conditional writes and consistent reads on one table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self.table = table

    async def create(self, key: Item, document: Mapping[str, Any], record: str) -> None:
        """Put a new item; :class:`AlreadyExists` if the key is taken."""
        with aws_call(f"dynamodb PutItem {self.table}"):
            try:
                await self._client.put_item(
                    TableName=self.table,
                    Item=to_item(key, document),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": "pk"},
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                raise AlreadyExists(record) from None

    async def get(self, key: Item) -> dict[str, JsonValue] | None:
        """The document under ``key``, read consistently, or ``None``."""
        with aws_call(f"dynamodb GetItem {self.table}"):
            response = await self._client.get_item(
                TableName=self.table, Key=key, ConsistentRead=True
            )
        item = response.get("Item")
        return from_item(item) if item else None

    async def update(
        self, key: Item, update: str, condition: str, expr: _Expression
    ) -> dict[str, JsonValue] | None:
        """Apply ``update`` if ``condition`` holds: the new document, else ``None``."""
        with aws_call(f"dynamodb UpdateItem {self.table}"):
            try:
                response = await self._client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=expr.names,
                    ExpressionAttributeValues=expr.values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                return None
        return from_item(response.get("Attributes", {}))

    def update_request(
        self, key: Item, update: str, condition: str, expr: _Expression
    ) -> TransactWriteItemTypeDef:
        """One conditional update, as an item of a TransactWriteItems call."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": key,
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": expr.names,
                "ExpressionAttributeValues": expr.values,
            }
        }

    async def transact(self, requests: Sequence[TransactWriteItemTypeDef]) -> list[str] | None:
        """Apply every request of :meth:`update_request` or none: ``None`` when they applied.

        When DynamoDB cancelled the transaction (a condition failed, or another write to one
        of the items was in progress) nothing was written, and the answer is each request's
        reason code (``"None"`` for one that would have applied, ``""`` if not given).
        """
        with aws_call(f"dynamodb TransactWriteItems {self.table}"):
            try:
                await self._client.transact_write_items(TransactItems=list(requests))
            except ClientError as exc:
                if error_code(exc) != TRANSACTION_CANCELLED:
                    raise
                reasons = exc.response.get("CancellationReasons") or []
                codes = [str(reason.get("Code", "")) for reason in reasons]
                return codes + [""] * (len(requests) - len(codes))
        return None

    async def delete(self, key: Item, condition: str, expr: _Expression) -> bool:
        """Delete the item if ``condition`` holds; whether it did."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": key,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": expr.names,
        }
        if expr.values:  # DynamoDB refuses an empty map; a condition may name no values
            request["ExpressionAttributeValues"] = expr.values
        with aws_call(f"dynamodb DeleteItem {self.table}"):
            try:
                await self._client.delete_item(**request)
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                return False
        return True

    async def query_newest(
        self,
        index: str,
        partition: str,
        *,
        after: str | None,
        fetch: int,
        equals: Mapping[str, Collection[str]] | None = None,
        unset: Collection[str] = (),
    ) -> list[tuple[str, dict[str, JsonValue]]]:
        """Up to ``fetch`` items of one partition of ``index``, newest first, whose sort key
        is below ``after``, whose attributes named in ``equals`` hold one of the values
        given and whose attributes in ``unset`` are missing or null: ``(sort key,
        document)`` pairs.

        A filter applies after DynamoDB reads, so a filtered Query may come back short:
        it goes on from where the last one stopped until it has enough or the partition ends.
        """
        if any(not values for values in (equals or {}).values()):
            return []  # an empty IN matches nothing, and DynamoDB refuses one
        expr = _Expression()
        partition_key, sort_key = INDEXES[index]
        keys = f"{expr.name(partition_key)} = {expr.value(partition)}"
        if after is not None:
            keys += f" AND {expr.name(sort_key)} < {expr.value(after)}"
        filters = [
            f"{expr.name(attribute)} IN ({', '.join(expr.value(v) for v in sorted(values))})"
            for attribute, values in (equals or {}).items()
        ]
        # Only the ``equals`` filters are expected to drop many items; read more for them.
        overfetch = FILTERED_OVERFETCH if filters else 1
        filters += [_unset(expr, attribute) for attribute in unset]
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": keys,
            "ExpressionAttributeNames": expr.names,
            "ExpressionAttributeValues": expr.values,
            "ScanIndexForward": False,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        found: list[tuple[str, dict[str, JsonValue]]] = []
        while len(found) < fetch:
            wanted = fetch - len(found)
            request["Limit"] = min(MAX_QUERY_LIMIT, wanted * overfetch)
            with aws_call(f"dynamodb Query {self.table} {index}"):
                response = await self._client.query(**request)
            found += [(str(item[sort_key]["S"]), from_item(item)) for item in response["Items"]]
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:fetch]

    async def delete_existing(self, key: Item) -> bool:
        """Delete the item under ``key``; whether there was one."""
        expr = _Expression()
        return await self.delete(key, f"attribute_exists({expr.name('pk')})", expr)

    async def batch_get(
        self, keys: Sequence[Item]
    ) -> tuple[list[dict[str, JsonValue]], list[Item]]:
        """The documents under up to :data:`BATCH_GET_MAX` keys, eventually consistent, and
        the keys still unprocessed after :data:`BATCH_GET_ROUNDS` tries."""
        documents: list[dict[str, JsonValue]] = []
        pending: list[Item] = list(keys)
        for round_ in range(BATCH_GET_ROUNDS):
            if not pending:
                break
            if round_:
                await asyncio.sleep(BATCH_GET_BACKOFF_S * 2**round_)
            with aws_call(f"dynamodb BatchGetItem {self.table}"):
                response = await self._client.batch_get_item(
                    RequestItems={self.table: {"Keys": pending}}
                )
            documents += [from_item(item) for item in response["Responses"].get(self.table, [])]
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table)
            pending = list(unprocessed["Keys"]) if unprocessed else []
        return documents, pending

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the table can be described."""
        with aws_call(f"dynamodb DescribeTable {self.table}"):
            await self._client.describe_table(TableName=self.table)


class DynamoJobStore:
    """A :class:`~service.ports.JobStore` whose guards are DynamoDB condition expressions."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._table = _Table(client, table)

    async def create(self, job: Job) -> None:
        """Store a new job, in its lists; :class:`AlreadyExists` if the id is taken."""
        key = {**job_key(job.job_id), **job_index_keys(job)}
        await self._table.create(key, job.to_doc(), f"job {job.job_id}")

    async def list_for_user(
        self,
        user_id: str,
        *,
        limit: int,
        after: str | None = None,
        novel_id: str | None = None,
        status: JobStatus | None = None,
        types: Collection[str] | None = None,
    ) -> Page[Job]:
        """The user's jobs, newest first: a Query of the novel's partition of
        ``byUserNovel`` when ``novel_id`` is given, else of the user's in ``byUser``."""
        scope = list_scope("jobs", user_id, novel_id, status.value if status else None)
        start = decode_cursor(scope, after) if after is not None else None
        if novel_id is None:
            index, partition = BY_USER, f"USER#{user_id}#JOB"
        else:
            index, partition = BY_USER_NOVEL, f"USER#{user_id}#NOVEL#{novel_id}"
        equals: dict[str, Collection[str]] = {}
        if status is not None:
            equals["status"] = [status.value]
        if types is not None:
            equals["type"] = list(types)
        found = await self._table.query_newest(
            index, partition, after=start, fetch=limit + 1, equals=equals
        )
        items = [Job.model_validate(document) for _, document in found[:limit]]
        return Page(items, next_cursor(scope, [sort for sort, _ in found], limit))

    async def delete(self, job_id: str) -> bool:
        """Delete the job's item; whether there was one."""
        return await self._table.delete_existing(job_key(job_id))

    async def get(self, job_id: str) -> Job | None:
        """The job, read consistently, or ``None``."""
        document = await self._table.get(job_key(job_id))
        return Job.model_validate(document) if document is not None else None

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        """One conditional UpdateItem: the new job if the guard held, else ``None``."""
        if not transition.guard.statuses:
            return None
        counters = transition.counters()
        if not counters:
            # An update needs at least one action; with nothing to write, a consistent
            # read answers the guard just as atomically.
            job = await self.get(job_id)
            return job if job is not None and transition.guard.allows(job) else None
        expr = _Expression()
        condition = guard_condition(transition.guard, expr)
        update = set_clause(transition.changes, expr, counters)
        document = await self._table.update(job_key(job_id), update, condition, expr)
        return Job.model_validate(document) if document is not None else None

    async def complete_and_point(
        self, seen: Job, transition: Transition, ref: StoryboardRef
    ) -> Job | None:
        """One TransactWriteItems: the job's guarded update, on the further condition that
        the job is still at ``seen.version`` (so the new job is known without reading it
        back), and the novel's guarded pointer.

        If DynamoDB cancels it nothing was written. When only the pointer's condition failed
        (a newer storyboard is the novel's already, as when jobs of one novel finish
        together, or the novel is gone) the job is completed alone; otherwise (a guard
        failed, the version moved) the two writes are made one after the other, each under
        its own guard, so the outcome is what they would have made.
        """
        counters = transition.counters()
        if transition.guard.statuses and counters:
            expr = _Expression()
            condition = (
                f"{guard_condition(transition.guard, expr)}"
                f" AND {expr.name('version')} = {expr.value(seen.version)}"
            )
            update = set_clause(transition.changes, expr, counters)
            pointer = _Expression()
            point, point_condition = pointer_update(ref, pointer)
            requests = [
                self._table.update_request(job_key(seen.job_id), update, condition, expr),
                self._table.update_request(
                    novel_key(seen.novel_id), point, point_condition, pointer
                ),
            ]
            reasons = await self._table.transact(requests)
            if reasons is None:
                return applied(seen, transition)
            if reasons[0] == "None" and reasons[1] == "ConditionalCheckFailed":
                # Only the pointer was refused (a newer storyboard, or no novel), and that
                # stays so: complete the job alone.
                return await self.apply(seen.job_id, transition)
        done = await self.apply(seen.job_id, transition)
        if done is not None:
            await point_novel(self._table, done.novel_id, ref)
        return done

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        """The jobs in BatchGetItem calls of 100 keys, sent together (a poll of 1,000 jobs
        takes one round trip, not ten); ids still unprocessed after a few retries
        (throttling) are left out, so absent means unknown, not missing."""
        ids = list(dict.fromkeys(job_ids))
        chunks = [ids[start : start + BATCH_GET_MAX] for start in range(0, len(ids), BATCH_GET_MAX)]
        found: dict[str, Job | None] = {}
        for part in await asyncio.gather(*(self._read_chunk(chunk) for chunk in chunks)):
            found.update(part)
        return found

    async def _read_chunk(self, chunk: list[str]) -> dict[str, Job | None]:
        documents, unprocessed = await self._table.batch_get([job_key(i) for i in chunk])
        jobs = {job.job_id: job for job in map(Job.model_validate, documents)}
        unknown = {str(key["pk"].get("S", "")).removeprefix("JOB#") for key in unprocessed}
        return {job_id: jobs.get(job_id) for job_id in chunk if job_id not in unknown}

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the table is reachable."""
        await self._table.ping()


def pointer_update(ref: StoryboardRef, expr: _Expression) -> tuple[str, str]:
    """The update and condition that point a novel at ``ref`` unless it points at a newer
    storyboard; the condition also keeps a stray update from creating a partial novel."""
    doc = ref.to_doc()
    latest = expr.name("latestStoryboard")
    condition = (
        f"attribute_exists({expr.name('pk')}) AND (attribute_not_exists({latest})"
        f" OR attribute_type({latest}, {expr.value('NULL')})"
        f" OR {latest}.{expr.name('createdAt')} <= {expr.value(doc['createdAt'])})"
    )
    return set_clause({"latestStoryboard": doc}, expr), condition


async def point_novel(table: _Table, novel_id: str, ref: StoryboardRef) -> bool:
    """One conditional UpdateItem of :func:`pointer_update`; whether the novel points at
    ``ref`` now."""
    expr = _Expression()
    update, condition = pointer_update(ref, expr)
    written = await table.update(novel_key(novel_id), update, condition, expr)
    if written is None:
        log.info("storyboard not made the latest", novel_id=novel_id, job_id=ref.job_id)
    return written is not None


class DynamoNovelStore:
    """A :class:`~service.ports.NovelStore` on the same table as the jobs."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._table = _Table(client, table)

    async def create(self, novel: Novel) -> None:
        """Store a new novel, in its user's list; :class:`AlreadyExists` if the id is taken."""
        key = {**novel_key(novel.novel_id), **novel_index_keys(novel)}
        await self._table.create(key, novel.to_doc(), f"novel {novel.novel_id}")

    async def list_for_user(
        self, user_id: str, *, limit: int, after: str | None = None
    ) -> Page[Novel]:
        """The user's novels, newest first: a Query of the user's partition of ``byUser``."""
        scope = list_scope("novels", user_id)
        start = decode_cursor(scope, after) if after is not None else None
        found = await self._table.query_newest(
            BY_USER, f"USER#{user_id}#NOVEL", after=start, fetch=limit + 1, unset=[DELETING_AT]
        )
        items = [Novel.model_validate(document) for _, document in found[:limit]]
        return Page(items, next_cursor(scope, [sort for sort, _ in found], limit))

    async def claim_deletion(
        self, novel_id: str, at: datetime, *, stale_before: datetime
    ) -> Novel | None:
        """Mark the novel as being erased unless a live erasure holds it: one conditional
        UpdateItem, so of concurrent callers exactly one gets the novel."""
        expr = _Expression()
        mark = expr.name(DELETING_AT)
        condition = (
            f"attribute_exists({expr.name('pk')}) AND ({_unset(expr, DELETING_AT)}"
            f" OR {mark} < {expr.value(isoformat(stale_before))})"
        )
        update = set_clause({DELETING_AT: isoformat(at)}, expr)
        document = await self._table.update(novel_key(novel_id), update, condition, expr)
        return Novel.model_validate(document) if document is not None else None

    async def release_deletion(self, novel_id: str, at: datetime) -> None:
        """Clear the mark set at ``at``, if it is still that one."""
        expr = _Expression()
        condition = f"{expr.name(DELETING_AT)} = {expr.value(isoformat(at))}"
        update = set_clause({DELETING_AT: None}, expr)
        await self._table.update(novel_key(novel_id), update, condition, expr)

    async def delete(self, novel_id: str) -> bool:
        """Delete the novel's item; whether there was one."""
        return await self._table.delete_existing(novel_key(novel_id))

    async def get(self, novel_id: str) -> Novel | None:
        """The novel, read consistently, or ``None``."""
        document = await self._table.get(novel_key(novel_id))
        return Novel.model_validate(document) if document is not None else None

    async def set_latest_storyboard(self, novel_id: str, ref: StoryboardRef) -> bool:
        """Point the novel at ``ref`` unless it points at a newer one; whether it does now.

        A novel that does not exist is left absent: the condition keeps a stray update from
        creating a partial novel item.
        """
        return await point_novel(self._table, novel_id, ref)

    async def set_latest_job(self, novel_id: str, job_id: str, created_at: datetime) -> bool:
        """Name ``job_id`` as the novel's latest job unless a later one is named already;
        whether it is named now. A missing novel is left absent."""
        expr = _Expression()
        at = isoformat(created_at)
        latest = expr.name("latestJobAt")
        condition = (
            f"attribute_exists({expr.name('pk')}) AND {_unset(expr, DELETING_AT)}"
            f" AND (attribute_not_exists({latest})"
            f" OR attribute_type({latest}, {expr.value('NULL')}) OR {latest} <= {expr.value(at)})"
        )
        update = set_clause({"latestJobId": job_id, "latestJobAt": at}, expr)
        return await self._table.update(novel_key(novel_id), update, condition, expr) is not None

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the table is reachable."""
        await self._table.ping()


class DynamoIdempotencyStore:
    """An :class:`~service.ports.IdempotencyStore` of conditional writes on the same table.

    ``expiresAt`` is rounded down to whole seconds, as TTL requires, so a binding never
    outlives ``ttl_s``; it may end up to a second early.
    """

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._table = _Table(client, table)

    async def claim(self, scope: str, key: str, job_id: str, ttl_s: int) -> str:
        """Bind the key to ``job_id`` unless a live binding exists; the owning job id.

        A conditional write takes a missing or expired key; when it fails, a consistent read
        names the owner. Should the owner's item vanish or expire between the two (a release,
        a TTL), the claim starts over; :class:`BackendError` if it never settles.
        """
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1, not {ttl_s}")
        item_key = idempotency_key(scope, key)
        for _ in range(CLAIM_ATTEMPTS):
            bound = await self._bind(item_key, job_id, ttl_s)
            # Read back even after a successful bind: the stored binding is the answer, so
            # two callers can never both go on as owners, whatever the store let through.
            owner = await self._live_owner(item_key)
            if owner is not None:
                return owner
            if bound:
                return job_id
        raise BackendError(f"idempotency key in {scope} kept changing hands; try again")

    async def release(self, scope: str, key: str, job_id: str) -> None:
        """Drop the binding if it still points at ``job_id``."""
        expr = _Expression()
        condition = f"{expr.name('jobId')} = {expr.value(job_id)}"
        await self._table.delete(idempotency_key(scope, key), condition, expr)

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the table is reachable."""
        await self._table.ping()

    async def _bind(self, item_key: Item, job_id: str, ttl_s: int) -> bool:
        """Write the binding if the key is free or expired; whether it was written."""
        now = time.time()
        expr = _Expression()
        expires_at = expr.name(EXPIRES_AT)
        condition = f"attribute_not_exists({expr.name('pk')}) OR {expires_at} <= {expr.value(now)}"
        # UpdateItem creates the item when the key is free: a conditional put by another name.
        update = set_clause({"jobId": job_id, EXPIRES_AT: math.floor(now) + ttl_s}, expr)
        return await self._table.update(item_key, update, condition, expr) is not None

    async def _live_owner(self, item_key: Item) -> str | None:
        """The job id of the binding under ``item_key``, or ``None`` if absent or expired."""
        document = await self._table.get(item_key)
        if document is None:
            return None
        owner, expires_at = document.get("jobId"), document.get(EXPIRES_AT)
        if not isinstance(owner, str) or not isinstance(expires_at, int | float):
            raise BackendError(f"malformed idempotency item {item_key['pk'].get('S')}")
        return owner if expires_at > time.time() else None
