"""The long-poll consumer: receive, run each message as a task, delete or leave it.

Lifecycle: ``async with Consumer(...)`` starts the receive loop, the lease extender
and the delete batcher; leaving the block (or ``stop()``) stops receiving, lets in-flight
jobs finish for up to the grace period, cancels what is left and makes its messages
visible again so another replica can take them at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import structlog

from service.consumers.batching import DeleteBatcher, Lease, LeaseExtender
from service.consumers.outcome import Action, Outcome
from service.consumers.slots import Slots
from service.consumers.stats import ConsumerStats
from service.logs import get_logger
from service.ports import Message, Queue
from service.queue_limits import MAX_BATCH
from service.telemetry import QueueTracing, process_span

log = get_logger(__name__)

Dispatch = Callable[[Message], Awaitable[Outcome]]

IDLE_CHECK_S = 5.0
RECEIVE_MARGIN_S = 5.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer polls and how many jobs it runs at once."""

    concurrency: int
    wait_s: float
    visibility_s: int
    delete_flush_s: float = 0.1
    grace_s: float = 30.0
    idle_pause_s: float = 0.0
    """Pause after an empty receive; a rarely read queue (the DLQ) polls less often."""
    crash_retry_s: int = 30
    """How soon a message whose handler crashed comes back (rather than after a whole
    visibility timeout): a crash is usually a backend failing, which may pass."""


class Consumer:
    """Runs queue messages through ``dispatch`` under bounded concurrency."""

    def __init__(
        self,
        queue: Queue,
        dispatch: Dispatch,
        config: ConsumerConfig,
        dlq: Queue | None = None,
        tracing: QueueTracing | None = None,
    ) -> None:
        """``tracing``, when given, runs each message in a ``process`` span (see
        :mod:`service.telemetry`); without it no span is made at all."""
        self._queue = queue
        self._tracing = tracing
        self._dlq = dlq
        self._dispatch = dispatch
        self._config = config
        self.stats = ConsumerStats()
        self._slots = Slots(config.concurrency)
        self._leases: dict[str, Lease] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._deleter = DeleteBatcher(queue, self.stats, config.delete_flush_s)
        self._extender = LeaseExtender(
            queue, self.stats, config.visibility_s, lambda: list(self._leases.values())
        )
        self._services: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._cut = asyncio.Event()
        self._in_receive = False
        self.draining = False
        # The receive loop's liveness heartbeat, which /healthz reads; message visibility is
        # the lease extender's business, not this.
        self.last_beat = time.monotonic()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(grace_s=0.0 if exc_type is not None else None)

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return self._slots.used

    @property
    def capacity(self) -> int:
        """Jobs it may run at once."""
        return self._slots.capacity

    def counters(self) -> dict[str, int]:
        """The consumer's counters by name, for metrics and logs."""
        return {name: getattr(self.stats, name) for name in self.stats.__slots__}

    def start(self) -> None:
        """Start the receive loop, the lease extender and the delete batcher."""
        if self._receiver is not None:
            return
        self._receiver = asyncio.create_task(self._receive_loop(), name="receive-loop")
        loops = (("deleter", self._deleter.run()), ("lease-extender", self._extender.run()))
        for name, coro in loops:
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(self._service_ended)
            self._services.add(task)
        self._receiver.add_done_callback(self._service_ended)

    def _service_ended(self, task: asyncio.Task[None]) -> None:
        # These loops only end when cancelled; any other ending is a bug to see at once,
        # since /healthz goes stale only for the receive loop.
        if not task.cancelled() and task.exception() is not None:
            self.stats.crashed += 1
            log.error("consumer loop died", loop=task.get_name(), error=repr(task.exception()))

    def begin_drain(self) -> None:
        """Stop receiving (readiness turns 503); ``stop()`` finishes the shutdown.

        A receive already in flight is let finish, and what it returns is released at once:
        cancelling it would not cancel it at SQS, which would hand its messages to a call
        nobody reads, hidden for a whole visibility timeout and counted as a delivery.
        """
        self.draining = True
        if self._receiver is not None and not self._in_receive:
            self._receiver.cancel()

    def cut_grace(self) -> None:
        """End the drain early: unfinished jobs are released at once."""
        self.begin_drain()
        self._cut.set()
        if self._receiver is not None:
            self._receiver.cancel()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop receiving, drain for up to ``grace_s`` (default: the configured grace), then
        release the rest. Safe to call twice; a second call waits for the first."""
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            await self._shutdown(self._config.grace_s if grace_s is None else grace_s)
        finally:
            self._stopped.set_result(None)

    async def _shutdown(self, grace_s: float) -> None:
        self.begin_drain()
        await asyncio.gather(self._finish_receiving(), self._drain(grace_s))
        await self._release_unfinished()
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        await self._deleter.close()
        log.info("consumer stopped", **self.counters())

    async def _drain(self, grace_s: float) -> None:
        if self._jobs:
            log.info("draining", in_flight=len(self._jobs), grace_s=grace_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._jobs and not self._cut.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            cut = asyncio.ensure_future(self._cut.wait())
            try:
                await asyncio.wait(
                    {*self._jobs, cut}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                cut.cancel()

    async def _finish_receiving(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        # A long poll returns within its wait; the margin covers a slow network.
        await asyncio.wait({receiver}, timeout=self._config.wait_s + RECEIVE_MARGIN_S)
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)

    async def _release_unfinished(self) -> None:
        unfinished = [task for task in self._jobs if not task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        receipts = [lease.receipt for lease in self._leases.values()]
        self._leases.clear()
        if not receipts:
            return
        try:
            outcome = await self._queue.change_visibility_batch(receipts, 0)
            self.stats.released += len(receipts) - len(outcome.failed)
            log.info("released unfinished messages", count=len(receipts))
        except Exception:
            log.exception("could not release messages; they reappear after their timeout")

    async def _receive_loop(self) -> None:
        backoff = 0.0
        while not self.draining:
            self.last_beat = time.monotonic()
            free = await self._slots.wait_free(IDLE_CHECK_S)
            if free == 0 or self.draining:
                continue
            try:
                messages = await self._receive(free)
            except Exception as exc:
                backoff = min(MAX_BACKOFF_S, max(0.5, backoff * 2))
                self.stats.receive_errors += 1
                log.warning("receive failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            self._count_receive(len(messages))
            if self.draining:
                await self._release_received(messages)
                return
            for message in messages:
                self._launch(message)
            if not messages and self._config.idle_pause_s:
                await asyncio.sleep(self._config.idle_pause_s)

    async def _receive(self, free: int) -> list[Message]:
        self._in_receive = True
        try:
            return await self._queue.receive(
                max_messages=min(MAX_BATCH, free),
                wait_s=self._config.wait_s,
                visibility_s=self._config.visibility_s,
            )
        finally:
            self._in_receive = False

    async def _release_received(self, messages: list[Message]) -> None:
        """Make messages received during the drain visible again at once, unstarted."""
        if not messages:
            return
        try:
            outcome = await self._queue.change_visibility_batch([m.receipt for m in messages], 0)
        except Exception:
            log.exception("could not release messages; they reappear after their timeout")
            return
        self.stats.released += len(messages) - len(outcome.failed)
        log.info("released messages received while draining", count=len(messages))

    def _count_receive(self, count: int) -> None:
        self.stats.receives += 1
        self.stats.received += count
        if count == 0:
            self.stats.empty_receives += 1

    def _launch(self, message: Message) -> None:
        self._slots.take()
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self._slots.used)
        self._leases[message.receipt] = Lease(message.receipt)
        task = asyncio.create_task(self._run(message), name=f"message-{message.message_id}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _run(self, message: Message) -> None:
        structlog.contextvars.bind_contextvars(
            messageId=message.message_id, delivery=message.receive_count
        )
        if self._tracing is None:
            await self._process(message)
            return
        # The settling (delete, retry delay, dead-letter move) is part of the processing.
        with process_span(self._tracing, message):
            await self._process(message)

    async def _process(self, message: Message) -> None:
        try:
            outcome = await self._handle(message)
            # Settled messages leave the lease extender; a cancelled one keeps its lease so that
            # shutdown can release it.
            self._leases.pop(message.receipt, None)
            await self._settle(message, outcome)
        finally:
            self._slots.release()

    async def _handle(self, message: Message) -> Outcome:
        try:
            return await self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The message stays, so the queue redelivers it and, past maxReceiveCount,
            # moves it to the dead-letter queue; nothing is lost. It comes back soon rather
            # than after the visibility timeout, and its next delivery takes over the job.
            self.stats.crashed += 1
            log.exception("handler crashed")
            return Outcome.retry(self._config.crash_retry_s)

    async def _settle(self, message: Message, outcome: Outcome) -> None:
        if outcome.action is Action.DELETE:
            self.stats.acked += 1
            self._deleter.add(message.receipt)
        elif outcome.action is Action.DEAD_LETTER:
            await self._dead_letter(message)
        else:
            self.stats.retried += 1
            if outcome.retry_after_s is not None:
                await self._hide(message, outcome.retry_after_s)

    async def _hide(self, message: Message, seconds: int) -> None:
        try:
            await self._queue.change_visibility_batch([message.receipt], seconds)
        except Exception as exc:
            log.warning("could not delay the retry", error=str(exc))

    async def _dead_letter(self, message: Message) -> None:
        if self._dlq is None:
            log.error("no dead-letter queue to move the message to; leaving it")
            return
        try:
            # The attributes go along: the parked message keeps the trace of its job.
            await self._dlq.send(message.body, group=message.group, attributes=message.attributes)
        except Exception as exc:
            # Left where it is: redelivery, and the queue's own redrive, still apply.
            log.error("could not move the message to the dead-letter queue", error=str(exc))
            return
        self.stats.dead_lettered += 1
        self._deleter.add(message.receipt)
