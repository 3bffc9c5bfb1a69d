"""One signed POST of an event to a callback URL, to the Standard Webhooks spec.

Signing uses the official ``standardwebhooks`` package, the same code receivers verify
with, so our signatures cannot drift from the spec's. With a previous secret configured the
``webhook-signature`` header carries both signatures, space-separated, for rotation.

The connection goes only to addresses that pass the callback rules
(:mod:`service.callbacks`): the host is resolved afresh for every attempt by a
:class:`GuardedResolver`, which refuses forbidden addresses before aiohttp connects to any of
them, so a DNS answer that changed since registration (rebinding) cannot slip through. IP
literals never reach a resolver, so they are checked before the request.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from standardwebhooks import Webhook

from service import __version__
from service.callbacks import (
    CallbackRefused,
    check_addresses,
    literal_address,
    parse_callback_url,
)


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses any answer holding a forbidden address."""

    def __init__(self, inner: AbstractResolver, *, allow_private: bool) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answer, if every address in it may be reached."""
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            check_addresses(host, [result["host"] for result in results])
        return results

    async def close(self) -> None:
        """Nothing to release: the inner resolver belongs to whoever made it."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: the HTTP status (``None`` if none came back), the wait the
    receiver asked for, and an error for the job view."""

    status: int | None = None
    retry_after_s: float | None = None
    error: str | None = None
    refused: bool = False
    """The callback rules refused the URL or its addresses: never retried."""

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Signs and POSTs event bodies; one short-lived connection per attempt."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        timeout_s: float,
        allow_private: bool,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if not secrets:
            raise ValueError("webhooks need a signing secret (STORYBOARD_WEBHOOK_SECRET)")
        self._signers = [Webhook(secret) for secret in secrets]
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow_private = allow_private
        self._resolver = resolver

    def headers(self, msg_id: str, body: str, moment: datetime | None = None) -> dict[str, str]:
        """The Standard Webhooks headers for ``body`` sent at ``moment`` (default: now)."""
        moment = moment or datetime.now(UTC)
        signatures = " ".join(signer.sign(msg_id, moment, body) for signer in self._signers)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(math.floor(moment.timestamp())),
            "webhook-signature": signatures,
            "content-type": "application/json",
            "user-agent": f"storyboard-service/{__version__} (webhooks)",
        }

    async def post(self, url: str, msg_id: str, body: str) -> Attempt:
        """POST ``body`` once; never raises for what the receiver or the network does."""
        try:
            target = parse_callback_url(url, allow_private=self._allow_private)
            literal = literal_address(target.host)
            if literal is not None and not self._allow_private:
                check_addresses(target.host, [str(literal)])
            return await self._post(url, msg_id, body)
        except CallbackRefused as exc:
            return Attempt(error=f"{exc.code}: {exc.message}", refused=True)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt(error=_describe(exc))

    async def _post(self, url: str, msg_id: str, body: str) -> Attempt:
        inner = self._resolver or ThreadedResolver()
        resolver = GuardedResolver(inner, allow_private=self._allow_private)
        # A connection of its own per attempt: every attempt resolves (and checks) afresh.
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False
            ) as session,
            session.post(
                url,
                data=body.encode("utf-8"),
                headers=self.headers(msg_id, body),
                allow_redirects=False,
            ) as response,
        ):
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Attempt(status=status, retry_after_s=retry_after, error=error)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if valid."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:500]
