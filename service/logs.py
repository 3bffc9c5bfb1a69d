"""structlog configuration: JSON lines in production, a console renderer on a TTY.

Secrets never reach a line: the processor below masks values of keys that look like
credentials, as a last line of defence behind not logging them in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_MARKERS = ("key", "token", "secret", "password", "authorization")
_SAFE_KEYS = frozenset({"result_key", "text_key", "key_count"})


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        lowered = name.lower()
        if lowered not in _SAFE_KEYS and any(m in lowered for m in _SECRET_MARKERS):
            event[name] = "***"
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog and route the standard library's loggers through it."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No file argument: each line goes to whatever sys.stdout is at the time.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiohttp, botocore) log through the standard library; keep them quiet.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A bound logger for a module."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
