"""Analyzers for tests: they count, fail on cue, or wait, and record what they saw."""

from __future__ import annotations

import asyncio

from service.analysis.sleeping import SleepAnalyzer
from service.errors import JobError
from service.ports import NovelText, ProgressCallback
from service.storyboard import Storyboard


class CountingAnalyzer(SleepAnalyzer):
    """Sleeps like SleepAnalyzer and records calls and the peak number running at once."""

    def __init__(self, latency_s: float = 0.0) -> None:
        super().__init__(latency_s)
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.started = asyncio.Event()

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.set()
        try:
            return await super().analyze(novel, on_progress)
        finally:
            self.running -= 1


class FlakyAnalyzer(CountingAnalyzer):
    """Fails transiently for the first ``failures`` calls, then succeeds."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        if self.calls < self.failures:
            self.calls += 1
            raise JobError("model_unavailable", "the model is overloaded", transient=True)
        return await super().analyze(novel, on_progress)


class RejectingAnalyzer(CountingAnalyzer):
    """Always fails permanently."""

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        self.calls += 1
        raise JobError("content_rejected", "the text was rejected", transient=False)


class SteppingAnalyzer(CountingAnalyzer):
    """Works in ``steps`` chunks of ``step_s`` seconds, reporting progress after each."""

    def __init__(self, steps: int, step_s: float) -> None:
        super().__init__()
        self.steps = steps
        self.step_s = step_s
        self.steps_done = 0

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        self.calls += 1
        self.started.set()
        for step in range(self.steps):
            await asyncio.sleep(self.step_s)
            self.steps_done += 1
            await on_progress((step + 1) / self.steps, f"chunk {step + 1}/{self.steps}")
        return await SleepAnalyzer.analyze(self, novel, on_progress)
