"""Backend selection: AWS or local, chosen from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.backends.backend import Backend
from service.settings import Settings


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """Open the configured backend's clients for the lifetime of the context."""
    # Imported on demand so that the embedded default never loads aiobotocore.
    if settings.resolved_backend == "aws":
        from service.backends.aws import open_aws_backend

        async with open_aws_backend(settings) as backend:
            yield backend
    else:
        from service.backends.local import open_local_backend

        async with open_local_backend(settings) as backend:
            yield backend
