"""AWS client construction and error translation, shared by the backend and bootstrap.

One :class:`~aiobotocore.session.AioSession` opens one client per service for the life of
the process. Every client gets the same timeouts, retry policy and connection pool, sized so
each concurrent job can hold a connection without queueing behind the others.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from service.errors import BackendError
from service.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

LONG_POLL_MARGIN_S = 10.0
"""Read-timeout headroom over the SQS long poll, so a full 20 s wait never times out."""

_QUERY_STRING = re.compile(r"\?[^\s\"'<>]*")


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The open SQS, DynamoDB and S3 clients, and SNS when an events topic is configured."""

    sqs: SQSClient
    dynamodb: DynamoDBClient
    s3: S3Client
    sns: SNSClient | None = None


def client_config(settings: Settings, *, read_timeout_s: float | None = None) -> AioConfig:
    """The botocore configuration every client uses; ``read_timeout_s`` overrides the default."""
    return AioConfig(
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=read_timeout_s if read_timeout_s is not None else settings.aws_read_timeout_s,
        max_pool_connections=settings.concurrency_pool_size,
        # botocore's "max_attempts" key counts retries after the first call; the setting
        # counts every call, as AWS_MAX_ATTEMPTS does, which is "total_max_attempts".
        retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
        # botocore checks every request against the service model before sending it: a
        # walk of the whole parameter tree on each call, which AWS repeats on arrival. Our
        # requests are fixed shapes that the contract suite sends to moto on every run.
        parameter_validation=False,
    )


def sqs_read_timeout(settings: Settings) -> float:
    """A read timeout that a long poll of ``receive_wait_s`` always fits under."""
    return max(settings.aws_read_timeout_s, settings.receive_wait_s + LONG_POLL_MARGIN_S)


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[AwsClients]:
    """Open the clients and close them all when the context ends."""
    session = get_session()
    region, endpoint = settings.aws_region, settings.aws_endpoint_url
    sqs_config = client_config(settings, read_timeout_s=sqs_read_timeout(settings))
    config = client_config(settings)
    s3_config = config
    if endpoint or settings.detected_endpoint:
        # S3 on a custom endpoint (moto, LocalStack, MinIO) rarely resolves bucket subdomains.
        s3_config = s3_config.merge(AioConfig(s3={"addressing_style": "path"}))
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            session.create_client(
                "sqs", region_name=region, endpoint_url=endpoint, config=sqs_config
            )
        )
        dynamodb = await stack.enter_async_context(
            session.create_client(
                "dynamodb", region_name=region, endpoint_url=endpoint, config=config
            )
        )
        s3 = await stack.enter_async_context(
            session.create_client("s3", region_name=region, endpoint_url=endpoint, config=s3_config)
        )
        sns = None
        if settings.events_topic_arn is not None:
            sns = await stack.enter_async_context(
                session.create_client(
                    "sns", region_name=region, endpoint_url=endpoint, config=config
                )
            )
        yield AwsClients(sqs=sqs, dynamodb=dynamodb, s3=s3, sns=sns)


def error_code(exc: ClientError) -> str:
    """The service's error code of a failed call, e.g. ``ConditionalCheckFailedException``."""
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def describe_failure(exc: BaseException) -> str:
    """A one-line cause that names the error but never echoes signed URLs or secrets."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        text = f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
    else:
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    # Presigned or redirected URLs carry signatures in the query string.
    return _QUERY_STRING.sub("", text)


TRANSLATED_ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)
"""Failures that mean AWS could not be reached or refused the call."""


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """Raise :class:`BackendError` naming ``action`` for any AWS failure inside the block.

    Callers that expect a particular error (a failed condition, a missing key) catch it
    inside the block first; anything that escapes is a backend failure.
    """
    try:
        yield
    except TRANSLATED_ERRORS as exc:
        raise BackendError(f"{action} failed: {describe_failure(exc)}") from exc
