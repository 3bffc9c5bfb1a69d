"""Process wiring: the backend, the analyzer, the producer and the consumer, as one unit.

``open_runtime`` is the single place where the pieces are built from the settings and torn
down again in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from service.analysis.factory import make_analyzer
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.consumers.analyze import AnalyzeDeps, AnalyzeHandler
from service.consumers.consumer import Consumer, ConsumerConfig
from service.consumers.dead_letters import DeadLetterHandler
from service.consumers.handlers import HandlerRegistry
from service.consumers.retry_policy import Backoff
from service.messages import ANALYZE
from service.metrics import Metrics
from service.ports import Analyzer, Closeable
from service.producers.enqueue import JobProducer
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a running process holds."""

    settings: Settings
    backend: Backend
    analyzer: Analyzer | None
    producer: JobProducer
    consumer: Consumer | None
    metrics: Metrics

    @property
    def draining(self) -> bool:
        """True once shutdown has begun."""
        return self.consumer is not None and self.consumer.draining


def build_consumer(
    settings: Settings, backend: Backend, analyzer: Analyzer, metrics: Metrics | None = None
) -> Consumer:
    """The consumer with every job handler registered."""
    registry = HandlerRegistry()
    deps = AnalyzeDeps(
        jobs=backend.jobs,
        novels=backend.novels,
        blobs=backend.blobs,
        analyzer=analyzer,
        max_receive_count=settings.max_receive_count,
        backoff=Backoff(settings.retry_base_s, settings.retry_max_s),
        metrics=metrics,
    )
    registry.register(ANALYZE, AnalyzeHandler(deps))
    config = ConsumerConfig(
        concurrency=settings.worker_concurrency,
        wait_s=settings.receive_wait_s,
        visibility_s=settings.visibility_timeout_s,
        delete_flush_s=settings.delete_flush_s,
        grace_s=settings.shutdown_grace_s,
    )
    return Consumer(backend.queue, registry.dispatch, config, dlq=backend.dlq)


def build_dead_letter_consumer(settings: Settings, backend: Backend) -> Consumer:
    """The consumer that fails the jobs of dead-lettered messages and keeps the messages."""
    config = ConsumerConfig(
        concurrency=4,
        wait_s=settings.receive_wait_s,
        visibility_s=settings.dlq_hold_s,
        delete_flush_s=settings.delete_flush_s,
        grace_s=min(settings.shutdown_grace_s, 5.0),
        idle_pause_s=settings.dlq_poll_s,
    )
    handler = DeadLetterHandler(backend.jobs, settings.dlq_hold_s)
    return Consumer(backend.dlq, handler, config)


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, worker: bool = True, analyzer: Analyzer | None = None
) -> AsyncIterator[Runtime]:
    """Open the backend and, with ``worker``, run the consumer for the context's lifetime."""
    metrics = Metrics()
    async with AsyncExitStack() as stack:
        backend = await stack.enter_async_context(open_backend(settings))
        consumer = None
        if worker:
            if analyzer is None:
                analyzer = make_analyzer(settings, backend.blobs, metrics)
                if isinstance(analyzer, Closeable):
                    stack.push_async_callback(analyzer.aclose)
            consumer = build_consumer(settings, backend, analyzer, metrics)
            dead_letters = build_dead_letter_consumer(settings, backend)
            metrics.watch({"main": consumer, "dlq": dead_letters})
            await stack.enter_async_context(dead_letters)
            await stack.enter_async_context(consumer)
        producer = JobProducer(backend.jobs, backend.queue, backend.idempotency)
        yield Runtime(settings, backend, analyzer, producer, consumer, metrics)
