"""Tracing set-up: the OpenTelemetry SDK, its OTLP exporter and the library instrumentations.

Off unless configured. ``main`` turns it on when an ``OTEL_*`` variable is set
(:func:`tracing_configured`); the SDK then reads every setting itself: the endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), the service
name (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the sampler
(``OTEL_TRACES_SAMPLER``), the batch processor's limits (``OTEL_BSP_*``). Off, nothing of the
SDK is imported, no exporter exists and no span is made: the service's spans live behind
objects the runtime only builds when tracing is on (:mod:`service.telemetry`).

The provider is never installed as OpenTelemetry's global one, which a process can set
only once: the runtime hands it to whatever makes spans. So a test opens runtimes with
providers of its own, one after another, in one process.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from opentelemetry import trace

from service.settings import SettingsError

INSTRUMENTATION_SCOPE = "storyboard-service"

HttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HttpMiddleware = Callable[[web.Request, HttpHandler], Awaitable[web.StreamResponse]]


def tracing_configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: some ``OTEL_*`` variable is set, and
    neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise."""
    names = {name for name, value in environ.items() if name.startswith("OTEL_") and value}
    if not names:
        return False
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"


@dataclass(frozen=True, slots=True)
class Tracing:
    """What a running process traces with: the provider (the API's no-op one when off) and
    the aiohttp server middleware (``None`` when off)."""

    provider: trace.TracerProvider
    http_middleware: HttpMiddleware | None = None

    @property
    def enabled(self) -> bool:
        """Whether spans are made at all."""
        return self.http_middleware is not None

    def tracer(self) -> trace.Tracer:
        """The service's own tracer."""
        return self.provider.get_tracer(INSTRUMENTATION_SCOPE)


OFF = Tracing(trace.NoOpTracerProvider())
"""Tracing off: no SDK, no exporter, no middleware."""


@asynccontextmanager
async def open_tracing(
    enabled: bool, provider: trace.TracerProvider | None = None
) -> AsyncIterator[Tracing]:
    """Tracing for the context's lifetime: ``provider`` when given (a test's, which its
    owner shuts down), else with ``enabled`` an SDK provider exporting over OTLP/HTTP,
    flushed and shut down on exit; with neither, :data:`OFF`."""
    if provider is None and not enabled:
        yield OFF
        return
    async with AsyncExitStack() as stack:
        if provider is None:
            provider = _sdk_provider()
            stack.push_async_callback(_shut_down, provider)
        _instrument_aws(provider, stack)
        yield Tracing(provider, _http_middleware(provider))


def _sdk_provider() -> trace.TracerProvider:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SettingsError(
            "OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed: "
            "install storyboard-service[otel], or unset them"
        ) from None
    # Both read the OTEL_* variables themselves: resource, sampler, endpoint, headers.
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


async def _shut_down(provider: trace.TracerProvider) -> None:
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        # Flushing exports over the network and blocks; the loop keeps serving meanwhile.
        await asyncio.to_thread(shutdown)


def _instrument_aws(provider: trace.TracerProvider, stack: AsyncExitStack) -> None:
    """Spans for every SQS, DynamoDB and S3 call, as children of the span current then."""
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor

    instrumentor = AiobotocoreInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        # Another runtime in this process holds the patch; its provider gets these spans.
        return
    instrumentor.instrument(tracer_provider=provider)
    stack.callback(instrumentor.uninstrument)


def _http_middleware(provider: trace.TracerProvider) -> HttpMiddleware:
    """The aiohttp server instrumentation's middleware, on ``provider``.

    The instrumentor's own ``instrument()`` swaps ``web.Application`` for a subclass, which
    would trace every application built afterwards (test servers too) and none built
    before. Its middleware is taken instead and mounted on the service's app alone; the
    instrument/uninstrument pair first sets up the module state the middleware reads.
    """
    from opentelemetry.instrumentation import aiohttp_server

    instrumentor = aiohttp_server.AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        with warnings.catch_warnings():
            # aiohttp warns of the subclass, which is never used here.
            warnings.simplefilter("ignore", DeprecationWarning)
            instrumentor.instrument(tracer_provider=provider)
        instrumentor.uninstrument()
    return cast(HttpMiddleware, aiohttp_server.create_aiohttp_middleware(provider))
