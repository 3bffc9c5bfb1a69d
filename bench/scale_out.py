"""Scale-out: 1, 2 and 4 ``storyboard worker`` processes on one backend.

A backlog is submitted first (through the producer, into one local data directory or onto
one moto queue), then k worker processes start together, each at concurrency C with the
sleep analyzer at latency L. Once all answer ``/healthz``, the bench reads every worker's
``acked`` counter from its ``/metrics`` page, waits ``window_s`` seconds and reads them
again: throughput is the difference over the window, in steady state, with the backlog
checked not to run dry. The workers' CPU time (and moto's) over the same window shows how
much of the machine's two cores each configuration uses.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.common import bench_env, cpu_seconds, save
from bench.concurrency import submit_all
from bench.moto_process import MotoServer, moto_server
from harness.aws import AwsNames, use_fake_credentials
from harness.processes import ServiceProcess, running_service, wait_until_healthy
from service.backends.selection import open_backend
from service.bootstrap import bootstrap
from service.logs import configure_logging
from service.settings import Settings

PROCESSES = (1, 2, 4)
WARMUP_TIMEOUT_S = 60.0


@contextmanager
def workers(count: int, env: dict[str, str], scratch: Path) -> Iterator[list[ServiceProcess]]:
    """Start ``count`` workers at once and wait until every one is healthy."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(
                running_service("worker", env, scratch / f"worker-{i}.log", wait=False)
            )
            for i in range(count)
        ]
        for worker in started:
            wait_until_healthy(worker.url, worker.process)
        yield started


def one_run(
    count: int,
    settings: Settings,
    env: dict[str, str],
    jobs: int,
    window_s: float,
    moto: MotoServer | None,
    warmup: int,
) -> dict[str, Any]:
    """Submit ``jobs``, run ``count`` workers, measure over the window once ``warmup`` jobs
    are done (so every slot has cycled at least once and the rate is a steady one)."""

    async def prepare() -> float:
        if moto is not None:
            await bootstrap(settings)
        async with open_backend(settings) as backend:
            return await submit_all(backend, jobs)

    asyncio.run(prepare())
    with tempfile.TemporaryDirectory() as scratch, workers(count, env, Path(scratch)) as procs:
        warm_until = time.monotonic() + WARMUP_TIMEOUT_S
        while sum(w.acked() for w in procs) < warmup and time.monotonic() < warm_until:
            time.sleep(0.1)
        before = sum(w.acked() for w in procs)
        cpu_before = sum(cpu_seconds(w.pid) for w in procs)
        moto_before = cpu_seconds(moto.pid()) if moto is not None else 0.0
        start = time.perf_counter()
        time.sleep(window_s)
        after = sum(w.acked() for w in procs)
        elapsed = time.perf_counter() - start
        cpu_after = sum(cpu_seconds(w.pid) for w in procs)
        moto_after = cpu_seconds(moto.pid()) if moto is not None else 0.0
    return {
        "processes": count,
        "per_s": (after - before) / elapsed,
        "backlog_left": jobs - after,
        "worker_cores": (cpu_after - cpu_before) / elapsed,
        "moto_cores": (moto_after - moto_before) / elapsed if moto is not None else None,
    }


def run_local(
    counts: tuple[int, ...], latency_s: float, concurrency: int, jobs: int, window_s: float
) -> list[dict[str, Any]]:
    """Workers sharing one embedded data directory."""
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(backend="local", data_dir=Path(data_dir))
            env = bench_env(
                STORYBOARD_BACKEND="local",
                STORYBOARD_DATA_DIR=data_dir,
                STORYBOARD_ANALYZER="sleep",
                STORYBOARD_SLEEP_ANALYZER_S=str(latency_s),
                STORYBOARD_WORKER_CONCURRENCY=str(concurrency),
                STORYBOARD_RECEIVE_WAIT_S="1",
            )
            rows.append(
                {
                    "backend": "local",
                    **one_run(count, settings, env, jobs, window_s, None, count * concurrency),
                }
            )
        print(describe(rows[-1]), flush=True)
    return rows


def run_aws(
    counts: tuple[int, ...], latency_s: float, concurrency: int, jobs: int, window_s: float
) -> list[dict[str, Any]]:
    """Workers sharing one queue, table and bucket on moto."""
    use_fake_credentials()
    rows = []
    with moto_server() as moto:
        for count in counts:
            names = AwsNames.fresh(f"scale{count}")
            settings = Settings(**names.settings_values(moto.endpoint))
            env = bench_env(
                **names.settings_env(moto.endpoint),
                STORYBOARD_ANALYZER="sleep",
                STORYBOARD_SLEEP_ANALYZER_S=str(latency_s),
                STORYBOARD_WORKER_CONCURRENCY=str(concurrency),
            )
            run = one_run(count, settings, env, jobs, window_s, moto, count * concurrency)
            rows.append({"backend": "aws", **run})
            print(describe(rows[-1]), flush=True)
    return rows


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    text = (
        f"scale-out {row['backend']:5} {row['processes']} worker(s): {row['per_s']:.1f} jobs/s, "
        f"workers use {row['worker_cores']:.2f} cores"
    )
    if row["moto_cores"] is not None:
        text += f", moto {row['moto_cores']:.2f}"
    if row["backlog_left"] <= 0:
        text += " (backlog ran dry: a lower bound)"
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one worker, tiny, nothing saved")
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    latency_s, local_c, aws_c = 0.2, 64, 16
    if args.quick:
        rows = run_local((1,), 0.05, 8, 200, 1.0)
    else:
        rows = run_local(PROCESSES, latency_s, local_c, 6000, 5.0)
        rows += run_aws(PROCESSES, latency_s, aws_c, 200, 8.0)
    result = {"latency_s": latency_s, "concurrency": {"local": local_c, "aws": aws_c}, "rows": rows}
    if not args.quick:
        save("scale_out", result)
    return result


if __name__ == "__main__":
    main()
