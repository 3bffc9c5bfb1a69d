"""structlog configuration: JSON lines in production, a console renderer on a TTY.

The standard library's loggers (aiohttp, asyncio, botocore, warnings) are rendered by the
same processors through :func:`stdlib_formatter`, so in JSON mode every line the process
writes is one JSON object.

Secrets never reach a line: the processor below masks values of keys that look like
credentials, as a last line of defence behind not logging them in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import Processor

_SECRET_MARKERS = ("key", "token", "secret", "password", "authorization")
_SAFE_KEYS = frozenset({"result_key", "text_key", "key_count"})

QUIET_LIBRARIES = ("aiobotocore", "botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore")
"""Loggers held at WARNING even at debug level: their debug lines dump whole requests and
responses (novel texts, signed headers) and drown the service's own lines."""


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        lowered = name.lower()
        if lowered not in _SAFE_KEYS and any(m in lowered for m in _SECRET_MARKERS):
            event[name] = "***"
    return event


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add ``traceId`` and ``spanId`` (hex, as trace back ends show them) while a recording
    span is current, so a job's lines can be found from its trace and the other way round."""
    span = trace.get_current_span()
    if span.is_recording():
        context = span.get_span_context()
        event.setdefault("traceId", format(context.trace_id, "032x"))
        event.setdefault("spanId", format(context.span_id, "016x"))
    return event


def _renderer(fmt: str) -> Processor:
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    if use_console:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def stdlib_formatter(fmt: str = "json") -> logging.Formatter:
    """A formatter rendering standard-library records as the service's own lines are: level,
    logger name, timestamp and ``extra`` fields, secrets masked, tracebacks in one field."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _mask_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time, as structlog's lines do to stdout."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        # StreamHandler.__init__ assigns a stream; this handler never keeps one.
        pass


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog and route the standard library's loggers through it."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No file argument: each line goes to whatever sys.stdout is at the time.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(numeric, fmt)


def _route_stdlib(numeric: int, fmt: str) -> None:
    root = logging.getLogger()
    # Replace only our own handler: configuring twice must not print every line twice, and
    # handlers someone else put on the root (a test runner's) stay.
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(stdlib_formatter(fmt))
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # aiohttp's access log would repeat every request; the metrics count them instead.
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    # A crash's traceback becomes one line in the same format instead of thirty plain ones.
    structlog.get_logger("service").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A bound logger for a module."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
