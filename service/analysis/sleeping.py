"""A stand-in analyzer that waits a fixed time, for load tests and benchmarks.

It imitates a model call's latency without any work or network, so throughput and
concurrency can be measured against the theoretical limit. It is never the default. With
``steps`` above one it reports progress that many times, evenly over its latency, so the
progress a client follows moves while a job runs (the event-stream benchmark needs that).
"""

from __future__ import annotations

import asyncio

from service.ports import NovelText, ProgressCallback
from service.storyboard import Panel, Scene, ShotType, Storyboard, provenance_meta


class SleepAnalyzer:
    """Sleeps ``latency_s`` in ``steps`` equal parts, reporting progress after each, and
    returns a one-panel storyboard."""

    name = "sleep"
    version = "1"

    def __init__(self, latency_s: float, steps: int = 1) -> None:
        if steps < 1:
            raise ValueError("steps must be at least 1")
        self.latency_s = latency_s
        self.steps = steps

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Wait, reporting the fraction slept after each step, then describe the text in a
        single panel."""
        for step in range(1, self.steps + 1):
            await asyncio.sleep(self.latency_s / self.steps)
            await on_progress(step / self.steps, "slept")
        opening = novel.text[:200]
        panel = Panel(
            id="p1",
            shot_type=ShotType.WIDE,
            description=opening,
            narration=opening,
            image_prompt=f"Opening scene of {novel.title}",
        )
        scene = Scene(
            id="s1",
            chapter_index=1,
            chapter_title=novel.title,
            summary=opening,
            location="unspecified",
            panels=[panel],
        )
        meta = provenance_meta(
            self.name, self.version, novel.job_id, chunk_count=1, chapter_count=1
        )
        return Storyboard(novel_id=novel.novel_id, title=novel.title, scenes=[scene], meta=meta)
