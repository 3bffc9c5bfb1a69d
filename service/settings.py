"""All configuration, read once from the environment in ``main`` and passed down.

Variables use the ``STORYBOARD_`` prefix. AWS endpoints and region use botocore's own
variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``); we read the
endpoint variables and any queue URL only to choose the default backend, and pass an
endpoint to the clients only when ``STORYBOARD_AWS_ENDPOINT_URL`` names one explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Process settings. Invalid values fail at start-up with one clear line."""

    model_config = SettingsConfigDict(env_prefix="STORYBOARD_", extra="ignore", frozen=True)

    backend: Literal["local", "aws"] | None = None
    data_dir: Path = Path("data")

    host: str = "0.0.0.0"  # a container must listen on every interface
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=20 * MIB, gt=0)
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
    visibility_timeout_s: int = Field(default=900, ge=1, le=43200)
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    delete_flush_s: float = Field(default=0.1, gt=0)
    heartbeat_stale_s: float = Field(default=90.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)

    analyzer: Literal["offline", "sleep"] = "offline"
    sleep_analyzer_s: float = Field(default=1.0, ge=0)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _check_receive_fits_visibility(self) -> Self:
        if self.receive_wait_s >= self.visibility_timeout_s:
            raise ValueError("receive_wait_s must be shorter than visibility_timeout_s")
        return self

    @property
    def resolved_backend(self) -> Literal["local", "aws"]:
        """``aws`` when chosen, or when an AWS endpoint or queue URL is configured; else local."""
        if self.backend is not None:
            return self.backend
        configured = self.aws_endpoint_url or self.detected_endpoint or self.queue_url
        return "aws" if configured else "local"

    @property
    def concurrency_pool_size(self) -> int:
        """HTTP connections per AWS client: every job may hold one, plus the loop's own."""
        return self.worker_concurrency + 8


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
