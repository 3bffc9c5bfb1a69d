"""Trace spans of the queue, on the OpenTelemetry API alone.

Nothing here needs the SDK: with no tracer provider set up every call is a no-op, and the
runtime does not even build these objects unless tracing is on (``service.tracing``).

A job's message carries the W3C trace context (``traceparent``, ``tracestate``) of the
``send`` span that queued it, as message attributes. Each delivery's ``process`` span is
a child of that context *and* links to it. The messaging conventions require the link
(a batch of messages cannot have many parents) and allow the parent for a message
processed on its own, as every job is here: with both, one trace runs from the HTTP
request to the last model call, and retries, released messages, dead letters and
redrives join the same trace, since they keep the message's attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from service.ports import BatchOutcome, Message, Queue, QueueDepth

TRACE_ATTRIBUTES = ("traceparent", "tracestate")
"""The message attributes that carry a trace context (W3C Trace Context)."""

SQS = "aws_sqs"
"""``messaging.system`` of the AWS backend's queue."""

LOCAL = "storyboard_local"
"""``messaging.system`` of the embedded queue (SQLite), which has no registered name."""


@dataclass(frozen=True, slots=True)
class QueueTracing:
    """What the spans of one queue need: the tracer, the messaging system and the
    destination (queue) name that the span names and attributes carry."""

    tracer: trace.Tracer
    system: str
    destination: str

    def attributes(self, operation: str) -> dict[str, str]:
        """The messaging attributes shared by the ``send`` and ``process`` spans."""
        return {
            "messaging.system": self.system,
            "messaging.destination.name": self.destination,
            "messaging.operation.type": operation,
            "messaging.operation.name": operation,
        }


def carried_context(attributes: Mapping[str, str]) -> Context | None:
    """The trace context a message's attributes carry, or ``None`` when they carry none."""
    if "traceparent" not in attributes:
        return None
    context = propagate.extract(dict(attributes))
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


@contextmanager
def process_span(tracing: QueueTracing, message: Message) -> Iterator[trace.Span]:
    """The current span while one delivery of ``message`` is processed (kind CONSUMER):
    a child of the context that sent it, linked to that context too."""
    context = carried_context(message.attributes)
    links = []
    if context is not None:
        links.append(trace.Link(trace.get_current_span(context).get_span_context()))
    attributes: dict[str, AttributeValue] = {
        **tracing.attributes("process"),
        "messaging.message.id": message.message_id,
        "messaging.message.delivery_count": message.receive_count,
    }
    with tracing.tracer.start_as_current_span(
        f"process {tracing.destination}",
        # No carried context: a root span of its own, never a child of the receive loop's.
        context=context if context is not None else Context(),
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
    ) as span:
        yield span


class TracedQueue:
    """A :class:`~service.ports.Queue` whose sends of new messages run in a ``send`` span
    (kind PRODUCER) and carry its context in the message attributes.

    A message that carries a trace context already (a dead letter moved, a redrive) is
    forwarded as it is: it keeps the context of the send that first queued its job.
    """

    def __init__(self, queue: Queue, tracing: QueueTracing) -> None:
        self._queue = queue
        self._tracing = tracing

    async def send(
        self,
        body: str,
        *,
        group: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send ``body`` in a ``send`` span that its attributes carry; see the class."""
        given = dict(attributes or {})
        if carried_context(given) is not None:
            return await self._queue.send(body, group=group, attributes=given)
        tracer = self._tracing.tracer
        with tracer.start_as_current_span(
            f"send {self._tracing.destination}",
            kind=trace.SpanKind.PRODUCER,
            attributes=self._tracing.attributes("send"),
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            # Only the trace context: baggage or other fields would eat into SQS's ten.
            given.update({k: v for k, v in carrier.items() if k in TRACE_ATTRIBUTES and v})
            message_id = await self._queue.send(body, group=group, attributes=given)
            span.set_attribute("messaging.message.id", message_id)
            return message_id

    async def receive(
        self, *, max_messages: int, wait_s: float, visibility_s: int
    ) -> list[Message]:
        """The wrapped queue's receive."""
        return await self._queue.receive(
            max_messages=max_messages, wait_s=wait_s, visibility_s=visibility_s
        )

    async def delete_batch(self, receipts: Sequence[str]) -> BatchOutcome:
        """The wrapped queue's delete."""
        return await self._queue.delete_batch(receipts)

    async def change_visibility_batch(
        self, receipts: Sequence[str], visibility_s: int
    ) -> BatchOutcome:
        """The wrapped queue's visibility change."""
        return await self._queue.change_visibility_batch(receipts, visibility_s)

    async def depth(self) -> QueueDepth:
        """The wrapped queue's depth."""
        return await self._queue.depth()
