"""Jobs per second through the embedded backend with a no-op analyzer.

Submits jobs through the producer (the same path the API uses), then lets one in-process
consumer at concurrency 64 drain them: receive, start, progress, storyboard write, complete,
batched delete. The analyzer returns at once, so the figure is the cost of our own
machinery and the SQLite backend, not of analysis.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, save
from service.analysis.sleeping import SleepAnalyzer
from service.logs import configure_logging
from service.runtime import open_runtime
from service.settings import Settings
from service.uploads import store_novel


async def one_run(jobs: int, concurrency: int) -> dict[str, float]:
    """Submit ``jobs``, then drain them with one consumer; return the two rates."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            backend="local",
            data_dir=Path(data_dir),
            worker_concurrency=concurrency,
            receive_wait_s=1,
            user_max_active_jobs=0,  # one user submits the whole backlog
        )
        async with open_runtime(settings, worker=False) as runtime:
            novel = await store_novel(runtime.backend, "bench", "Bench", "A short text.")
            start = time.perf_counter()
            for _ in range(jobs):
                await runtime.producer.submit(novel.novel_id, "bench")
            submit_s = time.perf_counter() - start
        start = time.perf_counter()
        async with open_runtime(settings, analyzer=SleepAnalyzer(0.0)) as runtime:
            assert runtime.consumer is not None
            while runtime.consumer.stats.acked < jobs:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.01)
            drain_s = time.perf_counter() - start
    return {"submit_per_s": jobs / submit_s, "drain_per_s": jobs / drain_s}


async def run(jobs: int, concurrency: int, repeats: int) -> dict[str, Any]:
    """Repeat the run and keep every figure plus the medians."""
    runs = [await one_run(jobs, concurrency) for _ in range(repeats)]
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "runs": runs,
        "median_submit_per_s": median([r["submit_per_s"] for r in runs]),
        "median_drain_per_s": median([r["drain_per_s"] for r in runs]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry", action="store_true", help="print only; save nothing")
    args = parser.parse_args(argv)
    configure_logging("warning", "json")
    result = asyncio.run(run(args.jobs, args.concurrency, args.repeats))
    if not args.dry:
        save("local_throughput", result)
    print(
        f"local backend, concurrency {args.concurrency}: "
        f"submit {result['median_submit_per_s']:.0f} jobs/s, "
        f"drain {result['median_drain_per_s']:.0f} jobs/s (median of {args.repeats})"
    )
    return result


if __name__ == "__main__":
    main()
