"""What tracing costs: CPU per job and jobs per second with OpenTelemetry off and on.

Set-up. The path of ``bench.local_throughput``, in one process: jobs submitted through the
producer (job record + send), then drained by one in-process consumer at concurrency 64
with a no-op analyzer (receive, start, progress, storyboard write, complete, batched
delete), on the embedded backend. The analyzer returns at once, so the figures are the
cost of the service's own machinery, which is where tracing's share is largest.

Off: no OTEL_* variable, as in production by default (no SDK, no exporter, no span
objects). On: the SDK's batch span processor and its OTLP/HTTP exporter, sending to a
loopback receiver in another process (``bench.otlp_sink``, which decodes each export and
counts its spans), as the runtime builds them when OTEL_* variables are set. The CPU is
this process's (every thread: the exporter's included), the flush at the end included.
Each job makes a ``send`` and a ``process`` span on this path; on the AWS backend every
SQS, DynamoDB and S3 call adds one more, and over HTTP each request adds a server span.
Modes alternate within each repeat so drift on a shared machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.common import environment, median, save
from harness.processes import ROOT
from service.analysis.sleeping import SleepAnalyzer
from service.logs import configure_logging
from service.runtime import open_runtime
from service.settings import Settings
from service.uploads import store_novel

MODES = ("off", "on")


@contextmanager
def otlp_sink() -> Iterator[str]:
    """A loopback OTLP receiver in a process of its own; its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.otlp_sink"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def sink_counts(base: str) -> dict[str, int]:
    """The sink's totals so far."""
    with urllib.request.urlopen(f"{base}/count", timeout=10) as response:
        counts: dict[str, int] = json.loads(response.read())
    return counts


def provider_for(sink: str) -> TracerProvider:
    """What the runtime builds with OTEL_* set: batch processor, OTLP/HTTP exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "storyboard-bench"}))
    exporter = OTLPSpanExporter(endpoint=f"{sink}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


async def one_run(mode: str, jobs: int, concurrency: int, sink: str) -> dict[str, float]:
    """Submit ``jobs``, then drain them; wall and CPU seconds of each phase."""
    provider = provider_for(sink) if mode == "on" else None
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            backend="local",
            data_dir=Path(data_dir),
            worker_concurrency=concurrency,
            receive_wait_s=1,
            # One user submits the whole backlog: this measures tracing, not the quota.
            user_max_active_jobs=0,
        )
        async with open_runtime(settings, worker=False, tracer_provider=provider) as runtime:
            novel = await store_novel(runtime.backend, "bench", "Bench", "A short text.")
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(jobs):
                await runtime.producer.submit(novel.novel_id, "bench")
            submit = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        analyzer = SleepAnalyzer(0.0)
        async with open_runtime(settings, analyzer=analyzer, tracer_provider=provider) as runtime:
            assert runtime.consumer is not None
            while runtime.consumer.stats.acked < jobs:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.01)
        if provider is not None:
            # Every span exported before the clock stops: the export is part of the cost.
            await asyncio.to_thread(provider.shutdown)
        drain = (time.perf_counter() - wall, time.process_time() - cpu)
    return {
        "submit_per_s": jobs / submit[0],
        "drain_per_s": jobs / drain[0],
        "submit_cpu_ms_per_job": submit[1] * 1000 / jobs,
        "drain_cpu_ms_per_job": drain[1] * 1000 / jobs,
    }


async def run(jobs: int, concurrency: int, repeats: int, sink: str) -> dict[str, Any]:
    """Both modes ``repeats`` times, alternating; every run and the medians."""
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    before = sink_counts(sink)
    for _ in range(repeats):
        for mode in MODES:
            runs[mode].append(await one_run(mode, jobs, concurrency, sink))
    after = sink_counts(sink)
    rows = []
    for mode in MODES:
        keys = runs[mode][0].keys()
        rows.append({"mode": mode, **{k: median([r[k] for r in runs[mode]]) for k in keys}})
    exported = after["spans"] - before["spans"]
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "repeats": repeats,
        "runs": runs,
        "rows": rows,
        "spans_exported": exported,
        "spans_per_job": exported / (jobs * repeats),
        "otlp_bytes_per_span": (after["bytes"] - before["bytes"]) / max(exported, 1),
    }


def describe(result: dict[str, Any]) -> list[str]:
    """Lines for the console."""
    lines = []
    for row in result["rows"]:
        lines.append(
            f"tracing {row['mode']:3}: submit {row['submit_per_s']:.0f} jobs/s, "
            f"{row['submit_cpu_ms_per_job']:.2f} ms CPU/job; drain {row['drain_per_s']:.0f} "
            f"jobs/s, {row['drain_cpu_ms_per_job']:.2f} ms CPU/job"
        )
    lines.append(
        f"tracing on exported {result['spans_exported']} spans "
        f"({result['spans_per_job']:.2f} a job, {result['otlp_bytes_per_span']:.0f} B each)"
    )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small case, no save")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    jobs, repeats = (100, 1) if args.quick else (args.jobs, args.repeats)
    configure_logging("warning", "json")
    start = time.perf_counter()
    with otlp_sink() as sink:
        result = asyncio.run(run(jobs, 64, repeats, sink))
    result["elapsed_s"] = time.perf_counter() - start
    result["date"] = environment()["date"]
    for line in describe(result):
        print(line, flush=True)
    if not args.quick:
        save("tracing_cost", result)
    return result


if __name__ == "__main__":
    main()
