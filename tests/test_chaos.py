"""Fault injection with real processes, on the embedded backend and on the AWS path (moto).

Workers are SIGKILLed at random while jobs run, and a worker is drained with SIGTERM under
load. Every accepted job must end ``completed`` with exactly one storyboard; nothing stays
running and nothing reaches the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness.aws import FAKE_CREDENTIALS
from harness.processes import process_env, running_service, service_env
from service.backends.selection import open_backend
from service.novels import job_storyboards_prefix
from service.settings import Settings
from tests.conftest import SettingsFactory, prepare


def _call(url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _submit(url: str, count: int) -> tuple[str, list[str]]:
    novel = _call(f"{url}/v1/novels?title=chaos", b"A tale told many times.")["novelId"]
    return novel, [_call(f"{url}/v1/novels/{novel}/analyze", b"")["jobId"] for _ in range(count)]


def _statuses(url: str, job_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job_id in job_ids:
        status = _call(f"{url}/v1/jobs/{job_id}")["status"]
        counts[status] = counts.get(status, 0) + 1
    return counts


def _storyboards_and_dead_letters(
    settings: Settings, novel_id: str, job_ids: list[str]
) -> tuple[set[str], int]:
    """The jobs that have a storyboard, and how many messages the DLQ holds."""

    async def look() -> tuple[set[str], int]:
        async with open_backend(settings) as backend:
            found = set()
            for job_id in job_ids:
                if await backend.blobs.list_keys(job_storyboards_prefix(novel_id, job_id)):
                    found.add(job_id)
            counts = await backend.dlq.depth()
        return found, counts.visible + counts.in_flight

    return asyncio.run(look())


def _wait_all_completed(url: str, job_ids: list[str], within_s: float) -> dict[str, int]:
    deadline = time.monotonic() + within_s
    while True:
        counts = _statuses(url, job_ids)
        if counts.get("completed") == len(job_ids) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


NO_QUOTA = {"STORYBOARD_USER_MAX_ACTIVE_JOBS": "0"}
"""One user submits every job here, far more than the default active-job limit."""


def _chaos(
    tmp_path: Path, env: dict[str, str], settings: Settings, *, jobs: int, workers: int, kills: int
) -> None:
    worker_env = {
        **env,
        "STORYBOARD_ANALYZER": "sleep",
        "STORYBOARD_SLEEP_ANALYZER_S": "0.5",
        "STORYBOARD_WORKER_CONCURRENCY": "8",
        "STORYBOARD_VISIBILITY_TIMEOUT_S": "3",
        # Killed runs count as attempts; chaos must not exhaust a job.
        "STORYBOARD_MAX_ATTEMPTS": "50",
        "STORYBOARD_MAX_RECEIVE_COUNT": "50",
    }
    rng = random.Random(7)
    with ExitStack() as stack:
        api = stack.enter_context(running_service("api", env, tmp_path / "api.log"))
        running = [
            stack.enter_context(running_service("worker", worker_env, tmp_path / f"w{i}.log"))
            for i in range(workers)
        ]
        novel_id, job_ids = _submit(api.url, jobs)
        for kill in range(kills):
            time.sleep(2)
            victim = rng.randrange(len(running))
            running[victim].stop(signal.SIGKILL)
            log = tmp_path / f"w{victim}-{kill}.log"
            running[victim] = stack.enter_context(running_service("worker", worker_env, log))
        counts = _wait_all_completed(api.url, job_ids, within_s=180)
        for worker in running:
            assert worker.stop() == 0
    storyboards, dead = _storyboards_and_dead_letters(settings, novel_id, job_ids)
    print(f"chaos: submitted={jobs} kills={kills} statuses={counts} "
          f"storyboards={len(storyboards)} dlq={dead}")  # fmt: skip
    assert counts == {"completed": jobs}
    assert storyboards == set(job_ids)
    assert dead == 0


def test_random_sigkills_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(backend="local", data_dir=data)
    _chaos(tmp_path, service_env(data, **NO_QUOTA), settings, jobs=200, workers=3, kills=6)


def test_random_sigkills_lose_nothing_on_the_aws_path(
    tmp_path: Path, aws_settings: SettingsFactory
) -> None:
    settings = asyncio.run(prepare(aws_settings()))
    names = {
        "STORYBOARD_QUEUE_NAME": settings.queue_name,
        "STORYBOARD_DLQ_NAME": settings.dlq_name,
        "STORYBOARD_TABLE_NAME": settings.table_name,
        "STORYBOARD_BUCKET": settings.bucket,
    }
    env = process_env(
        STORYBOARD_BACKEND="aws",
        STORYBOARD_AWS_ENDPOINT_URL=str(settings.aws_endpoint_url),
        STORYBOARD_RECEIVE_WAIT_S="1",
        **FAKE_CREDENTIALS,
        **names,
        **NO_QUOTA,
    )
    _chaos(tmp_path, env, settings, jobs=40, workers=2, kills=4)


def test_sigterm_under_load_drains_within_the_grace_period(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(
        data,
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="1",
        STORYBOARD_WORKER_CONCURRENCY="4",
        STORYBOARD_SHUTDOWN_GRACE_S="10",
        **NO_QUOTA,
    )
    with ExitStack() as stack:
        api_env = service_env(data, **NO_QUOTA)
        api = stack.enter_context(running_service("api", api_env, tmp_path / "api.log"))
        leaving = stack.enter_context(running_service("worker", env, tmp_path / "w1.log"))
        staying = stack.enter_context(running_service("worker", env, tmp_path / "w2.log"))
        _, job_ids = _submit(api.url, 40)
        # The signal has to find jobs in flight for there to be a drain to time.
        leaving.wait_for_log('"job started"')
        started = time.monotonic()
        code = leaving.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - started
        counts = _wait_all_completed(api.url, job_ids, within_s=120)
        staying.stop()
    print(f"drain: submitted=40 exit={code} drain_s={took:.1f} statuses={counts}")
    assert code == 0
    assert took < 10 + 5  # the grace period plus the release and close
    assert counts == {"completed": 40}
    assert '"draining"' in leaving.log()
