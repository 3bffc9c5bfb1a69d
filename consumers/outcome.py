"""What a handler tells the consumer to do with the message it handled."""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    """The fate of a handled message."""

    DELETE = "delete"
    """Done for good (success, permanent failure or duplicate): delete the message."""

    RETRY = "retry"
    """Leave the message; the queue delivers it again once its visibility expires."""
