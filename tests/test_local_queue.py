"""The embedded queue's fair receive: its query plan, its order against a one-message-at-a-
time reference, the schema upgrade that added groups, and the first-in, first-out setting.

The behaviour both backends share is in ``test_contracts``."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from service.backends import local_db
from service.backends.local import DATABASE_FILE
from service.backends.local_queue import FAIR_RECEIVE
from tests.conftest import SettingsFactory
from tests.test_local_backend import opened

NOW = 1_000.0


def schema() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    for statement in (*local_db.SCHEMA, *local_db.LATE_SCHEMA):
        connection.execute(statement)
    return connection


def test_the_fair_receive_seeks_indexes_and_never_scans_the_table() -> None:
    connection = schema()
    plan = [
        row[3]
        for row in connection.execute(
            "EXPLAIN QUERY PLAN " + FAIR_RECEIVE, {"queue": "q", "now": NOW, "wanted": 10}
        )
    ]

    reads = [step for step in plan if " messages" in step or " m " in step]
    assert reads, plan
    for step in reads:
        assert step.startswith("SEARCH"), step
        assert "messages_by_group" in step or "INTEGER PRIMARY KEY" in step, step
    # A group's in-flight count and its oldest messages come from the index alone.
    counted = [step for step in plan if "visible_at>" in step]
    assert counted
    assert all("COVERING INDEX messages_by_group" in step for step in counted)


Row = tuple[str | None, float, int]
"""A message as the reference sees it: group, visible_at, receive_count."""


def fill(connection: sqlite3.Connection, rows: list[Row]) -> None:
    connection.executemany(
        "INSERT INTO messages (queue, message_id, body, visible_at, receive_count, group_id)"
        " VALUES ('q', ?, ?, ?, ?, ?)",
        [(f"m{i}", f"m{i}", at, count, group) for i, (group, at, count) in enumerate(rows)],
    )


def one_at_a_time(rows: list[Row], wanted: int) -> list[str]:
    """The rule itself: take from the group with the fewest in flight, the oldest first."""
    in_flight = Counter(g for g, at, count in rows if g is not None and at > NOW and count > 0)
    waiting = sorted((at, i, g) for i, (g, at, _) in enumerate(rows) if at <= NOW)
    taken: list[str] = []
    while waiting and len(taken) < wanted:
        # Ties on the in-flight count go to the oldest message (then the earlier id).
        at, i, group = min(waiting, key=lambda w: (in_flight[w[2]] if w[2] else 0, w[0], w[1]))
        waiting.remove((at, i, group))
        taken.append(f"m{i}")
        if group is not None:
            in_flight[group] += 1
    return taken


messages = st.lists(
    st.tuples(
        st.sampled_from([None, "a", "b", "c", "d"]),
        st.sampled_from([NOW - 30, NOW - 20, NOW - 10, NOW, NOW + 10]),
        st.integers(min_value=0, max_value=2),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(rows=messages, wanted=st.integers(min_value=1, max_value=10))
def test_one_query_takes_what_taking_one_at_a_time_would(rows: list[Row], wanted: int) -> None:
    connection = schema()
    fill(connection, rows)

    picked = connection.execute(FAIR_RECEIVE, {"queue": "q", "now": NOW, "wanted": wanted})

    assert [row[1] for row in picked] == one_at_a_time(rows, wanted)


def test_a_large_backlog_does_not_change_what_a_quiet_group_waits() -> None:
    connection = schema()
    rng = random.Random(7)
    backlog: list[Row] = [("busy", NOW - rng.uniform(1, 100), 0) for _ in range(5_000)]
    fill(connection, [*backlog, ("busy", NOW + 50, 1), ("quiet", NOW - 0.5, 0)])

    picked = connection.execute(FAIR_RECEIVE, {"queue": "q", "now": NOW, "wanted": 1}).fetchall()

    assert [row[4] for row in picked] == ["quiet"]


async def test_a_database_made_before_groups_and_attributes_gains_both_and_keeps_its_messages(
    local_settings: SettingsFactory,
) -> None:
    settings_ = local_settings()
    settings_.data_dir.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(settings_.data_dir / DATABASE_FILE)
    old.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, queue TEXT NOT NULL,"
        " message_id TEXT NOT NULL, body TEXT NOT NULL, visible_at REAL NOT NULL,"
        " receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT)"
    )
    old.execute(
        "INSERT INTO messages (queue, message_id, body, visible_at) VALUES (?, 'old', 'old', 0)",
        (settings_.queue_name,),
    )
    old.commit()
    old.close()

    async with opened(settings_) as backend:
        await backend.queue.send("new", group="alice", attributes={"traceparent": "t"})
        batch = await backend.queue.receive(max_messages=10, wait_s=0, visibility_s=60)

    assert sorted((m.body, m.group, dict(m.attributes)) for m in batch) == [
        ("new", "alice", {"traceparent": "t"}),
        ("old", None, {}),
    ]
    indexes = {row[1] for row in _pragma(settings_.data_dir, "index_list(messages)")}
    assert "messages_by_group" in indexes


def _pragma(data_dir: Path, pragma: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        return connection.execute(f"PRAGMA {pragma}").fetchall()
    finally:
        connection.close()


async def test_first_in_first_out_order_ignores_groups(local_settings: SettingsFactory) -> None:
    async with opened(local_settings(queue_order="fifo")) as backend:
        for i in range(6):
            await backend.queue.send(f"busy-{i}", group="busy")
        await backend.queue.receive(max_messages=3, wait_s=0, visibility_s=60)
        await backend.queue.send("quiet-0", group="quiet")

        batch = await backend.queue.receive(max_messages=3, wait_s=0, visibility_s=60)

    assert [m.body for m in batch] == ["busy-3", "busy-4", "busy-5"]
