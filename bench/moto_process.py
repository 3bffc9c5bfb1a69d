"""The counting moto server in a child process, and per-job request figures from its counts."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.moto_counting import COUNTS_PATH, RESET_PATH
from harness.processes import ROOT, free_port


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
