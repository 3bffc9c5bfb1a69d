"""Our worker beside Celery 5 on SQS doing the same work, on one moto server, same L, C, N.

Each system runs on queues, a table and a bucket of its own, against the same counting moto
server in the same run:

* **storyboard**: N jobs are submitted through the producer (job record, then message), then
  ``storyboard worker`` is started with ``STORYBOARD_ANALYZER=sleep`` and timed until its
  ``acked`` counter reaches N.
* **Celery doing the seed's work** (``bench.seed_job`` in :mod:`bench.celery_app`): a job
  record is put (boto3) and a task sent (``send_task``) per job, as the seed's API function
  does, then ``celery -A bench.celery_app worker --pool P --concurrency C`` is started and
  timed until the N-th task has written its completion. The task reads the novel from S3,
  makes the seed's five ``updateJob`` writes, sleeps L, writes the storyboard to S3 and points
  the novel at it: the work a storyboard job does, the way the seed does it.
* **Celery sleeping** (``bench.sleep``): the task only sleeps L; not the same work, kept as
  the floor of Celery's own cost and labelled so.

For each: the makespan from process start (start-up included), the steady rate
``(N - C) / (t_N - t_C)`` as in :mod:`bench.concurrency`, the peak RSS of the process and all
its children (psutil, every 50 ms), the worker's CPU per job from its first completion to
its last (the process tree's user + system time, so start-up is left out), moto's CPU per
job, and every AWS request from the first submission to the last completion, by operation.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.celery_app import SEED_TASK, SLEEP_TASK, make_app
from bench.common import (
    RssSampler,
    bench_env,
    cpu_seconds,
    cpu_tree_seconds,
    optional_module,
    save,
)
from bench.concurrency import submit_all
from bench.moto_process import MotoServer, moto_server, summarize
from harness.aws import FAKE_CREDENTIALS, AwsNames, use_fake_credentials
from harness.processes import ROOT, running_service
from service.backends.selection import open_backend
from service.bootstrap import bootstrap
from service.logs import configure_logging
from service.settings import Settings
from service.uploads import store_novel

POLL_S = 0.02
"""How often the Celery side's completion file is read (costs the worker nothing)."""
SCRAPE_S = 0.25
"""How often our worker's ``/metrics`` is read: each scrape costs the worker CPU (and
its queue-depth reads), which would otherwise be counted as the worker's own per job."""
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
    moto: MotoServer,
    pool: str,
    work: str,
    case: tuple[float, int, int],
    timeout_s: float,
) -> dict[str, Any]:
    """Submit, start a Celery worker, wait for every task, collect the figures; ``work`` is
    ``seed`` (the seed's worker) or ``sleep``, and ``case`` is (L, C, N)."""
    latency_s, concurrency, jobs = case
    names = AwsNames.fresh("celery")
    if work == "seed":
        novel_id = asyncio.run(_prepare_seed(moto, names))
    with tempfile.TemporaryDirectory() as scratch:
        done = Path(scratch) / "done.txt"
        done.touch()
        host_port = moto.endpoint.removeprefix("http://")
        env = bench_env(
            **FAKE_CREDENTIALS,
            BENCH_CELERY_BROKER=f"sqs://{BROKER_KEYS}@{host_port}",
            BENCH_CELERY_PREFIX=f"celery-{uuid.uuid4().hex[:8]}-",
            BENCH_CELERY_DONE=str(done),
            BENCH_CELERY_CONCURRENCY=str(concurrency),
            BENCH_AWS_ENDPOINT=moto.endpoint,
            BENCH_TABLE=names.table,
            BENCH_BUCKET=names.bucket,
        )
        app = make_app(env)
        moto.reset()
        submit_start = time.perf_counter()
        if work == "seed":
            _submit_seed(app, env, novel_id, latency_s, jobs)
        else:
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
                times, cpu = _wait_for_lines(done, jobs, process, start + timeout_s)
        finally:
            _kill_group(process)
        rows = moto.counts()
        moto_cpu = cpu_seconds(moto.pid()) - moto_cpu
        log_tail = (Path(scratch) / "worker.log").read_text(errors="replace")[-2000:]
    if len(times) < jobs:
        raise RuntimeError(f"celery finished {len(times)} of {jobs} tasks:\n{log_tail}")
    label = "doing the seed's work" if work == "seed" else "sleep only, not the same work"
    return {
        "system": f"celery ({pool} pool, {label})",
        "work": work,
        "pool": pool,
        "submit_per_s": submit_per_s,
        **_rates(times, start, concurrency),
        "peak_rss_mb": sampler.peak_bytes / 2**20,
        "worker_cpu_ms_per_job": cpu,
        "moto_cpu_ms_per_job": 1000 * moto_cpu / jobs,
        "requests": summarize(rows, jobs),
    }


async def _prepare_seed(moto: MotoServer, names: AwsNames) -> str:
    """The table, bucket and one novel (text in S3, record in DynamoDB) the seed task uses;
    made with the service's own code, so both sides read the same kind of novel."""
    settings = Settings(**names.settings_values(moto.endpoint))
    await bootstrap(settings)
    async with open_backend(settings) as backend:
        novel = await store_novel(backend, "bench", "Bench", NOVEL_TEXT)
    return novel.novel_id


def _submit_seed(app: Any, env: dict[str, str], novel_id: str, latency_s: float, jobs: int) -> None:
    """What the seed's API function does per job: put the job record, then send the task."""
    boto3 = importlib.import_module("boto3")
    dynamodb = boto3.client("dynamodb", endpoint_url=env["BENCH_AWS_ENDPOINT"])
    for _ in range(jobs):
        job_id = uuid.uuid4().hex
        dynamodb.put_item(
            TableName=env["BENCH_TABLE"],
            Item={
                "pk": {"S": f"JOB#{job_id}"},
                "sk": {"S": "JOB"},
                "jobId": {"S": job_id},
                "novelId": {"S": novel_id},
                "userId": {"S": "bench"},
                "status": {"S": "queued"},
            },
        )
        app.send_task(SEED_TASK, args=[job_id, novel_id, "bench", latency_s])
    dynamodb.close()


def _wait_for_lines(
    path: Path, count: int, process: subprocess.Popen[bytes], deadline: float
) -> tuple[list[float], float | None]:
    """The first ``count`` completion times, and the worker's CPU ms per job between its
    first completion and its last."""
    times: list[float] = []
    first_cpu: float | None = None
    cpu_ms: float | None = None
    while time.time() < deadline and process.poll() is None:
        times = sorted(float(line) for line in path.read_text().split())
        if times and first_cpu is None:
            first_cpu, first_count = cpu_tree_seconds(process.pid), len(times)
        if len(times) >= count:
            if first_cpu is not None and count > first_count:
                cpu_ms = 1000 * (cpu_tree_seconds(process.pid) - first_cpu) / (count - first_count)
            break
        time.sleep(POLL_S)
    return times[:count], cpu_ms


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
            return await submit_all(backend, jobs, text=NOVEL_TEXT)

    submit_per_s = asyncio.run(prepare())
    env = bench_env(
        **names.settings_env(moto.endpoint),
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S=str(latency_s),
        STORYBOARD_WORKER_CONCURRENCY=str(concurrency),
        # The producer above takes no slots, as the Celery side has no quota either.
        STORYBOARD_USER_MAX_ACTIVE_JOBS="0",
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
            first: tuple[int, float] | None = None
            cpu_ms: float | None = None
            while time.time() < deadline and worker.process.poll() is None:
                try:
                    acked = worker.acked()
                except OSError:
                    acked = 0
                now = time.time()
                while len(times) < min(acked, jobs):
                    times.append(now)
                if times and first is None:
                    first = (len(times), cpu_tree_seconds(worker.pid))
                if len(times) >= jobs:
                    if first is not None and jobs > first[0]:
                        spent = cpu_tree_seconds(worker.pid) - first[1]
                        cpu_ms = 1000 * spent / (jobs - first[0])
                    break
                time.sleep(SCRAPE_S)
    if len(times) < jobs:
        raise RuntimeError(f"storyboard worker finished {len(times)} of {jobs} jobs")
    rows = moto.counts()
    return {
        "system": "storyboard worker",
        "work": "storyboard",
        "submit_per_s": submit_per_s,
        **_rates(times, start, concurrency),
        "peak_rss_mb": sampler.peak_bytes / 2**20,
        "worker_cpu_ms_per_job": cpu_ms,
        "moto_cpu_ms_per_job": 1000 * (cpu_seconds(moto.pid()) - moto_cpu) / jobs,
        "requests": summarize(rows, jobs, dlq=names.dlq),
    }


RUNS = (("seed", "threads"), ("sleep", "threads"), ("sleep", "prefork"))
"""(work, pool) of the Celery runs beside ours. The seed's work runs on the threads pool,
which is how a team would run I/O-bound tasks; prefork with boto3 in every child process
costs a client set per child and is measured only sleeping, as the memory bound."""


def compare(
    latency_s: float, concurrency: int, jobs: int, runs: tuple[tuple[str, str], ...] = RUNS
) -> dict[str, Any]:
    """Our worker and each Celery run, on one moto server."""
    use_fake_credentials()
    timeout_s = max(120.0, 20 * jobs * latency_s / concurrency)
    rows: list[dict[str, Any]] = []
    with moto_server() as moto:
        rows.append(run_storyboard(moto, latency_s, concurrency, jobs, timeout_s))
        print(describe(rows[-1]), flush=True)
        if optional_module("celery") is None:
            return {"latency_s": latency_s, "concurrency": concurrency, "jobs": jobs,
                    "rows": rows, "celery": "not installed"}  # fmt: skip
        for work, pool in runs:
            case = (latency_s, concurrency, jobs)
            rows.append(run_celery(moto, pool, work, case, timeout_s))
            print(describe(rows[-1]), flush=True)
    return {"latency_s": latency_s, "concurrency": concurrency, "jobs": jobs, "rows": rows}


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    return (
        f"peer {row['system']}: {row['per_s']:.1f} jobs/s over the makespan "
        f"({row['makespan_s']:.1f} s), peak RSS {row['peak_rss_mb']:.0f} MB, "
        f"{row['requests']['sqs_job_requests_per_job']:.2f} SQS requests/job, "
        f"worker CPU {_f(row.get('worker_cpu_ms_per_job'))} ms/job"
    )


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


CONFIGS = ((1.0, 64, 192), (1.0, 16, 96), (10.0, 64, 128))
"""(L, C, N): two where moto's CPU decides throughput, one where it decides neither."""
NOVEL_TEXT = "A short text for a benchmark. " * 20


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="12 jobs, threads only, no save")
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    if args.quick:
        quick = (("seed", "threads"), ("sleep", "threads"))
        return {"configs": [compare(0.05, 4, 12, quick)]}
    result = {"configs": [compare(lat, c, n) for lat, c, n in CONFIGS]}
    save("celery_peer", result)
    return result


if __name__ == "__main__":
    main()
