"""The queue message body, as the seed sends it: ``{"jobId", "novelId", "userId"}``."""

from __future__ import annotations

from pydantic import Field

from service.models import CamelModel

ANALYZE = "analyze"


class JobMessage(CamelModel):
    """A job message. A body without ``type`` is an ``analyze`` job."""

    job_id: str = Field(min_length=1, max_length=128)
    novel_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=256)
    type: str = ANALYZE

    def to_body(self) -> str:
        """The JSON body sent to the queue: exactly the seed's body for an analyze job."""
        return self.model_dump_json(by_alias=True, exclude_defaults=True)
