"""The port contracts, run against every backend: the local one and AWS (on moto).

Each test states behaviour the service relies on, so it fails on a backend that lacks it.
Visibility timeouts run in real time on both backends; sleeps are kept to a second or two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from service import jobs
from service.backends.backend import Backend
from service.backends.selection import open_backend
from service.errors import AlreadyExists, BlobNotFound
from service.jobs import ErrorInfo, Job, JobStatus, StoryboardSummary, WebhookState
from service.models import utcnow
from service.novels import Novel, StoryboardRef, storyboard_key, text_key
from service.ports import InvalidCursor, Message, Page, PublishingJobStore, Queue, QueueDepth
from tests.conftest import SettingsFactory

MAX_RECEIVE_COUNT = 2
LONG_VISIBILITY_S = 60
UNKNOWN_RECEIPT = "AQEBnot-a-receipt-this-queue-ever-issued=="
SUMMARY = StoryboardSummary(title="T", chapters=1, scenes=2, panels=3, characters=4)
ERROR = ErrorInfo(code="boom", message="it broke")


@pytest.fixture(params=["local", "aws"])
async def backend(
    request: pytest.FixtureRequest, local_settings: SettingsFactory
) -> AsyncIterator[Backend]:
    """An open backend of each kind, with a receive limit of two before the DLQ."""
    if request.param == "local":
        settings = local_settings(max_receive_count=MAX_RECEIVE_COUNT)
    else:
        from service.bootstrap import bootstrap

        aws_settings: SettingsFactory = request.getfixturevalue("aws_settings")
        settings = aws_settings(max_receive_count=MAX_RECEIVE_COUNT)
        await bootstrap(settings)
    async with open_backend(settings) as opened:
        yield opened


async def receive_one(queue: Queue, *, visibility_s: int = LONG_VISIBILITY_S) -> Message:
    """The single message the test expects to be visible now."""
    messages = await queue.receive(max_messages=1, wait_s=2, visibility_s=visibility_s)
    assert len(messages) == 1
    return messages[0]


async def receive_all(queue: Queue, count: int, *, batch: int = 10) -> list[Message]:
    """Exactly ``count`` messages, taken ``batch`` at most per receive."""
    taken: list[Message] = []
    while len(taken) < count:
        messages = await queue.receive(max_messages=batch, wait_s=2, visibility_s=LONG_VISIBILITY_S)
        assert messages, f"only {len(taken)} of {count} messages arrived"
        assert len(messages) <= batch
        taken += messages
    assert len(taken) == count
    return taken


async def nothing_visible(queue: Queue) -> bool:
    """Whether a receive right now finds nothing."""
    return await queue.receive(max_messages=10, wait_s=0, visibility_s=LONG_VISIBILITY_S) == []


# --- queue -----------------------------------------------------------------------------


async def test_send_receive_delete_round_trip(backend: Backend) -> None:
    message_id = await backend.queue.send('{"jobId": "j1"}')

    message = await receive_one(backend.queue)
    assert (message.message_id, message.body, message.receive_count) == (
        message_id,
        '{"jobId": "j1"}',
        1,
    )
    assert await nothing_visible(backend.queue), "a received message must be hidden"

    outcome = await backend.queue.delete_batch([message.receipt])
    assert outcome.failed == {}
    assert await backend.queue.depth() == QueueDepth(0, 0)


async def test_receive_returns_at_most_max_messages(backend: Backend) -> None:
    for n in range(5):
        await backend.queue.send(f"m{n}")

    first = await backend.queue.receive(max_messages=2, wait_s=2, visibility_s=60)
    assert 1 <= len(first) <= 2
    rest = await receive_all(backend.queue, 5 - len(first), batch=2)

    assert sorted(m.body for m in first + rest) == [f"m{n}" for n in range(5)]


async def test_receive_waits_for_a_message_sent_during_the_poll(backend: Backend) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(backend.queue.receive(max_messages=1, wait_s=8, visibility_s=60))
    await asyncio.sleep(0.3)
    await backend.queue.send("late")

    messages = await poll
    assert [m.body for m in messages] == ["late"]
    assert time.monotonic() - started < 5


async def test_expired_visibility_redelivers_with_a_new_receipt(backend: Backend) -> None:
    message_id = await backend.queue.send("again")
    first = await receive_one(backend.queue, visibility_s=1)
    assert await nothing_visible(backend.queue)

    await asyncio.sleep(1.5)
    second = await receive_one(backend.queue)

    assert second.message_id == message_id
    assert second.receive_count == 2
    assert second.receipt != first.receipt


async def test_message_moves_to_the_dlq_after_max_receive_count(backend: Backend) -> None:
    message_id = await backend.queue.send("poison")
    for count in range(1, MAX_RECEIVE_COUNT + 1):
        message = await receive_one(backend.queue)
        assert message.receive_count == count
        assert (await backend.queue.change_visibility_batch([message.receipt], 0)).failed == {}
    await asyncio.sleep(0.05)  # moto compares visibility in whole milliseconds

    assert await nothing_visible(backend.queue), "a third delivery must go to the DLQ instead"
    parked = await receive_one(backend.dlq)
    assert (parked.message_id, parked.body) == (message_id, "poison")
    # The count travels with the message: the DLQ's delivery is its third.
    assert parked.receive_count == MAX_RECEIVE_COUNT + 1
    assert await backend.queue.depth() == QueueDepth(0, 0)


async def test_batch_delete_fails_only_the_bad_receipts(backend: Backend) -> None:
    for body in ("a", "b", "c"):
        await backend.queue.send(body)
    a, b, c = sorted(await receive_all(backend.queue, 3), key=lambda m: m.body)

    outcome = await backend.queue.delete_batch([a.receipt, UNKNOWN_RECEIPT, b.receipt])

    assert outcome.failed == {UNKNOWN_RECEIPT: "ReceiptHandleIsInvalid"}
    assert await backend.queue.depth() == QueueDepth(0, 1)
    assert (await backend.queue.delete_batch([c.receipt])).failed == {}
    assert await backend.queue.depth() == QueueDepth(0, 0)


async def test_visibility_zero_makes_a_message_receivable_at_once(backend: Backend) -> None:
    first = await receive_one_sent(backend, "now")
    assert await nothing_visible(backend.queue)

    outcome = await backend.queue.change_visibility_batch([first.receipt], 0)

    assert outcome.failed == {}
    again = await receive_one(backend.queue)
    assert (again.message_id, again.receive_count) == (first.message_id, 2)


async def test_extending_a_deleted_message_fails_for_its_receipt(backend: Backend) -> None:
    deleted = await receive_one_sent(backend, "gone")
    kept = await receive_one_sent(backend, "kept")
    await backend.queue.delete_batch([deleted.receipt])

    outcome = await backend.queue.change_visibility_batch([deleted.receipt, kept.receipt], 30)

    assert set(outcome.failed) == {deleted.receipt}
    assert outcome.failed[deleted.receipt] in {"ReceiptHandleIsInvalid", "MessageNotInflight"}


async def test_extending_keeps_a_message_hidden_past_its_first_timeout(backend: Backend) -> None:
    await backend.queue.send("slow")
    message = await receive_one(backend.queue, visibility_s=1)

    assert (await backend.queue.change_visibility_batch([message.receipt], 10)).failed == {}
    await asyncio.sleep(1.5)

    assert await nothing_visible(backend.queue)
    assert await backend.queue.depth() == QueueDepth(0, 1)


async def test_batches_of_more_than_ten_receipts(backend: Backend) -> None:
    for n in range(12):
        await backend.queue.send(f"m{n}")
    receipts = [m.receipt for m in await receive_all(backend.queue, 12)]

    extended = await backend.queue.change_visibility_batch([*receipts, UNKNOWN_RECEIPT], 30)
    deleted = await backend.queue.delete_batch([*receipts, UNKNOWN_RECEIPT])

    assert set(extended.failed) == {UNKNOWN_RECEIPT}
    assert set(deleted.failed) == {UNKNOWN_RECEIPT}
    assert await backend.queue.depth() == QueueDepth(0, 0)


async def test_depth_counts_visible_and_in_flight_messages(backend: Backend) -> None:
    assert await backend.queue.depth() == QueueDepth(0, 0)
    for body in ("a", "b", "c"):
        await backend.queue.send(body)
    assert await backend.queue.depth() == QueueDepth(3, 0)

    await receive_one(backend.queue)

    assert await backend.queue.depth() == QueueDepth(2, 1)
    assert await backend.dlq.depth() == QueueDepth(0, 0)


# --- message attributes --------------------------------------------------------------

TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "vendor=value",
}


async def test_attributes_come_back_on_every_delivery_and_through_the_redrive(
    backend: Backend,
) -> None:
    await backend.queue.send("traced", group="alice", attributes=TRACE)
    await backend.queue.send("plain")

    received = {m.body: m for m in await receive_all(backend.queue, 2, batch=10)}
    assert dict(received["traced"].attributes) == TRACE
    assert dict(received["plain"].attributes) == {}
    assert received["traced"].group == "alice"
    await backend.queue.change_visibility_batch([received["traced"].receipt], 0)
    await asyncio.sleep(0.05)  # moto compares visibility in whole milliseconds
    again = await receive_one(backend.queue)
    assert (again.receive_count, dict(again.attributes)) == (2, TRACE)
    await backend.queue.change_visibility_batch([again.receipt], 0)
    await asyncio.sleep(0.05)

    # A third delivery is a move to the DLQ, which keeps the attributes as SQS's redrive does.
    assert await nothing_visible(backend.queue)
    parked = await receive_one(backend.dlq)
    assert (parked.body, dict(parked.attributes)) == ("traced", TRACE)


async def test_ten_attributes_are_taken_and_an_eleventh_is_refused(backend: Backend) -> None:
    ten = {f"a{i}": f"value {i} · ✓" for i in range(10)}
    await backend.queue.send("full", attributes=ten)
    assert dict((await receive_one(backend.queue)).attributes) == ten

    with pytest.raises(ValueError, match="at most 10"):
        await backend.queue.send("too many", attributes={**ten, "a10": "x"})
    with pytest.raises(ValueError, match="must not be empty"):
        await backend.queue.send("empty", attributes={"traceparent": ""})
    assert await nothing_visible(backend.queue)


# --- fair sharing between groups ---------------------------------------------------------


async def test_a_message_keeps_its_group_through_receive_and_the_dlq(backend: Backend) -> None:
    await backend.queue.send("grouped", group="alice")
    await backend.queue.send("ungrouped")

    received = {m.body: m.group for m in await receive_all(backend.queue, 2)}

    assert received == {"grouped": "alice", "ungrouped": None}
    await backend.dlq.send("parked", group="bob")
    assert (await receive_one(backend.dlq)).group == "bob"


async def test_a_quiet_group_is_served_before_a_busy_groups_backlog(backend: Backend) -> None:
    for i in range(12):
        await backend.queue.send(f"busy-{i}", group="busy")
    started = await receive_all(backend.queue, 4, batch=4)
    await backend.queue.send("quiet-0", group="quiet")

    (taken,) = await backend.queue.receive(max_messages=1, wait_s=2, visibility_s=60)

    assert {m.group for m in started} == {"busy"}
    if backend.name == "aws":
        # moto stores the group but does not reorder; what can be checked is that it was sent.
        assert taken.group == "busy"
    else:
        assert (taken.body, taken.group) == ("quiet-0", "quiet")


async def test_one_batch_is_shared_evenly_between_waiting_groups(backend: Backend) -> None:
    for group in ("a", "b"):
        for i in range(8):
            await backend.queue.send(f"{group}-{i}", group=group)

    batch = await backend.queue.receive(max_messages=10, wait_s=2, visibility_s=60)

    groups = [m.group for m in batch]
    if backend.name == "local":
        assert groups.count("a") == groups.count("b") == 5
        # Each group's own messages still come oldest first.
        assert [m.body for m in batch if m.group == "a"] == [f"a-{i}" for i in range(5)]
    else:
        assert set(groups) <= {"a", "b"}


async def test_every_ungrouped_message_is_a_group_of_its_own(backend: Backend) -> None:
    for i in range(6):
        await backend.queue.send(f"busy-{i}", group="busy")
    await receive_all(backend.queue, 3, batch=3)
    await backend.queue.send("loose-0")
    await backend.queue.send("loose-1")

    batch = await receive_all(backend.queue, 3, batch=3)

    if backend.name == "local":
        # Nothing in flight for either loose message, three for the busy group.
        assert [m.body for m in batch] == ["loose-0", "loose-1", "busy-3"]
    else:
        assert {m.group for m in batch} <= {"busy", None}


async def receive_one_sent(backend: Backend, body: str) -> Message:
    """Send ``body`` and receive it."""
    await backend.queue.send(body)
    message = await receive_one(backend.queue)
    assert message.body == body
    return message


# --- job store -------------------------------------------------------------------------


def new_job(job_id: str = "job-1") -> Job:
    """A freshly submitted job."""
    return Job(job_id=job_id, novel_id="novel-1", user_id="user-1")


async def test_job_create_and_get(backend: Backend) -> None:
    job = new_job()
    await backend.jobs.create(job)

    assert await backend.jobs.get(job.job_id) == job
    assert await backend.jobs.get("no-such-job") is None


async def test_job_create_refuses_a_taken_id(backend: Backend) -> None:
    await backend.jobs.create(new_job())

    with pytest.raises(AlreadyExists):
        await backend.jobs.create(new_job().model_copy(update={"user_id": "someone-else"}))
    stored = await backend.jobs.get("job-1")
    assert stored is not None
    assert stored.user_id == "user-1"


async def test_every_write_makes_the_version_one_larger(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    versions = [(await backend.jobs.get("job-1") or new_job()).version]
    for transition in (jobs.start(1), jobs.progress(1, 40, "halfway"), jobs.complete(1, None)):
        written = await backend.jobs.apply("job-1", transition)
        assert written is not None
        versions.append(written.version)
    refused = await backend.jobs.apply("job-1", jobs.progress(1, 50, "late"))
    stored = await backend.jobs.get("job-1")
    assert refused is None
    assert versions == [1, 2, 3, 4]
    assert stored is not None
    assert stored.version == 4  # a refused write changes nothing


async def test_get_many_reads_every_job_and_names_the_missing(backend: Backend) -> None:
    ids = [f"job-{n:03}" for n in range(230)]  # more than two BatchGetItem calls' worth
    await asyncio.gather(*(backend.jobs.create(new_job(job_id)) for job_id in ids))

    found = await backend.jobs.get_many([*ids, "no-such-job", "job-001"])

    assert set(found) == {*ids, "no-such-job"}
    assert found["no-such-job"] is None
    assert all(
        job is not None and job.job_id == job_id for job_id, job in found.items() if job_id in ids
    )
    assert await backend.jobs.get_many([]) == {}


async def test_apply_on_a_missing_job_returns_none(backend: Backend) -> None:
    assert await backend.jobs.apply("no-such-job", jobs.start(1)) is None
    assert await backend.jobs.get("no-such-job") is None


async def test_start_takes_the_job_once_per_attempt(backend: Backend) -> None:
    await backend.jobs.create(new_job())

    started = await backend.jobs.apply("job-1", jobs.start(1))
    assert started is not None
    assert (started.status, started.attempts) == (JobStatus.RUNNING, 1)
    assert started.progress.stage == "started"

    assert await backend.jobs.apply("job-1", jobs.start(1)) is None, "a stale delivery"
    retaken = await backend.jobs.apply("job-1", jobs.start(2))
    assert retaken is not None
    assert (retaken.status, retaken.attempts) == (JobStatus.RUNNING, 2)
    assert await backend.jobs.get("job-1") == retaken


async def test_only_the_owning_attempt_reports_and_completes(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    await backend.jobs.apply("job-1", jobs.start(1))
    await backend.jobs.apply("job-1", jobs.start(2))
    before = await backend.jobs.get("job-1")

    assert await backend.jobs.apply("job-1", jobs.progress(1, 50, "analyzing")) is None
    key = storyboard_key("novel-1", "job-1", 1)
    assert await backend.jobs.apply("job-1", jobs.complete(1, key, SUMMARY.to_doc())) is None
    assert await backend.jobs.apply("job-1", jobs.fail(1, ERROR)) is None
    assert await backend.jobs.get("job-1") == before

    progressed = await backend.jobs.apply("job-1", jobs.progress(2, 50, "analyzing"))
    assert progressed is not None
    assert (progressed.progress.percentage, progressed.progress.stage) == (50, "analyzing")
    completed = await backend.jobs.apply("job-1", jobs.complete(2, key, SUMMARY.to_doc()))
    assert completed is not None
    assert (completed.status, completed.result_key, completed.summary) == (
        JobStatus.COMPLETED,
        key,
        SUMMARY.to_doc(),
    )
    assert await backend.jobs.get("job-1") == completed


async def test_a_completed_job_is_never_started_again(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    await backend.jobs.apply("job-1", jobs.start(1))
    completed = await backend.jobs.apply("job-1", jobs.complete(1, "k", SUMMARY.to_doc()))

    assert await backend.jobs.apply("job-1", jobs.start(2)) is None
    assert await backend.jobs.apply("job-1", jobs.fail(1, ERROR)) is None
    assert await backend.jobs.get("job-1") == completed


async def test_a_retryable_failure_waits_for_the_next_attempt(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    await backend.jobs.apply("job-1", jobs.start(1))

    later = utcnow() + timedelta(seconds=60)
    requeued = await backend.jobs.apply("job-1", jobs.retry_later(1, ERROR, later))
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.error) == (JobStatus.RETRYING, 1, ERROR)
    assert requeued.next_attempt_at == later
    assert await backend.jobs.apply("job-1", jobs.progress(1, 20, "late")) is None

    retried = await backend.jobs.apply("job-1", jobs.start(2))
    assert retried is not None
    assert (retried.status, retried.attempts) == (JobStatus.RUNNING, 2)
    completed = await backend.jobs.apply("job-1", jobs.complete(2, "k", SUMMARY.to_doc()))
    assert completed is not None
    assert completed.error is None, "completion clears the earlier error"
    assert completed.next_attempt_at is None


async def test_release_cancel_and_requeue(backend: Backend) -> None:
    for job_id in ("released", "cancelled", "dead"):
        await backend.jobs.create(new_job(job_id))
        await backend.jobs.apply(job_id, jobs.start(1))
    released = await backend.jobs.apply("released", jobs.release(1))
    assert released is not None
    # Handing the job back takes its attempt back: a shutdown is not a failed run.
    assert (released.status, released.attempts) == (JobStatus.QUEUED, 0)
    assert await backend.jobs.apply("released", jobs.start(1)) is None  # same delivery: stale
    assert await backend.jobs.apply("released", jobs.start(2)) is not None

    cancelled = await backend.jobs.apply("cancelled", jobs.cancel())
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert await backend.jobs.apply("cancelled", jobs.progress(1, 60, "late")) is None
    assert await backend.jobs.apply("cancelled", jobs.start(2)) is None
    assert await backend.jobs.apply("cancelled", jobs.requeue()) is None

    assert await backend.jobs.apply("dead", jobs.exhausted(ERROR)) is not None
    again = await backend.jobs.apply("dead", jobs.requeue())
    assert again is not None
    assert (again.status, again.attempts, again.error) == (JobStatus.QUEUED, 0, None)
    assert await backend.jobs.apply("dead", jobs.start(1)) is not None


async def test_a_final_failure_ends_the_job(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    await backend.jobs.apply("job-1", jobs.start(1))

    failed = await backend.jobs.apply("job-1", jobs.fail(1, ERROR))
    assert failed is not None
    assert (failed.status, failed.error) == (JobStatus.FAILED, ERROR)
    assert await backend.jobs.apply("job-1", jobs.start(2)) is None


async def test_webhook_state_only_moves_forward_on_an_ended_job(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    pending = jobs.webhook(WebhookState(status="pending"))
    assert await backend.jobs.apply("job-1", pending) is None  # a live job has no end event
    await backend.jobs.apply("job-1", jobs.start(1))
    done = await backend.jobs.apply("job-1", jobs.complete(1, "key"))
    assert done is not None
    assert await backend.jobs.apply("job-1", pending) is not None
    assert await backend.jobs.apply("job-1", pending) is None  # only where there is none

    second = WebhookState(status="retrying", attempts=2, last_error="HTTP 500")
    after = await backend.jobs.apply("job-1", jobs.webhook(second))
    assert after is not None
    assert after.webhook == second
    # The job's own record is left as it was, its updatedAt included.
    assert (after.status, after.updated_at, after.result_key) == (
        JobStatus.COMPLETED,
        done.updated_at,
        "key",
    )
    first = WebhookState(status="retrying", attempts=1, last_error="late")
    assert await backend.jobs.apply("job-1", jobs.webhook(first)) is None  # an older attempt

    delivered = WebhookState(status="delivered", attempts=3)
    assert await backend.jobs.apply("job-1", jobs.webhook(delivered)) is not None
    failed = WebhookState(status="failed", attempts=3, last_error="after the fact")
    assert await backend.jobs.apply("job-1", jobs.webhook(failed)) is None  # final stays final
    stored = await backend.jobs.get("job-1")
    assert stored is not None
    assert stored.webhook == delivered


async def test_abandon_applies_only_to_a_never_started_job(backend: Backend) -> None:
    await backend.jobs.create(new_job("fresh"))
    await backend.jobs.create(new_job("running"))
    await backend.jobs.create(new_job("requeued"))
    await backend.jobs.apply("running", jobs.start(1))
    await backend.jobs.apply("requeued", jobs.start(1))
    await backend.jobs.apply("requeued", jobs.retry_later(1, ERROR, utcnow()))

    abandoned = await backend.jobs.apply("fresh", jobs.abandon(ERROR))
    assert abandoned is not None
    assert (abandoned.status, abandoned.error) == (JobStatus.FAILED, ERROR)
    assert await backend.jobs.apply("running", jobs.abandon(ERROR)) is None
    assert await backend.jobs.apply("requeued", jobs.abandon(ERROR)) is None
    assert await backend.jobs.apply("fresh", jobs.abandon(ERROR)) is None


# --- novel store -----------------------------------------------------------------------


def new_novel() -> Novel:
    """An uploaded novel without a storyboard yet."""
    return Novel(
        novel_id="novel-1", user_id="user-1", title="T", chars=42, text_key=text_key("novel-1")
    )


async def test_novel_create_get_and_duplicate(backend: Backend) -> None:
    novel = new_novel()
    await backend.novels.create(novel)

    assert await backend.novels.get("novel-1") == novel
    assert await backend.novels.get("no-such-novel") is None
    with pytest.raises(AlreadyExists):
        await backend.novels.create(novel.model_copy(update={"title": "Other"}))
    assert await backend.novels.get("novel-1") == novel


async def test_set_latest_storyboard_points_the_novel_at_it(backend: Backend) -> None:
    novel = new_novel()
    await backend.novels.create(novel)
    first = StoryboardRef(key=storyboard_key("novel-1", "j1", 1), job_id="j1", summary=SUMMARY)
    second = StoryboardRef(key=storyboard_key("novel-1", "j2", 1), job_id="j2", summary=SUMMARY)

    await backend.novels.set_latest_storyboard("novel-1", first)
    await backend.novels.set_latest_storyboard("novel-1", second)

    assert await backend.novels.get("novel-1") == novel.model_copy(
        update={"latest_storyboard": second}
    )


async def test_an_older_storyboard_never_replaces_a_newer_one(backend: Backend) -> None:
    novel = Novel(novel_id="novel-1", user_id="u", title="T", chars=1, text_key="k")
    await backend.novels.create(novel)
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    older = StoryboardRef(key="a", job_id="j1", summary=SUMMARY, created_at=early)
    newer = StoryboardRef(key="b", job_id="j2", summary=SUMMARY, created_at=late)

    assert await backend.novels.set_latest_storyboard("novel-1", newer)
    assert not await backend.novels.set_latest_storyboard("novel-1", older)
    assert await backend.novels.set_latest_storyboard("novel-1", newer), "idempotent"

    stored = await backend.novels.get("novel-1")
    assert stored is not None
    assert stored.latest_storyboard == newer


async def test_attempts_count_starts_not_deliveries(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    await backend.jobs.apply("job-1", jobs.start(1))
    assert await backend.jobs.apply("job-1", jobs.start(1)) is None  # a duplicate
    await backend.jobs.apply("job-1", jobs.release(1))  # a shutdown hands it back
    again = await backend.jobs.apply("job-1", jobs.start(3))  # receive 2 never started it

    assert again is not None
    assert (again.attempts, again.delivery) == (1, 3)
    assert await backend.jobs.apply("job-1", jobs.progress(1, 50, "stale")) is None
    assert await backend.jobs.apply("job-1", jobs.progress(3, 50, "owner")) is not None


async def test_set_latest_storyboard_never_creates_a_novel(backend: Backend) -> None:
    ref = StoryboardRef(key=storyboard_key("ghost", "j1", 1), job_id="j1", summary=SUMMARY)

    await backend.novels.set_latest_storyboard("ghost", ref)

    assert await backend.novels.get("ghost") is None


async def test_the_newest_job_is_the_novels_latest(backend: Backend) -> None:
    await backend.novels.create(new_novel())
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)

    assert await backend.novels.set_latest_job("novel-1", "j2", late)
    assert not await backend.novels.set_latest_job("novel-1", "j1", early), "older loses"
    assert await backend.novels.set_latest_job("novel-1", "j2", late), "idempotent"

    stored = await backend.novels.get("novel-1")
    assert stored is not None
    assert (stored.latest_job_id, stored.latest_job_at) == ("j2", late)
    assert stored.latest_storyboard is None
    assert await backend.novels.set_latest_job("novel-1", "j3", late + timedelta(seconds=1))
    again = await backend.novels.get("novel-1")
    assert again is not None
    assert again.latest_job_id == "j3"


async def test_set_latest_job_never_creates_a_novel(backend: Backend) -> None:
    assert not await backend.novels.set_latest_job("ghost", "j1", utcnow())

    assert await backend.novels.get("ghost") is None


# --- lists -----------------------------------------------------------------------------

T = TypeVar("T")
BASE = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


async def every_page(
    fetch: Callable[[str | None], Awaitable[Page[T]]], *, limit: int
) -> list[list[T]]:
    """Every page of a list, following its cursors from the first page."""
    pages: list[list[T]] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        assert len(page.items) <= limit
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        assert page.items, "a page with a next cursor must not be empty"
        cursor = page.next_cursor


async def add_novels(backend: Backend, user_id: str, count: int) -> list[Novel]:
    """``count`` novels; every third shares its createdAt with the one before it."""
    novels = []
    for n in range(count):
        at = BASE + timedelta(seconds=n - (n % 3 == 2))
        novel = Novel(
            novel_id=f"{user_id}-novel-{n:02d}",
            user_id=user_id,
            title=f"T{n}",
            chars=n,
            text_key=text_key(f"n{n}"),
            created_at=at,
        )
        await backend.novels.create(novel)
        novels.append(novel)
    return novels


def newest_first(records: list[Any], id_of: Callable[[Any], str]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.created_at, id_of(r)), reverse=True)
    return [id_of(record) for record in ordered]


async def test_novels_list_newest_first_in_pages_that_cover_each_once(backend: Backend) -> None:
    mine = await add_novels(backend, "user-1", 8)
    await add_novels(backend, "user-2", 3)

    def fetch(cursor: str | None) -> Awaitable[Page[Novel]]:
        return backend.novels.list_for_user("user-1", limit=3, after=cursor)

    pages = await every_page(fetch, limit=3)

    assert [len(page) for page in pages] == [3, 3, 2]
    listed = [novel.novel_id for page in pages for novel in page]
    assert listed == newest_first(mine, lambda n: n.novel_id)
    assert pages[0][0] == mine[-1]  # whole records, as stored
    one_page = await backend.novels.list_for_user("user-1", limit=100)
    assert [n.novel_id for n in one_page.items] == listed
    assert one_page.next_cursor is None
    exact = await backend.novels.list_for_user("user-2", limit=3)
    assert len(exact.items) == 3
    assert exact.next_cursor is None, "a full last page has no next cursor"
    assert (await backend.novels.list_for_user("nobody", limit=5)) == Page([], None)


async def add_jobs(backend: Backend) -> list[Job]:
    """Jobs of two users over two novels, in several statuses and two types."""
    made = []
    for n in range(9):
        job = Job(
            job_id=f"job-{n:02d}",
            novel_id="novel-a" if n % 2 else "novel-b",
            user_id="user-1" if n < 7 else "user-2",
            type="internal" if n == 4 else "analyze",
            created_at=BASE + timedelta(milliseconds=n * 10 - (n == 6) * 10),
        )
        await backend.jobs.create(job)
        if n % 3 == 0:
            await backend.jobs.apply(job.job_id, jobs.cancel())
        made.append(job)
    return made


async def test_jobs_list_with_filters_pages_and_isolation(backend: Backend) -> None:
    made = await add_jobs(backend)
    catalog = backend.job_catalog

    async def listed(limit: int = 2, **filters: Any) -> list[str]:
        def fetch(cursor: str | None) -> Awaitable[Page[Job]]:
            return catalog.list_for_user("user-1", limit=limit, after=cursor, **filters)

        pages = await every_page(fetch, limit=limit)
        return [job.job_id for page in pages for job in page]

    def expected(keep: Callable[[Job], bool]) -> list[str]:
        return newest_first(
            [j for j in made if j.user_id == "user-1" and keep(j)], lambda j: j.job_id
        )

    assert await listed() == expected(lambda j: True)
    assert await listed(novel_id="novel-a") == expected(lambda j: j.novel_id == "novel-a")
    cancelled = {f"job-{n:02d}" for n in (0, 3, 6)}
    assert await listed(status=JobStatus.CANCELLED) == expected(lambda j: j.job_id in cancelled)
    assert await listed(
        limit=1, status=JobStatus.QUEUED, novel_id="novel-b", types=["analyze"]
    ) == (
        expected(
            lambda j: j.novel_id == "novel-b" and j.job_id not in cancelled and j.type == "analyze"
        )
    )
    assert await listed(types=["analyze"]) == expected(lambda j: j.type == "analyze")
    assert await listed(types=[]) == []
    other = await catalog.list_for_user("user-2", limit=10)
    assert [j.job_id for j in other.items] == ["job-08", "job-07"]
    page = (await catalog.list_for_user("user-1", limit=10, status=JobStatus.CANCELLED)).items
    assert all(job.status is JobStatus.CANCELLED for job in page)


async def test_a_cursor_works_only_for_the_list_that_issued_it(backend: Backend) -> None:
    await add_jobs(backend)
    await add_novels(backend, "user-1", 3)
    catalog = backend.job_catalog
    first = await catalog.list_for_user("user-1", limit=2, novel_id="novel-a")
    cursor = first.next_cursor
    assert cursor is not None
    novels_cursor = (await backend.novels.list_for_user("user-1", limit=1)).next_cursor
    assert novels_cursor is not None
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")

    for bad in ("", "not a cursor", "%%%%", "e30", tampered, "ä" * 10, cursor * 20):
        with pytest.raises(InvalidCursor):
            await catalog.list_for_user("user-1", limit=2, novel_id="novel-a", after=bad)
    with pytest.raises(InvalidCursor):  # another user's
        await catalog.list_for_user("user-2", limit=2, novel_id="novel-a", after=cursor)
    with pytest.raises(InvalidCursor):  # other filters
        await catalog.list_for_user("user-1", limit=2, after=cursor)
    with pytest.raises(InvalidCursor):  # another kind of list
        await catalog.list_for_user("user-1", limit=2, after=novels_cursor)
    with pytest.raises(InvalidCursor):
        await backend.novels.list_for_user("user-1", limit=2, after=cursor)
    with pytest.raises(InvalidCursor):
        await backend.novels.list_for_user("user-2", limit=2, after=novels_cursor)
    again = await catalog.list_for_user("user-1", limit=2, novel_id="novel-a", after=cursor)
    assert again.items
    assert {j.job_id for j in again.items}.isdisjoint(j.job_id for j in first.items)


# --- erasure ---------------------------------------------------------------------------


async def test_a_deleted_job_is_gone_from_reads_and_lists(backend: Backend) -> None:
    await backend.jobs.create(new_job("job-1"))
    await backend.jobs.create(new_job("job-2"))

    assert await backend.job_catalog.delete("job-1")
    assert not await backend.job_catalog.delete("job-1"), "deleting twice finds nothing"
    assert await backend.jobs.get("job-1") is None
    assert await backend.jobs.apply("job-1", jobs.start(1)) is None
    assert await backend.jobs.get("job-1") is None, "a guarded write never recreates it"
    listed = await backend.job_catalog.list_for_user("user-1", limit=10)
    assert [job.job_id for job in listed.items] == ["job-2"]


async def test_one_claim_of_a_novels_deletion_wins(backend: Backend) -> None:
    await backend.novels.create(new_novel())
    at = utcnow()
    stale = at - timedelta(minutes=2)

    claims = await asyncio.gather(
        *(backend.novels.claim_deletion("novel-1", at, stale_before=stale) for _ in range(10))
    )

    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    assert winners[0].deleting_at == at
    assert await backend.novels.claim_deletion("ghost", at, stale_before=stale) is None
    assert not await backend.novels.set_latest_job("novel-1", "j1", at), "no new jobs now"
    assert (await backend.novels.list_for_user("user-1", limit=5)).items == []
    # A claim older than stale_before was abandoned: a later erasure takes it over.
    later = at + timedelta(minutes=5)
    taken = await backend.novels.claim_deletion("novel-1", later, stale_before=stale)
    assert taken is None, "a live claim keeps others out"
    taken = await backend.novels.claim_deletion("novel-1", later, stale_before=at + timedelta(1))
    assert taken is not None
    assert taken.deleting_at == later


async def test_a_released_claim_leaves_the_novel_as_it_was(backend: Backend) -> None:
    novel = new_novel()
    await backend.novels.create(novel)
    at = utcnow()
    stale = at - timedelta(minutes=2)
    assert await backend.novels.claim_deletion("novel-1", at, stale_before=stale) is not None

    await backend.novels.release_deletion("novel-1", at - timedelta(seconds=1))  # not ours
    assert await backend.novels.claim_deletion("novel-1", at, stale_before=stale) is None
    await backend.novels.release_deletion("novel-1", at)

    assert await backend.novels.get("novel-1") == novel
    assert await backend.novels.set_latest_job("novel-1", "j1", at)
    assert len((await backend.novels.list_for_user("user-1", limit=5)).items) == 1


async def test_a_deleted_novel_is_gone(backend: Backend) -> None:
    await backend.novels.create(new_novel())

    assert await backend.novels.delete("novel-1")
    assert not await backend.novels.delete("novel-1")
    assert await backend.novels.get("novel-1") is None
    assert not await backend.novels.set_latest_job("novel-1", "j1", utcnow())
    ref = StoryboardRef(key="k", job_id="j1", summary=SUMMARY)
    assert not await backend.novels.set_latest_storyboard("novel-1", ref)
    assert await backend.novels.get("novel-1") is None
    assert (await backend.novels.list_for_user("user-1", limit=5)).items == []


# --- blob store ------------------------------------------------------------------------


async def test_blob_put_get_overwrite_delete(backend: Backend) -> None:
    key = storyboard_key("novel-1", "job-1", 1)
    data = bytes(range(256)) * 4

    await backend.blobs.put(key, data, content_type="application/octet-stream")
    assert await backend.blobs.get(key) == data

    await backend.blobs.put(key, b"{}", content_type="application/json")
    assert await backend.blobs.get(key) == b"{}"

    await backend.blobs.delete(key)
    with pytest.raises(BlobNotFound):
        await backend.blobs.get(key)
    await backend.blobs.delete(key)  # deleting again is not an error


async def test_a_prefix_lists_and_deletes_exactly_the_keys_it_starts(backend: Backend) -> None:
    keys = [
        storyboard_key("n1", "j1", 1),
        storyboard_key("n1", "j2", 1),
        storyboard_key("n10", "j3", 1),
        "checkpoints/j1/a-0.json",
        "checkpoints/j1/b-0.json",
        "checkpoints/j10/a-0.json",
        "novels/n1/text.txt",
    ]
    for key in keys:
        await backend.blobs.put(key, key.encode(), content_type="application/json")

    assert sorted(await backend.blobs.list_keys("storyboards/n1/")) == keys[:2]
    assert sorted(await backend.blobs.list_keys("checkpoints/j1")) == keys[3:6], "text prefix"
    assert await backend.blobs.delete_prefix("storyboards/n1/") == 2
    assert await backend.blobs.delete_prefix("checkpoints/j1/") == 2
    assert await backend.blobs.delete_prefix("checkpoints/j1/") == 0
    assert await backend.blobs.list_keys("storyboards/n1/") == []
    assert await backend.blobs.list_keys("no-such-prefix/") == []
    for key in keys[:2] + keys[3:5]:
        with pytest.raises(BlobNotFound):
            await backend.blobs.get(key)
    for key in (keys[2], keys[5], keys[6]):
        assert await backend.blobs.get(key) == key.encode()
    with pytest.raises(ValueError, match="empty prefix"):
        await backend.blobs.delete_prefix("")
    # A key can be written again under an emptied prefix.
    await backend.blobs.put(keys[0], b"again", content_type="application/json")
    assert await backend.blobs.list_keys("storyboards/n1/") == [keys[0]]


async def test_missing_blob_raises_blob_not_found(backend: Backend) -> None:
    with pytest.raises(BlobNotFound):
        await backend.blobs.get("novels/no-such-novel/text.txt")


async def test_every_probe_answers(backend: Backend) -> None:
    assert backend.probes
    for probe in backend.probes:
        await probe.ping()


# --- user quotas -----------------------------------------------------------------------


async def test_slots_are_granted_up_to_the_limit(backend: Backend) -> None:
    at = utcnow()
    grants = [await backend.quotas.acquire("u1", f"j{n}", limit=3, at=at) for n in range(4)]

    assert [(grant.granted, grant.held) for grant in grants] == [
        (True, 1),
        (True, 2),
        (True, 3),
        (False, 3),
    ]
    assert await backend.quotas.held("u1") == {f"j{n}": at for n in range(3)}
    assert await backend.quotas.held("u2") == {}, "users are counted apart"


async def test_a_job_holding_a_slot_takes_it_again_without_a_second(backend: Backend) -> None:
    at = utcnow()
    assert (await backend.quotas.acquire("u1", "j1", limit=2, at=at)).granted
    assert (await backend.quotas.acquire("u1", "j2", limit=2, at=at)).granted

    again = await backend.quotas.acquire("u1", "j1", limit=2, at=at + timedelta(seconds=5))

    assert (again.granted, again.held) == (True, 2), "a full quota still admits its own job"
    assert await backend.quotas.held("u1") == {"j1": at, "j2": at}


async def test_a_release_frees_only_its_own_slot_however_often_it_comes(backend: Backend) -> None:
    at = utcnow()
    for job_id in ("j1", "j2"):
        await backend.quotas.acquire("u1", job_id, limit=2, at=at)

    for _ in range(3):
        await backend.quotas.release("u1", "j1")
    await backend.quotas.release("u1", "never-held")
    await backend.quotas.release("nobody", "j1")

    assert await backend.quotas.held("u1") == {"j2": at}
    assert (await backend.quotas.acquire("u1", "j3", limit=2, at=at)).granted
    assert not (await backend.quotas.acquire("u1", "j4", limit=2, at=at)).granted


async def test_concurrent_takes_never_exceed_the_limit(backend: Backend) -> None:
    # A user's first takes race to create the record too: each round is a new user.
    for round_number in range(4):
        user = f"racer-{round_number}"
        grants = await asyncio.gather(
            *(backend.quotas.acquire(user, f"j{n}", limit=7, at=utcnow()) for n in range(30))
        )
        assert sum(grant.granted for grant in grants) == 7, round_number
        assert all(grant.held == 7 for grant in grants if not grant.granted)
        assert len(await backend.quotas.held(user)) == 7


# --- idempotency store -----------------------------------------------------------------

SCOPE = "user-1:novel-1"
DAY_S = 24 * 3600


async def test_a_repeated_claim_returns_the_first_job(backend: Backend) -> None:
    assert await backend.idempotency.claim(SCOPE, "key-1", "job-1", DAY_S) == "job-1"

    assert await backend.idempotency.claim(SCOPE, "key-1", "job-2", DAY_S) == "job-1"
    assert await backend.idempotency.claim(SCOPE, "key-1", "job-1", DAY_S) == "job-1"


async def test_scopes_and_keys_are_independent(backend: Backend) -> None:
    claim = backend.idempotency.claim
    await claim(SCOPE, "key-1", "job-1", DAY_S)

    assert await claim(SCOPE, "key-2", "job-2", DAY_S) == "job-2"
    assert await claim("user-2:novel-1", "key-1", "job-3", DAY_S) == "job-3"
    assert await claim("user-1:novel-2", "key-1", "job-4", DAY_S) == "job-4"
    # Separators in a key cannot make it collide with another scope's key.
    assert await claim("user-1:novel-1#a", "b", "job-5", DAY_S) == "job-5"
    assert await claim(SCOPE, "a#b", "job-6", DAY_S) == "job-6"
    assert await claim(SCOPE, "key-1", "job-7", DAY_S) == "job-1"


async def test_any_client_string_is_a_key(backend: Backend) -> None:
    keys = ["", "漫画 ✓ 🎬", "#IDEMP#x", "k" * 10_000, "a\0b"]
    for n, key in enumerate(keys):
        assert await backend.idempotency.claim(SCOPE, key, f"job-{n}", DAY_S) == f"job-{n}"
    for key in keys:
        assert await backend.idempotency.claim(SCOPE, key, "other", DAY_S) != "other"


async def test_an_expired_binding_is_replaced(backend: Backend) -> None:
    assert await backend.idempotency.claim(SCOPE, "key-1", "job-1", 1) == "job-1"

    await asyncio.sleep(1.2)

    assert await backend.idempotency.claim(SCOPE, "key-1", "job-2", DAY_S) == "job-2"
    assert await backend.idempotency.claim(SCOPE, "key-1", "job-3", DAY_S) == "job-2"


async def test_release_drops_only_a_binding_to_the_given_job(backend: Backend) -> None:
    store = backend.idempotency
    await store.claim(SCOPE, "key-1", "job-1", DAY_S)

    await store.release(SCOPE, "key-1", "job-2")
    assert await store.claim(SCOPE, "key-1", "job-3", DAY_S) == "job-1"

    await store.release(SCOPE, "key-1", "job-1")
    assert await store.claim(SCOPE, "key-1", "job-4", DAY_S) == "job-4"
    await store.release(SCOPE, "key-1", "job-1")  # a stale release leaves the new binding
    assert await store.claim(SCOPE, "key-1", "job-5", DAY_S) == "job-4"
    await store.release(SCOPE, "never-claimed", "job-1")  # releasing nothing is no error


async def test_concurrent_claims_agree_on_one_winner(backend: Backend) -> None:
    candidates = [f"job-{n}" for n in range(10)]

    owners = await asyncio.gather(
        *(backend.idempotency.claim(SCOPE, "key-1", job_id, DAY_S) for job_id in candidates)
    )

    assert len(set(owners)) == 1
    assert owners[0] in candidates
    assert await backend.idempotency.claim(SCOPE, "key-1", "late", DAY_S) == owners[0]


async def test_racing_conditional_writes_to_one_key_let_exactly_one_through(
    backend: Backend,
) -> None:
    # Twenty cancels race for each of several fresh jobs: a guarded write is atomic, so one
    # wins and nineteen are refused, on every backend (the moto stand-in included).
    for round_number in range(8):
        job_id = f"race-{round_number}"
        await backend.jobs.create(new_job(job_id))
        won = await asyncio.gather(*(backend.jobs.apply(job_id, jobs.cancel()) for _ in range(20)))
        assert sum(result is not None for result in won) == 1, round_number


# --- completion with the novel's pointer ------------------------------------------------


def _publishing(backend: Backend) -> PublishingJobStore:
    assert isinstance(backend.jobs, PublishingJobStore)
    return backend.jobs


def _completion(job_id: str = "job-1") -> tuple[jobs.Transition, StoryboardRef]:
    key = storyboard_key("novel-1", job_id, 1)
    transition = jobs.complete(1, key, SUMMARY.to_doc())
    at = datetime.fromisoformat(transition.changes["updatedAt"])
    return transition, StoryboardRef(key=key, job_id=job_id, summary=SUMMARY, created_at=at)


async def test_complete_and_point_writes_both(backend: Backend) -> None:
    await backend.novels.create(new_novel())
    await backend.jobs.create(new_job())
    seen = await backend.jobs.apply("job-1", jobs.start(1))
    assert seen is not None
    transition, ref = _completion()

    done = await _publishing(backend).complete_and_point(seen, transition, ref)

    assert done is not None
    assert done == await backend.jobs.get("job-1"), "the answer is the stored job"
    assert (done.status, done.result_key, done.version) == (
        JobStatus.COMPLETED,
        ref.key,
        seen.version + 1,
    )
    novel = await backend.novels.get("novel-1")
    assert novel is not None
    assert novel.latest_storyboard == ref


async def test_complete_and_point_with_a_stale_view_still_answers_the_stored_job(
    backend: Backend,
) -> None:
    await backend.novels.create(new_novel())
    await backend.jobs.create(new_job())
    seen = await backend.jobs.apply("job-1", jobs.start(1))
    assert seen is not None
    # A write the caller never saw the answer of (a progress write that timed out).
    assert await backend.jobs.apply("job-1", jobs.progress(1, 50, "half")) is not None
    transition, ref = _completion()

    done = await _publishing(backend).complete_and_point(seen, transition, ref)

    assert done is not None
    assert done == await backend.jobs.get("job-1")
    assert done.version == seen.version + 2
    novel = await backend.novels.get("novel-1")
    assert novel is not None
    assert novel.latest_storyboard == ref


async def test_a_refused_completion_points_nothing(backend: Backend) -> None:
    await backend.novels.create(new_novel())
    await backend.jobs.create(new_job())
    seen = await backend.jobs.apply("job-1", jobs.start(1))
    assert seen is not None
    cancelled = await backend.jobs.apply("job-1", jobs.cancel())
    transition, ref = _completion()

    assert await _publishing(backend).complete_and_point(seen, transition, ref) is None

    assert await backend.jobs.get("job-1") == cancelled
    novel = await backend.novels.get("novel-1")
    assert novel is not None
    assert novel.latest_storyboard is None


async def test_a_completion_behind_a_newer_storyboard_completes_and_leaves_it(
    backend: Backend,
) -> None:
    await backend.novels.create(new_novel())
    await backend.jobs.create(new_job())
    seen = await backend.jobs.apply("job-1", jobs.start(1))
    assert seen is not None
    transition, ref = _completion()
    newer = ref.model_copy(
        update={"job_id": "job-2", "created_at": ref.created_at + timedelta(seconds=1)}
    )
    assert await backend.novels.set_latest_storyboard("novel-1", newer)

    done = await _publishing(backend).complete_and_point(seen, transition, ref)

    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done == await backend.jobs.get("job-1")
    novel = await backend.novels.get("novel-1")
    assert novel is not None
    assert novel.latest_storyboard == newer


async def test_a_completion_of_an_erased_novel_creates_no_novel(backend: Backend) -> None:
    await backend.jobs.create(new_job())
    seen = await backend.jobs.apply("job-1", jobs.start(1))
    assert seen is not None
    transition, ref = _completion()

    done = await _publishing(backend).complete_and_point(seen, transition, ref)

    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert await backend.novels.get("novel-1") is None
