"""Polling helpers for tests: wait for a condition with a generous deadline."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from service.jobs import Job, JobStatus
from service.ports import JobStore, Queue

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within_s: float = 60.0, every_s: float = 0.05
) -> T:
    """Call ``probe`` until it returns something other than None or False."""
    deadline = time.monotonic() + within_s
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(every_s)


async def job_finished(store: JobStore, job_id: str) -> Job:
    """Wait until the job has completed or failed, and return it."""

    async def probe() -> Job | None:
        job = await store.get(job_id)
        done = job is not None and job.status in (JobStatus.COMPLETED, JobStatus.FAILED)
        return job if done else None

    return await eventually(probe)


async def one_message_dead_lettered(queue: Queue, dlq: Queue) -> None:
    """Wait until the only message has left ``queue`` for ``dlq``."""

    async def moved() -> bool:
        parked, main = await dlq.depth(), await queue.depth()
        return parked.visible + parked.in_flight == 1 and main.visible + main.in_flight == 0

    await eventually(moved)


def gone(pid: int) -> bool:
    """Whether no process has this id any more; a zombie still has one (its parent has not
    reaped it), so a child the pool forgot to wait for is not gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def exited(pid: int) -> bool:
    """Whether the process has ended: gone, or a zombie of some other parent's (an orphan
    is reaped by whichever process adopted it, on that process's own time)."""
    if gone(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return gone(pid)
    # The state follows the command name in parentheses: Z is a zombie.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def all_gone(pids: list[int], *, ended: Any = gone) -> bool:
    """Wait (generously) until every process of ``pids`` is gone."""

    async def check() -> bool:
        return all(ended(pid) for pid in pids)

    return await eventually(check, within_s=10)
