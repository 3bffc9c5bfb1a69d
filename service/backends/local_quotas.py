"""Active-job slots in the local SQLite database.

A slot is a row of ``user_slots`` keyed by ``(user_id, job_id)``. Taking one counts the
user's rows and inserts under the write lock (``BEGIN IMMEDIATE``), so concurrent takers,
in this process or another sharing the file, never hold more than the limit between them.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from service.backends.local_db import Database
from service.models import isoformat
from service.ports import QuotaGrant


class LocalUserQuotas:
    """A :class:`~service.ports.UserQuotas` whose slot takes are SQLite transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, user_id: str, job_id: str, *, limit: int, at: datetime) -> QuotaGrant:
        """Give the job a slot if it holds one or the user holds fewer than ``limit``."""
        taken_at = isoformat(at)
        return await self._db.write(
            lambda connection: _acquire(connection, user_id, job_id, limit, taken_at)
        )

    async def release(self, user_id: str, job_id: str) -> None:
        """Free the job's slot, if it holds one."""

        def delete(connection: sqlite3.Connection) -> None:
            connection.execute(
                "DELETE FROM user_slots WHERE user_id = ? AND job_id = ?", (user_id, job_id)
            )

        await self._db.write(delete)

    async def held(self, user_id: str) -> dict[str, datetime]:
        """The user's slots and when each was taken."""
        rows = await self._db.read(
            lambda connection: connection.execute(
                "SELECT job_id, taken_at FROM user_slots WHERE user_id = ?", (user_id,)
            ).fetchall()
        )
        return {str(job_id): datetime.fromisoformat(str(taken)) for job_id, taken in rows}

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()


def _acquire(
    connection: sqlite3.Connection, user_id: str, job_id: str, limit: int, taken_at: str
) -> QuotaGrant:
    (held,) = connection.execute(
        "SELECT count(*) FROM user_slots WHERE user_id = ?", (user_id,)
    ).fetchone()
    mine = connection.execute(
        "SELECT 1 FROM user_slots WHERE user_id = ? AND job_id = ?", (user_id, job_id)
    ).fetchone()
    if mine is not None:
        return QuotaGrant(granted=True, held=int(held))
    if held >= limit:
        return QuotaGrant(granted=False, held=int(held))
    connection.execute(
        "INSERT INTO user_slots (user_id, job_id, taken_at) VALUES (?, ?, ?)",
        (user_id, job_id, taken_at),
    )
    return QuotaGrant(granted=True, held=int(held) + 1)
