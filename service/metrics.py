"""Prometheus metrics for one process, served at ``/metrics``.

Counters the consumer already keeps (receives, visibility extensions, in-flight jobs) are
read at scrape time by a collector, so the hot path pays nothing for them. Job outcomes,
stage timings, model calls and HTTP requests are recorded where they happen. Queue depths
are read from the queues themselves when ``/metrics`` is scraped (:meth:`Metrics.sample_queues`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LLM_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300)

_CONSUMER_COUNTERS = {
    "receives": "ReceiveMessage calls",
    "empty_receives": "ReceiveMessage calls that returned nothing",
    "receive_errors": "ReceiveMessage calls that failed",
    "received": "messages received",
    "acked": "messages deleted after handling",
    "retried": "messages left or delayed for redelivery",
    "dead_lettered": "messages moved to the dead-letter queue by the worker",
    "crashed": "handler crashes",
    "extended": "visibility extensions",
    "extend_errors": "visibility extensions that failed",
    "deleted": "messages deleted",
    "delete_errors": "deletes that failed",
    "released": "messages released at shutdown",
}

QUEUE_DEPTH_TIMEOUT_S = 2.0
"""How long a scrape waits for one queue's depth; a scrape times out after 10 s."""

log = structlog.get_logger(__name__)


class ObservedConsumer(Protocol):
    """What the collector reads from a consumer at scrape time."""

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        ...

    @property
    def capacity(self) -> int:
        """Jobs it may run at once."""
        ...

    def counters(self) -> Mapping[str, int]:
        """Its monotonic counters by name."""
        ...

    @property
    def last_beat(self) -> float:
        """``time.monotonic()`` when the receive loop last went round."""
        ...

    @property
    def draining(self) -> bool:
        """True once its shutdown has begun."""
        ...


class ConsumerCollector(Collector):
    """Exposes a consumer's own counters and gauges at scrape time."""

    def __init__(self, consumers: Mapping[str, ObservedConsumer]) -> None:
        self._consumers = consumers

    def collect(self) -> Iterator[Metric]:
        """One family per counter, labelled by queue."""
        for field, help_text in _CONSUMER_COUNTERS.items():
            family = CounterMetricFamily(
                f"storyboard_consumer_{field}", help_text, labels=["queue"]
            )
            for queue, consumer in self._consumers.items():
                family.add_metric([queue], consumer.counters()[field])
            yield family
        yield from self._gauges()

    def _gauges(self) -> Iterator[Metric]:
        labels = ["queue"]
        in_flight = GaugeMetricFamily(
            "storyboard_jobs_in_flight", "jobs running now", labels=labels
        )
        capacity = GaugeMetricFamily(
            "storyboard_worker_capacity", "jobs it may run at once", labels=labels
        )
        saturation = GaugeMetricFamily(
            "storyboard_worker_saturation", "in-flight jobs / concurrency", labels=labels
        )
        beat = GaugeMetricFamily(
            "storyboard_consumer_heartbeat_age_seconds",
            "seconds since the receive loop last went round",
            labels=labels,
        )
        draining = GaugeMetricFamily(
            "storyboard_consumer_draining", "1 once the consumer's drain has begun", labels=labels
        )
        now = time.monotonic()
        for queue, consumer in self._consumers.items():
            in_flight.add_metric([queue], consumer.in_flight)
            capacity.add_metric([queue], consumer.capacity)
            saturation.add_metric([queue], consumer.in_flight / consumer.capacity)
            if not consumer.draining:
                # A draining loop ends on purpose; its age would only read as a stall.
                beat.add_metric([queue], now - consumer.last_beat)
            draining.add_metric([queue], float(consumer.draining))
        yield from (in_flight, capacity, saturation, beat, draining)


class ObservedHub(Protocol):
    """What the metrics read from the watch hub."""

    @property
    def watched(self) -> int:
        """Distinct jobs watched now."""
        ...

    @property
    def streams(self) -> int:
        """Open streams now."""
        ...

    polls: int
    reads: int
    failures: int


class HubCollector(Collector):
    """Exposes the watch hub's gauges and counters at scrape time."""

    def __init__(self, hub: ObservedHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """Streams and jobs watched now; polls, batch reads and failed polls so far."""
        hub = self._hub
        yield GaugeMetricFamily("storyboard_watch_streams", "open job event streams", hub.streams)
        yield GaugeMetricFamily("storyboard_watch_jobs", "distinct jobs watched", hub.watched)
        yield CounterMetricFamily("storyboard_watch_polls", "watch hub polls", hub.polls)
        yield CounterMetricFamily(
            "storyboard_watch_reads", "watch hub batch reads (100 ids each)", hub.reads
        )
        yield CounterMetricFamily(
            "storyboard_watch_poll_failures", "watch hub polls that failed", hub.failures
        )


class Depth(Protocol):
    """Approximate message counts of a queue."""

    @property
    def visible(self) -> int:
        """Messages waiting to be received."""
        ...

    @property
    def in_flight(self) -> int:
        """Messages received and hidden now."""
        ...


class ObservedQueue(Protocol):
    """What the metrics read from a queue when scraped."""

    async def depth(self) -> Depth:
        """Its approximate counts now."""
        ...


class LimitsCollector(Collector):
    """The configured per-process model limits; an unlimited one (0) has no sample, so a
    ratio against it yields nothing rather than a division by zero."""

    def __init__(self, requests_per_minute: int, tokens_per_minute: int) -> None:
        self._limits = {
            "storyboard_llm_requests_per_minute_limit": requests_per_minute,
            "storyboard_llm_tokens_per_minute_limit": tokens_per_minute,
        }

    def collect(self) -> Iterator[Metric]:
        """One gauge per limit."""
        for name, value in self._limits.items():
            family = GaugeMetricFamily(name, "configured per-process model limit (0: none)")
            if value:
                family.add_metric([], value)
            yield family


class Metrics:
    """Every metric of one process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter("storyboard_jobs", "job attempts by outcome", ["outcome"], registry=r)
        self.job_seconds = Histogram(
            "storyboard_job_duration_seconds", "job attempt wall time", ["outcome"],
            buckets=JOB_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "storyboard_stage_duration_seconds", "time per job stage", ["stage"],
            buckets=JOB_BUCKETS, registry=r,
        )  # fmt: skip
        self.http = Counter(
            "storyboard_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "storyboard_http_request_duration_seconds", "HTTP latency", ["route"],
            buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.llm_seconds = Histogram(
            "storyboard_llm_request_duration_seconds", "model request latency", ["outcome"],
            buckets=LLM_BUCKETS, registry=r,
        )  # fmt: skip
        self.llm_errors = Counter(
            "storyboard_llm_errors", "model request failures by code", ["code"], registry=r
        )
        self.llm_tokens = Counter(
            "storyboard_llm_tokens", "model tokens by direction", ["direction"], registry=r
        )
        self.job_errors = Counter(
            "storyboard_job_errors", "failed job attempts by error code and outcome",
            ["code", "outcome"], registry=r,
        )  # fmt: skip
        self.queue_messages = Gauge(
            "storyboard_queue_messages", "approximate messages in the queue, read at scrape time",
            ["queue", "state"], registry=r,
        )  # fmt: skip
        self.queue_depth_errors = Counter(
            "storyboard_queue_depth_errors", "queue depth reads that failed", ["queue"],
            registry=r,
        )  # fmt: skip
        self._queues: dict[str, ObservedQueue] = {}

    def watch(self, consumers: Mapping[str, ObservedConsumer]) -> None:
        """Expose the consumers' counters, keyed by queue role (``main``, ``dlq``)."""
        self.registry.register(ConsumerCollector(consumers))

    def watch_hub(self, hub: ObservedHub) -> None:
        """Expose the watch hub's streams, watched jobs and reads."""
        self.registry.register(HubCollector(hub))

    def watch_queues(self, queues: Mapping[str, ObservedQueue]) -> None:
        """Read these queues' depths at every scrape, keyed by role (``main``, ``dlq``)."""
        self._queues.update(queues)

    def model_limits(self, requests_per_minute: int, tokens_per_minute: int) -> None:
        """Expose the configured per-process model limits (0 means none)."""
        self.registry.register(LimitsCollector(requests_per_minute, tokens_per_minute))

    async def sample_queues(self) -> None:
        """Read every watched queue's depth now, all at once.

        A queue that cannot be read loses its series until it can, so that a stale count
        is never scraped as a fresh one; the failure is counted.
        """
        async with asyncio.TaskGroup() as group:
            for role, queue in self._queues.items():
                group.create_task(self._sample(role, queue))

    async def _sample(self, role: str, queue: ObservedQueue) -> None:
        try:
            depth = await asyncio.wait_for(queue.depth(), QUEUE_DEPTH_TIMEOUT_S)
        except Exception as exc:
            self.queue_depth_errors.labels(role).inc()
            for state in ("visible", "in_flight"):
                self.queue_messages.remove(role, state)
            log.warning("queue depth read failed", queue=role, error=repr(exc))
            return
        self.queue_messages.labels(role, "visible").set(depth.visible)
        self.queue_messages.labels(role, "in_flight").set(depth.in_flight)

    def job_failed(self, code: str, outcome: str) -> None:
        """Record a failed attempt's error code beside what became of it."""
        self.job_errors.labels(code, outcome).inc()

    def job_finished(self, outcome: str, seconds: float) -> None:
        """Record one attempt's outcome and duration."""
        self.jobs.labels(outcome).inc()
        self.job_seconds.labels(outcome).observe(seconds)

    def stage_finished(self, stage: str, seconds: float) -> None:
        """Record how long a stage of a job took."""
        self.stage_seconds.labels(stage).observe(seconds)

    def llm_request(
        self, seconds: float, code: str | None, tokens_in: int, tokens_out: int
    ) -> None:
        """Record one model request; ``code`` is None on success."""
        self.llm_seconds.labels("ok" if code is None else "error").observe(seconds)
        if code is not None:
            self.llm_errors.labels(code).inc()
        self.llm_tokens.labels("input").inc(tokens_in)
        self.llm_tokens.labels("output").inc(tokens_out)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
