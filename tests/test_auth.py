"""Authentication (API keys, HS256 and RS256 JWTs) and per-user isolation."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa

from service.app import create_app
from service.auth import AuthError, build_authenticator
from service.logs import configure_logging
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

SECRET = "a-very-long-shared-secret-for-hs256-tests"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _authenticator(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "secret": SECRET, "jwks_file": None, "issuer": "https://issuer.example",
        "audience": "storyboard", "user_claim": "sub",
    }  # fmt: skip
    values.update(overrides)
    return build_authenticator({_digest("key-1"): "alice"}, **values)


def test_api_keys_are_matched_by_hash() -> None:
    auth = _authenticator()
    assert auth.user_for("Bearer key-1") == "alice"
    for header in (None, "", "Bearer", "Basic key-1", "Bearer key-2", "Bearer " + _digest("key-1")):
        with pytest.raises(AuthError):
            auth.user_for(header)


def test_hs256_tokens_check_expiry_issuer_and_audience() -> None:
    auth = _authenticator()
    good = {"sub": "bob", "iss": "https://issuer.example", "aud": "storyboard"}
    assert auth.user_for("Bearer " + _hs256(good)) == "bob"
    cognito_access = {"sub": "carol", "iss": "https://issuer.example", "client_id": "storyboard"}
    assert auth.user_for("Bearer " + _hs256(cognito_access)) == "carol"
    for bad in (
        _hs256({**good, "exp": int(time.time()) - 3600}),
        _hs256({**good, "iss": "https://elsewhere"}),
        _hs256({**good, "aud": "another-app"}),
        _hs256(good, secret="not-the-secret-but-just-as-long-as-it"),
        _hs256({"iss": good["iss"], "aud": good["aud"]}),  # no subject
        jwt.encode({**good}, SECRET, algorithm="HS256"),  # no expiry at all
    ):
        with pytest.raises(AuthError):
            auth.user_for("Bearer " + bad)


def test_rs256_tokens_are_checked_against_the_jwks_file(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    auth = _authenticator(secret=None, jwks_file=jwks, issuer=None, audience=None)
    claims = {"sub": "dave", "exp": int(time.time()) + 600}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    assert auth.user_for("Bearer " + token) == "dave"
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthError):
        auth.user_for("Bearer " + forged)


def test_anonymous_mode_only_without_credentials() -> None:
    auth = build_authenticator(
        {}, secret=None, jwks_file=None, issuer=None, audience=None, user_claim="sub"
    )
    assert not auth.enabled
    assert auth.user_for(None) == "local"


async def test_users_never_see_each_others_work(
    capsys: pytest.CaptureFixture[str],  # first, so it outlives the app's shutdown logging
    aiohttp_client: AiohttpClient,
    local_settings: SettingsFactory,
) -> None:
    configure_logging("info", "json")
    settings = local_settings(
        auth_api_keys={_digest("alice-key"): "alice", _digest("bob-key"): "bob"},
        receive_wait_s=0.5,
    )
    client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
    alice, bob = _bearer("alice-key"), _bearer("bob-key")

    response = await client.post("/v1/novels", json={"title": "t", "text": "x"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/healthz")).status == 200  # probes need no credentials

    created = await (await client.post("/v1/novels", json={"title": "t", "text": "x"},
                                       headers=alice)).json()  # fmt: skip
    novel = f"/v1/novels/{created['novelId']}"
    job = await (await client.post(f"{novel}/analyze", headers=alice)).json()
    assert (await client.get(job["statusUrl"], headers=alice)).status == 200
    for method, path in (
        ("GET", novel), ("POST", f"{novel}/analyze"), ("GET", f"{novel}/storyboard"),
        ("GET", job["statusUrl"]),
    ):  # fmt: skip
        response = await client.request(method, path, headers=bob)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    logged = capsys.readouterr().out
    assert "alice-key" not in logged
    assert "bob-key" not in logged
    assert '"userId": "alice"' in logged
