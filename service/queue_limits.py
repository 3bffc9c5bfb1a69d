"""SQS's own limits, which the local queue copies so both backends fail alike."""

from __future__ import annotations

MAX_BATCH = 10
"""Messages per receive, and entries per batch call."""

MAX_VISIBILITY_S = 43_200
"""The longest a message can stay hidden: 12 hours."""
