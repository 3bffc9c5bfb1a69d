"""Job and novel records in the local SQLite database, stored as camelCase JSON documents."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from service.backends.local_db import Database
from service.errors import AlreadyExists
from service.jobs import Job, Transition
from service.models import isoformat
from service.novels import Novel, StoryboardRef


class LocalJobStore:
    """A :class:`~service.ports.JobStore` whose guarded writes are SQLite transactions.

    ``status`` and ``attempts`` are copied out of the document into columns so the records
    can be inspected and queried with plain SQL; the document stays the source of truth.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

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
        return await self._db.write(lambda connection: _apply(connection, job_id, transition))

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()


def _apply(connection: sqlite3.Connection, job_id: str, transition: Transition) -> Job | None:
    row = connection.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = json.loads(row[0])
    if not transition.guard.allows(Job.model_validate(doc)):
        return None
    # Validating the merged document keeps a bad change from ever being stored; the
    # exception rolls the transaction back.
    counters = {name: int(doc.get(name) or 0) + amount for name, amount in transition.add.items()}
    updated = Job.model_validate({**doc, **transition.changes, **counters})
    connection.execute(
        "UPDATE jobs SET status = ?, attempts = ?, doc = ? WHERE id = ?",
        (updated.status.value, updated.attempts, updated.model_dump_json(by_alias=True), job_id),
    )
    return updated


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
        value = ref.model_dump_json(by_alias=True)
        created_at = ref.to_doc()["createdAt"]

        def update(connection: sqlite3.Connection) -> int:
            # json_set changes the one field in place, with no read-modify-write round trip.
            cursor = connection.execute(
                "UPDATE novels SET doc = json_set(doc, '$.latestStoryboard', json(?))"
                " WHERE id = ? AND coalesce("
                "json_extract(doc, '$.latestStoryboard.createdAt') <= ?, 1)",
                (value, novel_id, created_at),
            )
            return cursor.rowcount

        return await self._db.write(update) == 1

    async def set_latest_job(self, novel_id: str, job_id: str, created_at: datetime) -> bool:
        """Name ``job_id`` as the novel's latest job unless a later one is named already;
        whether it is named now. A missing novel is left missing."""
        at = isoformat(created_at)

        def update(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "UPDATE novels SET doc = json_set(doc, '$.latestJobId', ?, '$.latestJobAt', ?)"
                " WHERE id = ? AND coalesce(json_extract(doc, '$.latestJobAt') <= ?, 1)",
                (job_id, at, novel_id, at),
            )
            return cursor.rowcount

        return await self._db.write(update) == 1

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()
