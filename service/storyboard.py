"""The storyboard schema: what every analyzer returns and what clients download.

Ids are assigned by our code, never by a model: characters ``c1, c2, …``, scenes ``s1, …``
and panels ``p1, …`` in reading order. A dialogue line's ``speakerId`` is a character id,
``narrator`` (a poem, a letter, a quotation that is narration) or ``unknown`` (spoken by
someone the text does not make clear).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from service.jobs import StoryboardSummary
from service.models import CamelModel, utcnow

NARRATOR = "narrator"
# A line someone speaks whom the analyzer could not tell: better than a wrong name.
UNKNOWN = "unknown"


class ShotType(StrEnum):
    """Camera framing of a panel."""

    ESTABLISHING = "establishing"
    WIDE = "wide"
    MEDIUM = "medium"
    CLOSE_UP = "close-up"
    EXTREME_CLOSE_UP = "extreme-close-up"
    OVER_THE_SHOULDER = "over-the-shoulder"


class Character(CamelModel):
    """A character with a stable id and what an illustrator needs to draw them."""

    id: str
    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    mentions: int = 0


class DialogueLine(CamelModel):
    """One spoken line; ``speakerId`` is a character's id, ``narrator`` or ``unknown``."""

    speaker_id: str
    text: str


class Panel(CamelModel):
    """One comic panel."""

    id: str
    shot_type: ShotType
    description: str
    character_ids: list[str] = Field(default_factory=list)
    dialogue: list[DialogueLine] = Field(default_factory=list)
    narration: str | None = None
    image_prompt: str


class Scene(CamelModel):
    """A run of panels in one place and time within a chapter."""

    id: str
    chapter_index: int = Field(ge=0)
    chapter_title: str
    summary: str
    location: str
    character_ids: list[str] = Field(default_factory=list)
    panels: list[Panel] = Field(default_factory=list)


class Meta(CamelModel):
    """How the storyboard was made, and by which run.

    The provenance fields are optional so storyboards stored before they existed still
    read; every new storyboard carries them, so a client can tell which job made it.
    """

    analyzer: str
    analyzer_version: str | None = None
    job_id: str | None = None
    created_at: datetime | None = None
    prompt_version: str | None = None
    chunk_count: int = 0
    chapter_count: int = 0
    timings: dict[str, float] = Field(default_factory=dict)
    model: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    prompt_language: str | None = None
    """The language the image prompts are written in, when the analyzer chose one."""
    text_chars: int | None = None
    """How many characters the analyzed text had, for measures per length of text."""


def provenance_meta(analyzer: str, version: str, job_id: str, **fields: object) -> Meta:
    """A ``Meta`` naming the analyzer, its version, the job (if any) and the time now."""
    return Meta.model_validate(
        {
            "analyzer": analyzer,
            "analyzer_version": version,
            "job_id": job_id or None,
            "created_at": utcnow(),
            **fields,
        }
    )


class Storyboard(CamelModel):
    """A whole novel as a comic storyboard."""

    novel_id: str
    title: str
    characters: list[Character] = Field(default_factory=list)
    scenes: list[Scene] = Field(default_factory=list)
    meta: Meta

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        known = {c.id for c in self.characters}
        for scene in self.scenes:
            _check_ids(scene.character_ids, known, f"scene {scene.id}")
            for panel in scene.panels:
                _check_ids(panel.character_ids, known, f"panel {panel.id}")
                speakers = [line.speaker_id for line in panel.dialogue]
                _check_ids(speakers, known | {NARRATOR, UNKNOWN}, f"dialogue of panel {panel.id}")
        return self

    def summary(self) -> StoryboardSummary:
        """The counts stored beside the storyboard's pointer."""
        return StoryboardSummary(
            title=self.title,
            chapters=self.meta.chapter_count,
            scenes=len(self.scenes),
            panels=sum(len(s.panels) for s in self.scenes),
            characters=len(self.characters),
        )


def _check_ids(ids: list[str], known: set[str], where: str) -> None:
    unknown = sorted(set(ids) - known)
    if unknown:
        raise ValueError(f"{where} refers to unknown character ids {unknown}")
