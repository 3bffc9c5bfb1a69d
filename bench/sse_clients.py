"""The event-stream clients of :mod:`bench.sse_fanout`, run in a process of their own.

One asyncio process opens ``per_job`` streams on each job (aiohttp, reading lines), notes
when every stream has had its first event, and from then on records, for every further
event, its own receive time and the delay since the write the event carries: the job
view's ``updatedAt`` is the time of the write (same machine, same clock). The parent talks
to it through a pipe: ``("open", figures)`` once the streams are open, then ``"stop"`` from
the parent, answered with ``("done", figures)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

OPEN_AT_ONCE = 50
"""Streams being opened at any moment: each opening reads the job once (GetItem)."""
OPEN_TIMEOUT_S = 120.0


@dataclass
class Received:
    """What the streams saw: one ``(received_at, delay_s)`` per event after each first."""

    streams: int
    opened: int = 0
    never_opened: int = 0
    ended: int = 0
    errors: list[str] = field(default_factory=list)
    events: list[tuple[float, float]] = field(default_factory=list)
    all_open: asyncio.Event = field(default_factory=asyncio.Event)

    def mark_open(self) -> None:
        """One more stream has had its first event."""
        self.opened += 1
        self._check_all()

    def fail(self, error: str, *, opening: bool) -> None:
        """A stream broke, before its first event or after."""
        self.errors.append(error)
        if opening:
            self.never_opened += 1
            self._check_all()

    def _check_all(self) -> None:
        if self.opened + self.never_opened >= self.streams:
            self.all_open.set()

    def figures(self) -> dict[str, Any]:
        """The counts and events so far, for the parent."""
        return {
            "streams": self.streams,
            "opened": self.opened,
            "never_opened": self.never_opened,
            "ended": self.ended,
            "errors": self.errors[:5],
            "error_count": len(self.errors),
            "events": self.events,
        }


def written_at(data: bytes) -> float:
    """The write time an event carries: its job view's ``updatedAt``, as a Unix time."""
    return datetime.fromisoformat(json.loads(data)["updatedAt"]).timestamp()


async def follow(
    session: Any, url: str, job_id: str, seen: Received, gate: asyncio.Semaphore
) -> None:
    """Read one job's stream until the server closes it (or the task is cancelled)."""
    opening = True
    await gate.acquire()
    try:
        async with session.get(f"{url}/v1/jobs/{job_id}/events") as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                # The receive time is taken before parsing, so parsing is not in the delay.
                received = time.time()
                if opening:
                    opening = False
                    gate.release()
                    seen.mark_open()
                else:
                    seen.events.append((received, received - written_at(line[5:])))
        seen.ended += 1
    except Exception as exc:  # a broken stream is counted, not fatal to the others
        seen.fail(f"{type(exc).__name__}: {exc}", opening=opening)
    finally:
        if opening:
            gate.release()


async def run_streams(url: str, job_ids: list[str], per_job: int, conn: Connection) -> None:
    """Open every stream, report, follow them until told to stop, report again."""
    import aiohttp

    seen = Received(streams=len(job_ids) * per_job)
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        for job_id in job_ids:
            for _ in range(per_job):
                tasks.add(asyncio.create_task(follow(session, url, job_id, seen, gate)))
        # On a timeout the parent sees how many opened, and decides.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.all_open.wait(), OPEN_TIMEOUT_S)
        conn.send(("open", {k: v for k, v in seen.figures().items() if k != "events"}))
        await asyncio.to_thread(conn.recv)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("done", seen.figures()))


def main(url: str, job_ids: list[str], per_job: int, conn: Connection) -> None:
    """Process entry (multiprocessing, spawn)."""
    asyncio.run(run_streams(url, job_ids, per_job, conn))
