"""Event-stream fan-out: 1,000 open ``GET /v1/jobs/{id}/events`` streams on one replica.

Set-up. The counting moto server runs in its own process (:mod:`bench.moto_process`), so its
CPU is not the replica's; it writes BatchGetItem answers itself, as moto's own serializer
would otherwise dominate (``patch_moto_batch_get_serializer``). The replica is ``storyboard
api``: ``storyboard serve`` without its consumer, on the AWS backend. The jobs run in a
separate ``storyboard worker`` process, so the replica's CPU is the streams' alone. The
worker uses the sleep analyzer at latency L with ``STORYBOARD_SLEEP_ANALYZER_STEPS`` K, so a
running job's progress moves every L/K seconds (the progress writer writes at most once per
2 s per job). The clients are :mod:`bench.sse_clients`, one asyncio process of their own.

Each case. J jobs are queued through the producer, as the API's anonymous user. Then the
replica starts, and its RSS is read when it is idle. The clients open S streams on every
job, J × S = 1,000 in the full run, and wait until each stream has had its first event;
the RSS is read again. Next the worker starts at concurrency C. Once its own gauge shows C
jobs in flight, a window of W seconds begins:

* the moto counts are reset at its start and read at its end. DynamoDB reads per second are
  BatchGetItem plus GetItem over the window, next to the expected ⌈watched jobs / 100⌉ per
  second (one poll a second, 100 keys a read);
* CPU is user + system seconds per second of wall time (psutil), for the replica and, for
  context, the worker, moto and the clients;
* the delay of an event is its client's receive time minus the job view's ``updatedAt``
  (the write's time, same machine clock). It counts every event received in the window
  except a stream's first event, which is only the state at connection time.

The peak RSS is the highest a psutil poller (every 50 ms) saw from the replica's start to
the end of the case.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import sse_clients
from bench.common import (
    RssSampler,
    bench_env,
    environment,
    optional_module,
    percentile,
    rss_tree_bytes,
    save,
)
from bench.moto_process import MotoServer, moto_server
from harness.aws import AwsNames, use_fake_credentials
from harness.processes import ServiceProcess, running_service
from service.auth import ANONYMOUS_USER
from service.backends.selection import open_backend
from service.bootstrap import bootstrap
from service.logs import configure_logging
from service.producers.enqueue import JobProducer
from service.settings import Settings
from service.uploads import store_novel

MIB = 1024 * 1024
READ_BATCH = 100
"""Keys one BatchGetItem reads, as the watch hub uses it."""
SUBMIT_PARALLELISM = 32
IN_FLIGHT_TIMEOUT_S = 60.0
SETTLE_S = 3.0
"""Wait after the last job was received, so its start (novel read, start write) is not in
the window even when moto's queue holds it up."""
CONNECTION_HEADROOM = 100
"""Connections the replica accepts beyond the streams: health checks and scrapes."""


@dataclass(frozen=True, slots=True)
class Case:
    """J jobs with S streams each; C run at once, each sleeping L in K steps."""

    jobs: int
    per_job: int
    concurrency: int
    latency_s: float
    steps: int
    window_s: float

    @property
    def streams(self) -> int:
        """Streams open on the replica."""
        return self.jobs * self.per_job


CASES = (
    Case(jobs=100, per_job=10, concurrency=100, latency_s=40.0, steps=6, window_s=20.0),
    Case(jobs=1000, per_job=1, concurrency=100, latency_s=40.0, steps=6, window_s=20.0),
)
"""A progress write every ~7 s per running job, ~15 writes/s from 100 jobs. The bench's moto
answers DynamoDB one request at a time (``harness.aws.SerialDynamoDB``) and a moto
UpdateItem takes ~10 ms of CPU, so at twice that rate the hub's reads queue behind the
writes and the figures are moto's. Every job is still running when the window ends."""
QUICK = Case(jobs=5, per_job=4, concurrency=5, latency_s=9.0, steps=3, window_s=3.0)


async def queue_jobs(settings: Settings, count: int) -> list[str]:
    """Create the resources, store one novel and queue ``count`` analyses of it."""
    await bootstrap(settings)
    async with open_backend(settings) as backend:
        novel = await store_novel(backend, ANONYMOUS_USER, "Bench", "A short text. " * 50)
        producer = JobProducer(backend.jobs, backend.queue, backend.idempotency)
        gate = asyncio.Semaphore(SUBMIT_PARALLELISM)

        async def one() -> str:
            async with gate:
                return (await producer.submit(novel.novel_id, ANONYMOUS_USER)).job_id

        return list(await asyncio.gather(*(one() for _ in range(count))))


class Clients:
    """The client process, seen from here through its pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self._conn = conn

    @property
    def pid(self) -> int:
        """The client process's id."""
        assert self.process.pid is not None
        return self.process.pid

    def wait_open(self) -> dict[str, Any]:
        """Block until every stream has had its first event (or the clients gave up)."""
        return self._answer("open", sse_clients.OPEN_TIMEOUT_S + 30)

    def stop(self) -> dict[str, Any]:
        """Close every stream and collect what they received."""
        self._conn.send("stop")
        return self._answer("done", 60)

    def _answer(self, expected: str, within_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while not self._conn.poll(0.2):
            if not self.process.is_alive():
                raise RuntimeError(f"the stream clients exited with {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream clients did not answer {expected!r}")
        kind, figures = self._conn.recv()
        if kind != expected:
            raise RuntimeError(f"the stream clients answered {kind!r}, not {expected!r}")
        return dict(figures)


@contextmanager
def clients(url: str, job_ids: list[str], per_job: int) -> Iterator[Clients]:
    """Start :mod:`bench.sse_clients` in a fresh interpreter; end it on the way out."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=sse_clients.main, args=(url, job_ids, per_job, theirs), name="sse-clients"
    )
    process.start()
    try:
        yield Clients(process, ours)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def cpu_of(pid: int) -> float:
    """User plus system CPU seconds of one process so far (psutil)."""
    psutil = optional_module("psutil")
    if psutil is None:
        raise RuntimeError("psutil is not installed")
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def wait_in_flight(worker: ServiceProcess, jobs: int) -> float:
    """Seconds until the worker's gauge shows ``jobs`` in flight."""
    start = time.monotonic()
    while worker.in_flight() < jobs:
        if time.monotonic() - start > IN_FLIGHT_TIMEOUT_S:
            raise RuntimeError(f"the worker never had {jobs} jobs in flight")
        time.sleep(0.1)
    return time.monotonic() - start


WATCH_SERIES = ("storyboard_watch_polls_total", "storyboard_watch_reads_total")


def dynamo_requests(rows: list[dict[str, Any]]) -> dict[str, int]:
    """DynamoDB requests in a counts snapshot, by operation and by operation and record
    kind (``GetItem JOB``, ``GetItem NOVEL``…)."""
    found: dict[str, int] = {}
    for row in rows:
        if row["service"] != "dynamodb":
            continue
        keys = {row["operation"], f"{row['operation']} {row['resource']}".strip()}
        for key in keys:
            found[key] = found.get(key, 0) + int(row["count"])
    return found


def streaming_window(
    case: Case, replica: ServiceProcess, pids: dict[str, int], moto: MotoServer
) -> dict[str, Any]:
    """Measure the replica, the other processes and moto over ``case.window_s`` seconds."""
    watch_before = {name: replica.metric(name) for name in WATCH_SERIES}
    cpu_before = {name: cpu_of(pid) for name, pid in pids.items()}
    moto.reset()
    started_at, start = time.time(), time.perf_counter()
    time.sleep(case.window_s)
    elapsed = time.perf_counter() - start
    dynamo = dynamo_requests(moto.counts())
    cpu = {name: (cpu_of(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
    watch = {name: replica.metric(name) - watch_before[name] for name in WATCH_SERIES}
    reads = dynamo.get("BatchGetItem", 0) + dynamo.get("GetItem", 0)
    return {
        "window": (started_at, started_at + elapsed),
        "elapsed_s": elapsed,
        "streaming_rss_mb": rss_tree_bytes(replica.pid) / MIB,
        "cores": cpu,
        "dynamodb_requests": dynamo,
        "reads_per_s": reads / elapsed,
        "batch_get_per_s": dynamo.get("BatchGetItem", 0) / elapsed,
        "get_item_per_s": dynamo.get("GetItem", 0) / elapsed,
        "writes_per_s": dynamo.get("UpdateItem", 0) / elapsed,
        "hub_polls_per_s": watch["storyboard_watch_polls_total"] / elapsed,
        "hub_reads_per_s": watch["storyboard_watch_reads_total"] / elapsed,
        "load_average": os.getloadavg()[0],
        "watched_at_end": replica.metric("storyboard_watch_jobs"),
        "streams_at_end": replica.metric("storyboard_watch_streams"),
    }


def delays(received: dict[str, Any], window: tuple[float, float]) -> dict[str, Any]:
    """The write-to-client delays of the events received within ``window``."""
    start, end = window
    ms = [1000 * delay for at, delay in received["events"] if start <= at <= end]
    return {
        "events": len(ms),
        "events_per_s": len(ms) / (end - start),
        "delay_p50_ms": percentile(ms, 0.5),
        "delay_p90_ms": percentile(ms, 0.9),
        "delay_p99_ms": percentile(ms, 0.99),
        "delay_max_ms": max(ms, default=math.nan),
    }


def worker_env(case: Case, base: dict[str, str]) -> dict[str, str]:
    """The worker's settings: the sleep analyzer moving in K steps, concurrency C."""
    return {
        **base,
        "STORYBOARD_ANALYZER": "sleep",
        "STORYBOARD_SLEEP_ANALYZER_S": str(case.latency_s),
        "STORYBOARD_SLEEP_ANALYZER_STEPS": str(case.steps),
        "STORYBOARD_WORKER_CONCURRENCY": str(case.concurrency),
    }


def measure(case: Case, moto: MotoServer, scratch: Path) -> dict[str, Any]:
    """One case: queue, open the streams, run the jobs, measure a window."""
    names = AwsNames.fresh(f"sse{case.jobs}")
    job_ids = asyncio.run(queue_jobs(Settings(**names.settings_values(moto.endpoint)), case.jobs))
    base = bench_env(**names.settings_env(moto.endpoint))
    connections = str(case.streams + CONNECTION_HEADROOM)
    api_env = {**base, "STORYBOARD_HTTP_MAX_CONNECTIONS": connections}
    with (
        running_service("api", api_env, scratch / "api.log") as replica,
        RssSampler(replica.pid) as sampler,
    ):
        time.sleep(1.0)
        idle_mb = rss_tree_bytes(replica.pid) / MIB
        with clients(replica.url, job_ids, case.per_job) as streams:
            start = time.perf_counter()
            opened = streams.wait_open()
            open_s = time.perf_counter() - start
            open_mb = rss_tree_bytes(replica.pid) / MIB
            with running_service("worker", worker_env(case, base), scratch / "worker.log") as w:
                ramp_s = wait_in_flight(w, min(case.concurrency, case.jobs))
                time.sleep(SETTLE_S)
                pids = {"replica": replica.pid, "worker": w.pid, "moto": moto.pid()}
                window = streaming_window(case, replica, {**pids, "clients": streams.pid}, moto)
            received = streams.stop()
    return {
        **asdict(case),
        "streams": case.streams,
        "opened": opened["opened"],
        "stream_errors": received["error_count"],
        "first_errors": received["errors"],
        "open_s": open_s,
        "ramp_s": ramp_s,
        "idle_rss_mb": idle_mb,
        "open_rss_mb": open_mb,
        "peak_rss_mb": sampler.peak_bytes / MIB,
        "expected_reads_per_s": math.ceil(case.jobs / READ_BATCH),
        **{k: v for k, v in window.items() if k != "window"},
        **delays(received, window["window"]),
    }


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    cores = row["cores"]
    return (
        f"sse fan-out {row['streams']} streams on {row['jobs']} jobs: RSS "
        f"{row['idle_rss_mb']:.0f} → {row['open_rss_mb']:.0f} MB open, peak "
        f"{row['peak_rss_mb']:.0f} MB; replica {cores['replica']:.2f} cores; "
        f"{row['reads_per_s']:.1f} reads/s (expected {row['expected_reads_per_s']}); "
        f"{row['events_per_s']:.0f} events/s, delay p50 {row['delay_p50_ms']:.0f} ms, "
        f"p99 {row['delay_p99_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 streams on 5 jobs, no save")
    args = parser.parse_args(argv)
    if optional_module("psutil") is None:
        print("sse fan-out: skipped, psutil is not installed")
        return None
    configure_logging("warning", "json")
    use_fake_credentials()
    cases = (QUICK,) if args.quick else CASES
    rows = []
    start = time.perf_counter()
    with moto_server() as moto, tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            rows.append(measure(case, moto, Path(scratch)))
            print(describe(rows[-1]), flush=True)
    result = {
        "poll_s": Settings.model_fields["watch_poll_s"].default,
        # The part may be run on its own, after the rest of the page: say when and how long.
        "date": environment()["date"],
        "elapsed_s": time.perf_counter() - start,
        "rows": rows,
    }
    if not args.quick:
        save("sse_fanout", result)
    return result


if __name__ == "__main__":
    main()
