"""Base pydantic model shared by every record and API document.

Records are stored and served with camelCase field names, as the seed's API did, while
Python code uses snake_case attributes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.fields import ComputedFieldInfo, FieldInfo


def field_title(name: str, _: FieldInfo | ComputedFieldInfo) -> str:
    """A JSON Schema title from the Python name: ``created_at`` → ``Created at``, where
    pydantic's default would title-case the alias into ``Createdat``."""
    return name.replace("_", " ").capitalize()


class CamelModel(BaseModel):
    """A model that reads either naming style and dumps camelCase JSON.

    Its serialization schema lists every field as required, defaults included: a field
    with a default is still always present in what the service sends.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        field_title_generator=field_title,
        json_schema_serialization_defaults_required=True,
    )

    def to_doc(self) -> dict[str, Any]:
        """The JSON-ready camelCase form used on the wire and in storage."""
        return self.model_dump(mode="json", by_alias=True)


def utcnow() -> datetime:
    """The current time, timezone-aware, truncated to milliseconds."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def isoformat(moment: datetime) -> str:
    """ISO 8601 with milliseconds and a ``Z`` suffix, the form every record uses."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    """A fresh opaque id (UUID4 hex, safe in keys and paths)."""
    return uuid.uuid4().hex
