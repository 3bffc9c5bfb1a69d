"""Fair sharing: how long quiet users wait behind one user's backlog, fair against FIFO.

Set-up. One ``storyboard serve`` on the embedded backend at concurrency C with the sleep
analyzer at latency L, four users with their own API keys, quotas off (this measures the
queue's order, not the limits). User A submits N jobs over HTTP; one second after A's first
submission, users B, C and D submit Q jobs each. Every job's wait is its ``startedAt``
minus its ``createdAt``, both written by the service on one clock. A's makespan is from
A's first ``createdAt`` to the last ``updatedAt`` of A's jobs (their completion).

The case runs twice in fresh data directories: ``STORYBOARD_QUEUE_ORDER=fifo`` (oldest
first: the quiet users wait behind A's backlog, about N × L / C) and ``fair`` (the user
with the fewest jobs in flight first). The goal: the quiet users' p95 wait under the fair
order is at most 2 × L.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import bench_env, environment, percentile, save
from harness.processes import running_service

ORDERS = ("fifo", "fair")
QUIET_USERS = ("user-b", "user-c", "user-d")
SUBMIT_PARALLELISM = 16
FINISH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Case:
    """One run's shape: A's backlog, each quiet user's jobs, the worker and the analyzer."""

    busy_jobs: int
    quiet_jobs: int
    concurrency: int
    latency_s: float
    quiet_delay_s: float = 1.0


FULL = Case(busy_jobs=300, quiet_jobs=3, concurrency=8, latency_s=0.5)
QUICK = Case(busy_jobs=24, quiet_jobs=1, concurrency=4, latency_s=0.2, quiet_delay_s=0.3)


def token(user: str) -> str:
    """The API key a benchmark user sends."""
    return f"bench-key-{user}"


def auth_keys() -> str:
    """``STORYBOARD_AUTH_API_KEYS``: every user's key digest mapped to the user."""
    users = ("user-a", *QUIET_USERS)
    return json.dumps({hashlib.sha256(token(u).encode()).hexdigest(): u for u in users})


class Api:
    """The users' HTTP calls against one service."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base
        self._gate = asyncio.Semaphore(SUBMIT_PARALLELISM)

    async def call(self, method: str, path: str, user: str, **kwargs: Any) -> dict[str, Any]:
        """One request as ``user``; a status of 300 or more fails the run."""
        headers = {"Authorization": f"Bearer {token(user)}"}
        async with (
            self._gate,
            self._session.request(method, self._base + path, headers=headers, **kwargs) as r,
        ):
            body: dict[str, Any] = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path} answered {r.status}: {body}")
            return body

    async def submit(self, user: str, count: int) -> list[str]:
        """Upload a novel as ``user`` and ask for ``count`` analyses of it; the job ids."""
        novel = await self.call("POST", "/v1/novels", user, json={"title": user, "text": "x"})
        path = f"/v1/novels/{novel['novelId']}/analyze"
        jobs = await asyncio.gather(*(self.call("POST", path, user) for _ in range(count)))
        return [job["jobId"] for job in jobs]

    async def finished(self, owners: dict[str, str]) -> list[dict[str, Any]]:
        """Every job's view once all have completed."""
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        while True:
            views = await asyncio.gather(
                *(self.call("GET", f"/v1/jobs/{job}", user) for job, user in owners.items())
            )
            if all(view["status"] == "completed" for view in views):
                return [{**view, "user": owners[view["jobId"]]} for view in views]
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs did not finish in time")
            await asyncio.sleep(0.5)


async def drive(base: str, case: Case) -> list[dict[str, Any]]:
    """A's backlog, the quiet users' few jobs a moment later, then every job's view."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, base)
        busy = asyncio.create_task(api.submit("user-a", case.busy_jobs))
        await asyncio.sleep(case.quiet_delay_s)
        quiet = await asyncio.gather(*(api.submit(u, case.quiet_jobs) for u in QUIET_USERS))
        owners = dict.fromkeys(await busy, "user-a")
        for user, ids in zip(QUIET_USERS, quiet, strict=True):
            owners.update(dict.fromkeys(ids, user))
        return await api.finished(owners)


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _spread(waits: list[float]) -> dict[str, float]:
    return {
        "p50_s": percentile(waits, 0.5),
        "p95_s": percentile(waits, 0.95),
        "max_s": max(waits),
    }


def summarise(order: str, case: Case, views: list[dict[str, Any]]) -> dict[str, Any]:
    """Wait percentiles for A and for the quiet users, and A's makespan."""
    waits = {v["jobId"]: _at(v["startedAt"]) - _at(v["createdAt"]) for v in views}
    busy = [v for v in views if v["user"] == "user-a"]
    quiet = [v for v in views if v["user"] != "user-a"]
    makespan = max(_at(v["updatedAt"]) for v in busy) - min(_at(v["createdAt"]) for v in busy)
    return {
        "order": order,
        "quiet": _spread([waits[v["jobId"]] for v in quiet]),
        "busy": _spread([waits[v["jobId"]] for v in busy]),
        "busy_makespan_s": makespan,
        "goal_s": 2 * case.latency_s,
        "fifo_estimate_s": case.busy_jobs * case.latency_s / case.concurrency,
    }


def one_run(order: str, case: Case, scratch: Path) -> dict[str, Any]:
    """Start a fresh service with ``order``, run the case, stop it."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            STORYBOARD_BACKEND="local",
            STORYBOARD_DATA_DIR=data_dir,
            STORYBOARD_ANALYZER="sleep",
            STORYBOARD_SLEEP_ANALYZER_S=str(case.latency_s),
            STORYBOARD_WORKER_CONCURRENCY=str(case.concurrency),
            STORYBOARD_RECEIVE_WAIT_S="1",
            STORYBOARD_QUEUE_ORDER=order,
            STORYBOARD_AUTH_API_KEYS=auth_keys(),
            STORYBOARD_USER_MAX_ACTIVE_JOBS="0",
            STORYBOARD_USER_SUBMIT_RATE="0",
        )
        with running_service("serve", env, scratch / f"serve-{order}.log") as service:
            views = asyncio.run(drive(service.url, case))
    return summarise(order, case, views)


def describe(row: dict[str, Any]) -> str:
    """One line for the console."""
    q, b = row["quiet"], row["busy"]
    return (
        f"fairness {row['order']:4}: quiet users wait p50 {q['p50_s']:.2f} s, "
        f"p95 {q['p95_s']:.2f} s, max {q['max_s']:.2f} s (goal p95 ≤ {row['goal_s']:g} s); "
        f"busy user p95 {b['p95_s']:.1f} s, makespan {row['busy_makespan_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints and (unless ``--quick``) saves the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small case, no save")
    args = parser.parse_args(argv)
    case = QUICK if args.quick else FULL
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for order in ORDERS:
            rows.append(one_run(order, case, Path(scratch)))
            print(describe(rows[-1]), flush=True)
    result = {
        "case": asdict(case),
        "date": environment()["date"],
        "elapsed_s": time.perf_counter() - start,
        "rows": rows,
    }
    if not args.quick:
        save("fairness", result)
    return result


if __name__ == "__main__":
    main()
