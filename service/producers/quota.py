"""The active-job quota: how many queued and running analyses one user may hold.

Each user-visible job takes a slot (:class:`~service.ports.UserQuotas`) before its record is
written, and gives it back when it ends in any way: the end hook every end goes through
(:meth:`ActiveJobQuota.ended`), the erasure of its novel, or a submission that failed before
the job was queued. Internal job types (webhook and SNS deliveries) take none.

A slot can still leak: a process may die between taking it and writing the job, or after
the job ended but before the slot was given back. So when a take is refused, the quota
first reconciles the user's slots against their jobs: it drops a slot whose job has ended,
and one whose job does not exist and that is older than :data:`GRACE_S` (a younger one may
belong to a submission still writing its job), then tries once more. Leaks matter only to
a user at the limit, which is exactly when they are looked for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from service import jobs
from service.jobs import Job
from service.logs import get_logger
from service.models import utcnow
from service.ports import JobStore, UserQuotas

log = get_logger(__name__)

GRACE_S = 60.0
"""How long a slot whose job is missing is taken for a submission still in progress."""
RETRY_AFTER_S = 30
"""The wait a refused submission is told to take: a hint, since no one knows when one of
the user's jobs will end."""


class TooManyActiveJobs(Exception):
    """The user holds every slot; nothing was created."""

    def __init__(self, active: int, limit: int) -> None:
        analyses = "analysis" if active == 1 else "analyses"
        super().__init__(
            f"you have {active} {analyses} queued or running and may have {limit} at once; "
            "wait for one to finish (or cancel one) and try again"
        )
        self.active = active
        self.limit = limit
        self.retry_after_s = RETRY_AFTER_S


class ActiveJobQuota:
    """Takes and gives back the slots of jobs whose type is in ``counted_types``."""

    def __init__(
        self,
        slots: UserQuotas,
        store: JobStore,
        *,
        limit: int,
        counted_types: Collection[str],
        grace_s: float = GRACE_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a quota needs a limit of at least 1, not {limit}")
        self._slots = slots
        self._store = store
        self.limit = limit
        self._counted = frozenset(counted_types)
        self._grace = timedelta(seconds=grace_s)
        self._clock = clock

    def counts(self, job: Job) -> bool:
        """Whether ``job`` takes a slot."""
        return job.type in self._counted

    async def take(self, job: Job) -> int:
        """Give ``job`` a slot; the slots its user holds now. :class:`TooManyActiveJobs`
        when every slot is held, by jobs that have not ended, even after reconciling."""
        grant = await self._slots.acquire(
            job.user_id, job.job_id, limit=self.limit, at=self._clock()
        )
        if not grant.granted and await self.reconcile(job.user_id):
            grant = await self._slots.acquire(
                job.user_id, job.job_id, limit=self.limit, at=self._clock()
            )
        if not grant.granted:
            raise TooManyActiveJobs(grant.held, self.limit)
        return grant.held

    async def held(self, user_id: str) -> int:
        """How many slots the user holds."""
        return len(await self._slots.held(user_id))

    async def give_back(self, job: Job) -> None:
        """Free the job's slot (no error if it holds none)."""
        if self.counts(job):
            await self._slots.release(job.user_id, job.job_id)

    async def ended(self, job: Job) -> None:
        """The end hook: an ended job's slot is free again."""
        if job.status in jobs.ENDED:
            await self.give_back(job)

    async def reconcile(self, user_id: str) -> int:
        """Drop the user's leaked slots; how many were dropped."""
        held = await self._slots.held(user_id)
        found = await self._store.get_many(list(held))
        cutoff = self._clock() - self._grace
        leaked = [
            job_id
            for job_id, job in found.items()
            if (job is None and held[job_id] < cutoff)
            or (job is not None and job.status in jobs.ENDED)
        ]
        for job_id in leaked:
            await self._slots.release(user_id, job_id)
        if leaked:
            log.info("leaked slots dropped", userId=user_id, slots=len(leaked))
        return len(leaked)
