"""AWS requests when idle, and the seed's Lambda design on paper beside this service.

Idle: one ``storyboard worker`` process on the counting moto server with
``STORYBOARD_RECEIVE_WAIT_S=20`` and the default ``STORYBOARD_DLQ_POLL_S=300``, left alone
with empty queues. After it is up, the counts are zeroed and read again ``idle_s`` seconds
later; ReceiveMessage calls on the job queue and on the dead-letter queue are extrapolated to
an hour separately. Per-job figures under load come from the moto cases of
:mod:`bench.concurrency`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_env, save
from bench.moto_process import moto_server
from harness.aws import AwsNames, use_fake_credentials
from harness.processes import running_service
from service.bootstrap import bootstrap
from service.settings import Settings

RECEIVE_WAIT_S = 20
DLQ_POLL_S = 300.0
SETTLE_S = 2.0

LAMBDA_MEMORY_GIB = 2.0
MODEL_WAIT_S = 60.0
LAMBDA_IDLE_POLLERS = (2, 5)
"""Concurrent long polls an idle SQS event source mapping keeps (AWS Lambda docs: it scales
back to five concurrent batches at low traffic and can optimise to as few as two)."""


def measure_idle(idle_s: float, receive_wait_s: float) -> dict[str, Any]:
    """Run an idle worker for ``idle_s`` seconds and count its receives by queue."""
    use_fake_credentials()
    with moto_server() as moto, tempfile.TemporaryDirectory() as scratch:
        names = AwsNames.fresh("idle")
        env = bench_env(
            **names.settings_env(moto.endpoint),
            STORYBOARD_RECEIVE_WAIT_S=str(receive_wait_s),
            STORYBOARD_DLQ_POLL_S=str(DLQ_POLL_S),
            STORYBOARD_ANALYZER="sleep",
        )
        asyncio.run(bootstrap(Settings(**names.settings_values(moto.endpoint))))
        with running_service("worker", env, Path(scratch) / "idle.log"):
            time.sleep(SETTLE_S)
            moto.reset()
            time.sleep(idle_s)
            rows = moto.counts()
    main = sum(
        r["count"]
        for r in rows
        if r["operation"] == "ReceiveMessage" and r["resource"] == names.queue
    )
    dlq = sum(
        r["count"]
        for r in rows
        if r["operation"] == "ReceiveMessage" and r["resource"] == names.dlq
    )
    others = {
        f"{r['service']}:{r['operation']}": r["count"]
        for r in rows
        if r["operation"] != "ReceiveMessage"
    }
    per_hour = 3600 / idle_s
    return {
        "idle_s": idle_s,
        "receive_wait_s": receive_wait_s,
        "dlq_poll_s": DLQ_POLL_S,
        "main_receives": main,
        "dlq_receives": dlq,
        "other_requests": others,
        "main_receives_per_hour": main * per_hour,
        "main_receives_per_hour_expected": 3600 / receive_wait_s,
        "dlq_receives_per_hour_expected": 3600 / (DLQ_POLL_S + receive_wait_s),
    }


def lambda_on_paper(service_rss_mb: float | None, concurrency: int) -> dict[str, Any]:
    """The seed note's SQS + Lambda worker, per job and idle, from its own code and AWS docs.

    Per job: the API function writes the job (PutItem) and sends the message; the worker
    (``BatchSize: 1``) is invoked by the event source mapping, which receives and, on success,
    deletes the message; the worker calls ``updateJob`` at 10, 30, 50, 90 and 100 % and writes
    the storyboard to DynamoDB. It is billed for its 2 GiB during the whole model wait.
    """
    gb_s_lambda = LAMBDA_MEMORY_GIB * MODEL_WAIT_S
    row: dict[str, Any] = {
        "sqs_per_job": {"send": 1, "receive": 1, "delete": 1},
        "sqs_requests_per_job": 3,
        "dynamodb_writes_besides_storyboard": 6,
        "idle_receives_per_hour": [p * 3600 / RECEIVE_WAIT_S for p in LAMBDA_IDLE_POLLERS],
        "gb_s_per_job": gb_s_lambda,
        "memory_gib": LAMBDA_MEMORY_GIB,
        "model_wait_s": MODEL_WAIT_S,
    }
    if service_rss_mb is not None:
        share = service_rss_mb / 1024 * MODEL_WAIT_S / concurrency
        row["service_gb_s_per_job"] = share
        row["service_rss_mb"] = service_rss_mb
        row["service_concurrency"] = concurrency
        row["ratio"] = gb_s_lambda / share
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the idle measurement."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="3 s idle at 1 s waits, no save")
    args = parser.parse_args(argv)
    idle_s, wait_s = (3.0, 1.0) if args.quick else (args.idle_s, float(RECEIVE_WAIT_S))
    result = measure_idle(idle_s, wait_s)
    print(
        f"idle worker: {result['main_receives']} receives on the job queue and "
        f"{result['dlq_receives']} on the DLQ in {idle_s:.0f} s "
        f"= {result['main_receives_per_hour']:.0f} job-queue receives/h",
        flush=True,
    )
    if not args.quick:
        save("aws_idle", result)
    return result


if __name__ == "__main__":
    main()
