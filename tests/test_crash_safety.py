"""Crash safety with real processes on the embedded backend.

A ``kill -9`` in the middle of a job loses nothing: the message reappears after its
visibility timeout and the restarted service finishes the job. Two worker processes on one
data directory never run the same message at once.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.processes import running_service, service_env


def _call(url: str, body: bytes | None = None, content_type: str = "text/plain") -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _submit(url: str, text: bytes = b"A short tale.") -> str:
    novel = _call(f"{url}/v1/novels?title=t", text)
    return str(_call(f"{url}/v1/novels/{novel['novelId']}/analyze", b"")["jobId"])


def _wait_job(url: str, job_id: str, status: str, within_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = _call(f"{url}/v1/jobs/{job_id}")
        if job["status"] == status:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {status}")


def test_kill_9_mid_job_then_restart_finishes_the_job(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data",
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="3",
        STORYBOARD_VISIBILITY_TIMEOUT_S="4",
    )
    with running_service("serve", env, tmp_path / "first.log") as first:
        job_id = _submit(first.url)
        _wait_job(first.url, job_id, "running")
        first.stop(signal.SIGKILL)
    with running_service("serve", env, tmp_path / "second.log") as second:
        job = _wait_job(second.url, job_id, "completed")
        storyboard = _call(f"{second.url}/v1/novels/{job['novelId']}/storyboard")
        second.stop()
    assert job["attempts"] == 2
    assert storyboard["novelId"] == job["novelId"]


def test_two_workers_never_run_the_same_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    worker_env = service_env(
        data,
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="0.3",
        STORYBOARD_WORKER_CONCURRENCY="4",
    )
    count = 24
    with (
        # One user submits all 24 at once, past the default active-job quota of 20.
        running_service(
            "api", service_env(data, STORYBOARD_USER_MAX_ACTIVE_JOBS="0"), tmp_path / "api.log"
        ) as api,
        running_service("worker", worker_env, tmp_path / "w1.log") as one,
        running_service("worker", worker_env, tmp_path / "w2.log") as two,
    ):
        job_ids = [_submit(api.url) for _ in range(count)]
        jobs = [_wait_job(api.url, job_id, "completed") for job_id in job_ids]
        one.stop()
        two.stop()
        started = _started_jobs(one.log()) + _started_jobs(two.log())
    assert all(job["attempts"] == 1 for job in jobs)
    assert sorted(started) == sorted(job_ids)  # each job started exactly once, in one worker
    assert _started_jobs(one.log()), "the first worker took jobs"
    assert _started_jobs(two.log()), "the second worker took jobs"


def _started_jobs(log: str) -> list[str]:
    return [
        json.loads(line)["jobId"]
        for line in log.splitlines()
        if line.startswith("{") and re.search(r'"event": "job started"', line)
    ]
