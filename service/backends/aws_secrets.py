"""The model API key in AWS Secrets Manager, read at start and again when the model refuses it.

The secret's string value is the key itself, or a JSON object holding it in one of
:data:`KEY_FIELDS` (the Secrets Manager console's key/value form makes such an object).
Errors name the secret and the cause, never the value.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from service.backends.aws_clients import aws_call, client_config
from service.settings import Settings, SettingsError

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient

KEY_FIELDS = ("apiKey", "api_key", "key")
"""The fields a JSON secret may carry the key in, tried in this order."""


class SecretsManagerKey:
    """An :class:`~service.analysis.llm_client.ApiKeySource` reading one secret's current
    version (``AWSCURRENT``), which is the one a rotation replaces."""

    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        self._client = client
        self.secret_id = secret_id

    async def read(self) -> str:
        """The key the secret holds now; :class:`BackendError` when Secrets Manager cannot
        be reached or refuses, :class:`SettingsError` when the value holds no key."""
        with aws_call(f"reading the model API key from secret {self.secret_id}"):
            reply = await self._client.get_secret_value(SecretId=self.secret_id)
        return api_key_from_secret(reply.get("SecretString"), self.secret_id)


def api_key_from_secret(value: str | None, secret_id: str) -> str:
    """The key in a secret's string value: the whole value, or a field of a JSON object."""
    if value is None:
        raise SettingsError(f"secret {secret_id} has no string value (binary secrets are not read)")
    text = value.strip()
    if text.startswith("{"):
        text = _field(text, secret_id)
    if not text:
        raise SettingsError(f"secret {secret_id} holds an empty model API key")
    return text


def _field(text: str, secret_id: str) -> str:
    # The decoder's message is not used: it could quote part of the value.
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise SettingsError(f"secret {secret_id} starts with '{{' but is not JSON") from None
    if isinstance(data, dict):
        for field in KEY_FIELDS:
            found = data.get(field)
            if isinstance(found, str):
                return found.strip()
    fields = ", ".join(KEY_FIELDS)
    raise SettingsError(f"secret {secret_id} is a JSON value without a string field {fields}")


def secret_region(secret_id: str, default: str) -> str:
    """The region named in a secret's ARN (a secret is read in its own region), else
    ``default``."""
    parts = secret_id.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager" and parts[3]:
        return parts[3]
    return default


@asynccontextmanager
async def open_secret_key(settings: Settings, secret_id: str) -> AsyncIterator[SecretsManagerKey]:
    """A Secrets Manager client for ``secret_id``, with the settings' endpoint, timeouts and
    retries, closed when the context ends."""
    region = secret_region(secret_id, settings.aws_region)
    async with get_session().create_client(
        "secretsmanager",
        region_name=region,
        endpoint_url=settings.aws_endpoint_url,
        config=client_config(settings),
    ) as client:
        yield SecretsManagerKey(client, secret_id)
