"""Who is calling: API keys or JWTs in ``Authorization: Bearer …``.

* **API keys** are configured as SHA-256 hashes mapped to user ids, so the service never
  holds a usable key.
* **JWTs** are HS256 with a shared secret, or RS256 checked against a JWKS file (as Cognito
  publishes). Expiry is always checked; issuer and audience when configured. A Cognito access
  token carries ``client_id`` instead of ``aud``, and that is accepted as the audience.
* With neither configured, every caller is the anonymous user ``local`` and the service
  warns at start-up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jwt

# PyJWT is imported where a token is checked, not here: it loads cryptography (~11 MiB of
# resident memory), which a worker, or an API on API keys alone, never uses.

ANONYMOUS_USER = "local"
LEEWAY_S = 30


class AuthError(Exception):
    """The request carries no valid credentials; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class JwtRules:
    """How tokens are checked."""

    secret: str | None = None
    jwks: jwt.PyJWKSet | None = None
    issuer: str | None = None
    audience: str | None = None
    user_claim: str = "sub"


def load_jwks(path: Path) -> jwt.PyJWKSet:
    """Read a JWKS document; a clear ValueError if it is unreadable or malformed."""
    import jwt

    try:
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"cannot load JWKS file {path}: {exc}") from None


class Authenticator:
    """Maps an Authorization header to a user id."""

    def __init__(self, api_key_hashes: Mapping[str, str], rules: JwtRules | None) -> None:
        self._keys = {digest.lower(): user for digest, user in api_key_hashes.items()}
        self._rules = rules

    @property
    def enabled(self) -> bool:
        """False in anonymous local mode."""
        return bool(self._keys) or self._rules is not None

    def user_for(self, authorization: str | None) -> str:
        """The caller's user id; raise AuthError when credentials are missing or wrong."""
        if not self.enabled:
            return ANONYMOUS_USER
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing bearer credentials")
        if token.count(".") == 2 and self._rules is not None:
            return self._verify_jwt(token, self._rules)
        user = self._keys.get(hashlib.sha256(token.encode("utf-8")).hexdigest())
        if user is None:
            raise AuthError("invalid credentials")
        return user

    def _verify_jwt(self, token: str, rules: JwtRules) -> str:
        import jwt

        try:
            claims = _decode(token, rules)
        except jwt.PyJWTError:
            raise AuthError("invalid or expired token") from None
        user = claims.get(rules.user_claim)
        if not isinstance(user, str) or not user:
            raise AuthError(f"token has no {rules.user_claim!r} claim")
        return user


def _decode(token: str, rules: JwtRules) -> dict[str, Any]:
    import jwt

    if rules.jwks is not None:
        kid = jwt.get_unverified_header(token).get("kid")
        matches = [k for k in rules.jwks.keys if kid is None or k.key_id == kid]
        if not matches:
            raise jwt.InvalidKeyError("no key for this token")
        key: Any = matches[0].key
        algorithms = ["RS256"]
    else:
        key, algorithms = rules.secret, ["HS256"]
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=algorithms,
        issuer=rules.issuer,
        leeway=LEEWAY_S,
        options={"require": ["exp"], "verify_aud": False},
    )
    _check_audience(claims, rules.audience)
    return claims


def _check_audience(claims: Mapping[str, Any], audience: str | None) -> None:
    import jwt

    if audience is None:
        return
    aud = claims.get("aud", claims.get("client_id"))
    allowed = aud if isinstance(aud, list) else [aud]
    if audience not in allowed:
        raise jwt.InvalidAudienceError("audience mismatch")


def build_authenticator(
    api_key_hashes: Mapping[str, str],
    *,
    secret: str | None,
    jwks_file: Path | None,
    issuer: str | None,
    audience: str | None,
    user_claim: str,
) -> Authenticator:
    """The authenticator for the configured credentials (anonymous when none are)."""
    rules = None
    if secret is not None or jwks_file is not None:
        jwks = load_jwks(jwks_file) if jwks_file is not None else None
        rules = JwtRules(secret, jwks, issuer, audience, user_claim)
    return Authenticator(api_key_hashes, rules)
