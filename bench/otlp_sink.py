"""A loopback OTLP/HTTP receiver for the tracing benchmark: ``python -m bench.otlp_sink``.

Takes ``POST /v1/traces`` (protobuf), decodes each export to count its spans, and answers
``GET /count`` with the totals. It prints its port on the first line of stdout. Run in a
process of its own, so the decoding never weighs on the process being measured.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

COUNTS = web.AppKey("counts", dict)


async def traces(request: web.Request) -> web.Response:
    """Count one export's spans and its bytes."""
    body = await request.read()
    export = ExportTraceServiceRequest.FromString(body)
    counts = request.app[COUNTS]
    counts["exports"] += 1
    counts["bytes"] += len(body)
    counts["spans"] += sum(
        len(scope.spans) for resource in export.resource_spans for scope in resource.scope_spans
    )
    return web.Response(body=b"", content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    """The totals so far."""
    return web.json_response(request.app[COUNTS])


async def serve() -> None:
    """Listen on a free loopback port until killed."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[COUNTS] = {"exports": 0, "bytes": 0, "spans": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    print(sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())
