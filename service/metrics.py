"""Prometheus metrics for one process, served at ``/metrics``.

Counters the consumer already keeps (receives, visibility extensions, in-flight jobs) are
read at scrape time by a collector, so the hot path pays nothing for them. Job outcomes,
stage timings, model calls and HTTP requests are recorded where they happen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
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
        in_flight = GaugeMetricFamily(
            "storyboard_jobs_in_flight", "jobs running now", labels=["queue"]
        )
        saturation = GaugeMetricFamily(
            "storyboard_worker_saturation", "in-flight jobs / concurrency", labels=["queue"]
        )
        for queue, consumer in self._consumers.items():
            in_flight.add_metric([queue], consumer.in_flight)
            saturation.add_metric([queue], consumer.in_flight / consumer.capacity)
        yield in_flight
        yield saturation


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

    def watch(self, consumers: Mapping[str, ObservedConsumer]) -> None:
        """Expose the consumers' counters, keyed by queue role (``main``, ``dlq``)."""
        self.registry.register(ConsumerCollector(consumers))

    def watch_hub(self, hub: ObservedHub) -> None:
        """Expose the watch hub's streams, watched jobs and reads."""
        self.registry.register(HubCollector(hub))

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
