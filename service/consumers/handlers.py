"""Handlers registered by message ``type``, and the dispatch the consumer calls."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import structlog
from pydantic import ValidationError

from service.consumers.outcome import DEAD_LETTER, Outcome
from service.logs import get_logger
from service.messages import JobMessage
from service.ports import Message

log = get_logger(__name__)

Handler = Callable[[JobMessage, Message], Awaitable[Outcome]]


class HandlerRegistry:
    """Maps message types to handlers and routes each delivery to its handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.poison = 0

    def register(self, message_type: str, handler: Handler) -> None:
        """Route messages of ``message_type`` to ``handler``."""
        if message_type in self._handlers:
            raise ValueError(f"a handler for {message_type!r} is already registered")
        self._handlers[message_type] = handler

    @property
    def types(self) -> list[str]:
        """The registered message types."""
        return sorted(self._handlers)

    async def dispatch(self, delivery: Message) -> Outcome:
        """Parse a delivery and run its handler.

        A poison message (a body that does not parse, or names an unknown type) is logged
        once with its size and hash and moved to the dead-letter queue at once: retrying it
        cannot help, and nothing is lost.
        """
        try:
            message = JobMessage.model_validate_json(delivery.body)
        except ValidationError as exc:
            self.poison += 1
            log.error("poison message", **_fingerprint(delivery.body), problems=exc.error_count())
            return DEAD_LETTER
        structlog.contextvars.bind_contextvars(jobId=message.job_id)
        handler = self._handlers.get(message.type)
        if handler is None:
            self.poison += 1
            log.error("poison message: unknown type", type=message.type[:64], known=self.types)
            return DEAD_LETTER
        return await handler(message, delivery)


def _fingerprint(body: str) -> dict[str, object]:
    raw = body.encode("utf-8", "replace")
    return {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
