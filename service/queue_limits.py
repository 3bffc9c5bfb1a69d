"""SQS's own limits, which the local queue copies so both backends fail alike."""

from __future__ import annotations

from collections.abc import Mapping

MAX_BATCH = 10
"""Messages per receive, and entries per batch call."""

MAX_VISIBILITY_S = 43_200
"""The longest a message can stay hidden: 12 hours."""

MAX_ATTRIBUTES = 10
"""Message attributes one message may carry."""


def check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    """``attributes`` as a plain dict, or ValueError where SQS would refuse them: more than
    :data:`MAX_ATTRIBUTES`, an empty name or an empty value."""
    checked = dict(attributes or {})
    if len(checked) > MAX_ATTRIBUTES:
        raise ValueError(f"a message carries at most {MAX_ATTRIBUTES} attributes")
    for name, value in checked.items():
        if not name or not value:
            raise ValueError("message attribute names and values must not be empty")
    return checked
