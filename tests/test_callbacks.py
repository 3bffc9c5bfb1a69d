"""The callback rules (SSRF): at registration through the real API, and the address table.

Registration resolves the host with the real resolver: ``localhost`` is a name that
resolves to 127.0.0.1. A name whose answer mixes a public and a private address is refused
too; that case uses a stand-in ``getaddrinfo``, as no public DNS is reachable here.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.callbacks import CallbackRefused, check_callback_url, is_forbidden
from tests.conftest import SettingsFactory

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

JSON = "application/json"
SECRET = "whsec_" + base64.b64encode(b"current-secret-of-32-bytes-long!").decode()


async def _client(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory, **overrides: Any
) -> tuple[Client, str]:
    settings = local_settings(**({"webhook_secret": SECRET} | overrides))
    client = await aiohttp_client(create_app(settings, worker=False))
    response = await client.post("/v1/novels", json={"title": "T", "text": "Once upon a time."})
    return client, str((await response.json())["novelId"])


async def _refused(client: Client, novel_id: str, body: Any, status: int, code: str) -> str:
    response = await client.post(f"/v1/novels/{novel_id}/analyze", **body)
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code, error
    return str(error["message"])


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/hook",  # a name that resolves to 127.0.0.1
        "https://169.254.169.254/latest/meta-data/",  # the metadata address
        "https://[::1]/",
        "https://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "https://10.0.0.8/hook",
        "https://127.1/hook",  # a short form the resolver expands to 127.0.0.1
        "http://example.com/hook",  # not https: refused before any lookup
    ],
)
async def test_forbidden_callbacks_are_refused_at_registration(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory, url: str
) -> None:
    client, novel_id = await _client(aiohttp_client, local_settings)
    body = {"json": {"callbackUrl": url}}
    await _refused(client, novel_id, body, 422, "callback_url_forbidden")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ({"json": ["https://example.com"]}, 422, "validation_error"),
        ({"json": {"callbackUrl": 5}}, 422, "validation_error"),
        ({"json": {"callbackURL": "https://example.com"}}, 422, "validation_error"),
        ({"json": {"callbackUrl": "https://user:pw@example.com/"}}, 422, "invalid_callback_url"),
        ({"json": {"callbackUrl": "https:///no-host"}}, 422, "invalid_callback_url"),
    ],
)
async def test_malformed_bodies_get_the_usual_error_shape(
    aiohttp_client: AiohttpClient,
    local_settings: SettingsFactory,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    client, novel_id = await _client(aiohttp_client, local_settings)
    assert await _refused(client, novel_id, body, status, code)


async def test_an_empty_body_or_no_callback_still_queues(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client, novel_id = await _client(aiohttp_client, local_settings)
    bodies: list[dict[str, Any]] = [{}, {"json": {}}, {"json": {"callbackUrl": None}}]
    for body in bodies:
        response = await client.post(f"/v1/novels/{novel_id}/analyze", **body)
        assert response.status == 202, await response.text()


async def test_without_a_signing_secret_callbacks_are_refused(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client, novel_id = await _client(aiohttp_client, local_settings, webhook_secret=None)
    body = {"json": {"callbackUrl": "https://example.com/hook"}}
    await _refused(client, novel_id, body, 422, "webhooks_disabled")


async def test_allow_private_lifts_both_rules(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory
) -> None:
    client, novel_id = await _client(aiohttp_client, local_settings, webhook_allow_private=True)
    body = {"callbackUrl": "http://127.0.0.1:9/hook"}
    response = await client.post(f"/v1/novels/{novel_id}/analyze", json=body)
    assert response.status == 202, await response.text()


def _answers(*addresses: str) -> Callable[..., Awaitable[list[tuple[Any, ...]]]]:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        family = socket.AF_INET6
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    return getaddrinfo


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    lookup = _answers("2606:4700:4700::1111", "192.168.1.20")
    with pytest.raises(CallbackRefused) as refused:
        await check_callback_url(
            "https://mixed.example/hook", allow_private=False, getaddrinfo=lookup
        )
    assert refused.value.code == "callback_url_forbidden"
    public = _answers("2606:4700:4700::1111", "1.1.1.1")
    target = await check_callback_url(
        "https://public.example:8443/hook", allow_private=False, getaddrinfo=public
    )
    assert (target.host, target.port) == ("public.example", 8443)


async def test_a_host_that_does_not_resolve_is_invalid() -> None:
    async def nowhere(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(CallbackRefused) as refused:
        await check_callback_url("https://nowhere.test/", allow_private=False, getaddrinfo=nowhere)
    assert refused.value.code == "invalid_callback_url"


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("169.254.1.1", True),
        ("0.0.0.0", True),
        ("100.64.0.1", True),  # carrier-grade NAT: not global
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),  # the metadata service over IPv6
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("2002:7f00:1::", True),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 around 169.254.169.254
        ("1.1.1.1", False),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:1.1.1.1", False),
    ],
)
def test_the_address_table(address: str, refused: bool) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is refused
