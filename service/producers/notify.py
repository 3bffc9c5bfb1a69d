"""Announcing that a job ended: queue its webhook and SNS deliveries, exactly once each.

The one hook every end of a job goes through (``Notifier.ended``): the runner's completion,
the failure policy's final failure, the dead-letter consumer, a cancel. It is called again
whenever an ended job's message comes back, so it must be, and is, idempotent: a delivery's
id is derived from the job and the event, and ``AlreadyExists`` means it is queued already.

A crash between creating a delivery's record and sending its message would leave a record
no message will ever run. So a delivery found still untouched (queued, never received) gets
its message sent again; a duplicate message is harmless, since the runner's delivery guard
lets only one of them start the job.
"""

from __future__ import annotations

from collections.abc import Collection

from service import jobs
from service.errors import AlreadyExists
from service.events import WEBHOOK, delivery_id, end_event
from service.jobs import EventRef, Job, JobStatus, WebhookState
from service.logs import get_logger
from service.messages import JobMessage
from service.ports import JobStore, Queue

log = get_logger(__name__)


class Notifier:
    """Queues the deliveries of ended jobs over the configured ``channels``."""

    def __init__(
        self,
        store: JobStore,
        queue: Queue,
        *,
        channels: Collection[str],
        announced_types: Collection[str],
    ) -> None:
        self._store = store
        self._queue = queue
        self._channels = frozenset(channels)
        self._announced = frozenset(announced_types)

    @property
    def channels(self) -> frozenset[str]:
        """The delivery job types in use: ``webhook`` and/or ``sns``."""
        return self._channels

    async def ended(self, job: Job) -> None:
        """Announce ``job``'s end, or close its webhook state if it was a failed delivery."""
        if job.type == WEBHOOK and job.status is JobStatus.FAILED:
            await self._close_webhook(job)
            return
        event = end_event(job)
        if event is None or job.type not in self._announced:
            return
        for channel in sorted(self._channels):
            if channel == WEBHOOK and job.callback_url is None:
                continue
            await self._queue_delivery(channel, job, event)

    async def _queue_delivery(self, channel: str, job: Job, event: str) -> None:
        delivery = Job(
            job_id=delivery_id(channel, job.job_id, event),
            novel_id=job.novel_id,
            user_id=job.user_id,
            type=channel,
            event=EventRef(job_id=job.job_id, type=event),
        )
        try:
            await self._store.create(delivery)
        except AlreadyExists:
            existing = await self._store.get(delivery.job_id)
            if existing is None or existing.status is not JobStatus.QUEUED or existing.delivery:
                return  # queued and received already, or done: nothing to repair
        if channel == WEBHOOK:
            # Before the message, so no attempt can be overtaken by it; only where no state
            # is recorded yet.
            await self._store.apply(job.job_id, jobs.webhook(WebhookState(status="pending")))
        message = JobMessage(
            job_id=delivery.job_id, novel_id=job.novel_id, user_id=job.user_id, type=channel
        )
        await self._queue.send(message.to_body(), group=job.user_id)
        log.info("job end event queued", channel=channel, type=event, deliveryId=delivery.job_id)

    async def _close_webhook(self, delivery: Job) -> None:
        """A delivery that failed for good (its retries ran out, here or at the queue's own
        redrive) leaves the announced job's webhook state ``failed``."""
        if delivery.event is None:
            return
        error = delivery.error.message if delivery.error is not None else None
        state = WebhookState(status="failed", attempts=delivery.attempts, last_error=error)
        await self._store.apply(delivery.event.job_id, jobs.webhook(state))
