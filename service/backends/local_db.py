"""The SQLite database behind the local backend: one file, one connection, one thread.

Every statement runs on a dedicated thread that owns the connection, so calls from the event
loop serialise without locks and never block it. The file is opened in WAL mode so several
processes can share it: readers never wait for the writer, and writers take the write lock
up front (``BEGIN IMMEDIATE``) so a read-modify-write can neither deadlock nor see a
half-applied change by another process.

Calls that arrive while the thread is busy are run together as one batch, and the writes
among them share one transaction (group commit). Under load this turns hundreds of commits
and thread hand-offs a second into a few dozen, which is most of the cost of a small write.
Each call's result is delivered only after the commit that made it durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from service.errors import BackendError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 128
MIN_FREE_BYTES = 1024 * 1024

DOC_USER = "json_extract(doc, '$.userId')"
DOC_NOVEL = "json_extract(doc, '$.novelId')"
DOC_TYPE = "json_extract(doc, '$.type')"
DOC_DELETING = "json_extract(doc, '$.deletingAt')"
DOC_CREATED = "strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(doc, '$.createdAt'))"
"""``createdAt`` in one fixed form (milliseconds, ``Z``), so it orders as text."""

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        body TEXT NOT NULL,
        visible_at REAL NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT,
        group_id TEXT,
        attributes TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_receipt ON messages (receipt)",
    """
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        doc TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE TABLE IF NOT EXISTS novels (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",
    """
    CREATE TABLE IF NOT EXISTS idempotency (
        scope TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        job_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (scope, key_hash)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at)",
    # One row per active-job slot: a database made before quotas gains the table on open.
    """
    CREATE TABLE IF NOT EXISTS user_slots (
        user_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        taken_at TEXT NOT NULL,
        PRIMARY KEY (user_id, job_id)
    ) WITHOUT ROWID
    """,
    # The lists, newest first, read from the documents themselves: a database made before
    # them gains the indexes on open, covering every record it already holds.
    f"CREATE INDEX IF NOT EXISTS novels_by_user ON novels ({DOC_USER}, {DOC_CREATED}, id)",
    f"CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs ({DOC_USER}, {DOC_CREATED}, id)",
    f"CREATE INDEX IF NOT EXISTS jobs_by_novel"
    f" ON jobs ({DOC_USER}, {DOC_NOVEL}, {DOC_CREATED}, id)",
)

Work = Callable[[sqlite3.Connection], T]
_Outcome = tuple[bool, Any]
"""``(True, result)`` or ``(False, exception)``."""


@dataclass(frozen=True, slots=True)
class _Call:
    work: Work[Any]
    write: bool
    future: asyncio.Future[Any]


class Database:
    """One SQLite connection served by its own thread; open with :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._closed = False
        self.storage_error: str | None = None
        """Why the last write failed, while storage (the disk) is failing; else None."""
        self._thread = threading.Thread(target=self._serve, name=f"sqlite {path.name}", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database; :class:`BackendError` if it is unusable."""
        try:
            connection = await asyncio.to_thread(_connect, path)
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"cannot open local database {path}: {_describe(exc)}") from None
        return cls(path, connection)

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` on the connection; it must not write."""
        return await self._submit(work, write=False)

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` atomically under the write lock; if it raises, none of it is kept.

        ``work`` may share its transaction with other calls and, when one of those fails, be
        rolled back and run again on its own; so it must act only through the connection.
        """
        return await self._submit(work, write=True)

    async def ping(self) -> None:
        """Raise :class:`BackendError` unless the database answers, and can write again
        after storage failed: a read alone would call a full disk healthy."""
        if self.storage_error is None:
            await self.read(lambda connection: connection.execute("SELECT 1").fetchone())
        else:
            await self.write(_probe_write)

    async def close(self) -> None:
        """Finish queued calls, then close; later calls raise :class:`BackendError`."""
        if self._closed:
            return
        self._closed = True
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)

    async def _submit(self, work: Work[T], *, write: bool) -> T:
        if self._closed:
            raise BackendError(f"local database {self.path} is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put(_Call(work, write, future))
        try:
            result = await future
        except sqlite3.Error as exc:
            if write and exc.sqlite_errorcode & 0xFF in _STORAGE_FAILURES:
                self.storage_error = _describe(exc)
            raise BackendError(f"local database {self.path}: {_describe(exc)}") from exc
        if write:
            self.storage_error = None
        return result

    def _serve(self) -> None:
        try:
            while batch := self._next_batch():
                try:
                    outcomes = self._execute(batch)
                except Exception as exc:  # A bug here must not leave callers waiting forever.
                    outcomes = [(False, exc)] * len(batch)
                _deliver(batch, outcomes)
        finally:
            self._connection.close()
            self._refuse_stragglers()

    def _refuse_stragglers(self) -> None:
        # A call from another thread can slip in behind the stop marker.
        closed = sqlite3.ProgrammingError("the database is closed")
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                _deliver([call], [(False, closed)])

    def _next_batch(self) -> list[_Call]:
        first = self._calls.get()
        if first is None:
            return []
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            if call is None:
                self._calls.put(None)  # Stop once this batch is done.
                break
            batch.append(call)
        return batch

    def _execute(self, batch: list[_Call]) -> list[_Outcome]:
        if len(batch) > 1 and any(call.write for call in batch):
            together = self._execute_together(batch)
            if together is not None:
                return together
        return [self._execute_alone(call) for call in batch]

    def _execute_together(self, batch: list[_Call]) -> list[_Outcome] | None:
        """One transaction for the batch; ``None`` if a call failed and all was rolled back."""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            # No write lock within the busy timeout: retrying each call would only wait
            # that long again, once per call.
            return [(False, exc)] * len(batch)
        try:
            results = [call.work(connection) for call in batch]
            connection.execute("COMMIT")
        except Exception:
            _rollback(connection)
            # Calls are pure functions of the database, so running them again one by one
            # isolates the failure to the call that caused it.
            return None
        return [(True, result) for result in results]

    def _execute_alone(self, call: _Call) -> _Outcome:
        try:
            if call.write:
                return True, _run_in_transaction(self._connection, call.work)
            return True, call.work(self._connection)
        except Exception as exc:
            return False, exc


def _run_in_transaction(connection: sqlite3.Connection, work: Work[T]) -> T:
    """Run ``work`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``, rolling back if anything fails."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise
    return result


def _rollback(connection: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors (a full disk, for one), and a failed
    # COMMIT leaves the transaction open, which would break every later BEGIN.
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _deliver(batch: list[_Call], outcomes: list[_Outcome]) -> None:
    """Hand the outcomes to their event loops, with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for call, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(call.future.get_loop(), []).append((call.future, outcome))
    for loop, settled in by_loop.items():
        # A closed loop refuses the call; nobody can be awaiting its futures any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (ok, value) in settled:
        if future.done():  # The caller was cancelled.
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    _require_free_space(path.parent)
    # isolation_level=None: the module must not open transactions behind our back; we
    # issue BEGIN IMMEDIATE ourselves so the write lock is taken before any read.
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The first statement that reads the file: a corrupt or foreign file fails here.
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode is {mode})")
        # NORMAL in WAL mode syncs at checkpoints only: a power cut may lose the last
        # commits but never corrupts the file, and each commit avoids an fsync.
        connection.execute("PRAGMA synchronous = NORMAL")
        # A full PRAGMA quick_check reads every page, so start-up would grow with the job
        # history; reading the schema catches a damaged header or foreign file cheaply.
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        _run_in_transaction(connection, _create_schema)
    except BaseException:
        connection.close()
        raise
    return connection


def _require_free_space(directory: Path) -> None:
    # An existing database opens without writing a byte, so a full disk would otherwise
    # surface only at the first job; refuse to start instead.
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"only {free} bytes free on the device", str(directory))


ADDED_COLUMNS = (("messages", "group_id", "TEXT"), ("messages", "attributes", "TEXT"))
"""Columns added after the first release: a database made before gains them on open."""

LATE_SCHEMA = (
    # The fair receive seeks each group's oldest visible messages and counts its hidden
    # ones without reading the table: receive_count is in the index for that count.
    "CREATE INDEX IF NOT EXISTS messages_by_group"
    " ON messages (queue, group_id, visible_at, receive_count)",
)
"""Indexes over added columns, created once the columns exist."""


def _create_schema(connection: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        connection.execute(statement)
    for table, column, kind in ADDED_COLUMNS:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in LATE_SCHEMA:
        connection.execute(statement)


_STORAGE_FAILURES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_CORRUPT,
    }
)
"""Primary result codes that mean the storage failed, not the statement."""


def _probe_write(connection: sqlite3.Connection) -> None:
    # A page's worth of new data: a full disk or a size limit refuses it.
    connection.execute("CREATE TABLE IF NOT EXISTS health_probe (id INTEGER PRIMARY KEY, data)")
    connection.execute("INSERT OR REPLACE INTO health_probe VALUES (1, randomblob(4096))")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.strerror}: {exc.filename}"
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
