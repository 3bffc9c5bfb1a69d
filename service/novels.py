"""The novel record: metadata in the record store, the text itself in the blob store."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from service.jobs import StoryboardSummary
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


def text_key(novel_id: str) -> str:
    """Blob key of a novel's normalised UTF-8 text."""
    return f"novels/{novel_id}/text.txt"


def storyboard_key(novel_id: str, job_id: str) -> str:
    """Blob key of the storyboard a job produced; deterministic, so a retry overwrites its own."""
    return f"storyboards/{novel_id}/{job_id}.json"


def storyboard_prefix(novel_id: str) -> str:
    """The blob key prefix of every storyboard made of a novel."""
    return f"storyboards/{novel_id}/"


def checkpoint_prefix(job_id: str) -> str:
    """The blob key prefix of a job's checkpoints (the model analyzer's saved replies)."""
    return f"checkpoints/{job_id}/"
