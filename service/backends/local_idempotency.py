"""Idempotency keys in the local SQLite database.

A binding is a row of the ``idempotency`` table keyed by ``(scope, key_hash)``: the client's
key is stored as its SHA-256, so keys of any length or content take the same small space.
``expires_at`` is wall-clock seconds, shared by every process using the file. Expired rows
count as absent, and each claim first deletes them (through an index on ``expires_at``), as
DynamoDB's TTL does on the AWS backend, so the table holds only live bindings.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from service.backends.local_db import Database


def key_hash(key: str) -> str:
    """The stored form of a client's idempotency key: its SHA-256 in hex."""
    # surrogatepass: a lone surrogate from a lenient decoder still hashes, never raises.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class LocalIdempotencyStore:
    """An :class:`~service.ports.IdempotencyStore` whose claims are SQLite transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, scope: str, key: str, job_id: str, ttl_s: int) -> str:
        """Bind the key to ``job_id`` unless a live binding exists; the owning job id."""
        _check_ttl(ttl_s)
        hashed = key_hash(key)
        return await self._db.write(
            lambda connection: _claim(connection, scope, hashed, job_id, ttl_s)
        )

    async def release(self, scope: str, key: str, job_id: str) -> None:
        """Drop the binding if it still points at ``job_id``."""
        hashed = key_hash(key)

        def delete(connection: sqlite3.Connection) -> None:
            connection.execute(
                "DELETE FROM idempotency WHERE scope = ? AND key_hash = ? AND job_id = ?",
                (scope, hashed, job_id),
            )

        await self._db.write(delete)

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the database answers."""
        await self._db.ping()


def _claim(connection: sqlite3.Connection, scope: str, hashed: str, job_id: str, ttl_s: int) -> str:
    # Read the clock under the write lock: taking the lock may have waited.
    now = time.time()
    connection.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
    connection.execute(
        "INSERT INTO idempotency (scope, key_hash, job_id, expires_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (scope, key_hash) DO NOTHING",
        (scope, hashed, job_id, now + ttl_s),
    )
    (owner,) = connection.execute(
        "SELECT job_id FROM idempotency WHERE scope = ? AND key_hash = ?", (scope, hashed)
    ).fetchone()
    return str(owner)


def _check_ttl(ttl_s: int) -> None:
    if ttl_s < 1:
        raise ValueError(f"ttl_s must be at least 1, not {ttl_s}")
