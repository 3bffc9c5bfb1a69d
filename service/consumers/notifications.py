"""The two internal job types that carry a job's end event out: webhook and SNS.

Each is an ordinary job on the same queue (durable, retried, dead-lettered like any other),
queued by :class:`~service.producers.notify.Notifier` when a user-visible job ends. Its
record names the announced job and the event (``Job.event``); its handler loads that job,
renders the event with the job's current view, and sends it.

The webhook's retries follow its own schedule (``STORYBOARD_WEBHOOK_RETRY_SCHEDULE_S``),
stretched to any longer wait a receiver asks for with ``Retry-After``; 2xx delivers, 410
stops, anything else is tried again. The announced job's ``webhook`` state tells its owner
how it stands; its writes are guarded so they never touch the job's own status.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp.abc import AbstractResolver

from service import jobs
from service.consumers.job_types import (
    HandlerDeps,
    JobContext,
    JobResult,
    JobType,
    JobViewer,
    RetryRule,
)
from service.consumers.retry_policy import Schedule, cap_wait
from service.consumers.webhook_sender import Attempt, WebhookSender
from service.errors import BackendError, JobError
from service.events import SNS, WEBHOOK, event_body
from service.jobs import EventRef, Job, WebhookState
from service.logs import get_logger
from service.models import utcnow
from service.ports import EventTopic, JobStore
from service.settings import Settings

log = get_logger(__name__)


def delivery_rule(settings: Settings) -> RetryRule:
    """The retry rule of both delivery types: the webhook schedule, within the queue's
    redrive limit (each wait is one receive)."""
    schedule = Schedule(settings.webhook_retry_schedule)
    return RetryRule(schedule, min(schedule.max_attempts, settings.max_receive_count))


async def load_event(store: JobStore, delivery: Job, view: JobViewer) -> tuple[Job, EventRef, str]:
    """The announced job, the event, and the event's JSON body as it is sent."""
    ref = delivery.event
    if ref is None:
        raise JobError("no_event", "the delivery names no event", transient=False)
    target = await store.get(ref.job_id)
    if target is None:
        raise JobError("job_missing", "the announced job no longer exists", transient=False)
    return target, ref, event_body(ref.type, target, view(target))


class WebhookHandler:
    """One attempt to deliver an event to the announced job's ``callbackUrl``."""

    def __init__(
        self, store: JobStore, sender: WebhookSender, view: JobViewer, rule: RetryRule
    ) -> None:
        self._store = store
        self._sender = sender
        self._view = view
        self._rule = rule

    async def __call__(self, context: JobContext) -> JobResult:
        """POST the event; record the outcome on the announced job; retry or stop."""
        target, _, body = await load_event(self._store, context.job, self._view)
        if target.callback_url is None:
            raise JobError("no_callback", "the job has no callbackUrl", transient=False)
        # The delivery's own id: the same on every attempt, so receivers can deduplicate.
        attempt = await self._sender.post(target.callback_url, context.job.job_id, body)
        number = context.attempt
        if attempt.delivered:
            await self._record(target, WebhookState(status="delivered", attempts=number))
            return JobResult(summary={"outcome": "delivered", "httpStatus": attempt.status})
        if attempt.status == 410:
            await self._record(target, _state("gone", number, attempt))
            return JobResult(summary={"outcome": "gone", "httpStatus": 410})
        if attempt.refused:
            await self._record(target, _state("failed", number, attempt))
            raise JobError("callback_url_forbidden", attempt.error or "", transient=False)
        return await self._retry(target, number, attempt)

    async def _retry(self, target: Job, number: int, attempt: Attempt) -> JobResult:
        error = attempt.error or "delivery failed"
        if number >= self._rule.max_attempts:
            await self._record(target, _state("failed", number, attempt))
            raise JobError("webhook_failed", error, transient=True)
        wait = cap_wait(max(self._rule.delays.delay_s(number), attempt.retry_after_s or 0))
        state = _state("retrying", number, attempt)
        state.next_attempt_at = utcnow() + timedelta(seconds=wait)
        await self._record(target, state)
        log.info("webhook attempt failed; will retry", error=error, retry_in_s=wait)
        raise JobError("webhook_failed", error, transient=True, retry_after_s=wait)

    async def on_completed(self, job: Job) -> None:
        """Nothing to publish: the outcome is on the announced job already."""

    async def _record(self, target: Job, state: WebhookState) -> None:
        await self._store.apply(target.job_id, jobs.webhook(state))


def _state(status: jobs.WebhookStatus, number: int, attempt: Attempt) -> WebhookState:
    return WebhookState(status=status, attempts=number, last_error=attempt.error)


def webhook_job_type(resolver: AbstractResolver | None = None) -> JobType:
    """The webhook delivery type; ``resolver`` replaces DNS (tests), the rules stay."""

    def build(deps: HandlerDeps) -> WebhookHandler | None:
        settings, view = deps.settings, deps.job_view
        if settings is None or settings.webhook_secret is None or view is None:
            return None  # webhooks are off: no secret to sign with
        secrets = [
            secret.get_secret_value()
            for secret in (settings.webhook_secret, settings.webhook_secret_previous)
            if secret is not None
        ]
        sender = WebhookSender(
            secrets,
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
            resolver=resolver,
        )
        return WebhookHandler(deps.backend.jobs, sender, view, delivery_rule(settings))

    return JobType(name=WEBHOOK, build=build, user_visible=False, retry=delivery_rule)


class SnsHandler:
    """One attempt to publish an event to the events topic."""

    def __init__(self, store: JobStore, topic: EventTopic, view: JobViewer) -> None:
        self._store = store
        self._topic = topic
        self._view = view

    async def __call__(self, context: JobContext) -> JobResult:
        """Publish the event with ``type`` and ``userId`` attributes for filters."""
        target, ref, body = await load_event(self._store, context.job, self._view)
        attributes = {"type": ref.type, "userId": target.user_id}
        try:
            message_id = await self._topic.publish(body, attributes)
        except BackendError as exc:
            raise JobError("publish_failed", str(exc), transient=True) from None
        return JobResult(summary={"outcome": "published", "messageId": message_id})

    async def on_completed(self, job: Job) -> None:
        """Nothing to publish."""


def _build_sns(deps: HandlerDeps) -> SnsHandler | None:
    if deps.backend.topic is None or deps.job_view is None:
        return None  # no events topic configured
    return SnsHandler(deps.backend.jobs, deps.backend.topic, deps.job_view)


SNS_JOB = JobType(name=SNS, build=_build_sns, user_visible=False, retry=delivery_rule)
