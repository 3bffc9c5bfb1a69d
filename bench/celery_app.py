"""The peer: a Celery 5 app on the SQS broker (kombu) with two tasks.

* ``bench.seed_job`` does what the seed's worker (``analyze-worker/index.js`` in
  ``shared/seed/lambda-async-processing-note.zh.md``) does, as a Celery user would write it
  with boto3: ``updateJob`` at 10 % (started), 30 % (after reading the novel's text from
  S3), 50 % (model ready), the model call (a sleep of L), 90 % (storyboard generated), the
  storyboard written to S3, the novel pointed at it (one DynamoDB update), then
  ``updateJob`` completed at 100 %; on an error, ``updateJob`` failed and a re-raise, so the
  broker redelivers. Records use the service's table layout (``pk``/``sk``), so the moto
  counter classifies both sides' requests alike.
* ``bench.sleep`` only sleeps: the stub the peer began as, kept and labelled as such.

Configured from ``BENCH_CELERY_*`` variables by :mod:`bench.celery_peer`, the way a team
tuning Celery for long jobs would: late acknowledgement (``acks_late``), prefetch multiplier
1, and kombu's ``polling_interval`` 0 (receive again at once after a message). Each finished
task appends its end time to the file named by ``BENCH_CELERY_DONE``, so the bench can time
completions without a result backend. Celery and boto3 ship no type information the bench
relies on, so they are reached through ``importlib`` and typed ``Any``.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

SLEEP_TASK = "bench.sleep"
SEED_TASK = "bench.seed_job"


def make_app(env: Mapping[str, str] = os.environ) -> Any:
    """The Celery application, configured from ``BENCH_CELERY_*`` variables in ``env``."""
    celery = importlib.import_module("celery")
    app = celery.Celery("bench", broker=env["BENCH_CELERY_BROKER"])
    app.conf.update(
        broker_transport_options={
            "region": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "is_secure": False,
            "queue_name_prefix": env.get("BENCH_CELERY_PREFIX", "bench-"),
            "polling_interval": 0,
        },
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name=SLEEP_TASK)(sleep)
    app.task(name=SEED_TASK)(seed_job)
    return app


def _done() -> None:
    done = os.environ.get("BENCH_CELERY_DONE")
    if done:
        with open(done, "a") as log:
            log.write(f"{time.time()}\n")


def sleep(latency_s: float) -> None:
    """The stub job: wait, then record the completion time."""
    time.sleep(latency_s)
    _done()


_clients: dict[str, Any] = {}
_lock = threading.Lock()


def _client(service: str) -> Any:
    """One boto3 client per service and process, made on first use (after a prefork fork),
    shared by the pool's threads: boto3 clients are thread-safe."""
    with _lock:
        if service not in _clients:
            boto3 = importlib.import_module("boto3")
            botocore_config = importlib.import_module("botocore.config")
            pool = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "10")) + 2
            _clients[service] = boto3.client(
                service,
                endpoint_url=os.environ["BENCH_AWS_ENDPOINT"],
                region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                config=botocore_config.Config(max_pool_connections=pool),
            )
        return _clients[service]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def update_job(job_id: str, status: str, percentage: int, error: str | None = None) -> None:
    """The seed's ``updateJob``: status, progress and time, unconditionally."""
    names = {"#s": "status", "#p": "progress", "#u": "updatedAt", "#e": "error"}
    values = {
        ":s": {"S": status},
        ":p": {"M": {"percentage": {"N": str(percentage)}, "stage": {"S": status}}},
        ":u": {"S": _now()},
        ":e": {"S": error} if error else {"NULL": True},
    }
    _client("dynamodb").update_item(
        TableName=os.environ["BENCH_TABLE"],
        Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET #s = :s, #p = :p, #u = :u, #e = :e",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def seed_job(job_id: str, novel_id: str, user_id: str, latency_s: float) -> None:
    """The seed's worker body for one message."""
    bucket, table = os.environ["BENCH_BUCKET"], os.environ["BENCH_TABLE"]
    try:
        update_job(job_id, "running", 10)
        response = _client("s3").get_object(Bucket=bucket, Key=f"novels/{novel_id}/text.txt")
        text = response["Body"].read().decode("utf-8")
        update_job(job_id, "running", 30)
        update_job(job_id, "running", 50)
        time.sleep(latency_s)  # the model call
        storyboard = {"novelId": novel_id, "jobId": job_id, "userId": user_id, "chars": len(text)}
        update_job(job_id, "running", 90)
        key = f"storyboards/{novel_id}/{job_id}.json"
        body = json.dumps(storyboard).encode()
        _client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        _client("dynamodb").update_item(
            TableName=table,
            Key={"pk": {"S": f"NOVEL#{novel_id}"}, "sk": {"S": "NOVEL"}},
            UpdateExpression="SET #l = :l",
            ExpressionAttributeNames={"#l": "latestStoryboard"},
            ExpressionAttributeValues={":l": {"M": {"key": {"S": key}, "jobId": {"S": job_id}}}},
        )
        update_job(job_id, "completed", 100)
    except Exception as exc:
        update_job(job_id, "failed", 0, str(exc))
        raise
    _done()


app = make_app() if "BENCH_CELERY_BROKER" in os.environ else None
