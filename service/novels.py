"""The novel record: metadata in the record store, the text itself in the blob store."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.jobs import JobSource, StoryboardSummary
from service.models import CamelModel, utcnow


class StoryboardRef(CamelModel):
    """Where the latest storyboard of a novel lives, with its counts."""

    key: str
    job_id: str
    summary: StoryboardSummary
    created_at: datetime = Field(default_factory=utcnow)


class Novel(CamelModel):
    """An uploaded novel."""

    novel_id: str
    user_id: str
    title: str
    chars: int
    text_key: str
    created_at: datetime = Field(default_factory=utcnow)
    latest_storyboard: StoryboardRef | None = None
    latest_job_id: str | None = None
    """The newest job asked for this novel, whatever its status."""
    latest_job_at: datetime | None = None
    """When that job was created: an older job recorded late never replaces a newer one."""
    deleting_at: datetime | None = None
    """Set while the novel is being erased; from then on it is gone to the API."""

    def source(self) -> JobSource:
        """What a job of this novel copies into its record for its worker."""
        return JobSource(title=self.title, text_key=self.text_key)


def text_key(novel_id: str) -> str:
    """Blob key of a novel's normalised UTF-8 text."""
    return f"novels/{novel_id}/text.txt"


def storyboard_key(novel_id: str, job_id: str, delivery: int) -> str:
    """Blob key of the storyboard one delivery of a job produced.

    Each delivery writes a key of its own, so an attempt that lost the job (its lease
    lapsed and a newer delivery took over) can never overwrite the storyboard the job's
    record points at: only the owner's completion publishes a key, whatever order the
    writes land in, and no ownership check is needed before the write.
    """
    return f"{job_storyboards_prefix(novel_id, job_id)}{delivery}.json"


def job_storyboards_prefix(novel_id: str, job_id: str) -> str:
    """The blob key prefix of every storyboard a job's deliveries wrote."""
    return f"{storyboard_prefix(novel_id)}{job_id}/"


def legacy_storyboard_key(novel_id: str, job_id: str) -> str:
    """Where a job's storyboard was written before keys named the delivery; still removed
    when such a job is discarded."""
    return f"{storyboard_prefix(novel_id)}{job_id}.json"


def storyboard_prefix(novel_id: str) -> str:
    """The blob key prefix of every storyboard made of a novel."""
    return f"storyboards/{novel_id}/"


def checkpoint_prefix(job_id: str) -> str:
    """The blob key prefix of a job's checkpoints (the model analyzer's saved replies)."""
    return f"checkpoints/{job_id}/"
