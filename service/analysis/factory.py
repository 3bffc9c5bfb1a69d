"""Chooses the analyzer named by the settings."""

from __future__ import annotations

from service.metrics import Metrics
from service.ports import Analyzer, BlobStore
from service.settings import Settings


def make_analyzer(settings: Settings, blobs: BlobStore, metrics: Metrics | None = None) -> Analyzer:
    """The configured analyzer: ``llm`` when a model is configured, else ``offline``;
    ``sleep`` is a fixed-latency stand-in for load tests. ``blobs`` holds checkpoints."""
    choice = settings.resolved_analyzer
    if choice == "sleep":
        from service.analysis.sleeping import SleepAnalyzer

        return SleepAnalyzer(settings.sleep_analyzer_s)
    if choice == "llm":
        from service.analysis.llm import LlmAnalyzer

        return LlmAnalyzer.from_settings(settings, blobs, observer=metrics)
    from service.analysis.offline import OfflineAnalyzer

    return OfflineAnalyzer()
