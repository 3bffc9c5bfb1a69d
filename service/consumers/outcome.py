"""What a handler tells the consumer to do with the message it handled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """The fate of a handled message."""

    DELETE = "delete"
    """Done for good (success, permanent failure or duplicate)."""

    RETRY = "retry"
    """Leave the message for redelivery, after ``retry_after_s`` if given."""

    DEAD_LETTER = "dead-letter"
    """Move the message to the dead-letter queue now: retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """An action and, for a retry, how long the message should stay hidden."""

    action: Action
    retry_after_s: int | None = None

    @classmethod
    def retry(cls, after_s: int | None = None) -> Outcome:
        """Redeliver later; ``None`` keeps the current visibility timeout."""
        return cls(Action.RETRY, after_s)


DELETE = Outcome(Action.DELETE)
RETRY = Outcome(Action.RETRY)
DEAD_LETTER = Outcome(Action.DEAD_LETTER)
