"""The documents the HTTP API accepts and returns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from service.jobs import ErrorInfo, Job, JobStatus, Progress, StoryboardSummary, WebhookState
from service.models import CamelModel
from service.text import require_encodable

MAX_TITLE = 500
_UNICODE_SPACE = r"\t\n\x0b\x0c\r\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Spelled out, not \s: Python's and ECMAScript's \s differ from each other and from the
# Unicode White_Space that pydantic strips from titles (Python's also has \x1c-\x1f).
VISIBLE_TITLE = f"[^{_UNICODE_SPACE}]"
"""A JSON Schema pattern (found anywhere) for a title that is not blank once stripped."""
VISIBLE_TEXT = f"[^{_UNICODE_SPACE}\\x00-\\x1f\\x7f\\ufeff]"
"""The same for a text, which also loses its control characters and byte-order mark."""


def _encodable(value: object) -> object:
    # Runs ahead of the type and length checks: a value that is no string still gets
    # pydantic's own error, and a lone surrogate gets this clear one instead of a vague one.
    return require_encodable(value) if isinstance(value, str) else value


NovelTitle = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE),
    BeforeValidator(_encodable),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_TITLE, "pattern": VISIBLE_TITLE}
    ),
]
"""A title: valid Unicode, stripped of surrounding whitespace, then 1 to 500 characters."""

NovelText = Annotated[
    str,
    BeforeValidator(_encodable),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": VISIBLE_TEXT}),
]
"""A novel's text as uploaded: valid Unicode; emptiness and length are the route's rules."""


class NovelUpload(CamelModel):
    """A novel to upload: its title and full text.

    The JSON body of ``POST /v1/novels``; a text/plain upload's ``?title=`` and body are
    checked against it too, so both kinds of upload meet the same rules.
    """

    title: NovelTitle
    text: NovelText


class NovelCreated(CamelModel):
    """The novel just stored: its id, title and length in characters."""

    novel_id: str
    title: str
    chars: int


class NovelView(CamelModel):
    """A novel's metadata and, once it has one, its latest storyboard's counts and URL."""

    novel_id: str
    title: str
    chars: int
    created_at: datetime
    storyboard: StoryboardSummary | None = None
    storyboard_url: str | None = None


class AnalyzeRequest(CamelModel):
    """``POST /v1/novels/{novelId}/analyze``: an optional JSON body (an empty body is none)."""

    model_config = ConfigDict(extra="forbid")

    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="An https URL to POST the job's end event to (job.completed, job.failed, "
        "job.cancelled), signed to the Standard Webhooks spec. Its host must resolve to "
        "public addresses only. A replay with the same Idempotency-Key keeps the first "
        "request's callbackUrl.",
    )


class JobAccepted(CamelModel):
    """The job an analysis request queued (or, replayed, the job it queued before)."""

    job_id: str
    status: JobStatus
    status_url: str
    message: str = "Analysis queued. Use the statusUrl to check progress."


class JobView(CamelModel):
    """A job: its status, progress, attempts, error and, once completed, its storyboard."""

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
    started_at: datetime | None = Field(
        default=None,
        description="When the latest attempt started; null while the job has never run. "
        "startedAt - createdAt is how long the job waited in the queue.",
    )
    usage: dict[str, int] | None = None
    webhook: WebhookState | None = Field(
        default=None,
        description="How the delivery of the job's end event to its callbackUrl stands: "
        "pending, retrying, delivered, gone (the receiver answered 410) or failed; null "
        "without a callbackUrl or before the job has ended.",
    )

    @classmethod
    def of(cls, job: Job, base_url: str) -> JobView:
        """The public view of a job record; links are under ``base_url``."""
        done = job.status is JobStatus.COMPLETED
        url = f"{base_url.rstrip('/')}/v1/novels/{job.novel_id}/storyboard"
        return cls(
            job_id=job.job_id,
            novel_id=job.novel_id,
            type=job.type,
            status=job.status,
            progress=job.progress,
            attempts=job.attempts,
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            storyboard_url=url if done else None,
            summary=job.summary,
            next_attempt_at=job.next_attempt_at,
            started_at=job.started_at,
            usage=job.usage,
            webhook=job.webhook,
        )


class ErrorBody(CamelModel):
    """The body of every error response."""

    error: ErrorInfo


class ActiveJobsError(CamelModel):
    """The user holds as many queued and running analyses as the quota allows."""

    code: Literal["too_many_active_jobs"]
    message: str
    active_jobs: int = Field(ge=0)
    """The user's analyses queued or running now."""
    limit: int = Field(ge=1)
    """The most the user may have at once (``STORYBOARD_USER_MAX_ACTIVE_JOBS``)."""


class RateLimitedError(CamelModel):
    """The user sent analysis requests faster than the rate this replica allows."""

    code: Literal["rate_limited"]
    message: str
    limit: int = Field(ge=1)
    """Analysis requests a minute one user may send (``STORYBOARD_USER_SUBMIT_RATE``)."""
    retry_after: int = Field(ge=1)
    """Seconds until the next request would be accepted, as ``Retry-After`` says."""


class LimitErrorBody(CamelModel):
    """The body of a 429: the error object of the usual shape, with the limit's figures."""

    error: Annotated[ActiveJobsError | RateLimitedError, Field(discriminator="code")]


class LatestJob(CamelModel):
    """The newest job asked for a novel, and where it is."""

    job_id: str
    status: JobStatus


class NovelDetail(NovelView):
    """``GET /v1/novels/{novelId}``: the novel and its latest job, when it has one."""

    latest_job: LatestJob | None = None


class NovelListItem(CamelModel):
    """One novel in ``GET /v1/novels``."""

    novel_id: str
    title: str
    chars: int
    created_at: datetime
    latest_job_id: str | None
    latest_job_status: JobStatus | None


class NovelPage(CamelModel):
    """``GET /v1/novels``: the caller's novels, newest first."""

    items: list[NovelListItem]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class JobPage(CamelModel):
    """``GET /v1/jobs``: the caller's jobs, newest first."""

    items: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class Price(CamelModel):
    """What the estimated tokens cost at the configured prices."""

    currency: str
    amount: float = Field(ge=0)
    input_per_million: float = Field(ge=0)
    """The price of a million input tokens (``STORYBOARD_LLM_INPUT_PRICE_PER_MILLION``)."""
    output_per_million: float = Field(ge=0)
    """The price of a million output tokens (``STORYBOARD_LLM_OUTPUT_PRICE_PER_MILLION``)."""


class CostEstimate(CamelModel):
    """``POST /v1/novels/{novelId}/estimate``: what analyzing the novel with the model would
    spend, from the analyzer's own chunk plan; repairs and retries not included."""

    novel_id: str
    model: str
    chapters: int = Field(ge=0)
    chunks: int = Field(ge=0)
    requests: int = Field(ge=0)
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    price: Price
