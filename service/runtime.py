"""Process wiring: the backend, the analyzer, the producer and the consumer, as one unit.

``open_runtime`` is the single place where the pieces are built from the settings and torn
down again in reverse order.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import TracerProvider

from service.analysis.cpu_pool import CpuPool
from service.analysis.factory import make_analyzer
from service.api_schema import JobView
from service.backends.aws_secrets import open_secret_key
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.consumers.analyze import ANALYZE_JOB
from service.consumers.consumer import Consumer, ConsumerConfig
from service.consumers.dead_letters import DeadLetterHandler
from service.consumers.job_types import HandlerDeps, JobEnded, JobHandler, JobType
from service.consumers.notifications import SNS_JOB, webhook_job_type
from service.consumers.retry_policy import Backoff, FailurePolicy
from service.consumers.runner import JobRunner
from service.consumers.stopping import StopRules
from service.events import SNS, WEBHOOK
from service.jobs import Job
from service.logs import get_logger
from service.metrics import Metrics
from service.ports import Analyzer, BlobStore, Closeable, Queue
from service.producers.enqueue import JobProducer
from service.producers.notify import Notifier
from service.producers.quota import ActiveJobQuota
from service.rate_limits import SubmitRateLimiter
from service.settings import Settings
from service.telemetry import LOCAL, SQS, QueueTracing, TracedQueue
from service.tracing import Tracing, open_tracing
from service.watch import WatchHub

JOB_TYPES: tuple[JobType, ...] = (ANALYZE_JOB, webhook_job_type(), SNS_JOB)
"""Every job type the service runs: a new type is one handler module and one entry here."""

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a running process holds."""

    settings: Settings
    backend: Backend
    analyzer: Analyzer | None
    producer: JobProducer
    consumer: Consumer | None
    metrics: Metrics
    job_types: Mapping[str, JobType]
    watch: WatchHub
    notifier: Notifier
    on_ended: JobEnded
    """The hook every end of a job goes through: its slot back, its end announced."""
    tracing: Tracing
    quota: ActiveJobQuota | None = None
    rate_limiter: SubmitRateLimiter | None = None
    """This replica's per-user submission rate, when one is set."""

    @property
    def draining(self) -> bool:
        """True once shutdown has begun."""
        return self.consumer is not None and self.consumer.draining


def build_consumer(
    settings: Settings,
    backend: Backend,
    analyzer: Analyzer,
    metrics: Metrics | None = None,
    job_types: Sequence[JobType] = JOB_TYPES,
    on_ended: JobEnded | None = None,
    tracing: QueueTracing | None = None,
) -> Consumer:
    """The consumer, running every configured job type's handler under its failure policy:
    the service's backoff, or the type's own retry rule; each message in a ``process``
    span with ``tracing``."""
    view = job_viewer(settings)
    deps = HandlerDeps(backend, analyzer, metrics, settings=settings, job_view=view)
    policy = FailurePolicy(
        backend.jobs,
        Backoff(settings.retry_base_s, settings.retry_max_s),
        settings.effective_max_attempts,
        on_ended,
    )
    handlers: dict[str, JobHandler] = {}
    policies: dict[str, FailurePolicy] = {}
    for job_type in job_types:
        handler = job_type.build(deps)
        if handler is None:
            continue
        handlers[job_type.name] = handler
        if job_type.retry is not None:
            rule = job_type.retry(settings)
            policies[job_type.name] = FailurePolicy(
                backend.jobs, rule.delays, rule.max_attempts, on_ended
            )
    runner = JobRunner(
        handlers,
        backend.jobs,
        policy,
        metrics,
        policies=policies,
        on_ended=on_ended,
        stopping=StopRules(settings.effective_job_timeout_s, settings.cancel_check_s),
    )
    config = ConsumerConfig(
        concurrency=settings.worker_concurrency,
        wait_s=settings.receive_wait_s,
        visibility_s=settings.visibility_timeout_s,
        delete_flush_s=settings.delete_window_s,
        grace_s=settings.shutdown_grace_s,
        crash_retry_s=math.ceil(settings.retry_base_s),
    )
    return Consumer(backend.queue, runner.dispatch, config, dlq=backend.dlq, tracing=tracing)


def build_dead_letter_consumer(
    settings: Settings,
    backend: Backend,
    on_ended: JobEnded | None = None,
    tracing: QueueTracing | None = None,
) -> Consumer:
    """The consumer that fails the jobs of dead-lettered messages and keeps the messages."""
    config = ConsumerConfig(
        concurrency=4,
        wait_s=settings.receive_wait_s,
        visibility_s=settings.dlq_hold_s,
        delete_flush_s=settings.delete_window_s,
        grace_s=min(settings.shutdown_grace_s, 5.0),
        idle_pause_s=settings.dlq_poll_s,
    )
    handler = DeadLetterHandler(backend.jobs, settings.dlq_hold_s, on_ended)
    return Consumer(backend.dlq, handler, config, tracing=tracing)


async def open_analyzer(
    settings: Settings,
    stack: AsyncExitStack,
    blobs: BlobStore,
    metrics: Metrics,
    tracing: Tracing | None = None,
) -> Analyzer:
    """The configured analyzer, its resources (the Secrets Manager client of a key kept
    there, the model client, the offline analysis's processes) closed by ``stack``. A key
    in Secrets Manager is read here, so a secret that cannot be read stops the start with
    a :class:`BackendError` or :class:`SettingsError` naming it."""
    api_key = None
    secret_id = settings.llm_api_key_secret_id
    if secret_id and settings.resolved_analyzer == "llm":
        # Imported here, as the factory does, so processes without the model load no SDK.
        from service.analysis.llm_client import RotatingKey

        source = await stack.enter_async_context(open_secret_key(settings, secret_id))
        api_key = await RotatingKey.load(source)
    tracer = tracing.tracer() if tracing is not None and tracing.enabled else None
    pool = None
    if settings.resolved_analyzer == "offline":
        # Closed after the consumer has stopped (the stack unwinds in reverse), which
        # has cancelled any analysis still running, so no child outlives the runtime.
        # One child starts now and loads the heuristics while the rest of the process
        # starts, so the first analysis does not wait for it (a one-shot run would).
        pool = CpuPool(
            settings.effective_cpu_workers, preload=("service.analysis.offline",), warm=1
        )
        await stack.enter_async_context(pool)
    analyzer = make_analyzer(settings, blobs, metrics, api_key, tracer, pool)
    if isinstance(analyzer, Closeable):
        stack.push_async_callback(analyzer.aclose)
    return analyzer


def job_viewer(settings: Settings) -> Callable[[Job], dict[str, Any]]:
    """A job's public view as the API serves it, for the events that carry it."""
    return lambda job: JobView.of(job, settings.public_base_url).to_doc()


def build_notifier(
    settings: Settings, backend: Backend, job_types: Sequence[JobType], queue: Queue | None = None
) -> Notifier:
    """The hook every end of a job goes through, with the channels this process can use."""
    names = {job_type.name for job_type in job_types}
    channels = []
    if settings.webhook_secret is not None and WEBHOOK in names:
        channels.append(WEBHOOK)
    if backend.topic is not None and SNS in names:
        channels.append(SNS)
    visible = [job_type.name for job_type in job_types if job_type.user_visible]
    return Notifier(
        backend.jobs, queue or backend.queue, channels=channels, announced_types=visible
    )


def build_quota(
    settings: Settings, backend: Backend, job_types: Sequence[JobType]
) -> ActiveJobQuota | None:
    """The active-job quota on the user-visible job types, unless the limit is 0 (off)."""
    if settings.user_max_active_jobs == 0:
        return None
    visible = [job_type.name for job_type in job_types if job_type.user_visible]
    return ActiveJobQuota(
        backend.quotas, backend.jobs, limit=settings.user_max_active_jobs, counted_types=visible
    )


def end_hook(notifier: Notifier, quota: ActiveJobQuota | None) -> JobEnded:
    """The notifier's hook, preceded by giving the job's slot back when a quota is on.

    Both halves are idempotent, and a failure of either fails the hook, so whoever called
    it calls it again (a message coming back) until both have happened.
    """
    if quota is None:
        return notifier.ended

    async def ended(job: Job) -> None:
        try:
            await quota.ended(job)
        finally:
            await notifier.ended(job)

    return ended


def warn_about_notifications(settings: Settings) -> None:
    """Start-up lines for notification settings that weaken or do nothing."""
    if settings.webhook_allow_private:
        log.warning(
            "STORYBOARD_WEBHOOK_ALLOW_PRIVATE is on: callbacks may use http and reach "
            "loopback, private and metadata addresses; use it only for tests and local runs"
        )
    if settings.events_topic_arn is not None and settings.resolved_backend != "aws":
        log.warning(
            "STORYBOARD_EVENTS_TOPIC_ARN is ignored: the local backend has no SNS, so job "
            "events are not published"
        )


def queue_tracing(settings: Settings, tracing: Tracing) -> tuple[QueueTracing, QueueTracing] | None:
    """The span settings of the main queue and the DLQ, or ``None`` with tracing off."""
    if not tracing.enabled:
        return None
    tracer = tracing.tracer()
    system = SQS if settings.resolved_backend == "aws" else LOCAL
    return (
        QueueTracing(tracer, system, settings.queue_name),
        QueueTracing(tracer, system, settings.dlq_name),
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    worker: bool = True,
    analyzer: Analyzer | None = None,
    job_types: Sequence[JobType] = JOB_TYPES,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Runtime]:
    """Open the backend and, with ``worker``, run the consumer for the context's lifetime.

    Traces go to ``tracer_provider`` when given, else to an SDK provider of this runtime's
    own when ``settings.tracing`` is on (see :mod:`service.tracing`); none are made else.
    """
    metrics = Metrics()
    warn_about_notifications(settings)
    async with AsyncExitStack() as stack:
        # Opened first and so closed last: spans of the drain are exported too.
        tracing = await stack.enter_async_context(open_tracing(settings.tracing, tracer_provider))
        spans = queue_tracing(settings, tracing)
        backend = await stack.enter_async_context(open_backend(settings))
        queue = backend.queue if spans is None else TracedQueue(backend.queue, spans[0])
        notifier = build_notifier(settings, backend, job_types, queue)
        quota = build_quota(settings, backend, job_types)
        on_ended = end_hook(notifier, quota)
        consumer = None
        if worker:
            if analyzer is None:
                analyzer = await open_analyzer(settings, stack, backend.blobs, metrics, tracing)
            consumer = build_consumer(
                settings,
                backend,
                analyzer,
                metrics,
                job_types,
                on_ended,
                tracing=None if spans is None else spans[0],
            )
            dead_letters = build_dead_letter_consumer(
                settings, backend, on_ended, tracing=None if spans is None else spans[1]
            )
            metrics.watch({"main": consumer, "dlq": dead_letters})
            metrics.model_limits(settings.llm_requests_per_minute, settings.llm_tokens_per_minute)
            await stack.enter_async_context(dead_letters)
            await stack.enter_async_context(consumer)
        metrics.watch_queues({"main": backend.queue, "dlq": backend.dlq})
        producer = JobProducer(backend.jobs, queue, backend.idempotency, backend.novels, quota)
        types = {job_type.name: job_type for job_type in job_types}
        hub = await stack.enter_async_context(WatchHub(backend.jobs, poll_s=settings.watch_poll_s))
        metrics.watch_hub(hub)
        yield Runtime(
            settings,
            backend,
            analyzer,
            producer,
            consumer,
            metrics,
            types,
            hub,
            notifier,
            on_ended,
            tracing,
            quota,
            SubmitRateLimiter(settings.user_submit_rate) if settings.user_submit_rate else None,
        )
