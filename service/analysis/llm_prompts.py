"""Prompts for the two model passes, and the shapes their JSON replies must have.

Pass A reads one chunk of the novel and lists its characters (name, aliases, appearance)
with a short summary of the chunk. Pass B turns one chunk into scenes and panels, given
the character list merged from pass A and the summary of the chunk before. Both ask for a
single JSON object of an exact shape (DashScope's JSON mode also refuses prompts that do
not mention JSON); the models below validate what comes back, and :func:`repair_messages`
sends validation errors back for one more try.

Replies name characters; they never invent ids. Ids are assigned by our code. Text fields
are written in the novel's language, except ``imagePrompt``, which is English because
most image generators follow English prompts best.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from service.analysis.llm_client import ChatMessage
from service.storyboard import NARRATOR, UNKNOWN, ShotType

__all__ = [
    "PROMPT_VERSION",
    "SHOT_TYPES",
    "TEXT_CLOSE",
    "TEXT_OPEN",
    "CastEntry",
    "CastReply",
    "CharacterReply",
    "LineReply",
    "PanelReply",
    "SceneReply",
    "StoryboardReply",
    "cast_messages",
    "chapter_marker",
    "describe_errors",
    "parse_cast",
    "parse_storyboard",
    "repair_messages",
    "storyboard_messages",
]

PROMPT_VERSION = "1"
"""Bumped whenever a prompt or reply shape changes, so old checkpoints are not reused."""

TEXT_OPEN = "<<<NOVEL TEXT"
TEXT_CLOSE = "NOVEL TEXT>>>"
MAX_ERRORS = 20

SHOT_TYPES = [shot.value for shot in ShotType]
_SHOT_SYNONYMS = {
    "close": "close-up",
    "closeup": "close-up",
    "extreme-closeup": "extreme-close-up",
    "extreme-close": "extreme-close-up",
    "long": "wide",
    "full": "wide",
    "mid": "medium",
    "over-shoulder": "over-the-shoulder",
}


# --------------------------------------------------------------------------- reply shapes


def _text(value: Any) -> Any:
    """Models write ``null`` for an empty field; read it as the empty string."""
    return "" if value is None else value


def _names(value: Any) -> Any:
    """A lone name where a list belongs is read as a list of one."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_text)]
Names = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_names)]


class _Reply(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", str_strip_whitespace=True
    )


class CharacterReply(_Reply):
    """One character as pass A reports it."""

    name: str = Field(min_length=1)
    aliases: Names = Field(default_factory=list)
    appearance: Text = ""


class CastReply(_Reply):
    """Pass A's reply: the chunk's characters and what happens in it."""

    characters: list[CharacterReply] = Field(default_factory=list)
    summary: Text


class LineReply(_Reply):
    """A spoken line; ``speaker`` is a character's name or ``narrator``."""

    speaker: str = Field(min_length=1)
    text: str = Field(min_length=1)


class PanelReply(_Reply):
    """One panel; characters by name."""

    shot_type: ShotType
    description: str = Field(min_length=1)
    characters: Names = Field(default_factory=list)
    dialogue: list[LineReply] = Field(default_factory=list)
    narration: str | None = None
    image_prompt: Text = ""

    @field_validator("shot_type", mode="before")
    @classmethod
    def _normalise_shot(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        shot = "-".join(value.lower().replace("_", " ").split()).removesuffix("-shot")
        return _SHOT_SYNONYMS.get(shot, shot)


class SceneReply(_Reply):
    """One scene of a chapter; ``chapter`` is the number in the chunk's chapter marker."""

    chapter: int | None = None
    location: Text = ""
    summary: Text = ""
    characters: Names = Field(default_factory=list)
    panels: list[PanelReply] = Field(min_length=1)


class StoryboardReply(_Reply):
    """Pass B's reply. Validated with ``context={"chapters": [...]}``: every scene must name
    one of the chunk's chapters (it may omit it when the chunk has only one)."""

    scenes: list[SceneReply] = Field(min_length=1)

    @model_validator(mode="after")
    def _chapters_exist(self, info: ValidationInfo) -> Self:
        context = info.context if isinstance(info.context, Mapping) else {}
        chapters = list(context.get("chapters", []))
        if not chapters:
            return self
        for number, scene in enumerate(self.scenes):
            if scene.chapter is None and len(chapters) == 1:
                scene.chapter = chapters[0]
            elif scene.chapter not in chapters:
                raise ValueError(
                    f"scenes.{number}.chapter is {scene.chapter}; it must be one of {chapters}, "
                    "the numbers in this part's [[chapter N: ...]] markers"
                )
        return self


def parse_cast(data: Mapping[str, Any]) -> CastReply:
    """Validate a pass A reply; raises :class:`ValidationError`."""
    return CastReply.model_validate(data)


def parse_storyboard(data: Mapping[str, Any], chapters: Sequence[int]) -> StoryboardReply:
    """Validate a pass B reply for a chunk holding ``chapters``; raises :class:`ValidationError`."""
    return StoryboardReply.model_validate(data, context={"chapters": list(chapters)})


def describe_errors(exc: ValidationError) -> list[str]:
    """Validation errors as short lines a model can act on."""
    lines = []
    for error in exc.errors()[:MAX_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "reply"
        lines.append(f"{where}: {error['msg']}")
    return lines


# --------------------------------------------------------------------------- prompts

_CAST_SHAPE = """{
  "characters": [
    {"name": "string", "aliases": ["string"], "appearance": "string"}
  ],
  "summary": "string"
}"""

_CAST_SYSTEM = f"""You are the story editor of a comic adaptation. You read one part of a \
novel and list the characters who appear in it.

Answer with a single JSON object and nothing else (no Markdown, no comments), in exactly \
this shape:
{_CAST_SHAPE}

Rules:
- characters: every person or personified creature who acts or speaks in this part, each \
once. Leave out people who are only mentioned in passing.
- name: the fullest name the text uses, spelled as in the text.
- aliases: every other way the text refers to the same character (short names, titles, \
nicknames, courtesy names); no pronouns. An empty list when there are none.
- appearance: what an illustrator needs to draw them (age, build, face, hair, clothing, \
distinctive features) as the text states or clearly implies; "" when it says nothing.
- summary: at most three sentences on what happens in this part, naming the characters, \
for the editor of the next part.
- Write names, appearance and summary in the language of the novel."""

_STORYBOARD_SHAPE = """{
  "scenes": [
    {
      "chapter": 1,
      "location": "string",
      "summary": "string",
      "characters": ["name"],
      "panels": [
        {
          "shotType": "medium",
          "description": "string",
          "characters": ["name"],
          "dialogue": [{"speaker": "name or narrator", "text": "string"}],
          "narration": "string or null",
          "imagePrompt": "string"
        }
      ]
    }
  ]
}"""


def _storyboard_system(panel_chars: int) -> str:
    return f"""You are the storyboard artist of a comic adaptation. You turn one part of a \
novel into scenes and panels.

Answer with a single JSON object and nothing else (no Markdown, no comments), in exactly \
this shape:
{_STORYBOARD_SHAPE}

Rules:
- chapter: the number N of the [[chapter N: ...]] marker above the text the scene comes \
from. Every chapter in the part gets at least one scene; scenes are in reading order.
- Start a new scene when the place or time changes. Give each scene 1 to 8 panels, about \
one panel per {panel_chars} characters of text, choosing the moments worth drawing.
- shotType: one of {", ".join(SHOT_TYPES)}.
- characters and speaker: a name or alias from the character list; a character missing \
from the list by the name the text uses. A line spoken by no character has the speaker \
"{NARRATOR}"; a line whose speaker the text does not make clear may have "{UNKNOWN}".
- dialogue: lines actually spoken in the text, shortened when long; at most 3 per panel.
- narration: a caption for what the pictures cannot show, or null.
- description: what the panel shows. location and summary describe the scene.
- imagePrompt: a self-contained English prompt for an illustrator: setting, each \
character described by looks rather than name, action, mood and framing.
- Write every field except imagePrompt in the language of the novel."""


def chapter_marker(index: int, title: str, *, continued: bool = False) -> str:
    """The line that introduces a chapter's text inside a chunk."""
    suffix = " (continued)" if continued else ""
    return f"[[chapter {index}: {title}]]{suffix}"


def _with_text(header: str, text: str) -> str:
    return f"{header}\n\n{TEXT_OPEN}\n{text}\n{TEXT_CLOSE}"


def cast_messages(*, title: str, part: int, parts: int, text: str) -> list[ChatMessage]:
    """Pass A: list the characters of one chunk and summarise it."""
    header = f'Novel: "{title}". Part {part} of {parts}. Answer in JSON.'
    return [
        {"role": "system", "content": _CAST_SYSTEM},
        {"role": "user", "content": _with_text(header, text)},
    ]


class CastEntry(BaseModel):
    """A character as shown to pass B: a name and the aliases that refer to them."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    appearance: str = ""


def storyboard_messages(
    *,
    title: str,
    part: int,
    parts: int,
    text: str,
    chapters: Sequence[int],
    cast: Sequence[CastEntry],
    previous_summary: str,
    panel_chars: int,
) -> list[ChatMessage]:
    """Pass B: scenes and panels of one chunk, given the character list and what came before."""
    cast_json = json.dumps([c.model_dump() for c in cast], ensure_ascii=False)
    before = previous_summary or "(this is the beginning of the novel)"
    header = (
        f'Novel: "{title}". Part {part} of {parts}, holding chapters '
        f"{', '.join(str(c) for c in chapters)}.\n\n"
        f"Characters (JSON, name, aliases and appearance):\n{cast_json}\n\n"
        f"Story so far, in brief: {before}\n\n"
        "Answer in JSON."
    )
    return [
        {"role": "system", "content": _storyboard_system(panel_chars)},
        {"role": "user", "content": _with_text(header, text)},
    ]


def repair_messages(
    messages: Sequence[ChatMessage], raw: str, errors: Sequence[str]
) -> list[ChatMessage]:
    """The conversation plus the rejected reply and what was wrong with it."""
    problems = "\n".join(f"- {line}" for line in errors)
    request = (
        "Your answer could not be used:\n"
        f"{problems}\n\n"
        "Answer again with the complete, corrected JSON object in exactly the shape the "
        "instructions give, and nothing else."
    )
    return [
        *messages,
        {"role": "assistant", "content": raw},
        {"role": "user", "content": request},
    ]
