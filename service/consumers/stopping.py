"""Stopping a running attempt from outside: its deadline, and a watch for a cancel.

The handler runs as a task of its own beside a watcher. Whichever ends first decides:

* the handler finishing (or failing) is the attempt's outcome, as if it ran alone;
* the deadline passing cancels the handler and fails the attempt with a permanent
  ``job_timeout``: the same input would only take as long again;
* the watcher finding the job cancelled, deleted (its novel erased) or taken over by a
  newer delivery cancels the handler and raises :class:`JobStopped`, as a refused write
  would have, only without waiting for the handler's next write.

Cancelling the handler is what stops the work: the offline analysis's process is killed,
the model requests in flight are abandoned. The deadline counts this attempt's own time,
from its start; a redelivery that starts the job again gets a whole deadline of its own.

The watcher reads the job once per ``check_s``, the first time ``check_s`` after the
start, so a job that ends sooner costs no read at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from service.consumers.progress import CANCELLED, DELETED, SUPERSEDED, JobStopped
from service.errors import JobError
from service.jobs import JobStatus
from service.logs import get_logger
from service.ports import JobStore

log = get_logger(__name__)

T = TypeVar("T")

JOB_TIMEOUT = "job_timeout"
"""The error code of an attempt stopped at its deadline."""


@dataclass(frozen=True, slots=True)
class StopRules:
    """When a running attempt is stopped: past ``deadline_s`` (``None``: never), and how
    often it looks for a cancel."""

    deadline_s: float | None = None
    check_s: float = 3.0


async def run_stoppable(
    work: Coroutine[Any, Any, T], store: JobStore, job_id: str, delivery: int, rules: StopRules
) -> T:
    """Await ``work`` for the delivery that owns ``job_id``, stopping it at the deadline
    (:class:`JobError` ``job_timeout``) or when the job is no longer this delivery's
    (:class:`JobStopped`). Cancelling the call cancels ``work`` and waits for it."""
    handler = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_watch(store, job_id, delivery, rules.check_s))
    try:
        done, _ = await asyncio.wait(
            {handler, watcher}, timeout=rules.deadline_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        finished = handler.done()
        handler.cancel()
        watcher.cancel()
        # The handler is waited for even when this call is cancelled: what it holds
        # (a process, connections) is let go before the attempt is released.
        await asyncio.gather(handler, watcher, return_exceptions=True)
    if finished:
        return handler.result()
    if watcher in done:
        raise JobStopped(watcher.result())
    log.warning("job attempt stopped at its deadline", deadline_s=rules.deadline_s)
    raise JobError(
        JOB_TIMEOUT,
        f"the job ran longer than its deadline of {rules.deadline_s:g} s "
        "(STORYBOARD_JOB_TIMEOUT_S)",
        transient=False,
    )


async def _watch(store: JobStore, job_id: str, delivery: int, every_s: float) -> str:
    """Read the job every ``every_s`` until it is no longer this delivery's to run; why."""
    while True:
        await asyncio.sleep(every_s)
        try:
            job = await store.get(job_id)
        except Exception as exc:
            # Only a check: the attempt goes on, and its guarded writes still decide.
            log.warning("could not check whether the job was cancelled", error=str(exc))
            continue
        if job is None:
            return DELETED  # its novel was erased
        if job.status is JobStatus.CANCELLED:
            return CANCELLED
        if job.status is not JobStatus.RUNNING or job.delivery != delivery:
            return SUPERSEDED
