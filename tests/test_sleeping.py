"""The sleep analyzer: a fixed-latency stand-in that reports progress in even steps."""

from __future__ import annotations

import pytest

from service.analysis.factory import make_analyzer
from service.analysis.sleeping import SleepAnalyzer
from service.backends.selection import open_backend
from service.jobs import Job, JobStatus
from service.ports import NovelText
from service.runtime import open_runtime
from service.settings import load_settings
from service.uploads import store_novel
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually, job_finished

NOVEL = NovelText(novel_id="n1", title="Tea", text="Once upon a time.", job_id="j1")


async def reported(analyzer: SleepAnalyzer) -> list[tuple[float, str]]:
    """Every progress report one analysis makes, in order."""
    reports: list[tuple[float, str]] = []

    async def on_progress(fraction: float, stage: str) -> None:
        reports.append((fraction, stage))

    board = await analyzer.analyze(NOVEL, on_progress)
    assert [len(scene.panels) for scene in board.scenes] == [1]
    return reports


async def test_by_default_it_reports_once_at_the_end() -> None:
    assert await reported(SleepAnalyzer(latency_s=0.0)) == [(1.0, "slept")]


async def test_steps_report_even_fractions_up_to_the_whole() -> None:
    reports = await reported(SleepAnalyzer(latency_s=0.0, steps=4))
    assert reports == [(0.25, "slept"), (0.5, "slept"), (0.75, "slept"), (1.0, "slept")]


def test_fewer_than_one_step_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SleepAnalyzer(latency_s=1.0, steps=0)


async def test_the_setting_reaches_the_analyzer(
    monkeypatch: pytest.MonkeyPatch, local_settings: SettingsFactory
) -> None:
    monkeypatch.setenv("STORYBOARD_ANALYZER", "sleep")
    monkeypatch.setenv("STORYBOARD_SLEEP_ANALYZER_S", "0.5")
    monkeypatch.setenv("STORYBOARD_SLEEP_ANALYZER_STEPS", "5")
    settings = load_settings(backend="local", data_dir=local_settings().data_dir)
    async with open_backend(settings) as backend:
        analyzer = make_analyzer(settings, backend.blobs)
    assert isinstance(analyzer, SleepAnalyzer)
    assert (analyzer.latency_s, analyzer.steps) == (0.5, 5)
    assert load_settings().sleep_analyzer_steps == 5
    monkeypatch.delenv("STORYBOARD_SLEEP_ANALYZER_STEPS")
    assert load_settings().sleep_analyzer_steps == 1


async def test_a_running_job_shows_the_progress_of_its_steps(
    local_settings: SettingsFactory,
) -> None:
    # The progress writer writes at most once per 2 s, so the job sleeps long enough for
    # one write to land between its start and its end.
    settings = await prepare(local_settings(receive_wait_s=0.5))
    analyzer = SleepAnalyzer(latency_s=4.0, steps=4)
    async with open_runtime(settings, analyzer=analyzer) as runtime:
        novel = await store_novel(runtime.backend, "local", "Tea", "Once upon a time.")
        submitted = await runtime.producer.submit(novel.novel_id, "local")

        async def mid_sleep() -> Job | None:
            job = await runtime.backend.jobs.get(submitted.job_id)
            if job is None or job.status is not JobStatus.RUNNING:
                return None
            # The analyzer's fractions map onto 50..90 %: a step short of the last is inside.
            return job if job.progress.stage == "slept" and job.progress.percentage < 90 else None

        seen = await eventually(mid_sleep, within_s=30)
        done = await job_finished(runtime.backend.jobs, submitted.job_id)
    assert seen.progress.percentage in (60, 70, 80)
    assert done.status is JobStatus.COMPLETED
