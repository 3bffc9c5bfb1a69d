"""The same workload through Celery 5 on SQS, beside a ``storyboard worker`` process.

Both run on the same counting moto server with the same stub latency L, job count N and
concurrency C, each on queues of its own:

* **Celery**: N ``bench.sleep`` tasks are sent with ``send_task`` (kombu's SQS transport),
  then ``celery -A bench.celery_app worker --pool P --concurrency C`` is started and timed
  until the N-th task has written its completion.
* **storyboard**: N jobs are submitted through the producer (job record, then message), then
  ``storyboard worker`` is started with ``STORYBOARD_ANALYZER=sleep`` and timed until its
  ``acked`` counter reaches N.

For each: the makespan from process start (start-up included), the steady rate
``(N - C) / (t_N - t_C)`` as in :mod:`bench.concurrency`, the peak RSS of the process and all
its children (psutil, every 50 ms), and every AWS request from the first submission to the
last completion, by operation. The task bodies differ in one way that matters on an
emulator: the Celery task only sleeps, while a storyboard job also reads the novel and
writes its status, progress, storyboard and pointer (DynamoDB and S3); moto's CPU per job is
reported so that the share of each side's throughput that moto decides is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RssSampler, bench_env, cpu_seconds, optional_module, save
from bench.concurrency import submit_all
from bench.moto_process import MotoServer, moto_server, summarize
from harness.aws import FAKE_CREDENTIALS, AwsNames, use_fake_credentials
from harness.processes import ROOT, running_service
from service.backends.selection import open_backend
from service.bootstrap import bootstrap
from service.logs import configure_logging
from service.settings import Settings

POLL_S = 0.02
BROKER_KEYS = f"{FAKE_CREDENTIALS['AWS_ACCESS_KEY_ID']}:{FAKE_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
"""kombu's SQS transport takes its credentials from the broker URL."""


def _rates(times: list[float], start: float, concurrency: int) -> dict[str, Any]:
    """Makespan and steady-state rate from sorted completion times."""
    n = len(times)
    steady = (n - concurrency) / (times[-1] - times[concurrency - 1]) if n > concurrency else None
    return {
        "makespan_s": times[-1] - start,
        "per_s": n / (times[-1] - start),
        "steady_per_s": steady,
    }


def run_celery(
    moto: MotoServer, pool: str, latency_s: float, concurrency: int, jobs: int, timeout_s: float
) -> dict[str, Any]:
    """Submit, start a Celery worker, wait for every task, collect the figures."""
    from bench.celery_app import SLEEP_TASK, make_app

    with tempfile.TemporaryDirectory() as scratch:
        done = Path(scratch) / "done.txt"
        done.touch()
        host_port = moto.endpoint.removeprefix("http://")
        env = bench_env(
            **FAKE_CREDENTIALS,
            BENCH_CELERY_BROKER=f"sqs://{BROKER_KEYS}@{host_port}",
            BENCH_CELERY_PREFIX=f"celery-{uuid.uuid4().hex[:8]}-",
            BENCH_CELERY_DONE=str(done),
        )
        app = make_app(env)
        moto.reset()
        submit_start = time.perf_counter()
        for _ in range(jobs):
            app.send_task(SLEEP_TASK, args=[latency_s])
        submit_per_s = jobs / (time.perf_counter() - submit_start)
        app.pool.force_close_all()
        moto_cpu = cpu_seconds(moto.pid())
        command = [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
            "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "WARNING",
        ]  # fmt: skip
        start = time.time()
        with (Path(scratch) / "worker.log").open("wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            with RssSampler(process.pid) as sampler:
                times = _wait_for_lines(done, jobs, process, start + timeout_s)
        finally:
            _kill_group(process)
        rows = moto.counts()
        moto_cpu = cpu_seconds(moto.pid()) - moto_cpu
        log_tail = (Path(scratch) / "worker.log").read_text(errors="replace")[-2000:]
    if len(times) < jobs:
        raise RuntimeError(f"celery finished {len(times)} of {jobs} tasks:\n{log_tail}")
    return {
        "system": f"celery ({pool} pool)",
        "submit_per_s": submit_per_s,
        **_rates(times, start, concurrency),
        "peak_rss_mb": sampler.peak_bytes / 2**20,
        "moto_cpu_ms_per_job": 1000 * moto_cpu / jobs,
        "requests": summarize(rows, jobs),
    }


def _wait_for_lines(
    path: Path, count: int, process: subprocess.Popen[bytes], deadline: float
) -> list[float]:
    times: list[float] = []
    while time.time() < deadline and process.poll() is None:
        times = sorted(float(line) for line in path.read_text().split())
        if len(times) >= count:
            break
        time.sleep(POLL_S)
    return times[:count]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the worker and the pool processes it forked (its own session)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def run_storyboard(
    moto: MotoServer, latency_s: float, concurrency: int, jobs: int, timeout_s: float
) -> dict[str, Any]:
    """Submit through the producer, start ``storyboard worker``, wait for every job."""
    names = AwsNames.fresh("peer")
    settings = Settings(**names.settings_values(moto.endpoint))

    async def prepare() -> float:
        await bootstrap(settings)
        async with open_backend(settings) as backend:
            moto.reset()
            return await submit_all(backend, jobs)

    submit_per_s = asyncio.run(prepare())
    env = bench_env(
        **names.settings_env(moto.endpoint),
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S=str(latency_s),
        STORYBOARD_WORKER_CONCURRENCY=str(concurrency),
    )
    moto_cpu = cpu_seconds(moto.pid())
    times: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        start = time.time()
        with (
            running_service("worker", env, Path(scratch) / "worker.log", wait=False) as worker,
            RssSampler(worker.pid) as sampler,
        ):
            deadline = start + timeout_s
            while time.time() < deadline and worker.process.poll() is None:
                try:
                    acked = worker.acked()
                except OSError:
                    acked = 0
                now = time.time()
                while len(times) < min(acked, jobs):
                    times.append(now)
                if len(times) >= jobs:
                    break
                time.sleep(POLL_S)
    if len(times) < jobs:
        raise RuntimeError(f"storyboard worker finished {len(times)} of {jobs} jobs")
    rows = moto.counts()
    return {
        "system": "storyboard worker",
        "submit_per_s": submit_per_s,
        **_rates(times, start, concurrency),
        "peak_rss_mb": sampler.peak_bytes / 2**20,
        "moto_cpu_ms_per_job": 1000 * (cpu_seconds(moto.pid()) - moto_cpu) / jobs,
        "requests": summarize(rows, jobs, dlq=names.dlq),
    }


def compare(latency_s: float, concurrency: int, jobs: int, pools: list[str]) -> dict[str, Any]:
    """Our worker and Celery with each pool, on one moto server."""
    use_fake_credentials()
    timeout_s = max(120.0, 20 * jobs * latency_s / concurrency)
    rows: list[dict[str, Any]] = []
    with moto_server() as moto:
        rows.append(run_storyboard(moto, latency_s, concurrency, jobs, timeout_s))
        print(describe(rows[-1]), flush=True)
        if optional_module("celery") is None:
            return {"latency_s": latency_s, "concurrency": concurrency, "jobs": jobs,
                    "rows": rows, "celery": "not installed"}  # fmt: skip
        for pool in pools:
            rows.append(run_celery(moto, pool, latency_s, concurrency, jobs, timeout_s))
            print(describe(rows[-1]), flush=True)
    return {"latency_s": latency_s, "concurrency": concurrency, "jobs": jobs, "rows": rows}


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    return (
        f"peer {row['system']}: {row['per_s']:.1f} jobs/s over the makespan "
        f"({row['makespan_s']:.1f} s), peak RSS {row['peak_rss_mb']:.0f} MB, "
        f"{row['requests']['sqs_job_requests_per_job']:.2f} SQS requests/job"
    )


CONFIGS = ((1.0, 64, 192), (10.0, 64, 128))
"""(L, C, N): one where moto's CPU decides our throughput, one where it decides neither."""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", action="append", choices=("threads", "prefork"))
    parser.add_argument("--quick", action="store_true", help="12 jobs, threads only, no save")
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    if args.quick:
        return {"configs": [compare(0.05, 4, 12, ["threads"])]}
    pools = args.pool or ["threads", "prefork"]
    result = {"configs": [compare(lat, c, n, pools) for lat, c, n in CONFIGS]}
    save("celery_peer", result)
    return result


if __name__ == "__main__":
    main()
