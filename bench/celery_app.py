"""The peer: a tiny Celery 5 app on the SQS broker (kombu) whose one task sleeps.

Configured from the environment by :mod:`bench.celery_peer`, with Celery's and kombu's
defaults otherwise (early acknowledgement, prefetch multiplier 4, kombu's SQS long poll),
as a team would start out. Each finished task appends its end time to the file named by
``BENCH_CELERY_DONE``, so the bench can time completions without a result backend.
Celery ships no type information, so it is reached through ``importlib`` and typed ``Any``.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from typing import Any

SLEEP_TASK = "bench.sleep"


def make_app(env: Mapping[str, str] = os.environ) -> Any:
    """The Celery application, configured from ``BENCH_CELERY_*`` variables in ``env``."""
    celery = importlib.import_module("celery")
    app = celery.Celery("bench", broker=env["BENCH_CELERY_BROKER"])
    app.conf.update(
        broker_transport_options={
            "region": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "is_secure": False,
            "queue_name_prefix": env.get("BENCH_CELERY_PREFIX", "bench-"),
        },
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name=SLEEP_TASK)(sleep)
    return app


def sleep(latency_s: float) -> None:
    """The stub job: wait, then record the completion time."""
    time.sleep(latency_s)
    done = os.environ.get("BENCH_CELERY_DONE")
    if done:
        with open(done, "a") as log:
            log.write(f"{time.time()}\n")


app = make_app() if "BENCH_CELERY_BROKER" in os.environ else None
