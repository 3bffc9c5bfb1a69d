"""The counting moto server in a child process, and fresh AWS resources on it for each case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.common import ROOT, free_port
from bench.moto_counting import COUNTS_PATH, RESET_PATH

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
"""botocore signs every request; moto accepts any credentials."""


def use_fake_credentials() -> None:
    """Make this process's AWS clients sign with moto's fake credentials."""
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True, slots=True)
class AwsNames:
    """Resource names unique to one benchmark case."""

    queue: str
    dlq: str
    table: str
    bucket: str

    @classmethod
    def fresh(cls, label: str) -> AwsNames:
        """New names, so cases never see each other's messages or records."""
        suffix = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(f"q-{suffix}", f"q-{suffix}-dlq", f"t-{suffix}", f"b-{suffix}")

    def settings_env(self, endpoint: str) -> dict[str, str]:
        """``STORYBOARD_*`` variables that point a service process at these resources."""
        return {
            "STORYBOARD_BACKEND": "aws",
            "STORYBOARD_AWS_ENDPOINT_URL": endpoint,
            "STORYBOARD_QUEUE_NAME": self.queue,
            "STORYBOARD_DLQ_NAME": self.dlq,
            "STORYBOARD_TABLE_NAME": self.table,
            "STORYBOARD_BUCKET": self.bucket,
            **FAKE_CREDENTIALS,
        }

    def settings_values(self, endpoint: str) -> dict[str, Any]:
        """The same, as keyword arguments for :class:`~service.settings.Settings`."""
        return {
            "backend": "aws",
            "aws_endpoint_url": endpoint,
            "queue_name": self.queue,
            "dlq_name": self.dlq,
            "table_name": self.table,
            "bucket": self.bucket,
        }


@dataclass(frozen=True, slots=True)
class MotoServer:
    """A running counting moto server."""

    endpoint: str
    process: subprocess.Popen[bytes]

    def counts(self) -> list[dict[str, Any]]:
        """Requests answered since the last reset, by service, operation and queue."""
        with urllib.request.urlopen(self.endpoint + COUNTS_PATH, timeout=30) as response:
            rows: list[dict[str, Any]] = json.loads(response.read())
        return rows

    def reset(self) -> None:
        """Zero the counts."""
        request = urllib.request.Request(self.endpoint + RESET_PATH, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def pid(self) -> int:
        """The server's process id (for CPU accounting)."""
        return self.process.pid


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start ``python -m bench.moto_counting`` on a free loopback port; stop it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.moto_counting", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"moto server did not start (exit {process.poll()})")
        yield MotoServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.kill()
        process.wait(timeout=30)


SQS_JOB_OPERATIONS = {
    "SendMessage": "send",
    "SendMessageBatch": "send",
    "ReceiveMessage": "receive",
    "DeleteMessage": "delete",
    "DeleteMessageBatch": "delete",
    "ChangeMessageVisibility": "visibility",
    "ChangeMessageVisibilityBatch": "visibility",
}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def summarize(rows: list[dict[str, Any]], jobs: int, dlq: str | None = None) -> dict[str, Any]:
    """Per-job request figures from a counts snapshot taken around ``jobs`` jobs.

    SQS requests are split into send, receive, delete and visibility changes on the job
    queue(s); requests on ``dlq`` and anything else (``GetQueueUrl``…) are kept apart.
    DynamoDB writes are split by record kind, so the novel's storyboard pointer
    (``NOVEL``) can be left out of the job's own writes.
    """
    per = max(jobs, 1)
    sqs: dict[str, float] = {"send": 0, "receive": 0, "delete": 0, "visibility": 0, "other": 0}
    dlq_requests = 0
    dynamo_writes: dict[str, int] = {}
    dynamo_reads = 0
    s3: dict[str, int] = {}
    by_operation: dict[str, int] = {}
    for row in rows:
        service, operation, resource = row["service"], row["operation"], row["resource"]
        count = int(row["count"])
        name = f"{service}:{operation}" + (f" {resource}" if resource else "")
        by_operation[name] = by_operation.get(name, 0) + count
        if service == "sqs":
            if dlq is not None and resource == dlq:
                dlq_requests += count
            else:
                sqs[SQS_JOB_OPERATIONS.get(operation, "other")] += count
        elif service == "dynamodb":
            if operation in DYNAMODB_WRITES:
                kind = resource or "?"
                dynamo_writes[kind] = dynamo_writes.get(kind, 0) + count
            else:
                dynamo_reads += count
        else:
            s3[operation] = s3.get(operation, 0) + count
    job_sqs = sqs["send"] + sqs["receive"] + sqs["delete"] + sqs["visibility"]
    return {
        "jobs": jobs,
        "by_operation": dict(sorted(by_operation.items())),
        "sqs_per_job": {k: v / per for k, v in sqs.items()},
        "sqs_job_requests_per_job": job_sqs / per,
        "dlq_requests": dlq_requests,
        "dynamodb_writes_per_job": {k: v / per for k, v in sorted(dynamo_writes.items())},
        "dynamodb_job_writes_per_job": sum(v for k, v in dynamo_writes.items() if k != "NOVEL")
        / per,
        "dynamodb_reads_per_job": dynamo_reads / per,
        "s3_per_job": {k: v / per for k, v in sorted(s3.items())},
        "s3_requests_per_job": sum(s3.values()) / per,
    }
