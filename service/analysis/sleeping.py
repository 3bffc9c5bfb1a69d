"""A stand-in analyzer that waits a fixed time, for load tests and benchmarks.

It imitates a model call's latency without any work or network, so throughput and
concurrency can be measured against the theoretical limit. It is never the default.
"""

from __future__ import annotations

import asyncio

from service.ports import NovelText, ProgressCallback
from service.storyboard import Panel, Scene, ShotType, Storyboard, provenance_meta


class SleepAnalyzer:
    """Sleeps ``latency_s`` and returns a one-panel storyboard."""

    name = "sleep"
    version = "1"

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Wait, then describe the text in a single panel."""
        await asyncio.sleep(self.latency_s)
        await on_progress(1.0, "slept")
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
