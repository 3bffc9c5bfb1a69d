"""The ``/v1`` sub-application: every authenticated route, behind the auth middleware."""

from __future__ import annotations

import structlog
from aiohttp import web

from service import routes_jobs, routes_novels
from service.appkeys import AUTHENTICATOR, USER_ID
from service.auth import Authenticator, AuthError, build_authenticator
from service.http_errors import Handler, error_response
from service.logs import get_logger
from service.settings import Settings

log = get_logger(__name__)


def authenticator_for(settings: Settings) -> Authenticator:
    """Credentials from the settings; warns when the API is open to anyone."""
    secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else None
    authenticator = build_authenticator(
        settings.auth_api_keys,
        secret=secret,
        jwks_file=settings.auth_jwks_file,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        user_claim=settings.auth_jwt_user_claim,
    )
    if not authenticator.enabled:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        log.warning(
            f"authentication is off: every caller reaching {host}:{settings.port} "
            "is the anonymous user 'local'"
        )
    return authenticator


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the request and bind the caller's user id to its log lines."""
    try:
        user = request.config_dict[AUTHENTICATOR].user_for(request.headers.get("Authorization"))
    except AuthError as exc:
        response = error_response(401, "unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    request[USER_ID] = user
    structlog.contextvars.bind_contextvars(userId=user)
    return await handler(request)


def create_v1_app(settings: Settings) -> web.Application:
    """The sub-application mounted at ``/v1``; the root app's error and metrics
    middlewares run around its own auth middleware."""
    v1 = web.Application(middlewares=[auth_middleware])
    v1[AUTHENTICATOR] = authenticator_for(settings)
    v1.add_routes(routes_novels.routes)
    v1.add_routes(routes_jobs.routes)
    return v1
