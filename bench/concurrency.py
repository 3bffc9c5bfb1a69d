"""Concurrency efficiency: throughput against the Little's-law limit C/L, on both backends.

Each case pre-loads the queue with N jobs through the producer (the path the API uses), then
starts one consumer at concurrency C whose analyzer sleeps L seconds (the service's
``SleepAnalyzer``) and times every completion. With C slots each busy L seconds per job no
consumer can finish more than C/L jobs a second, so the ratio to C/L is the share of the
limit the service reaches: the rest is its own per-job overhead (record writes, blob
reads and writes, queue calls) and, once the CPU or the backend is saturated, queueing.

Method. ``t_k`` is when the k-th job was acknowledged (the consumer's ``acked`` counter,
polled every 5 ms). The **steady-state** rate is ``(N - C) / (t_N - t_C)``: it starts when
the first C jobs are done, so the ramp-up (filling C slots ten messages per receive) is left
out, and it ends at the last completion, so the empty tail is too. With waves of C jobs
finishing together both ends fall on a wave's last job, which keeps the figure free of the
phase error a fixed time window would have. The **makespan** ratio is the ideal
``ceil(N/C)·L`` over the measured time from consumer start to the last completion, so it
includes ramp-up and tail. N is C times enough waves for a few seconds of steady state
(``max(3, ceil(4 s / L))``), capped per backend where the backend is the bottleneck anyway
(on moto at two waves, at least 40 jobs and at most 256, so C=256 runs a single wave and has
only the makespan figure).

On moto, the case also counts every AWS request from the first submission to the last
completion (see :mod:`bench.moto_counting`) and the CPU time of the moto process and of
this one, which shows whose CPU the throughput is bounded by.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, save
from bench.moto_process import MotoServer, moto_server, summarize
from harness.aws import AwsNames, use_fake_credentials
from service.analysis.sleeping import SleepAnalyzer
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.logs import configure_logging
from service.metrics import Metrics
from service.producers.enqueue import JobProducer
from service.runtime import build_consumer
from service.settings import Settings
from service.uploads import store_novel

LATENCIES_S = (0.2, 1.0)
CONCURRENCIES = (1, 16, 64, 256)
TARGET_S = 4.0
"""Seconds of ideal run time each case aims for."""
JOB_CAP = {"local": 3000, "aws": 256}
"""Most jobs a case submits: where the backend, not C/L, sets the pace."""
MIN_JOBS_AWS = 40
SUBMIT_PARALLELISM = 32
POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class Case:
    """One measurement: backend, stub latency, concurrency and job count."""

    backend: str
    latency_s: float
    concurrency: int
    jobs: int

    @property
    def limit_per_s(self) -> float:
        """Little's-law limit C/L."""
        return self.concurrency / self.latency_s


def jobs_for(backend: str, latency_s: float, concurrency: int) -> int:
    """N: C times enough waves for ``TARGET_S`` seconds, at least two waves, within the cap."""
    waves = max(3, math.ceil(TARGET_S / latency_s))
    jobs = concurrency * waves
    if backend == "aws":
        jobs = min(jobs, max(2 * concurrency, MIN_JOBS_AWS))
    return min(jobs, JOB_CAP[backend])


async def submit_all(
    backend: Backend, jobs: int, text: str = "A short text for a benchmark."
) -> float:
    """Store one novel and queue ``jobs`` analyses of it; return the submissions per second.

    Each job carries the novel's title and text key, as the API's submissions do."""
    novel = await store_novel(backend, "bench", "Bench", text)
    producer = JobProducer(backend.jobs, backend.queue, backend.idempotency)
    gate = asyncio.Semaphore(SUBMIT_PARALLELISM)

    async def one() -> None:
        async with gate:
            await producer.submit(novel.novel_id, "bench", source=novel.source())

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return jobs / (time.perf_counter() - start)


async def drain(settings: Settings, backend: Backend, case: Case) -> dict[str, Any]:
    """Run one consumer until all jobs are acknowledged; return the timings."""
    metrics = Metrics()
    consumer = build_consumer(settings, backend, SleepAnalyzer(case.latency_s), metrics)
    reached: list[float] = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    async with consumer:
        while len(reached) < case.jobs:
            acked = consumer.stats.acked
            now = time.perf_counter() - start
            while len(reached) < min(acked, case.jobs):
                reached.append(now)
            await asyncio.sleep(POLL_S)
        peak = consumer.stats.peak_in_flight
        receives = consumer.stats.receives
    cpu_s = time.process_time() - cpu_start
    c, n = case.concurrency, case.jobs
    makespan = reached[-1]
    steady = (n - c) / (reached[-1] - reached[c - 1]) if n > c else None
    ideal = math.ceil(n / c) * case.latency_s
    slot_cycle_s = c / steady if steady else makespan / math.ceil(n / c)
    return {
        "makespan_s": makespan,
        "makespan_ratio": ideal / makespan,
        "steady_per_s": steady,
        "steady_ratio": steady / case.limit_per_s if steady is not None else None,
        "peak_in_flight": peak,
        "receives": receives,
        "service_cpu_ms_per_job": 1000 * cpu_s / n,
        "slot_cycle_ms": 1000 * slot_cycle_s,
        "handler_ms": 1000 * _mean(metrics, "storyboard_job_duration_seconds", outcome="completed"),
        "stage_ms": {
            stage: 1000 * _mean(metrics, "storyboard_stage_duration_seconds", stage=stage)
            for stage in ("fetch", "analyze", "store")
        },
    }


def _mean(metrics: Metrics, name: str, **labels: str) -> float:
    """The mean of a histogram's observations (0 if none)."""
    total = metrics.registry.get_sample_value(f"{name}_sum", labels) or 0.0
    count = metrics.registry.get_sample_value(f"{name}_count", labels) or 0.0
    return total / count if count else 0.0


async def run_case(case: Case, moto: MotoServer | None) -> dict[str, Any]:
    """Set up a fresh backend, submit the jobs, drain them and collect the figures."""
    result: dict[str, Any] = {
        "backend": case.backend,
        "latency_s": case.latency_s,
        "concurrency": case.concurrency,
        "jobs": case.jobs,
        "limit_per_s": case.limit_per_s,
    }
    with tempfile.TemporaryDirectory() as data_dir:
        if moto is not None:
            from service.bootstrap import bootstrap

            names = AwsNames.fresh(f"c{case.concurrency}")
            settings = Settings(
                **names.settings_values(moto.endpoint), worker_concurrency=case.concurrency
            )
            await bootstrap(settings)
        else:
            settings = Settings(
                backend="local", data_dir=Path(data_dir), worker_concurrency=case.concurrency
            )
        async with open_backend(settings) as backend:
            if moto is not None:
                moto.reset()
                moto_cpu = cpu_seconds(moto.pid())
            result["submit_per_s"] = await submit_all(backend, case.jobs)
            if moto is not None:
                moto_cpu_drain = cpu_seconds(moto.pid())
            result.update(await drain(settings, backend, case))
            if moto is not None:
                done = cpu_seconds(moto.pid())
                result["moto_cpu_ms_per_job"] = 1000 * (done - moto_cpu_drain) / case.jobs
                result["moto_cpu_ms_per_job_with_submit"] = 1000 * (done - moto_cpu) / case.jobs
                result["requests"] = summarize(moto.counts(), case.jobs, dlq=names.dlq)
    return result


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    steady = row["steady_ratio"]
    text = (
        f"{row['backend']:5} L={row['latency_s']:g}s C={row['concurrency']:3} "
        f"N={row['jobs']:4}: makespan {row['makespan_s']:.2f}s "
        f"({row['makespan_ratio']:.2f} of ideal)"
    )
    if steady is not None:
        text += f", steady {row['steady_per_s']:.1f} jobs/s = {steady:.2f} of C/L"
    return text + (
        f", cpu {row['service_cpu_ms_per_job']:.1f} ms/job, slot cycle "
        f"{row['slot_cycle_ms']:.0f} ms (handler {row['handler_ms']:.0f} ms)"
    )


async def run(cases: list[Case]) -> list[dict[str, Any]]:
    """Every case; one moto server is shared by the AWS ones, each with its own resources."""
    rows: list[dict[str, Any]] = []
    for case in (c for c in cases if c.backend == "local"):
        rows.append(await run_case(case, None))
        print(describe(rows[-1]), flush=True)
    aws_cases = [c for c in cases if c.backend == "aws"]
    if aws_cases:
        use_fake_credentials()
        with moto_server() as moto:
            for case in aws_cases:
                rows.append(await run_case(case, moto))
                print(describe(rows[-1]), flush=True)
    return rows


def all_cases(backends: tuple[str, ...] = ("local", "aws")) -> list[Case]:
    """The full grid."""
    return [
        Case(backend, latency, concurrency, jobs_for(backend, latency, concurrency))
        for backend in backends
        for latency in LATENCIES_S
        for concurrency in CONCURRENCIES
    ]


def quick_cases() -> list[Case]:
    """One tiny case per backend, for the smoke run."""
    return [Case("local", 0.05, 8, 32), Case("aws", 0.05, 4, 12)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two tiny cases, nothing saved")
    parser.add_argument("--backend", choices=("local", "aws"), action="append")
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    backends = tuple(args.backend or ("local", "aws"))
    cases = quick_cases() if args.quick else all_cases(backends)
    result = {"cases": asyncio.run(run(cases))}
    if not args.quick:
        save("concurrency", result)
    return result


if __name__ == "__main__":
    main()
