"""Routes on the root application of every process: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service.http_context import runtime_of
from service.http_errors import ApiError
from service.runtime import Runtime

PROBE_TIMEOUT_S = 3.0

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers and, in a worker, the receive loop's heartbeat is fresh."""
    runtime = runtime_of(request)
    consumer = runtime.consumer
    if consumer is not None:
        age = time.monotonic() - consumer.last_beat
        if age > runtime.settings.heartbeat_stale_s:
            raise ApiError(503, "consumer_stalled", f"consumer loop silent for {age:.0f} s")
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process, with the queues' depths read now."""
    metrics = runtime_of(request).metrics
    await metrics.sample_queues()
    body = metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: not draining, and every backend answers."""
    runtime = runtime_of(request)
    if runtime.draining:
        raise ApiError(503, "draining", "the service is shutting down")
    failures = await _probe_failures(runtime)
    if failures:
        raise ApiError(503, "backend_unavailable", "; ".join(failures))
    return web.json_response({"status": "ready", "backend": runtime.backend.name})


async def _probe_failures(runtime: Runtime) -> list[str]:
    probes = runtime.backend.probes
    results: list[Any] = await asyncio.gather(
        *(asyncio.wait_for(p.ping(), PROBE_TIMEOUT_S) for p in probes), return_exceptions=True
    )
    return [
        f"{type(p).__name__}: {type(r).__name__}"
        for p, r in zip(probes, results, strict=True)
        if isinstance(r, BaseException)
    ]
