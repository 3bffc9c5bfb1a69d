"""All configuration, read once from the environment in ``main`` and passed down.

Variables use the ``STORYBOARD_`` prefix. AWS endpoints and region use botocore's own
variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``); we read the
endpoint variables and any queue URL only to choose the default backend, and pass an
endpoint to the clients only when ``STORYBOARD_AWS_ENDPOINT_URL`` names one explicitly.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.queue_limits import MAX_VISIBILITY_S

MIB = 1024 * 1024
MAX_USER_ACTIVE_JOBS = 1000
"""The most slots one user's quota record may hold: a DynamoDB item stays far under 400 KB."""
DASHSCOPE_BEIJING = "https://dashscope.aliyuncs.com/compatible-mode/v1"
JOB_TIMEOUT_DEFAULTS_S: dict[str, float] = {"offline": 600.0, "llm": 7200.0, "sleep": 600.0}
"""Each analyzer's default deadline for one attempt: ten minutes for the offline analysis,
which takes seconds on the longest real novels; two hours for a model run, which waits on
the provider's limits; ten minutes for the sleep stand-in, which load tests run for
seconds."""


class Settings(BaseSettings):
    """Process settings. Invalid values fail at start-up with one clear line."""

    model_config = SettingsConfigDict(
        env_prefix="STORYBOARD_", extra="ignore", frozen=True, populate_by_name=True
    )

    backend: Literal["local", "aws"] | None = None
    data_dir: Path = Path("data")

    # Loopback only: the API has no authentication until it is configured, so listening on
    # every interface is a choice made where it is safe (the image and manifests make it).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    """How long a connection may take to send a whole request head before it is closed."""
    http_keepalive_s: float = Field(default=75.0, gt=0)
    """How long an idle connection is kept open; above a load balancer's own idle timeout
    (60 s on AWS), so the balancer never reuses a connection the service just closed."""
    http_max_connections: int = Field(default=1000, ge=1)
    """Connections open at once; more are closed on accept. Lowered to fit under the
    process's open-file limit, so a connection flood cannot take every descriptor."""
    max_body_bytes: int = Field(default=20 * MIB, gt=0)
    max_novel_chars: int = Field(default=3_000_000, gt=0)
    public_base_url: str = ""

    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("STORYBOARD_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    aws_endpoint_url: str | None = None
    """An explicit endpoint for every AWS client; wins over botocore's own variables."""
    detected_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"),
        exclude=True,
    )
    """Seen only to choose the backend; botocore applies these variables by itself."""
    queue_name: str = "storyboard-jobs"
    dlq_name: str = "storyboard-jobs-dlq"
    queue_url: str | None = None
    dlq_url: str | None = None
    table_name: str = "storyboard"
    bucket: str = "storyboard-data"
    aws_connect_timeout_s: float = Field(default=5.0, gt=0)
    aws_read_timeout_s: float = Field(default=30.0, gt=0)
    aws_max_attempts: int = Field(default=5, ge=1)

    worker_concurrency: int = Field(default=32, ge=1, le=4096)
    receive_wait_s: float = Field(default=20.0, ge=0, le=20)
    visibility_timeout_s: int = Field(default=900, ge=1, le=MAX_VISIBILITY_S)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    """Started attempts before a job fails with ``retries_exhausted`` and is dead-lettered."""
    max_receive_count: int = Field(default=10, ge=1, le=1000)
    """The queue's own redrive limit on receives: a backstop above ``max_attempts`` for a
    message that keeps being received without its job ever starting or settling."""
    queue_order: Literal["fair", "fifo"] = "fair"
    """How receives choose between users' messages. ``fair``: the user with the fewest
    messages in flight first (an SQS fair queue; every message carries its user as the
    message group). ``fifo``: oldest first, and no message group is sent, so one user's
    backlog delays everyone; kept to measure what fairness buys."""
    delete_flush_s: float = Field(default=1.0, gt=0)
    """Longest a finished job's message waits for nine others to share its delete call.
    Under load batches fill to ten well before it; an idle worker's lone delete costs one
    request either way. Never more than a tenth of ``visibility_timeout_s``
    (:attr:`delete_window_s`): a message must be gone long before it could reappear."""
    heartbeat_stale_s: float = Field(default=90.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    retry_base_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0, le=MAX_VISIBILITY_S)
    dlq_poll_s: float = Field(default=300.0, gt=0)
    dlq_hold_s: int = Field(default=60, ge=1, le=MAX_VISIBILITY_S)
    user_max_active_jobs: int = Field(default=20, ge=0, le=MAX_USER_ACTIVE_JOBS)
    """Queued plus running analyses one user may hold at once; 0 means no limit."""
    user_submit_rate: int = Field(default=0, ge=0, le=100_000)
    """Submissions a minute one user may make to one replica (a token bucket); 0 means
    off. Off by default: the active-job limit already bounds what one user holds, and a
    per-replica rate means a different total at every replica count, so it is the
    operator's to choose knowing theirs."""
    watch_poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often the watch hub reads the jobs open event streams follow."""
    sse_ping_s: float = Field(default=15.0, gt=0, le=300)
    """The keep-alive comment interval on event streams."""

    analyzer: Literal["offline", "llm", "sleep"] | None = None
    sleep_analyzer_s: float = Field(default=1.0, ge=0)
    sleep_analyzer_steps: int = Field(default=1, ge=1, le=10_000)
    """How many times the sleep analyzer reports progress, evenly over its latency (the
    progress writer still writes at most once per 2 s per job)."""
    prompt_language: Literal["en", "zh"] = "en"
    """The language the offline analyzer writes image prompts in, whatever the novel's:
    English by default, since most image models read it best."""
    cpu_workers: int | None = Field(default=None, ge=1, le=256)
    """Processes the offline analysis runs in, each one analysis at a time; by default
    one per core this process may use. Started when the first analysis needs one."""
    job_timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    """The longest one attempt of a job may run before it is stopped and the job fails
    with ``job_timeout``; by default :data:`JOB_TIMEOUT_DEFAULTS_S` for the analyzer."""
    cancel_check_s: float = Field(default=3.0, gt=0, le=60)
    """How often a running attempt reads its job to see whether it was cancelled or
    deleted, the first time this long after it starts: a shorter job reads nothing."""

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("STORYBOARD_LLM_API_KEY", "DASHSCOPE_API_KEY"),
    )
    llm_api_key_file: Path | None = None
    llm_api_key_secret_id: str | None = Field(default=None, min_length=1)
    """A Secrets Manager secret (name or ARN) holding the model API key, as the plain key or
    a JSON object with an ``apiKey`` field. Read at start and again when the model refuses
    the key, so a rotation needs no restart. The only key source when set."""
    llm_model: str = "qwen-plus"
    llm_timeout_s: float = Field(default=300.0, gt=0)
    """Per request. A reply of ``llm_max_output_tokens`` (8192) at the 50 tokens/s or so
    that qwen-plus streams takes nearly three minutes, and a cut-off one is paid for twice."""
    llm_connect_timeout_s: float = Field(default=10.0, gt=0)
    llm_max_retries: int = Field(default=4, ge=0, le=20)
    llm_backoff_base_s: float = Field(default=1.0, gt=0)
    llm_backoff_max_s: float = Field(default=60.0, gt=0)
    llm_context_tokens: int = Field(default=131_072, ge=2048)
    llm_max_output_tokens: int = Field(default=8192, ge=256)
    llm_chars_per_token: float = Field(default=1.5, gt=0)
    llm_job_concurrency: int = Field(default=32, ge=1)
    """Model requests at once per job. A request is latency-bound (a pass B reply streams
    for a minute or more), so the tokens-per-minute budget, not this, should be what
    holds a job back: at 4, 三国演义's 29 chunks took 7.3 times their lower bound
    (``bench/model_pipeline.py``)."""
    llm_process_concurrency: int = Field(default=64, ge=1)
    """Model requests at once in the process, over all its jobs (the limiter's slots)."""
    llm_requests_per_minute: int = Field(default=600, ge=0)
    llm_tokens_per_minute: int = Field(default=1_000_000, ge=0)
    llm_temperature: float = Field(default=0.3, ge=0, le=2)
    # qwen-plus on Alibaba Cloud Model Studio, the Beijing (China mainland) endpoint this
    # service calls by default, non-thinking mode, 0-128k-token tier: CNY 0.0008 per 1,000
    # input tokens and CNY 0.002 per 1,000 output tokens, from the "AI PaaS billing rules"
    # page (help.aliyun.com/en/document_detail/3023262.html), read 2026-12-02. The
    # international (Singapore) endpoint lists USD 0.4 and 1.2 per million instead.
    llm_input_price_per_million: float = Field(default=0.8, ge=0)
    """What a million input tokens cost, in ``llm_price_currency`` (for the estimate)."""
    llm_output_price_per_million: float = Field(default=2.0, ge=0)
    """What a million output tokens cost, in ``llm_price_currency``."""
    llm_price_currency: str = Field(default="CNY", min_length=1, max_length=8)

    auth_api_keys: dict[str, str] = Field(default_factory=dict)
    """SHA-256 hex digests of API keys, each mapped to its user id (JSON in the env)."""
    auth_jwt_secret: SecretStr | None = None
    auth_jwks_file: Path | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_user_claim: str = "sub"

    webhook_secret: SecretStr | None = None
    """The Standard Webhooks signing secret, ``whsec_`` and base64 of 24-64 random bytes."""
    webhook_secret_previous: SecretStr | None = None
    """The secret being rotated out: signed with too, so receivers can switch over."""
    webhook_allow_private: bool = False
    """Lift the callback rules (https only, public addresses only): tests and local use."""
    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000,50400,72000,86400"
    """Seconds before each retry of a failed delivery (comma-separated); one more attempt
    than entries. Waits are capped just under SQS's 12 h visibility limit."""
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=300)
    events_topic_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
    )
    """The SNS topic every job's end is published to (AWS backend only)."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    tracing: bool = Field(default=False, exclude=True)
    """Whether to export traces. ``main`` sets it from the standard ``OTEL_*`` variables
    (``service.tracing.tracing_configured``), which the OpenTelemetry SDK reads itself."""

    @field_validator("auth_api_keys")
    @classmethod
    def _hashes_look_like_sha256(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, user in value.items():
            if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
                raise ValueError("keys must be SHA-256 hex digests of the API keys")
            if not user:
                raise ValueError("every API key needs a user id")
        return value

    @field_validator("webhook_secret", "webhook_secret_previous")
    @classmethod
    def _secret_is_whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_webhook_secret(value.get_secret_value())
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @model_validator(mode="after")
    def _check_receive_fits_visibility(self) -> Self:
        if self.receive_wait_s >= self.visibility_timeout_s:
            raise ValueError("receive_wait_s must be shorter than visibility_timeout_s")
        return self

    @model_validator(mode="after")
    def _one_model_key_source(self) -> Self:
        # A key in the environment beside the secret would leave it unclear which one a
        # rotation replaces, so the two kinds of source are not combined.
        if self.llm_api_key_secret_id and (self.llm_api_key or self.llm_api_key_file):
            raise ValueError(
                "STORYBOARD_LLM_API_KEY_SECRET_ID cannot be combined with STORYBOARD_LLM_API_KEY, "
                "DASHSCOPE_API_KEY or STORYBOARD_LLM_API_KEY_FILE: choose one key source"
            )
        return self

    @property
    def webhook_retry_schedule(self) -> tuple[int, ...]:
        """The delivery retry waits in seconds, in order."""
        return parse_schedule(self.webhook_retry_schedule_s)

    @property
    def effective_max_attempts(self) -> int:
        """Attempts a job gets: a queue backstop set lower than ``max_attempts`` wins."""
        return min(self.max_attempts, self.max_receive_count)

    @property
    def resolved_backend(self) -> Literal["local", "aws"]:
        """``aws`` when chosen, or when an AWS endpoint or queue URL is configured; else local."""
        if self.backend is not None:
            return self.backend
        configured = self.aws_endpoint_url or self.detected_endpoint or self.queue_url
        return "aws" if configured else "local"

    @property
    def resolved_analyzer(self) -> Literal["offline", "llm", "sleep"]:
        """``llm`` when a key, key file, key secret or base URL is configured, else ``offline``."""
        if self.analyzer is not None:
            return self.analyzer
        configured = (
            self.llm_api_key
            or self.llm_api_key_file
            or self.llm_api_key_secret_id
            or self.llm_base_url
        )
        return "llm" if configured else "offline"

    @property
    def effective_job_timeout_s(self) -> float:
        """An attempt's deadline: the configured one, else the analyzer's default."""
        if self.job_timeout_s is not None:
            return self.job_timeout_s
        return JOB_TIMEOUT_DEFAULTS_S[self.resolved_analyzer]

    @property
    def effective_cpu_workers(self) -> int:
        """Processes for CPU-bound analysis: the configured count, else one per core."""
        if self.cpu_workers is not None:
            return self.cpu_workers
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return os.cpu_count() or 1

    @property
    def effective_llm_base_url(self) -> str:
        """The configured base URL, or DashScope's Beijing-region compatible endpoint."""
        return self.llm_base_url or DASHSCOPE_BEIJING

    @property
    def delete_window_s(self) -> float:
        """``delete_flush_s``, bounded to a tenth of the visibility timeout."""
        return min(self.delete_flush_s, self.visibility_timeout_s / 10)

    @property
    def concurrency_pool_size(self) -> int:
        """HTTP connections per AWS client: every job may hold one, plus the loop's own."""
        return self.worker_concurrency + 8


def check_webhook_secret(secret: str) -> None:
    """Raise ValueError unless ``secret`` is ``whsec_`` and base64 of 24 to 64 bytes.

    The message never repeats the secret.
    """
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes (base64 after whsec_)")


def parse_schedule(text: str) -> tuple[int, ...]:
    """``"5,300,1800"`` as ``(5, 300, 1800)``; ValueError unless whole seconds of 1 or more."""
    try:
        delays = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("the schedule is comma-separated whole seconds") from None
    if not delays or any(delay < 1 for delay in delays):
        raise ValueError("the schedule needs at least one wait of 1 s or more")
    return delays


class SettingsError(Exception):
    """Settings could not be loaded; the message is one line for an operator."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides, or raise SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
