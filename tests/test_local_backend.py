"""Behaviour only the local backend has: files on disk, start-up checks, in-process wake-ups
and several processes sharing one database. The port contracts are in ``test_contracts``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.processes import ROOT
from service import jobs
from service.backends import local_db
from service.backends.backend import Backend
from service.backends.local import BLOB_DIR, DATABASE_FILE, open_local_backend
from service.backends.local_records import LocalJobStore
from service.errors import BackendError, BlobNotFound
from service.jobs import Guard, Job, JobStatus, StoryboardSummary, Transition
from service.novels import Novel, StoryboardRef
from service.ports import QueueDepth
from service.settings import Settings
from tests.conftest import SettingsFactory

SUMMARY = StoryboardSummary(title="T", chapters=1, scenes=1, panels=1, characters=1)


@asynccontextmanager
async def opened(settings: Settings, *, poll_interval_s: float = 0.1) -> AsyncIterator[Backend]:
    """The local backend, with an explicit cross-process poll interval."""
    async with open_local_backend(settings, poll_interval_s=poll_interval_s) as backend:
        yield backend


async def test_everything_survives_close_and_reopen(local_settings: SettingsFactory) -> None:
    settings = local_settings()
    novel = Novel(novel_id="n1", user_id="u1", title="T", chars=3, text_key="novels/n1/text.txt")
    ref = StoryboardRef(key="storyboards/n1/j1.json", job_id="j1", summary=SUMMARY)
    async with opened(settings) as backend:
        await backend.novels.create(novel)
        await backend.novels.set_latest_storyboard("n1", ref)
        await backend.jobs.create(Job(job_id="j1", novel_id="n1", user_id="u1"))
        started = await backend.jobs.apply("j1", jobs.start(1))
        message_id = await backend.queue.send("body")
        await backend.blobs.put("novels/n1/text.txt", b"abc", content_type="text/plain")

    async with opened(settings) as backend:
        assert await backend.novels.get("n1") == novel.model_copy(update={"latest_storyboard": ref})
        assert await backend.jobs.get("j1") == started
        messages = await backend.queue.receive(max_messages=10, wait_s=0, visibility_s=30)
        assert [(m.message_id, m.body) for m in messages] == [(message_id, "body")]
        assert await backend.blobs.get("novels/n1/text.txt") == b"abc"
    assert (settings.data_dir / "storyboard.db").is_file()
    assert (settings.data_dir / "blobs" / "novels" / "n1" / "text.txt").read_bytes() == b"abc"


ESCAPING_KEYS = [
    "",
    "/etc/passwd",
    "//x",
    "..",
    ".",
    "../x",
    "a/..",
    "a/../../x",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "a\0b",
]


@pytest.mark.parametrize("key", ESCAPING_KEYS)
async def test_blob_keys_that_could_escape_are_refused(
    local_settings: SettingsFactory, key: str
) -> None:
    async with opened(local_settings()) as backend:
        with pytest.raises(ValueError, match="blob key"):
            await backend.blobs.put(key, b"x", content_type="text/plain")
        with pytest.raises(ValueError, match="blob key"):
            await backend.blobs.get(key)
        with pytest.raises(ValueError, match="blob key"):
            await backend.blobs.delete(key)


async def test_a_symlink_out_of_the_blob_dir_is_refused(
    local_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = local_settings()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    async with opened(settings) as backend:
        (settings.data_dir / "blobs" / "link").symlink_to(outside)

        with pytest.raises(ValueError, match="outside"):
            await backend.blobs.put("link/new", b"x", content_type="text/plain")
        with pytest.raises(ValueError, match="outside"):
            await backend.blobs.get("link/secret")
        with pytest.raises(ValueError, match="outside"):
            await backend.blobs.delete("link/secret")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_blob_writes_leave_no_temporary_files(local_settings: SettingsFactory) -> None:
    settings = local_settings()
    async with opened(settings) as backend:
        for n in range(3):
            await backend.blobs.put("a/b", str(n).encode(), content_type="text/plain")
        assert await backend.blobs.get("a/b") == b"2"
    assert [p.name for p in (settings.data_dir / "blobs" / "a").iterdir()] == ["b"]


async def test_a_key_under_an_existing_blob_is_refused(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        await backend.blobs.put("a", b"1", content_type="text/plain")
        with pytest.raises(ValueError, match="blob key"):
            await backend.blobs.put("a/b", b"2", content_type="text/plain")
        with pytest.raises(BlobNotFound):
            await backend.blobs.get("a/b")
        assert await backend.blobs.get("a") == b"1"


async def test_a_corrupt_database_fails_fast_naming_the_file(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings()
    settings.data_dir.mkdir(parents=True)
    database = settings.data_dir / "storyboard.db"
    database.write_bytes(os.urandom(64 * 1024))

    started = time.monotonic()
    with pytest.raises(BackendError, match=re.escape(str(database))) as caught:
        async with opened(settings):
            pass
    assert time.monotonic() - started < 3
    assert "\n" not in str(caught.value)


async def test_a_data_dir_that_cannot_exist_fails_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings(backend="local", data_dir=blocker / "data")

    with pytest.raises(BackendError, match=re.escape(str(blocker / "data"))):
        async with opened(settings):
            pass


async def test_a_database_path_taken_by_a_directory_fails(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings()
    (settings.data_dir / "storyboard.db").mkdir(parents=True)

    with pytest.raises(BackendError, match=re.escape("storyboard.db")):
        async with opened(settings):
            pass


async def test_a_blob_dir_taken_by_a_file_fails(local_settings: SettingsFactory) -> None:
    settings = local_settings()
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "blobs").write_text("not a directory")

    with pytest.raises(BackendError, match=re.escape(str(settings.data_dir / "blobs"))):
        async with opened(settings):
            pass


async def test_a_full_disk_fails_at_start_naming_the_path(
    local_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local_settings()
    async with opened(settings):
        pass  # An existing database opens without writing, so only a free-space check sees it.
    monkeypatch.setattr(local_db, "MIN_FREE_BYTES", 1 << 62)

    with pytest.raises(BackendError, match="bytes free") as caught:
        async with opened(settings):
            pass
    assert str(settings.data_dir) in str(caught.value)


async def test_a_disk_that_fills_up_turns_the_ping_red_until_writes_fit_again(
    tmp_path: Path,
) -> None:
    db = await local_db.Database.open(tmp_path / "storyboard.db")
    store = LocalJobStore(db)
    try:
        await db.ping()
        pages = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        # SQLite's own size limit gives the same SQLITE_FULL as a full disk.
        await db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
        big = Job(job_id="big", novel_id="n", user_id="u" * 200_000)
        with pytest.raises(BackendError, match="full"):
            await store.create(big)
        with pytest.raises(BackendError, match="full"):
            await db.ping()  # a read alone would still answer

        await db.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        await db.ping()
        await store.create(Job(job_id="after", novel_id="n", user_id="u"))
    finally:
        await db.close()


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores directory permissions, so chmod cannot make the data dir read-only",
)
async def test_a_read_only_data_dir_fails_naming_the_path(local_settings: SettingsFactory) -> None:
    settings = local_settings()
    settings.data_dir.mkdir(parents=True)
    settings.data_dir.chmod(0o500)
    try:
        with pytest.raises(BackendError, match=re.escape(str(settings.data_dir))):
            async with opened(settings):
                pass
    finally:
        settings.data_dir.chmod(0o700)


async def test_calls_after_close_raise_backend_error(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        pass
    with pytest.raises(BackendError, match="closed"):
        await backend.queue.send("late")
    with pytest.raises(BackendError, match="closed"):
        await backend.jobs.get("j1")


# --- waking without polling ------------------------------------------------------------


async def test_a_send_wakes_a_waiting_receive_at_once(local_settings: SettingsFactory) -> None:
    # A poll interval far beyond the test's bound: only the in-process wake-up can pass it.
    async with opened(local_settings(), poll_interval_s=30) as backend:
        started = time.monotonic()
        poll = asyncio.create_task(
            backend.queue.receive(max_messages=1, wait_s=10, visibility_s=30)
        )
        await asyncio.sleep(0.2)
        await backend.queue.send("wake up")
        messages = await poll

    assert [m.body for m in messages] == ["wake up"]
    assert time.monotonic() - started < 5


async def test_a_receive_wakes_when_a_hidden_message_reappears(
    local_settings: SettingsFactory,
) -> None:
    async with opened(local_settings(), poll_interval_s=30) as backend:
        await backend.queue.send("again")
        await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=1)

        started = time.monotonic()
        messages = await backend.queue.receive(max_messages=1, wait_s=10, visibility_s=30)

    assert [(m.body, m.receive_count) for m in messages] == [("again", 2)]
    assert 0.5 < time.monotonic() - started < 5


async def test_a_receive_without_wait_returns_at_once(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        started = time.monotonic()
        assert await backend.queue.receive(max_messages=10, wait_s=0, visibility_s=30) == []
        assert time.monotonic() - started < 1


async def test_an_empty_receive_waits_out_its_wait(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        started = time.monotonic()
        assert await backend.queue.receive(max_messages=10, wait_s=0.5, visibility_s=30) == []
        assert 0.45 < time.monotonic() - started < 3


async def test_a_redrive_wakes_a_receive_waiting_on_the_dlq(
    local_settings: SettingsFactory,
) -> None:
    async with opened(local_settings(max_receive_count=1), poll_interval_s=30) as backend:
        await backend.queue.send("poison")
        await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=0)
        started = time.monotonic()
        parked = asyncio.create_task(
            backend.dlq.receive(max_messages=1, wait_s=10, visibility_s=30)
        )
        await asyncio.sleep(0.2)
        assert await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=30) == []
        messages = await parked

    assert [(m.body, m.receive_count) for m in messages] == [("poison", 2)]
    assert time.monotonic() - started < 5


async def test_a_cancelled_receive_hands_its_messages_back(
    local_settings: SettingsFactory,
) -> None:
    async with opened(local_settings()) as backend:
        await backend.queue.send("m")
        poll = asyncio.create_task(backend.queue.receive(max_messages=1, wait_s=5, visibility_s=60))
        await asyncio.sleep(0)  # The receive is now waiting on the database.
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll

        messages = await backend.queue.receive(max_messages=1, wait_s=3, visibility_s=60)
        assert [m.body for m in messages] == ["m"]


# --- receipts: stricter than moto, like SQS in effect ----------------------------------


async def test_an_old_receipt_cannot_touch_a_redelivered_message(
    local_settings: SettingsFactory,
) -> None:
    async with opened(local_settings()) as backend:
        await backend.queue.send("m")
        (first,) = await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=0)
        (second,) = await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=30)

        deleted = await backend.queue.delete_batch([first.receipt])
        extended = await backend.queue.change_visibility_batch([first.receipt], 0)

        assert deleted.failed == {first.receipt: "ReceiptHandleIsInvalid"}
        assert extended.failed == {first.receipt: "ReceiptHandleIsInvalid"}
        assert await backend.queue.depth() == QueueDepth(0, 1)
        assert (await backend.queue.delete_batch([second.receipt])).failed == {}


async def test_a_second_delete_of_a_receipt_fails(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        await backend.queue.send("m")
        (message,) = await backend.queue.receive(max_messages=1, wait_s=0, visibility_s=30)
        assert (await backend.queue.delete_batch([message.receipt, message.receipt])).failed == {}
        again = await backend.queue.delete_batch([message.receipt])
        assert again.failed == {message.receipt: "ReceiptHandleIsInvalid"}


async def test_a_dlq_receipt_does_not_work_on_the_main_queue(
    local_settings: SettingsFactory,
) -> None:
    async with opened(local_settings()) as backend:
        await backend.dlq.send("parked")
        (message,) = await backend.dlq.receive(max_messages=1, wait_s=0, visibility_s=30)
        outcome = await backend.queue.delete_batch([message.receipt])
        assert outcome.failed == {message.receipt: "ReceiptHandleIsInvalid"}
        assert await backend.dlq.depth() == QueueDepth(0, 1)


# --- concurrency -----------------------------------------------------------------------


async def test_concurrent_receivers_never_share_a_message(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        sent = {await backend.queue.send(f"m{n}") for n in range(60)}

        async def drain() -> list[str]:
            taken: list[str] = []
            while batch := await backend.queue.receive(max_messages=3, wait_s=0, visibility_s=60):
                taken += [m.message_id for m in batch]
            return taken

        taken = [i for ids in await asyncio.gather(*(drain() for _ in range(8))) for i in ids]

    assert sorted(taken) == sorted(sent)


async def test_a_failing_write_does_not_undo_concurrent_ones(
    local_settings: SettingsFactory,
) -> None:
    # Concurrent writes share a transaction; one that raises must not take the rest with it.
    invalid = Transition(Guard(frozenset(JobStatus)), {"attempts": "not a number"})
    async with opened(local_settings()) as backend:
        await asyncio.gather(
            *(
                backend.jobs.create(Job(job_id=f"j{n}", novel_id="n", user_id="u"))
                for n in range(20)
            )
        )
        results = await asyncio.gather(
            *(backend.jobs.apply(f"j{n}", jobs.start(1)) for n in range(10)),
            backend.jobs.apply("j10", invalid),
            *(backend.jobs.apply(f"j{n}", jobs.start(1)) for n in range(11, 20)),
            return_exceptions=True,
        )

        assert isinstance(results[10], ValidationError)
        assert all(isinstance(r, Job) and r.status is JobStatus.RUNNING for r in results[:10])
        assert all(isinstance(r, Job) and r.status is JobStatus.RUNNING for r in results[11:])
        untouched = await backend.jobs.get("j10")
        assert untouched is not None
        assert untouched.status is JobStatus.QUEUED


CHILD = """
import asyncio, sys
from pathlib import Path
from service.backends.local import BLOB_DIR, DATABASE_FILE, open_local_backend
from service.backends.local_records import LocalJobStore
from service.settings import Settings

async def main() -> None:
    settings = Settings(backend="local", data_dir=Path(sys.argv[1]))
    async with open_local_backend(settings, poll_interval_s=0.1) as backend:
        print("ready", flush=True)
        messages = await backend.queue.receive(max_messages=1, wait_s=20, visibility_s=60)
        print(messages[0].body if messages else "nothing", flush=True)
        await backend.dlq.send("reply from the child")

asyncio.run(main())
"""


async def test_two_processes_share_one_database(local_settings: SettingsFactory) -> None:
    settings = local_settings()
    async with opened(settings) as backend:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(settings.data_dir),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None
        try:
            ready = await asyncio.wait_for(child.stdout.readline(), timeout=60)
            assert ready == b"ready\n"
            started = time.monotonic()
            await backend.queue.send("hello from the parent")
            received = await asyncio.wait_for(child.stdout.readline(), timeout=20)
            assert received == b"hello from the parent\n"
            assert time.monotonic() - started < 5

            replies = await backend.dlq.receive(max_messages=1, wait_s=20, visibility_s=60)
            assert [m.body for m in replies] == ["reply from the child"]
            assert await asyncio.wait_for(child.wait(), timeout=20) == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()


# --- idempotency keys --------------------------------------------------------------------


async def test_idempotency_keys_survive_reopen_and_expired_ones_are_purged(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings()
    async with opened(settings) as backend:
        await backend.idempotency.claim("u:n", "kept", "job-1", 3600)
        await backend.idempotency.claim("u:n", "brief", "job-2", 1)

    await asyncio.sleep(1.2)
    async with opened(settings) as backend:
        assert await backend.idempotency.claim("u:n", "kept", "job-3", 3600) == "job-1"

    connection = sqlite3.connect(settings.data_dir / "storyboard.db")
    try:
        rows = connection.execute("SELECT scope, key_hash, job_id FROM idempotency").fetchall()
    finally:
        connection.close()
    assert rows == [("u:n", hashlib.sha256(b"kept").hexdigest(), "job-1")]


async def test_a_claim_rejects_a_ttl_under_a_second(local_settings: SettingsFactory) -> None:
    async with opened(local_settings()) as backend:
        with pytest.raises(ValueError, match="ttl_s"):
            await backend.idempotency.claim("u:n", "k", "job-1", 0)


async def test_a_database_made_before_the_list_indexes_gains_them_and_lists_its_records(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings()
    settings.data_dir.mkdir(parents=True)
    novel = Novel(novel_id="n1", user_id="u1", title="T", chars=3, text_key="k")
    job = Job(job_id="j1", novel_id="n1", user_id="u1")
    # The tables as they were, holding records, with none of the indexes.
    with sqlite3.connect(settings.data_dir / DATABASE_FILE) as connection:
        connection.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " attempts INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID"
        )
        connection.execute(
            "CREATE TABLE novels (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID"
        )
        connection.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?)",
            ("j1", "queued", 0, job.model_dump_json(by_alias=True)),
        )
        connection.execute(
            "INSERT INTO novels VALUES (?, ?)", ("n1", novel.model_dump_json(by_alias=True))
        )
    connection.close()

    async with opened(settings) as backend:
        novels = await backend.novels.list_for_user("u1", limit=5)
        listed = await backend.job_catalog.list_for_user("u1", limit=5, novel_id="n1")

    assert novels.items == [novel]
    assert listed.items == [job]
    with sqlite3.connect(settings.data_dir / DATABASE_FILE) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_schema")}
    connection.close()
    assert {"novels_by_user", "jobs_by_user", "jobs_by_novel"} <= names


async def test_a_cancelled_put_has_finished_writing_when_it_returns(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings()
    async with opened(settings) as backend:
        data = os.urandom(32 * 1024 * 1024)
        put = asyncio.create_task(
            backend.blobs.put("checkpoints/j1/a-0.json", data, content_type="application/json")
        )
        await asyncio.sleep(0.01)  # the write is under way in its thread
        put.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await put
        directory = settings.data_dir / BLOB_DIR / "checkpoints" / "j1"
        # No write is left in flight to land after the caller moved on (e.g. an erasure).
        assert [name for name in os.listdir(directory) if name.startswith(".tmp-")] == []
        assert await backend.blobs.get("checkpoints/j1/a-0.json") == data
