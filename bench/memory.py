"""Peak resident memory of one ``storyboard serve`` process with 256 jobs in flight.

The process runs on the embedded backend at concurrency 256 with the sleep analyzer set to
a latency long enough that every job is still running when the last one starts. The bench
uploads a novel and submits 256 analyses over HTTP, waits until the process's own
``storyboard_jobs_in_flight`` gauge reads 256, holds a moment, and reports the peak RSS that
a psutil poller (every 50 ms, children included) saw from start-up to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RssSampler, bench_env, optional_module, save
from harness.processes import running_service, wait_until_healthy

MIB = 1024 * 1024


async def submit(url: str, jobs: int) -> None:
    """Upload one novel and queue ``jobs`` analyses of it over the HTTP API."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/v1/novels", json={"title": "Bench", "text": "A short text. " * 50}
        ) as response:
            response.raise_for_status()
            novel_id = (await response.json())["novelId"]
        gate = asyncio.Semaphore(16)

        async def one() -> None:
            async with gate, session.post(f"{url}/v1/novels/{novel_id}/analyze") as response:
                response.raise_for_status()

        await asyncio.gather(*(one() for _ in range(jobs)))


def measure(jobs: int, latency_s: float, hold_s: float) -> dict[str, Any]:
    """Run the process, fill it with ``jobs`` jobs and report its memory."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            STORYBOARD_BACKEND="local",
            STORYBOARD_DATA_DIR=data_dir,
            STORYBOARD_WORKER_CONCURRENCY=str(jobs),
            STORYBOARD_ANALYZER="sleep",
            STORYBOARD_SLEEP_ANALYZER_S=str(latency_s),
            STORYBOARD_RECEIVE_WAIT_S="1",
            # Every job is one user's: without this the quota would admit only 20.
            STORYBOARD_USER_MAX_ACTIVE_JOBS="0",
        )
        with (
            running_service("serve", env, Path(data_dir) / "serve.log", wait=False) as service,
            RssSampler(service.pid) as sampler,
        ):
            wait_until_healthy(service.url, service.process)
            time.sleep(0.5)
            idle_bytes = sampler.peak_bytes
            start = time.perf_counter()
            asyncio.run(submit(service.url, jobs))
            deadline = time.monotonic() + latency_s
            in_flight = 0
            while time.monotonic() < deadline:
                in_flight = service.in_flight()
                if in_flight >= jobs:
                    break
                time.sleep(0.05)
            all_running_s = time.perf_counter() - start
            time.sleep(hold_s)
            in_flight = max(in_flight, service.in_flight())
    return {
        "jobs": jobs,
        "latency_s": latency_s,
        "in_flight_reached": in_flight,
        "seconds_to_all_running": all_running_s,
        "idle_rss_mb": idle_bytes / MIB,
        "peak_rss_mb": sampler.peak_bytes / MIB,
        "samples": sampler.samples,
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="16 jobs, nothing saved")
    args = parser.parse_args(argv)
    if optional_module("psutil") is None:
        print("memory: skipped, psutil is not installed")
        return None
    jobs, latency_s, hold_s = (16, 5.0, 0.3) if args.quick else (args.jobs, 30.0, 2.0)
    result = measure(jobs, latency_s, hold_s)
    print(
        f"memory: {result['in_flight_reached']} jobs in flight, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB (idle {result['idle_rss_mb']:.0f} MB)",
        flush=True,
    )
    if not args.quick:
        save("memory", result)
    return result


if __name__ == "__main__":
    main()
