"""Job and novel records in the local SQLite database, stored as camelCase JSON documents."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.backends.local_db import (
    DOC_CREATED,
    DOC_DELETING,
    DOC_NOVEL,
    DOC_TYPE,
    DOC_USER,
    Database,
    Work,
)
from service.backends.paging import decode_cursor, list_scope, next_cursor, split_position
from service.errors import AlreadyExists
from service.jobs import Job, JobStatus, Transition
from service.models import isoformat
from service.novels import Novel, StoryboardRef
from service.ports import JobListener, Page

SQLITE_MAX_PARAMETERS = 999
"""The fewest bound parameters any SQLite build allows in one statement."""


class LocalJobStore:
    """A :class:`~service.ports.JobStore` whose guarded writes are SQLite transactions.

    ``status`` and ``attempts`` are copied out of the document into columns so the records
    can be inspected and queried with plain SQL; the document stays the source of truth.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: list[JobListener] = []

    def on_write(self, listener: JobListener) -> Callable[[], None]:
        """Call ``listener`` with the job after each create or apply that lands."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, job: Job) -> None:
        for listener in list(self._listeners):
            listener(job)

    async def create(self, job: Job) -> None:
        """Store a new job; raise :class:`~service.ports.AlreadyExists` if the id is taken."""
        doc = job.model_dump_json(by_alias=True)

        def insert(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "INSERT INTO jobs (id, status, attempts, doc) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (job.job_id, job.status.value, job.attempts, doc),
            )
            return cursor.rowcount

        if await self._db.write(insert) == 0:
            raise AlreadyExists(f"job {job.job_id} already exists")
        self._notify(job)

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""
        row = await self._db.read(
            lambda connection: connection.execute(
                "SELECT doc FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        )
        return None if row is None else Job.model_validate_json(row[0])

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        """Apply ``transition`` if its guard holds, in one write transaction."""
        job = await self._db.write(lambda connection: _apply(connection, job_id, transition))
        if job is not None:
            self._notify(job)
        return job

    async def complete_and_point(
        self, seen: Job, transition: Transition, ref: StoryboardRef
    ) -> Job | None:
        """Apply ``transition`` and, if it applied, point the novel at ``ref``, in one write
        transaction (the novels share the database); ``seen`` is not needed here, as the
        transaction reads the job it changes."""

        def write(connection: sqlite3.Connection) -> Job | None:
            job = _apply(connection, seen.job_id, transition)
            if job is not None:
                _point_novel(connection, job.novel_id, ref)
            return job

        job = await self._db.write(write)
        if job is not None:
            self._notify(job)
        return job

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        """Every job of ``job_ids`` (``None`` for a missing one), in one read a thousand."""
        found: dict[str, Job | None] = dict.fromkeys(job_ids)
        ids = list(found)
        for start in range(0, len(ids), SQLITE_MAX_PARAMETERS):
            chunk = ids[start : start + SQLITE_MAX_PARAMETERS]
            for doc in await self._db.read(functools.partial(_docs, ids=chunk)):
                job = Job.model_validate_json(doc)
                found[job.job_id] = job
        return found

    async def list_for_user(
        self,
        user_id: str,
        *,
        limit: int,
        after: str | None = None,
        novel_id: str | None = None,
        status: JobStatus | None = None,
        types: Collection[str] | None = None,
    ) -> Page[Job]:
        """The user's jobs, newest first, from the ``jobs_by_user`` or ``jobs_by_novel``
        index."""
        scope = list_scope("jobs", user_id, novel_id, status.value if status else None)
        where, values = [f"{DOC_USER} = ?"], [user_id]
        if novel_id is not None:
            where.append(f"{DOC_NOVEL} = ?")
            values.append(novel_id)
        if status is not None:
            where.append("status = ?")
            values.append(status.value)
        if types is not None:
            where.append(f"{DOC_TYPE} IN ({', '.join('?' for _ in types)})")
            values += list(types)
        query = _Newest("jobs", where, values)
        rows = await self._db.read(query.runner(scope, after, limit))
        items = [Job.model_validate_json(doc) for _, doc in rows[:limit]]
        return Page(items, next_cursor(scope, [at for at, _ in rows], limit))

    async def delete(self, job_id: str) -> bool:
        """Delete the job's row; whether there was one."""
        return await self._db.write(_deleting("jobs", job_id)) == 1

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()


@dataclass(frozen=True, slots=True)
class _Newest:
    """A newest-first page of ``table`` rows meeting ``where`` (ANDed, with ``values``)."""

    table: str
    where: list[str]
    values: list[Any]

    def runner(self, scope: str, after: str | None, limit: int) -> Work[list[tuple[str, str]]]:
        """The read: one more row than ``limit``, as ``(position, doc)``; the cursor is
        checked first, so an invalid one raises before any I/O."""
        where, values = list(self.where), list(self.values)
        if after is not None:
            where.append(f"({DOC_CREATED}, id) < (?, ?)")
            values += split_position(decode_cursor(scope, after))
        sql = (
            f"SELECT {DOC_CREATED} || '#' || id, doc FROM {self.table}"
            f" WHERE {' AND '.join(where)} ORDER BY {DOC_CREATED} DESC, id DESC LIMIT ?"
        )
        values.append(limit + 1)

        def read(connection: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(at), str(doc)) for at, doc in connection.execute(sql, values)]

        return read


def _deleting(table: str, record_id: str) -> Work[int]:
    def delete(connection: sqlite3.Connection) -> int:
        return connection.execute(f"DELETE FROM {table} WHERE id = ?", (record_id,)).rowcount

    return delete


def _docs(connection: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    marks = ", ".join("?" * len(ids))
    cursor = connection.execute(f"SELECT doc FROM jobs WHERE id IN ({marks})", tuple(ids))
    return [row[0] for row in cursor.fetchall()]


def _apply(connection: sqlite3.Connection, job_id: str, transition: Transition) -> Job | None:
    row = connection.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = json.loads(row[0])
    if not transition.guard.allows(Job.model_validate(doc)):
        return None
    # Validating the merged document keeps a bad change from ever being stored; the
    # exception rolls the transaction back.
    counters = {
        name: int(doc.get(name) or 0) + amount for name, amount in transition.counters().items()
    }
    updated = Job.model_validate({**doc, **transition.changes, **counters})
    connection.execute(
        "UPDATE jobs SET status = ?, attempts = ?, doc = ? WHERE id = ?",
        (updated.status.value, updated.attempts, updated.model_dump_json(by_alias=True), job_id),
    )
    return updated


def _point_novel(connection: sqlite3.Connection, novel_id: str, ref: StoryboardRef) -> bool:
    """Point the novel at ``ref`` unless it points at a newer one; whether it does now."""
    # json_set changes the one field in place, with no read-modify-write round trip.
    cursor = connection.execute(
        "UPDATE novels SET doc = json_set(doc, '$.latestStoryboard', json(?))"
        " WHERE id = ? AND coalesce(json_extract(doc, '$.latestStoryboard.createdAt') <= ?, 1)",
        (ref.model_dump_json(by_alias=True), novel_id, ref.to_doc()["createdAt"]),
    )
    return cursor.rowcount == 1


class LocalNovelStore:
    """A :class:`~service.ports.NovelStore` in the local database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, novel: Novel) -> None:
        """Store a new novel; raise :class:`~service.ports.AlreadyExists` if the id is taken."""
        doc = novel.model_dump_json(by_alias=True)

        def insert(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "INSERT INTO novels (id, doc) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                (novel.novel_id, doc),
            )
            return cursor.rowcount

        if await self._db.write(insert) == 0:
            raise AlreadyExists(f"novel {novel.novel_id} already exists")

    async def get(self, novel_id: str) -> Novel | None:
        """The novel, or ``None``."""
        row = await self._db.read(
            lambda connection: connection.execute(
                "SELECT doc FROM novels WHERE id = ?", (novel_id,)
            ).fetchone()
        )
        return None if row is None else Novel.model_validate_json(row[0])

    async def set_latest_storyboard(self, novel_id: str, ref: StoryboardRef) -> bool:
        """Point the novel at ``ref`` unless it points at a newer one; whether it does now.

        A missing novel is left missing, not created.
        """
        return await self._db.write(functools.partial(_point_novel, novel_id=novel_id, ref=ref))

    async def set_latest_job(self, novel_id: str, job_id: str, created_at: datetime) -> bool:
        """Name ``job_id`` as the novel's latest job unless a later one is named already;
        whether it is named now. A missing novel is left missing."""
        at = isoformat(created_at)

        def update(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "UPDATE novels SET doc = json_set(doc, '$.latestJobId', ?, '$.latestJobAt', ?)"
                " WHERE id = ? AND coalesce(json_extract(doc, '$.latestJobAt') <= ?, 1)"
                f" AND {DOC_DELETING} IS NULL",
                (job_id, at, novel_id, at),
            )
            return cursor.rowcount

        return await self._db.write(update) == 1

    async def list_for_user(
        self, user_id: str, *, limit: int, after: str | None = None
    ) -> Page[Novel]:
        """The user's novels, newest first, from the ``novels_by_user`` index."""
        scope = list_scope("novels", user_id)
        query = _Newest("novels", [f"{DOC_USER} = ?", f"{DOC_DELETING} IS NULL"], [user_id])
        rows = await self._db.read(query.runner(scope, after, limit))
        items = [Novel.model_validate_json(doc) for _, doc in rows[:limit]]
        return Page(items, next_cursor(scope, [at for at, _ in rows], limit))

    async def claim_deletion(
        self, novel_id: str, at: datetime, *, stale_before: datetime
    ) -> Novel | None:
        """Mark the novel as being erased unless a live erasure holds it, in one write
        transaction, so of concurrent callers exactly one gets the novel."""
        marked, stale = isoformat(at), isoformat(stale_before)

        def claim(connection: sqlite3.Connection) -> Novel | None:
            cursor = connection.execute(
                f"UPDATE novels SET doc = json_set(doc, '$.deletingAt', ?)"
                f" WHERE id = ? AND coalesce({DOC_DELETING} < ?, 1)",
                (marked, novel_id, stale),
            )
            if cursor.rowcount != 1:
                return None
            row = connection.execute("SELECT doc FROM novels WHERE id = ?", (novel_id,)).fetchone()
            return Novel.model_validate_json(row[0])

        return await self._db.write(claim)

    async def release_deletion(self, novel_id: str, at: datetime) -> None:
        """Clear the mark set at ``at``, if it is still that one."""
        marked = isoformat(at)
        await self._db.write(
            lambda connection: (
                connection.execute(
                    f"UPDATE novels SET doc = json_set(doc, '$.deletingAt', json('null'))"
                    f" WHERE id = ? AND {DOC_DELETING} = ?",
                    (novel_id, marked),
                ).rowcount
            )
        )

    async def delete(self, novel_id: str) -> bool:
        """Delete the novel's row; whether there was one."""
        return await self._db.write(_deleting("novels", novel_id)) == 1

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()
