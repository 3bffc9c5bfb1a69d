"""Which callback URLs a webhook may be sent to: the rules against reaching inside (SSRF).

A callback must be ``https`` and its host must resolve only to public addresses: no
loopback, private, link-local (the cloud metadata address 169.254.169.254 among them),
unspecified, multicast or reserved address, in IPv4 or IPv6, and none hidden inside an
IPv6 address (IPv4-mapped, 6to4, NAT64, Teredo). The rules apply when a callback is
registered and again at every delivery, since DNS can change in between; the delivery
also connects only to the addresses it checked. ``allow_private`` (the setting
``STORYBOARD_WEBHOOK_ALLOW_PRIVATE``) lifts both rules, for tests and local use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

MAX_URL = 2048
RESOLVE_TIMEOUT_S = 5.0
METADATA = ipaddress.ip_address("169.254.169.254")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]
"""``loop.getaddrinfo``'s shape, so a test can stand in for DNS."""


class CallbackRefused(Exception):
    """A callback URL breaks the rules; ``code`` is the API's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def forbidden(message: str) -> CallbackRefused:
    """The refusal of a URL whose scheme or address is not allowed."""
    return CallbackRefused("callback_url_forbidden", message)


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A parsed callback URL: its host (brackets stripped) and port."""

    url: str
    host: str
    port: int


def parse_callback_url(url: str, *, allow_private: bool) -> CallbackTarget:
    """Check the URL's form and scheme; raise :class:`CallbackRefused` if it fails."""
    if not url or len(url) > MAX_URL or not url.isascii() or not url.isprintable():
        raise CallbackRefused(
            "invalid_callback_url", f"callbackUrl must be 1-{MAX_URL} printable ASCII chars"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused("invalid_callback_url", f"callbackUrl is not a URL: {exc}") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise forbidden("callbackUrl must use https")
    _check_parts(parts)
    host = parts.hostname or ""
    return CallbackTarget(url, host, port or (443 if parts.scheme == "https" else 80))


def _check_parts(parts: SplitResult) -> None:
    if not parts.hostname:
        raise CallbackRefused("invalid_callback_url", "callbackUrl has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in the URL would be stored and shown with the job; sign requests
        # with the webhook secret instead.
        raise CallbackRefused("invalid_callback_url", "callbackUrl must not carry credentials")
    if parts.fragment:
        raise CallbackRefused("invalid_callback_url", "callbackUrl must not have a fragment")


def is_forbidden(address: IPAddress) -> bool:
    """Whether a webhook may never be sent to ``address``."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # A connection to it is one to the IPv4 address, so that alone decides.
            return is_forbidden(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and is_forbidden(embedded):
            return True
    return (
        address == METADATA
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or not address.is_global
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal, else ``None``."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Raise :class:`CallbackRefused` unless every address is one a webhook may reach."""
    seen = False
    for text in addresses:
        seen = True
        address = literal_address(text)
        if address is None or is_forbidden(address):
            raise forbidden(f"callbackUrl host {host} resolves to a forbidden address")
    if not seen:
        raise CallbackRefused("invalid_callback_url", f"callbackUrl host {host} does not resolve")


async def check_callback_url(
    url: str, *, allow_private: bool, getaddrinfo: GetAddrInfo | None = None
) -> CallbackTarget:
    """Parse ``url`` and resolve its host; raise :class:`CallbackRefused` if it is refused."""
    target = parse_callback_url(url, allow_private=allow_private)
    if allow_private:
        return target
    literal = literal_address(target.host)
    if literal is not None:
        check_addresses(target.host, [str(literal)])
        return target
    lookup = getaddrinfo or asyncio.get_running_loop().getaddrinfo
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await lookup(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        raise CallbackRefused(
            "invalid_callback_url", f"callbackUrl host {target.host} does not resolve"
        ) from None
    check_addresses(target.host, [str(info[4][0]) for info in infos])
    return target
