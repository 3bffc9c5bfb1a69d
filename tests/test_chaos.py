"""Fault injection with real processes on the embedded backend.

Workers are SIGKILLed at random while 200 jobs run, and a worker is drained with SIGTERM
under load. Every accepted job must end ``completed`` with exactly one storyboard; nothing
stays running and nothing reaches the dead-letter queue.
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

from harness.processes import ServiceProcess, running_service, service_env
from service.backends.selection import open_backend
from service.settings import Settings


def _call(url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _submit(url: str, count: int) -> list[str]:
    novel = _call(f"{url}/v1/novels?title=chaos", b"A tale told many times.")
    return [
        _call(f"{url}/v1/novels/{novel['novelId']}/analyze", b"")["jobId"] for _ in range(count)
    ]


def _statuses(url: str, job_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job_id in job_ids:
        status = _call(f"{url}/v1/jobs/{job_id}")["status"]
        counts[status] = counts.get(status, 0) + 1
    return counts


def _storyboards(data: Path) -> list[Path]:
    return sorted((data / "blobs" / "storyboards").glob("*/*.json"))


def _dlq_depth(data: Path) -> int:
    async def depth() -> int:
        async with open_backend(Settings(backend="local", data_dir=data)) as backend:
            counts = await backend.dlq.depth()
        return counts.visible + counts.in_flight

    return asyncio.run(depth())


def _wait_all_completed(url: str, job_ids: list[str], within_s: float) -> dict[str, int]:
    deadline = time.monotonic() + within_s
    while True:
        counts = _statuses(url, job_ids)
        if counts.get("completed") == len(job_ids) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def test_random_sigkills_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(
        data,
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="0.5",
        STORYBOARD_WORKER_CONCURRENCY="8",
        STORYBOARD_VISIBILITY_TIMEOUT_S="3",
        STORYBOARD_MAX_RECEIVE_COUNT="50",
    )
    rng = random.Random(7)
    kills = 0
    with ExitStack() as stack:
        api = stack.enter_context(running_service("api", service_env(data), tmp_path / "api.log"))
        workers: list[ServiceProcess] = [
            stack.enter_context(running_service("worker", env, tmp_path / f"w{i}.log"))
            for i in range(3)
        ]
        job_ids = _submit(api.url, 200)
        for _ in range(6):
            time.sleep(2)
            victim = rng.randrange(len(workers))
            workers[victim].stop(signal.SIGKILL)
            kills += 1
            log = tmp_path / f"w{victim}-{kills}.log"
            workers[victim] = stack.enter_context(running_service("worker", env, log))
        counts = _wait_all_completed(api.url, job_ids, within_s=180)
        for worker in workers:
            assert worker.stop() == 0
    storyboards = _storyboards(data)
    dead = _dlq_depth(data)
    print(f"chaos: submitted=200 kills={kills} statuses={counts} "
          f"storyboards={len(storyboards)} dlq={dead}")  # fmt: skip
    assert counts == {"completed": 200}
    assert len(storyboards) == 200
    assert {p.stem for p in storyboards} == set(job_ids)
    assert dead == 0


def test_sigterm_under_load_drains_within_the_grace_period(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(
        data,
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="1",
        STORYBOARD_WORKER_CONCURRENCY="4",
        STORYBOARD_SHUTDOWN_GRACE_S="10",
    )
    with ExitStack() as stack:
        api = stack.enter_context(running_service("api", service_env(data), tmp_path / "api.log"))
        leaving = stack.enter_context(running_service("worker", env, tmp_path / "w1.log"))
        staying = stack.enter_context(running_service("worker", env, tmp_path / "w2.log"))
        job_ids = _submit(api.url, 40)
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
