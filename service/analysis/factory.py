"""Chooses the analyzer named by the settings."""

from __future__ import annotations

from service.ports import Analyzer
from service.settings import Settings


def make_analyzer(settings: Settings) -> Analyzer:
    """The configured analyzer: ``offline`` by default, ``sleep`` for load tests."""
    if settings.analyzer == "sleep":
        from service.analysis.sleeping import SleepAnalyzer

        return SleepAnalyzer(settings.sleep_analyzer_s)
    from service.analysis.offline import OfflineAnalyzer

    return OfflineAnalyzer()
