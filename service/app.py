"""The aiohttp application: routes, error handling and the runtime's lifetime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from service import routes_health
from service.api import PREFIX, create_v1_app
from service.appkeys import RUNTIME, SETTINGS
from service.http_errors import Handler, error_middleware
from service.openapi import openapi_handler
from service.ports import Analyzer
from service.runtime import open_runtime
from service.settings import Settings


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests by route template (not raw path, which would explode the labels)."""
    started = time.perf_counter()
    response = await handler(request)
    runtime = request.config_dict.get(RUNTIME)
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
    """Build the app. ``serve_api`` mounts the /v1 sub-app; ``worker`` runs the consumer.

    Health, metrics and the OpenAPI document stay on the root app, so a worker-only
    process still serves its probes.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
    )
    app[SETTINGS] = settings
    app.add_routes(routes_health.routes)
    app.router.add_get("/openapi.json", openapi_handler)
    if serve_api:
        app.add_subapp(PREFIX, create_v1_app(settings))

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings, worker=worker, analyzer=analyzer) as runtime:
            app[RUNTIME] = runtime
            yield

    app.cleanup_ctx.append(runtime_ctx)
    return app
