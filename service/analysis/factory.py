"""Chooses the analyzer named by the settings."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from service.metrics import Metrics
from service.ports import Analyzer, BlobStore
from service.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from service.analysis.cpu_pool import CpuPool
    from service.analysis.llm import LlmAnalyzer
    from service.analysis.llm_client import RotatingKey


def make_analyzer(
    settings: Settings,
    blobs: BlobStore,
    metrics: Metrics | None = None,
    api_key: RotatingKey | None = None,
    tracer: Tracer | None = None,
    cpu_pool: CpuPool | None = None,
) -> Analyzer:
    """The configured analyzer: ``llm`` when a model is configured, else ``offline``;
    ``sleep`` is a fixed-latency stand-in for load tests. ``blobs`` holds checkpoints.
    The offline analyzer runs its analyses in ``cpu_pool`` (in threads without one).

    ``api_key`` is the model key already read from a store that rotates it (the
    composition layer reads ``llm_api_key_secret_id``); the llm analyzer sends it, and reads
    it again when the model refuses it. ``tracer`` makes a span of each model request.
    """
    choice = settings.resolved_analyzer
    if choice == "sleep":
        from service.analysis.sleeping import SleepAnalyzer

        return SleepAnalyzer(settings.sleep_analyzer_s, settings.sleep_analyzer_steps)
    if choice == "llm":
        if api_key is not None:
            return _llm_with_rotating_key(settings, blobs, metrics, api_key, tracer)
        from service.analysis.llm import LlmAnalyzer

        return LlmAnalyzer.from_settings(settings, blobs, observer=metrics, tracer=tracer)
    from service.analysis.offline import OfflineAnalyzer

    return OfflineAnalyzer(prompt_language=settings.prompt_language, pool=cpu_pool)


def _llm_with_rotating_key(
    settings: Settings,
    blobs: BlobStore,
    metrics: Metrics | None,
    api_key: RotatingKey,
    tracer: Tracer | None,
) -> LlmAnalyzer:
    """What ``LlmAnalyzer.from_settings`` builds, with the client sending ``api_key``."""
    from service.analysis.llm import AnalyzerOptions, LlmAnalyzer
    from service.analysis.llm_client import ClientConfig, LlmClient
    from service.analysis.llm_limits import LlmLimiter

    config = dataclasses.replace(ClientConfig.from_settings(settings), api_key=api_key.current)
    limiter = LlmLimiter(
        concurrency=settings.llm_process_concurrency,
        requests_per_minute=settings.llm_requests_per_minute,
        tokens_per_minute=settings.llm_tokens_per_minute,
    )
    client = LlmClient(config, limiter, observer=metrics, rotating_key=api_key, tracer=tracer)
    return LlmAnalyzer(client, blobs, AnalyzerOptions.from_settings(settings))
