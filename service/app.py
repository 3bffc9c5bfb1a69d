"""The aiohttp application: routes, error handling and the runtime's lifetime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from opentelemetry.trace import TracerProvider

from service import routes_health
from service import web as page
from service.appkeys import RUNTIME, SETTINGS
from service.http_errors import CLIENT_CLOSED, Handler, error_middleware, error_response
from service.ports import Analyzer
from service.runtime import open_runtime
from service.settings import Settings


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests by route template (not raw path, which would explode the labels).

    A request whose client hung up counts as :data:`CLIENT_CLOSED`, apart from failures.
    """
    started = time.perf_counter()
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        # No response will go out; count the request, then let the cancellation go on.
        _count_request(request, CLIENT_CLOSED, started)
        raise
    _count_request(request, response.status, started)
    return response


def _count_request(request: web.Request, status: int, started: float) -> None:
    runtime = request.config_dict.get(RUNTIME)
    if runtime is not None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        runtime.metrics.http.labels(route, request.method, str(status)).inc()
        runtime.metrics.http_seconds.labels(route).observe(time.perf_counter() - started)


API_PREFIX = "/v1"
"""Where the versioned API is mounted."""
_NEW_WORK = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def draining_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While the process drains, refuse writes under /v1 with 503 ``draining``.

    The API stays up through the drain so probes and status reads are answered; work sent
    now would only queue behind a shutdown, and the caller's retry reaches another replica.
    """
    runtime = request.config_dict.get(RUNTIME)
    if (
        runtime is not None
        and runtime.draining
        and request.method in _NEW_WORK
        and (request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"))
        # A cancel takes work away, so it is still welcome.
        and not request.path.endswith("/cancel")
    ):
        return error_response(503, "draining", "the service is shutting down; retry")
    return await handler(request)


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span for each request, from the runtime's tracing.

    Mounted only on an app built with tracing on. The instrumentation's own middleware
    comes with the runtime, which opens when the app starts, after its middlewares are set.
    """
    runtime = request.config_dict.get(RUNTIME)
    middleware = None if runtime is None else runtime.tracing.http_middleware
    if middleware is None:
        return await handler(request)
    return await middleware(request, handler)


async def _openapi(request: web.Request) -> web.StreamResponse:
    """``/openapi.json``, its schema modules loaded on the first request rather than at
    start-up (a worker rarely serves it)."""
    from service.openapi import openapi_handler

    return await openapi_handler(request)


def create_app(
    settings: Settings,
    *,
    serve_api: bool = True,
    worker: bool = True,
    analyzer: Analyzer | None = None,
    tracer_provider: TracerProvider | None = None,
) -> web.Application:
    """Build the app. ``serve_api`` mounts the /v1 sub-app; ``worker`` runs the consumer.

    Health, metrics and the OpenAPI document stay on the root app, so a worker-only
    process still serves its probes.
    """
    traced = settings.tracing or tracer_provider is not None
    # Outermost, so the request's span covers the error handling and the metrics too.
    middlewares = [tracing_middleware] if traced else []
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[*middlewares, metrics_middleware, error_middleware, draining_middleware],
    )
    app[SETTINGS] = settings
    app.add_routes(routes_health.routes)
    app.router.add_get("/openapi.json", _openapi)
    page.add_routes(app)
    if serve_api:
        # Imported here: the routes pull in the cost estimate and with it the model SDK,
        # tens of MiB that a worker-only process never uses.
        from service.api import create_v1_app

        app.add_subapp(API_PREFIX, create_v1_app(settings))

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(
            settings, worker=worker, analyzer=analyzer, tracer_provider=tracer_provider
        ) as runtime:
            app[RUNTIME] = runtime
            yield

    async def end_streams(app: web.Application) -> None:
        # Runs before the server waits for open requests: event streams end now, and their
        # clients reconnect to a replica that is staying up.
        runtime = app.get(RUNTIME)
        if runtime is not None:
            runtime.watch.close_watches()

    app.cleanup_ctx.append(runtime_ctx)
    app.on_shutdown.append(end_streams)
    return app
