"""The aiohttp application: routes, error handling and the runtime's lifetime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from service import api
from service.appkeys import AUTHENTICATOR, RUNTIME, SETTINGS
from service.auth import Authenticator, build_authenticator
from service.http_errors import Handler, auth_middleware, error_middleware
from service.logs import get_logger
from service.openapi import openapi_handler
from service.ports import Analyzer
from service.runtime import open_runtime
from service.settings import Settings

HEALTH_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

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
        log.warning("authentication is off: every caller is the anonymous user 'local'")
    return authenticator


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests by route template (not raw path, which would explode the labels)."""
    started = time.perf_counter()
    response = await handler(request)
    runtime = request.app.get(RUNTIME)
    if runtime is not None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        runtime.metrics.http.labels(route, request.method, str(response.status)).inc()
        runtime.metrics.http_seconds.labels(route).observe(time.perf_counter() - started)
    return response


def create_app(
    settings: Settings,
    *,
    serve_api: bool = True,
    worker: bool = True,
    analyzer: Analyzer | None = None,
) -> web.Application:
    """Build the app. ``serve_api`` adds the /v1 routes; ``worker`` runs the consumer.

    A worker-only process still serves /healthz and /readyz for its probes.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware, auth_middleware],
    )
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = authenticator_for(settings)
    for route in api.routes:
        if serve_api or route.path in HEALTH_ROUTES:  # type: ignore[attr-defined]
            app.router.add_route(route.method, route.path, route.handler)  # type: ignore[attr-defined]
    app.router.add_get("/openapi.json", openapi_handler)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings, worker=worker, analyzer=analyzer) as runtime:
            app[RUNTIME] = runtime
            yield

    app.cleanup_ctx.append(runtime_ctx)
    return app
