"""The documents the HTTP API accepts and returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from service.jobs import ErrorInfo, JobStatus, Progress, StoryboardSummary
from service.models import CamelModel

MAX_TITLE = 500


class NovelUpload(CamelModel):
    """``POST /v1/novels`` as JSON."""

    title: str = Field(min_length=1, max_length=MAX_TITLE)
    text: str


class NovelCreated(CamelModel):
    """Answer to an upload."""

    novel_id: str
    title: str
    chars: int


class NovelView(CamelModel):
    """``GET /v1/novels/{novelId}``."""

    novel_id: str
    title: str
    chars: int
    created_at: datetime
    storyboard: StoryboardSummary | None = None
    storyboard_url: str | None = None


class JobAccepted(CamelModel):
    """Answer to ``POST /v1/novels/{novelId}/analyze``."""

    job_id: str
    status: JobStatus
    status_url: str
    message: str = "Analysis queued. Use the statusUrl to check progress."


class JobView(CamelModel):
    """``GET /v1/jobs/{jobId}``."""

    job_id: str
    novel_id: str
    type: str
    status: JobStatus
    progress: Progress
    attempts: int
    error: ErrorInfo | None
    created_at: datetime
    updated_at: datetime
    storyboard_url: str | None
    summary: dict[str, Any] | None = Field(
        default=None,
        description="A small summary of the result, set by the job's type. For an analyze "
        "job: title, chapters, scenes, panels and characters.",
    )
    next_attempt_at: datetime | None = None
    usage: dict[str, int] | None = None


class ErrorBody(CamelModel):
    """Every error response."""

    error: ErrorInfo
