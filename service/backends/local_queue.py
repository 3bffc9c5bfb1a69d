"""A queue with SQS semantics in the local SQLite database.

Every queue of a backend lives in one ``messages`` table, keyed by queue name. A message is
visible when its ``visible_at`` (wall-clock seconds, shared by every process using the file)
has passed. Receiving hides it until ``now + visibility_s``, counts the delivery and issues a
fresh receipt; only the latest receipt can delete the message or change its visibility.

Long polls never spin: a send in this process wakes a waiting receive at once, and a
receive otherwise re-checks every ``poll_interval_s`` (for sends by other processes) or when
the earliest hidden message becomes visible, whichever comes first.

Receives are fair between message groups (users): each message taken comes from the group
with the fewest messages in flight, the oldest of them first (see :data:`FAIR_RECEIVE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.backends.local_db import Database
from service.ports import BatchOutcome, Message, QueueDepth
from service.queue_limits import MAX_BATCH, MAX_VISIBILITY_S, check_attributes

INVALID_RECEIPT = "ReceiptHandleIsInvalid"

FAIR_RECEIVE = """
WITH RECURSIVE
  groups(name) AS (
    SELECT (SELECT min(group_id) FROM messages WHERE queue = :queue)
    UNION ALL
    SELECT (SELECT min(group_id) FROM messages WHERE queue = :queue AND group_id > name)
    FROM groups WHERE name IS NOT NULL
  ),
  loads(name, in_flight) AS (
    SELECT name, (SELECT count(*) FROM messages WHERE queue = :queue AND group_id = name
                  AND visible_at > :now AND receive_count > 0)
    FROM groups WHERE name IS NOT NULL
  ),
  heads(id, message_id, body, receive_count, group_id, attributes, visible_at, rank) AS (
    SELECT m.id, m.message_id, m.body, m.receive_count, m.group_id, m.attributes, m.visible_at,
           loads.in_flight + row_number() OVER (PARTITION BY m.group_id
                                                ORDER BY m.visible_at, m.id)
    FROM loads JOIN messages AS m ON m.id IN (
      SELECT id FROM messages INDEXED BY messages_by_group
      WHERE queue = :queue AND group_id = loads.name AND visible_at <= :now
      ORDER BY visible_at, id LIMIT :wanted)
    UNION ALL
    SELECT * FROM (
      SELECT id, message_id, body, receive_count, group_id, attributes, visible_at, 1
      FROM messages INDEXED BY messages_by_group
      WHERE queue = :queue AND group_id IS NULL AND visible_at <= :now
      ORDER BY visible_at, id LIMIT :wanted)
  )
SELECT id, message_id, body, receive_count, group_id, attributes FROM heads
ORDER BY rank, visible_at, id LIMIT :wanted
"""
# INDEXED BY: with no statistics the planner would rather walk messages_by_visibility,
# which reads every visible message of the queue (the whole backlog) to find a group's.
"""The next ``:wanted`` visible messages, shared fairly between groups, in one query.

Taking one message at a time from the group with the fewest messages in flight (ties: the
oldest message) is the same as ranking each group's k-th oldest visible message at its
in-flight count + k and taking the lowest ranks, so one query picks a whole batch. It never
reads a backlog: a recursive seek on ``messages_by_group`` finds each group with messages
(the cost grows with the number of groups, not of messages), then takes at most
``:wanted`` of each group's oldest visible messages and counts its hidden ones from the
same index. An ungrouped message is a group of its own, with nothing in flight.
``tests/test_local_queue.py`` checks the plan.
"""

FIFO_RECEIVE = """
SELECT id, message_id, body, receive_count, group_id, attributes FROM messages
WHERE queue = :queue AND visible_at <= :now ORDER BY visible_at, id LIMIT :wanted
"""
"""The oldest visible messages, whatever their group: the order without fairness."""

_Row = tuple[int, str, str, int, str | None, str | None]
"""id, message id, body, receive count, group, attributes (a JSON object, or NULL)."""


class QueueSignals:
    """Wake-ups for receives waiting in this process, shared by every queue of a database.

    Waiters are futures of whichever event loop they were created in, so one instance works
    with several loops (and threads); a wake-up is delivered thread-safely to its loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    def register(self, queue: str) -> asyncio.Future[None]:
        """A future that a later :meth:`wake` of ``queue`` resolves."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.setdefault(queue, []).append(waiter)
        return waiter

    def release(self, queue: str, waiter: asyncio.Future[None], *, pass_on: bool) -> None:
        """Forget ``waiter``; if it was woken but did not act on it, wake another instead."""
        with self._lock:
            waiters = self._waiting.get(queue, [])
            woken = waiter not in waiters
            if not woken:
                waiters.remove(waiter)
        if woken and pass_on:
            self.wake(queue)

    def wake(self, queue: str, count: int = 1) -> None:
        """Wake up to ``count`` receives waiting on ``queue``, oldest first."""
        with self._lock:
            waiters = self._waiting.get(queue, [])
            woken, waiters[:] = waiters[:count], waiters[count:]
        for waiter in woken:
            _resolve_soon(waiter)


def _resolve_soon(waiter: asyncio.Future[None]) -> None:
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        _resolve(waiter)
        return
    # A closed loop refuses the call; nobody can be waiting on its futures any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class _Received:
    messages: list[Message]
    redriven: int
    next_visible_at: float | None


class LocalQueue:
    """A :class:`~service.ports.Queue` named ``name`` in a shared local database.

    With ``dlq`` and ``max_receive_count`` set, a message already received that many times
    moves to the ``dlq`` queue when a receive would deliver it again, as an SQS redrive
    policy does.
    """

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        signals: QueueSignals,
        dlq: str | None = None,
        max_receive_count: int | None = None,
        poll_interval_s: float = 0.1,
        fair: bool = True,
    ) -> None:
        if (dlq is None) != (max_receive_count is None):
            raise ValueError("dlq and max_receive_count go together")
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self.name = name
        self._db = db
        self._signals = signals
        self._dlq = dlq
        self._max_receive_count = max_receive_count
        self._poll_interval_s = poll_interval_s
        self._receive_sql = FAIR_RECEIVE if fair else FIFO_RECEIVE
        self._background: set[asyncio.Future[BatchOutcome]] = set()

    async def send(
        self,
        body: str,
        *,
        group: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue ``body`` in ``group`` with ``attributes``, visible at once; the message id."""
        checked = check_attributes(attributes)
        stored = json.dumps(checked, ensure_ascii=False) if checked else None
        message_id = str(_random_uuid())

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO messages (queue, message_id, body, visible_at, group_id, attributes)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self.name, message_id, body, time.time(), group, stored),
            )

        await self._db.write(insert)
        self._signals.wake(self.name)
        return message_id

    async def receive(
        self, *, max_messages: int, wait_s: float, visibility_s: int
    ) -> list[Message]:
        """Long-poll up to ``wait_s`` for up to ``max_messages``, hiding them ``visibility_s``.

        ``max_messages`` is clamped to 1-10, as the SQS queue does.
        """
        max_messages = min(max(max_messages, 1), MAX_BATCH)
        _check_range("visibility_s", visibility_s, 0, MAX_VISIBILITY_S)
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            # Registered before looking, so a send that commits while we look still wakes us.
            waiter = self._signals.register(self.name)
            waited = False
            try:
                received = await self._take_or_hand_back(max_messages, visibility_s)
                if received.redriven and self._dlq is not None:
                    self._signals.wake(self._dlq, received.redriven)
                if received.messages or time.monotonic() >= deadline:
                    return received.messages
                pause = self._pause(deadline, received.next_visible_at)
                await asyncio.wait([waiter], timeout=pause)
                waited = True
            finally:
                self._signals.release(self.name, waiter, pass_on=not waited)

    async def _take_or_hand_back(self, max_messages: int, visibility_s: int) -> _Received:
        taking = asyncio.ensure_future(
            self._db.write(lambda connection: self._take(connection, max_messages, visibility_s))
        )
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The database may take the messages after the caller has gone; left alone they
            # would stay hidden for a whole visibility timeout, so make them visible again.
            taking.add_done_callback(self._hand_back)
            raise

    def _hand_back(self, taking: asyncio.Future[_Received]) -> None:
        if taking.cancelled() or taking.exception() is not None:
            return
        receipts = [message.receipt for message in taking.result().messages]
        if receipts:
            release = asyncio.ensure_future(self.change_visibility_batch(receipts, 0))
            self._background.add(release)
            release.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[BatchOutcome]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # Retrieved: a failure only means the messages reappear later.

    async def delete_batch(self, receipts: Sequence[str]) -> BatchOutcome:
        """Delete messages by their latest receipts; any other receipt fails on its own."""
        outcome, _ = await self._by_receipts(receipts, "DELETE FROM messages")
        return outcome

    async def change_visibility_batch(
        self, receipts: Sequence[str], visibility_s: int
    ) -> BatchOutcome:
        """Hide messages for ``visibility_s`` more seconds from now (0: visible at once)."""
        _check_range("visibility_s", visibility_s, 0, MAX_VISIBILITY_S)
        update = "UPDATE messages SET visible_at = ?"
        outcome, changed = await self._by_receipts(receipts, update, time.time() + visibility_s)
        if visibility_s == 0 and changed:
            self._signals.wake(self.name, changed)
        return outcome

    async def _by_receipts(
        self, receipts: Sequence[str], statement: str, *values: object
    ) -> tuple[BatchOutcome, int]:
        # A stale receipt matches no row, so it fails alone while the rest apply.
        unique = list(dict.fromkeys(receipts))
        if not unique:
            return BatchOutcome(), 0
        sql = (
            f"{statement} WHERE queue = ?"
            " AND receipt IN (SELECT value FROM json_each(?)) RETURNING receipt"
        )
        params = (*values, self.name, json.dumps(unique))
        done = await self._db.write(lambda connection: _returning_receipts(connection, sql, params))
        return _outcome(unique, done), len(done)

    async def depth(self) -> QueueDepth:
        """Visible messages, and received ones still hidden (delayed sends count in neither)."""

        def count(connection: sqlite3.Connection) -> QueueDepth:
            visible, in_flight = connection.execute(
                "SELECT"
                " (SELECT count(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2),"
                " (SELECT count(*) FROM messages"
                "   WHERE queue = ?1 AND visible_at > ?2 AND receive_count > 0)",
                (self.name, time.time()),
            ).fetchone()
            return QueueDepth(visible=int(visible), in_flight=int(in_flight))

        return await self._db.read(count)

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()

    def _pause(self, deadline: float, next_visible_at: float | None) -> float:
        pause = min(deadline - time.monotonic(), self._poll_interval_s)
        if next_visible_at is not None:
            pause = min(pause, next_visible_at - time.time())
        return max(pause, 0.0)

    def _take(
        self, connection: sqlite3.Connection, max_messages: int, visibility_s: int
    ) -> _Received:
        # Read the clock under the write lock: taking the lock may have waited.
        now = time.time()
        delivered: list[Message] = []
        redriven = 0
        while len(delivered) < max_messages:
            wanted = max_messages - len(delivered)
            rows = self._visible_rows(connection, now, wanted, {m.message_id for m in delivered})
            fresh = [row for row in rows if not self._exhausted(row[3])]
            for row_id, *_ in (row for row in rows if self._exhausted(row[3])):
                self._redrive(connection, row_id, now)
                redriven += 1
            delivered += self._deliver(connection, fresh, now + visibility_s)
            if len(rows) < wanted or len(fresh) == len(rows):
                break
        if delivered or redriven:
            return _Received(delivered, redriven, None)
        (next_visible_at,) = connection.execute(
            "SELECT min(visible_at) FROM messages WHERE queue = ? AND visible_at > ?",
            (self.name, now),
        ).fetchone()
        return _Received([], 0, None if next_visible_at is None else float(next_visible_at))

    def _exhausted(self, receive_count: int) -> bool:
        return self._max_receive_count is not None and receive_count >= self._max_receive_count

    def _visible_rows(
        self, connection: sqlite3.Connection, now: float, wanted: int, taken: set[str]
    ) -> list[_Row]:
        # Over-fetch by the number already taken: with visibility_s=0 they are still visible.
        parameters = {"queue": self.name, "now": now, "wanted": wanted + len(taken)}
        rows = connection.execute(self._receive_sql, parameters).fetchall()
        fresh: list[_Row] = [
            (int(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4], r[5])
            for r in rows
            if r[1] not in taken
        ]
        return fresh[:wanted]

    @staticmethod
    def _deliver(
        connection: sqlite3.Connection, rows: list[_Row], hidden_until: float
    ) -> list[Message]:
        messages = [
            Message(
                message_id,
                _random_uuid().hex,
                body,
                receive_count + 1,
                group,
                json.loads(attributes) if attributes else {},
            )
            for _, message_id, body, receive_count, group, attributes in rows
        ]
        connection.executemany(
            "UPDATE messages SET visible_at = ?, receive_count = ?, receipt = ? WHERE id = ?",
            [
                (hidden_until, message.receive_count, message.receipt, row[0])
                for row, message in zip(rows, messages, strict=True)
            ],
        )
        return messages

    def _redrive(self, connection: sqlite3.Connection, row_id: int, now: float) -> None:
        # The receive count travels with the message, as in SQS, so a DLQ reader sees how
        # often it was tried; the old receipt dies with the move.
        connection.execute(
            "UPDATE messages SET queue = ?, visible_at = ?, receipt = NULL WHERE id = ?",
            (self._dlq, now, row_id),
        )


# uuid4() reads os.urandom on every call, a system call per message id and receipt. A
# private generator seeded from os.urandom is as unique and far cheaper; it is private so no
# random.seed() elsewhere can make two processes repeat each other, and reseeded in forked
# children for the same reason.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def _random_uuid() -> uuid.UUID:
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def _returning_receipts(
    connection: sqlite3.Connection, statement: str, parameters: tuple[object, ...]
) -> set[str]:
    return {str(row[0]) for row in connection.execute(statement, parameters).fetchall()}


def _outcome(receipts: list[str], done: set[str]) -> BatchOutcome:
    return BatchOutcome(failed={r: INVALID_RECEIPT for r in receipts if r not in done})


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
