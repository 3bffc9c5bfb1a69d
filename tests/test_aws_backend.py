"""Behaviour specific to the AWS backend, against moto on loopback.

The port contracts both backends share are tested in ``test_contracts.py``; these tests
cover what only the AWS implementation has: bootstrap, the DynamoDB value mapping, SQS
receive counts and batches, error translation and client configuration.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.processes import free_port
from service.backends.aws_blobs import S3BlobStore
from service.backends.aws_clients import open_clients
from service.backends.aws_queue import sqs_group_id
from service.backends.aws_records import (
    DynamoJobStore,
    from_attribute,
    from_item,
    idempotency_key,
    job_key,
    novel_key,
    to_item,
)
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.bootstrap import RETENTION_S, bootstrap
from service.errors import BackendError
from service.jobs import ErrorInfo, Job, JobStatus, StoryboardSummary, complete, progress, start
from service.models import isoformat
from service.novels import StoryboardRef
from service.ports import Message, Pingable
from service.settings import Settings
from tests.conftest import SettingsFactory

NESTED: dict[str, Any] = {
    "int": 7,
    "negative": -42,
    "big": 2**62,
    "zero": 0,
    "float": 3.25,
    "tiny": 1e-7,
    "huge": 1.5e125,
    "long": 12345678901234567890123456789012345678,
    "none": None,
    "yes": True,
    "no": False,
    "empty": "",
    "unicode": "漫画 — Ünïcödé ✓ 🎬",
    "list": [1, 2.5, "three", None, False, [], {}],
    "map": {"inner": {"deeper": [{"n": 1}, {"n": 2.75}]}, "status": "running"},
}


@pytest.fixture
async def backend(aws_settings: SettingsFactory) -> AsyncIterator[Backend]:
    """A bootstrapped AWS backend on fresh resources."""
    settings = aws_settings()
    await bootstrap(settings)
    async with open_backend(settings) as opened:
        yield opened


def _assert_same_json(actual: Any, expected: Any) -> None:
    """Equal values of equal types all the way down (so 1 and 1.0 and True differ)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            _assert_same_json(actual[key], value)
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            _assert_same_json(got, want)
    else:
        assert actual == expected


async def _receive_all(backend: Backend, count: int, visibility_s: int = 60) -> list[Message]:
    received: list[Message] = []
    for _ in range(20):
        if len(received) >= count:
            break
        received += await backend.queue.receive(
            max_messages=10, wait_s=1, visibility_s=visibility_s
        )
    assert len(received) == count
    return received


# -- bootstrap ------------------------------------------------------------------------------


async def test_bootstrap_is_idempotent_and_configures_resources(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings(max_receive_count=4, visibility_timeout_s=120)
    first = await bootstrap(settings)
    second = await bootstrap(settings)
    assert first == second
    assert first.table == settings.table_name
    assert first.bucket == settings.bucket

    async with open_clients(settings) as clients:
        dlq = await clients.sqs.get_queue_attributes(QueueUrl=first.dlq_url, AttributeNames=["All"])
        queue = await clients.sqs.get_queue_attributes(
            QueueUrl=first.queue_url, AttributeNames=["All"]
        )
        table = (await clients.dynamodb.describe_table(TableName=settings.table_name))["Table"]
        await clients.s3.head_bucket(Bucket=settings.bucket)

    assert dlq["Attributes"]["MessageRetentionPeriod"] == str(RETENTION_S) == "1209600"
    attributes = queue["Attributes"]
    assert attributes["VisibilityTimeout"] == "120"
    assert attributes["MessageRetentionPeriod"] == "1209600"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 4
    assert redrive["deadLetterTargetArn"] == dlq["Attributes"]["QueueArn"]

    assert table["TableStatus"] == "ACTIVE"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]) == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert {(d["AttributeName"], d["AttributeType"]) for d in table["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
        ("gsi1pk", "S"),
        ("gsi1sk", "S"),
        ("gsi2pk", "S"),
    }
    assert {i["IndexName"]: i["IndexStatus"] for i in table["GlobalSecondaryIndexes"]} == {
        "byUser": "ACTIVE",
        "byUserNovel": "ACTIVE",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


async def test_bootstrap_adds_the_list_indexes_to_a_table_made_without_them(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings()
    async with open_clients(settings) as clients:
        await clients.dynamodb.create_table(
            TableName=settings.table_name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        # A job written the old way: no index attributes.
        old = Job(job_id="old", novel_id="n", user_id="u")
        await clients.dynamodb.put_item(
            TableName=settings.table_name, Item=to_item(job_key("old"), old.to_doc())
        )

    await bootstrap(settings)
    await bootstrap(settings)  # and again: nothing left to add

    async with open_backend(settings) as backend:
        new = Job(job_id="new", novel_id="n", user_id="u")
        await backend.jobs.create(new)
        listed = await backend.job_catalog.list_for_user("u", limit=10)
        assert await backend.jobs.get("old") == old
    # Items written before the indexes are in no list; new ones are.
    assert [job.job_id for job in listed.items] == ["new"]
    async with open_clients(settings) as clients:
        table = (await clients.dynamodb.describe_table(TableName=settings.table_name))["Table"]
    assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == [
        "byUser",
        "byUserNovel",
    ]


async def test_bootstrap_refuses_an_index_of_the_same_name_on_other_keys(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings()
    async with open_clients(settings) as clients:
        await clients.dynamodb.create_table(
            TableName=settings.table_name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byUser",
                    "KeySchema": [{"AttributeName": "sk", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    with pytest.raises(BackendError, match="byUser"):
        await bootstrap(settings)


async def test_list_items_carry_index_keys_the_records_never_show(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings()
    await bootstrap(settings)
    job = Job(job_id="j1", novel_id="n1", user_id="u#1")
    async with open_backend(settings) as backend, open_clients(settings) as clients:
        await backend.jobs.create(job)
        stored = await backend.jobs.get("j1")
        response = await clients.dynamodb.get_item(TableName=settings.table_name, Key=job_key("j1"))
    item = response["Item"]
    assert item["gsi1pk"] == {"S": "USER#u#1#JOB"}
    assert item["gsi2pk"] == {"S": "USER#u#1#NOVEL#n1"}
    assert item["gsi1sk"] == {"S": f"{isoformat(job.created_at)}#j1"}
    assert stored == job


async def test_bootstrap_applies_changed_queue_settings(aws_settings: SettingsFactory) -> None:
    await bootstrap(aws_settings(visibility_timeout_s=120, max_receive_count=3))
    report = await bootstrap(aws_settings(visibility_timeout_s=300, max_receive_count=7))

    async with open_clients(aws_settings()) as clients:
        queue = await clients.sqs.get_queue_attributes(
            QueueUrl=report.queue_url, AttributeNames=["All"]
        )
    assert queue["Attributes"]["VisibilityTimeout"] == "300"
    assert int(json.loads(queue["Attributes"]["RedrivePolicy"])["maxReceiveCount"]) == 7


async def test_bootstrap_outside_us_east_1(aws_settings: SettingsFactory) -> None:
    settings = aws_settings(aws_region="eu-west-1")
    await bootstrap(settings)
    await bootstrap(settings)

    async with open_clients(settings) as clients:
        location = await clients.s3.get_bucket_location(Bucket=settings.bucket)
    assert location["LocationConstraint"] == "eu-west-1"


# -- DynamoDB value mapping -------------------------------------------------------------------


def test_serialiser_round_trips_nested_values() -> None:
    item = to_item(job_key("j-1"), NESTED)

    assert item["pk"] == {"S": "JOB#j-1"}
    assert item["int"] == {"N": "7"}
    assert item["none"] == {"NULL": True}
    assert item["yes"] == {"BOOL": True}
    _assert_same_json(from_item(item), NESTED)


def test_serialiser_rejects_what_dynamodb_cannot_hold() -> None:
    for number in (float("nan"), float("inf"), 1e300, 1e-200, 10**40 + 1):
        with pytest.raises(ValueError, match="cannot store the number"):
            to_item(job_key("j"), {"x": number})
    with pytest.raises(TypeError, match="set"):
        to_item(job_key("j"), {"x": {1, 2}})
    with pytest.raises(ValueError, match="table key"):
        to_item(job_key("j"), {"pk": "other"})
    with pytest.raises(ValueError, match="unsupported"):
        from_attribute({"SS": ["a"]})


async def test_serialiser_round_trips_through_dynamodb(aws_settings: SettingsFactory) -> None:
    settings = aws_settings()
    await bootstrap(settings)

    async with open_clients(settings) as clients:
        await clients.dynamodb.put_item(
            TableName=settings.table_name, Item=to_item(novel_key("n-1"), NESTED)
        )
        response = await clients.dynamodb.get_item(
            TableName=settings.table_name, Key=novel_key("n-1"), ConsistentRead=True
        )
    _assert_same_json(from_item(response["Item"]), NESTED)


# -- SQS --------------------------------------------------------------------------------------


async def test_receive_count_rises_on_redelivery(backend: Backend) -> None:
    message_id = await backend.queue.send("hello")

    [first] = await backend.queue.receive(max_messages=10, wait_s=1, visibility_s=60)
    assert (first.message_id, first.body, first.receive_count) == (message_id, "hello", 1)
    outcome = await backend.queue.change_visibility_batch([first.receipt], 0)
    assert outcome.failed == {}

    [second] = await backend.queue.receive(max_messages=10, wait_s=1, visibility_s=60)
    assert (second.message_id, second.receive_count) == (message_id, 2)
    assert second.receipt != first.receipt


def test_a_user_id_sqs_cannot_take_as_a_group_becomes_a_digest_of_it() -> None:
    assert sqs_group_id("user-42@example.com") == "user-42@example.com"
    odd = ["张三", "has space", "x" * 129, "tab\tin", "\ud800"]
    groups = [sqs_group_id(user) for user in odd]
    for user, group in zip(odd, groups, strict=True):
        assert re.fullmatch(r"sha256-[0-9a-f]{64}", group), (user, group)
    assert len(set(groups)) == len(odd)
    assert sqs_group_id("x" * 128) == "x" * 128


async def test_every_message_is_sent_with_its_users_group(backend: Backend) -> None:
    users = ["alice", "张三", "has space"]
    for user in users:
        await backend.queue.send(f"for {user}", group=user)

    received = {m.body: m.group for m in await _receive_all(backend, len(users))}

    assert received == {f"for {user}": sqs_group_id(user) for user in users}


async def test_first_in_first_out_order_sends_no_group(aws_settings: SettingsFactory) -> None:
    settings = aws_settings(queue_order="fifo")
    await bootstrap(settings)
    async with open_backend(settings) as opened:
        await opened.queue.send("m", group="alice")
        [message] = await opened.queue.receive(max_messages=1, wait_s=1, visibility_s=60)
    assert message.group is None


async def test_delete_batch_reports_exactly_the_stale_receipts(backend: Backend) -> None:
    for index in range(22):
        await backend.queue.send(f"message {index}")
    received = await _receive_all(backend, 22)
    stale = ["stale-receipt-a", "stale-receipt-b", "stale-receipt-c"]
    receipts = [m.receipt for m in received[:10]] + stale + [m.receipt for m in received[10:]]
    assert len(receipts) == 25

    outcome = await backend.queue.delete_batch(receipts)

    assert outcome.failed == dict.fromkeys(stale, "ReceiptHandleIsInvalid")
    depth = await backend.queue.depth()
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_visibility_batch_spans_several_calls(backend: Backend) -> None:
    for index in range(12):
        await backend.queue.send(f"message {index}")
    received = await _receive_all(backend, 12)
    assert (await backend.queue.depth()).in_flight == 12

    outcome = await backend.queue.change_visibility_batch([m.receipt for m in received], 0)

    assert outcome.failed == {}
    again = await _receive_all(backend, 12)
    assert {m.receive_count for m in again} == {2}


# -- reachability -----------------------------------------------------------------------------


def _unreachable(aws_settings: SettingsFactory, **overrides: Any) -> Settings:
    endpoint = f"http://127.0.0.1:{free_port()}"
    values: dict[str, Any] = {
        "aws_endpoint_url": endpoint,
        "queue_url": f"{endpoint}/123456789012/jobs",
        "dlq_url": f"{endpoint}/123456789012/jobs-dlq",
        "aws_connect_timeout_s": 0.5,
        "aws_read_timeout_s": 1.0,
        "aws_max_attempts": 1,
    }
    values.update(overrides)
    return aws_settings(**values)


async def test_ping_on_unreachable_endpoint_raises_backend_error_quickly(
    aws_settings: SettingsFactory,
) -> None:
    settings = _unreachable(aws_settings)
    async with open_backend(settings) as backend:
        assert len(backend.probes) >= 3
        for probe in backend.probes:
            began = time.monotonic()
            with pytest.raises(BackendError) as caught:
                await probe.ping()
            assert time.monotonic() - began < 5
            assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(caught.value)
            assert "failed" in str(caught.value)


async def test_read_timeout_on_silent_endpoint_raises_backend_error(
    aws_settings: SettingsFactory,
) -> None:
    async def accept_and_say_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = _unreachable(
        aws_settings, aws_endpoint_url=f"http://127.0.0.1:{port}", aws_read_timeout_s=0.5
    )
    async with server, open_backend(settings) as backend:
        assert isinstance(backend.jobs, DynamoJobStore)
        assert isinstance(backend.blobs, S3BlobStore)
        # The SQS client's read timeout covers a long poll, so only these two answer fast.
        probes: list[Pingable] = [backend.jobs, backend.blobs]
        for probe in probes:
            began = time.monotonic()
            with pytest.raises(BackendError, match="ReadTimeoutError"):
                await probe.ping()
            assert time.monotonic() - began < 5


async def test_open_without_queue_url_fails_when_unreachable(
    aws_settings: SettingsFactory,
) -> None:
    settings = _unreachable(aws_settings, queue_url=None, dlq_url=None)
    with pytest.raises(BackendError, match="GetQueueUrl"):
        async with open_backend(settings):
            pass


async def test_open_fails_clearly_when_queue_is_missing(aws_settings: SettingsFactory) -> None:
    with pytest.raises(BackendError, match="GetQueueUrl"):
        async with open_backend(aws_settings()):
            pass


# -- guarded writes -------------------------------------------------------------------------


async def test_failed_guard_returns_none_and_leaves_the_item(backend: Backend) -> None:
    await backend.jobs.create(Job(job_id="j-1", novel_id="n-1", user_id="u-1"))
    started = await backend.jobs.apply("j-1", start(1))
    assert started is not None
    assert (started.status, started.attempts) == (JobStatus.RUNNING, 1)

    # A stale redelivery, a foreign attempt and a missing job all fail their guards.
    assert await backend.jobs.apply("j-1", start(1)) is None
    assert await backend.jobs.apply("j-1", progress(2, 50, "elsewhere")) is None
    assert await backend.jobs.apply("missing", start(1)) is None

    assert await backend.jobs.get("j-1") == started
    assert await backend.jobs.get("missing") is None


async def test_transition_sets_nulls_and_nested_maps(backend: Backend) -> None:
    await backend.jobs.create(
        Job(job_id="j-2", novel_id="n-1", user_id="u-1", error=ErrorInfo(code="x", message="y"))
    )
    await backend.jobs.apply("j-2", start(1))
    summary = StoryboardSummary(title="T", chapters=1, scenes=2, panels=3, characters=4)

    done = await backend.jobs.apply(
        "j-2", complete(1, "storyboards/n-1/j-2.json", summary.to_doc())
    )

    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.error is None
    assert done.summary == summary.to_doc()
    assert done.progress.percentage == 100
    assert await backend.jobs.get("j-2") == done


async def test_storyboard_for_missing_novel_creates_no_item(backend: Backend) -> None:
    summary = StoryboardSummary(title="T", chapters=1, scenes=1, panels=1, characters=1)
    ref = StoryboardRef(key="storyboards/ghost/j.json", job_id="j", summary=summary)

    await backend.novels.set_latest_storyboard("ghost", ref)

    assert await backend.novels.get("ghost") is None


# -- client configuration -------------------------------------------------------------------


async def test_clients_carry_pool_size_retry_mode_and_timeouts(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings(
        worker_concurrency=5,
        aws_max_attempts=3,
        aws_connect_timeout_s=2.0,
        aws_read_timeout_s=15.0,
        receive_wait_s=20,
    )
    async with open_clients(settings) as clients:
        # Config sets its options dynamically, so the stubs do not declare them.
        configs: dict[str, Any] = {
            "sqs": clients.sqs.meta.config,
            "dynamodb": clients.dynamodb.meta.config,
            "s3": clients.s3.meta.config,
        }
    for config in configs.values():
        assert config.max_pool_connections == settings.concurrency_pool_size == 13
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}
        assert config.connect_timeout == 2.0
    # The long poll must end before the read timeout does.
    assert configs["sqs"].read_timeout >= settings.receive_wait_s + 10
    assert configs["dynamodb"].read_timeout == 15.0
    assert configs["s3"].read_timeout == 15.0


# -- idempotency keys -------------------------------------------------------------------------


async def test_bootstrap_enables_ttl_on_expires_at_once(aws_settings: SettingsFactory) -> None:
    settings = aws_settings()
    await bootstrap(settings)
    await bootstrap(settings)

    async with open_clients(settings) as clients:
        response = await clients.dynamodb.describe_time_to_live(TableName=settings.table_name)
    description = response["TimeToLiveDescription"]
    assert (description.get("TimeToLiveStatus"), description.get("AttributeName")) == (
        "ENABLED",
        "expiresAt",
    )


async def test_idempotency_item_holds_a_hashed_key_and_ttl(aws_settings: SettingsFactory) -> None:
    settings = aws_settings()
    await bootstrap(settings)
    key = "漫画 " * 2000
    async with open_backend(settings) as backend, open_clients(settings) as clients:
        before = time.time()
        await backend.idempotency.claim("u-1:n-1", key, "job-1", 3600)
        response = await clients.dynamodb.get_item(
            TableName=settings.table_name,
            Key=idempotency_key("u-1:n-1", key),
            ConsistentRead=True,
        )

    item = response["Item"]
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert item["pk"] == {"S": f"IDEMP#u-1:n-1#{digest}"}
    assert item["sk"] == {"S": "IDEMP"}
    assert item["jobId"] == {"S": "job-1"}
    expires_at = int(item["expiresAt"]["N"])  # whole seconds, as TTL requires
    assert before + 3600 - 1 < expires_at <= time.time() + 3600


async def test_an_expired_item_ttl_has_not_deleted_yet_counts_as_absent(
    aws_settings: SettingsFactory,
) -> None:
    settings = aws_settings()
    await bootstrap(settings)
    async with open_backend(settings) as backend, open_clients(settings) as clients:
        await clients.dynamodb.put_item(
            TableName=settings.table_name,
            Item=to_item(
                idempotency_key("u-1:n-1", "k"),
                {"jobId": "stale", "expiresAt": int(time.time()) - 60},
            ),
        )

        assert await backend.idempotency.claim("u-1:n-1", "k", "job-1", 3600) == "job-1"
        assert await backend.idempotency.claim("u-1:n-1", "k", "job-2", 3600) == "job-1"
