"""HTTP submissions per second and latency, against a bare aiohttp server as the ceiling.

The load generator is an aiohttp client in this process: ``connections`` tasks, each with a
keep-alive connection, send ``POST /v1/novels/{id}/analyze`` back to back until ``requests``
have been sent or ``max_s`` seconds have passed (after a short warm-up), recording each
request's latency. The target is a ``storyboard serve`` process on the embedded backend
(each submission writes a job record and a queue message; its worker runs 32 sleep jobs of
600 s, so it holds messages but spends no CPU), then ``bench.hello_server``, which answers
the same route with a constant 202. Client and server share the machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import bench_env, percentile, save
from harness.processes import ROOT, free_port, running_service, stop_process, wait_until_healthy

WARMUP = 100


async def load(
    url: str, novel_id: str, connections: int, requests: int, max_s: float
) -> dict[str, Any]:
    """Drive the target and summarise what it answered."""
    import aiohttp

    target = f"{url}/v1/novels/{novel_id}/analyze"
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(count: int, record: bool, deadline: float) -> None:
            nonlocal errors
            for _ in range(count):
                if time.perf_counter() > deadline:
                    return
                start = time.perf_counter()
                async with session.post(target) as response:
                    await response.read()
                    ok = response.status == 202
                if record:
                    latencies.append(time.perf_counter() - start)
                    errors += 0 if ok else 1

        warm_deadline = time.perf_counter() + max_s
        per = max(1, WARMUP // connections)
        await asyncio.gather(*(worker(per, False, warm_deadline) for _ in range(connections)))
        start = time.perf_counter()
        deadline = start + max_s
        share = requests // connections
        await asyncio.gather(*(worker(share, True, deadline) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "connections": connections,
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


async def upload(url: str) -> str:
    """Upload the novel the submissions refer to; its id."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/novels", json={"title": "Bench", "text": "A text."}) as response,
    ):
        response.raise_for_status()
        return str((await response.json())["novelId"])


@contextmanager
def hello_process(log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``bench.hello_server`` on a free port."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.hello_server", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url, process
    finally:
        stop_process(process)


def measure(connections: int, requests: int, max_s: float) -> dict[str, Any]:
    """Both targets, one after the other, with the same load."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            STORYBOARD_BACKEND="local",
            STORYBOARD_DATA_DIR=data_dir,
            STORYBOARD_ANALYZER="sleep",
            STORYBOARD_SLEEP_ANALYZER_S="600",
            # One user sends every request; the active-job quota would refuse all but 20.
            STORYBOARD_USER_MAX_ACTIVE_JOBS="0",
        )
        with running_service("serve", env, Path(data_dir) / "serve.log") as service:
            novel_id = asyncio.run(upload(service.url))
            ours = asyncio.run(load(service.url, novel_id, connections, requests, max_s))
        with hello_process(Path(data_dir) / "hello.log") as (url, _):
            hello = asyncio.run(load(url, "n", connections, requests, max_s))
    return {"service": ours, "hello": hello, "ratio": ours["per_s"] / hello["per_s"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--max-s", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="200 requests, nothing saved")
    args = parser.parse_args(argv)
    requests, max_s = (200, 3.0) if args.quick else (args.requests, args.max_s)
    result = measure(args.connections, requests, max_s)
    for name in ("service", "hello"):
        row = result[name]
        print(
            f"http {name}: {row['per_s']:.0f} req/s, p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms ({row['requests']} requests, {row['errors']} errors)",
            flush=True,
        )
    if not args.quick:
        save("http", result)
    return result


if __name__ == "__main__":
    main()
