"""The narrow interfaces between the service's logic and its backends.

Each port has an AWS implementation (SQS, DynamoDB, S3) and a local one (SQLite and the
filesystem). The consumer, producer, API and job logic see only these protocols, and one
contract test suite runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

from service.jobs import Job, JobStatus, Transition
from service.novels import Novel, StoryboardRef
from service.storyboard import Storyboard

T = TypeVar("T")
MAX_PAGE = 100
"""The most records one page of a list holds."""


@dataclass(frozen=True, slots=True)
class Message:
    """A received queue message. ``receive_count`` is 1 on the first delivery; ``group`` is
    the message group it was sent with (the user), ``None`` for an ungrouped message;
    ``attributes`` are the string attributes it was sent with (the trace context)."""

    message_id: str
    receipt: str
    body: str
    receive_count: int
    group: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Result of a batch call: receipts that failed, mapped to the backend's error code."""

    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Approximate message counts, as SQS reports them."""

    visible: int
    in_flight: int


class Queue(Protocol):
    """A queue with SQS semantics: at-least-once delivery, visibility timeouts, batches.

    Batch methods take any number of receipts and split them into calls of at most ten.
    A stale or unknown receipt fails on its own without failing the rest of the batch.

    Messages carry a ``group``, the user they are for. Receives share the workers fairly
    between groups: a group with many messages in flight waits while quieter groups have
    visible messages, as an SQS fair queue does. An ungrouped message is a group of its own.

    Messages may carry up to :data:`~service.queue_limits.MAX_ATTRIBUTES` string
    ``attributes`` beside the body (SQS message attributes); every delivery returns them.
    """

    async def send(
        self,
        body: str,
        *,
        group: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue a message in ``group`` with ``attributes`` and return its id; ValueError
        for more attributes than SQS takes, or an empty name or value."""
        ...

    async def receive(
        self, *, max_messages: int, wait_s: float, visibility_s: int
    ) -> list[Message]:
        """Long-poll for up to ``max_messages`` (1-10), hiding them for ``visibility_s``."""
        ...

    async def delete_batch(self, receipts: Sequence[str]) -> BatchOutcome:
        """Delete received messages."""
        ...

    async def change_visibility_batch(
        self, receipts: Sequence[str], visibility_s: int
    ) -> BatchOutcome:
        """Set the remaining invisibility of received messages (0 makes them visible now)."""
        ...

    async def depth(self) -> QueueDepth:
        """Approximate counts of visible and in-flight messages."""
        ...


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, newest first, and the cursor of the page after it (``None`` on
    the last page). Cursors are opaque: pass one back unchanged as ``after``."""

    items: list[T]
    next_cursor: str | None = None


class InvalidCursor(ValueError):
    """A cursor the list did not issue: malformed, altered, or issued to another user or
    for another list (other filters)."""


class JobStore(Protocol):
    """Job records with guarded (conditional) updates."""

    async def create(self, job: Job) -> None:
        """Store a new job; raise :class:`AlreadyExists` if the id is taken."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""
        ...

    async def apply(self, job_id: str, transition: Transition) -> Job | None:
        """Apply the transition atomically if its guard holds; the new job, else ``None``."""
        ...

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        """Several jobs in as few reads as the store allows (100 ids a read on DynamoDB).

        Every id read maps to its job, or ``None`` when there is none. An id the store could
        not read this time (throttled) is left out: absent means "unknown", not "missing".
        Reads may be eventually consistent: a write can show up a read later.
        """
        ...


@runtime_checkable
class PublishingJobStore(JobStore, Protocol):
    """A job store that can complete a job and point its novel at the result in one write.

    Kept apart from :class:`JobStore`, like :class:`JobCatalog`, so that anything with the
    three runner methods still runs jobs (the runner then writes the pointer on its own).
    """

    async def complete_and_point(
        self, seen: Job, transition: Transition, ref: StoryboardRef
    ) -> Job | None:
        """Apply ``transition`` to the job and point its novel at ``ref``, as
        :meth:`JobStore.apply` and :meth:`NovelStore.set_latest_storyboard` would one after
        the other, but atomically where the store can.

        ``seen`` is the job as the caller last wrote it, version included. The guard decides
        as for ``apply``; the pointer is written only when the transition applied, and only
        as ``set_latest_storyboard`` allows (a newer storyboard stays). The new job, else
        ``None``.
        """
        ...


JobListener = Callable[[Job], None]
"""Called with a job's new state right after this process wrote it."""


@runtime_checkable
class WriteNotifier(Protocol):
    """A job store that tells listeners in this process about each write as it lands."""

    def on_write(self, listener: JobListener) -> Callable[[], None]:
        """Call ``listener`` after every successful create or apply; returns the function
        that stops the calls."""
        ...


@runtime_checkable
class JobCatalog(JobStore, Protocol):
    """A job store that can also list a user's jobs.

    Kept apart from :class:`JobStore` so that the runner, which only creates, reads and
    transitions jobs, can run on anything with those three methods.
    """

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
        """The user's jobs, newest first (``createdAt``, then id), at most ``limit``, after
        the cursor ``after``; only those of ``novel_id``, in ``status`` and of one of
        ``types`` when given. :class:`InvalidCursor` for a cursor this list did not issue."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Remove the job's record for good; whether there was one."""
        ...


class NovelStore(Protocol):
    """Novel metadata records."""

    async def create(self, novel: Novel) -> None:
        """Store a new novel; raise :class:`AlreadyExists` if the id is taken."""
        ...

    async def get(self, novel_id: str) -> Novel | None:
        """The novel, or ``None``."""
        ...

    async def set_latest_storyboard(self, novel_id: str, ref: StoryboardRef) -> bool:
        """Point the novel at ``ref`` unless it points at one with a later ``created_at``
        already (an older job finishing late never hides a newer storyboard); whether the
        novel points at ``ref`` now."""
        ...

    async def set_latest_job(self, novel_id: str, job_id: str, created_at: datetime) -> bool:
        """Record ``job_id`` as the novel's latest job unless a job created later is recorded
        already; whether the novel names ``job_id`` now. A missing novel stays missing."""
        ...

    async def list_for_user(
        self, user_id: str, *, limit: int, after: str | None = None
    ) -> Page[Novel]:
        """The user's novels, newest first (``createdAt``, then id), at most ``limit``,
        after the cursor ``after``; :class:`InvalidCursor` for one this list did not issue.
        Novels being erased are left out."""
        ...

    async def claim_deletion(
        self, novel_id: str, at: datetime, *, stale_before: datetime
    ) -> Novel | None:
        """Mark the novel as being erased since ``at``, unless it is missing or an erasure
        that started at or after ``stale_before`` holds it; the marked novel, else ``None``.

        Only one caller at a time gets the novel. A marked novel takes no new latest job.
        """
        ...

    async def release_deletion(self, novel_id: str, at: datetime) -> None:
        """Clear the mark set at ``at`` (an erasure that failed), if it is still that one."""
        ...

    async def delete(self, novel_id: str) -> bool:
        """Remove the novel's record for good; whether there was one."""
        ...


class IdempotencyStore(Protocol):
    """Remembers which job a client's ``Idempotency-Key`` created, for a limited time."""

    async def claim(self, scope: str, key: str, job_id: str, ttl_s: int) -> str:
        """Bind ``(scope, key)`` to ``job_id`` unless a live binding exists.

        Returns the job id that owns the key: ``job_id`` if this call claimed it, else the
        earlier one. Bindings older than ``ttl_s`` count as absent and may be replaced.
        """
        ...

    async def release(self, scope: str, key: str, job_id: str) -> None:
        """Drop the binding if it still points at ``job_id`` (its job was never queued)."""
        ...


@dataclass(frozen=True, slots=True)
class QuotaGrant:
    """The answer to a slot request: whether the job holds a slot now, and how many slots
    the user holds (this one included when granted)."""

    granted: bool
    held: int


class UserQuotas(Protocol):
    """Per-user slot records: which jobs hold one of the user's active-job slots.

    A slot is keyed by its job id, so taking it again or giving it back twice changes
    nothing: a repeated release can never free a slot another job holds.
    """

    async def acquire(self, user_id: str, job_id: str, *, limit: int, at: datetime) -> QuotaGrant:
        """Give ``job_id`` a slot, taken ``at``, if it holds one already or the user holds
        fewer than ``limit``; atomically, so concurrent callers never exceed the limit."""
        ...

    async def release(self, user_id: str, job_id: str) -> None:
        """Free the job's slot; a slot not held is no error."""
        ...

    async def held(self, user_id: str) -> dict[str, datetime]:
        """Every job holding one of the user's slots, with when it took it."""
        ...


class BlobStore(Protocol):
    """Opaque bytes by key: novel texts and storyboards."""

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any previous value atomically."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; raise :class:`BlobNotFound` if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...


@runtime_checkable
class BlobArchive(BlobStore, Protocol):
    """A blob store that can also list and erase every key under a prefix.

    A prefix is compared as text, as S3 does (``checkpoints/j1/`` covers
    ``checkpoints/j1/a-0.json``); an empty prefix is refused with ValueError.
    """

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, in no particular order."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; how many there were."""
        ...


class EventTopic(Protocol):
    """A publish/subscribe topic for job events (SNS), filtered by message attributes."""

    async def publish(self, message: str, attributes: Mapping[str, str]) -> str:
        """Publish ``message`` with string ``attributes``; the message id. Raise
        :class:`BackendError` if the topic cannot be reached."""
        ...


class Pingable(Protocol):
    """Something whose reachability ``/readyz`` can check."""

    async def ping(self) -> None:
        """Return if reachable; raise :class:`BackendError` otherwise."""
        ...


ProgressCallback = Callable[[float, str], Awaitable[None]]
"""Called by analyzers with a fraction in [0, 1] of their own work and a stage name."""


@dataclass(frozen=True, slots=True)
class NovelText:
    """What an analyzer gets: the novel's identity, its full normalised text, and the job
    it runs for (analyzers that checkpoint key their checkpoints by it)."""

    novel_id: str
    title: str
    text: str
    job_id: str = ""


class Analyzer(Protocol):
    """Turns a novel's text into a storyboard."""

    name: str

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Analyze the whole text. Raise :class:`JobError` for failures."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """Something holding connections that must be closed when the process stops."""

    async def aclose(self) -> None:
        """Release connections."""
        ...
