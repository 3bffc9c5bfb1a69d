"""``storyboard analyze FILE``: one novel through the real queue → worker → store path.

It runs the embedded backend in a temporary data directory inside this process, shows a
live progress bar and a summary on stderr, and writes the storyboard to a file or stdout.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from service.analysis.llm_estimate import Estimate, estimate_cost
from service.client import (
    STDOUT,
    Refused,
    check_target,
    default_title,
    read_input,
    title_for,
    write_output,
)
from service.consumers.analyze import ANALYZE_JOB
from service.consumers.job_types import HandlerDeps, JobHandler, JobType
from service.errors import BlobNotFound, CliError
from service.jobs import Job, JobStatus, StoryboardSummary
from service.models import utcnow
from service.ports import Analyzer, NovelText, ProgressCallback
from service.runtime import Runtime, open_runtime
from service.settings import Settings
from service.storyboard import Storyboard
from service.text import EmptyTextError, TextDecodeError, load_novel_bytes
from service.uploads import UploadRefused, check_novel_length, check_upload_size, store_novel

POLL_S = 0.1
# The analyze handler maps the analyzer's own fraction onto this span of the job's bar.
ANALYSIS_SPAN = (50, 90)

ONESHOT_RETRIES: dict[str, object] = {
    "retry_base_s": 2.0,
    "retry_max_s": 8.0,
    "llm_max_retries": 0,
}
"""Retries as a person at a terminal would make them: each failure is a new attempt of
the job, a few seconds later and announced, rather than the queue's 30 s doubling backoff
behind silent retries inside the model client. The attempts stay ``max_attempts`` (3),
so an unreachable model is given up on within seconds. Checkpoints keep the chunks an
earlier attempt finished."""


async def run_oneshot(
    settings: Settings, path: str, *, out: str | None, title: str | None, force: bool = False
) -> int:
    """Analyze one file; 0 on success, 1 if the job failed.

    ``out`` defaults to ``<title>.storyboard.json`` in the current directory; ``-`` is
    stdout. An existing file is replaced only with ``force``.
    """
    target = out if out is not None else f"{default_title(path)}.storyboard.json"
    # Checked first: a refusal after minutes of analysis would waste them.
    check_target(target, force=force)
    text = _load(path, settings)
    # Soft wrap: a line in a log or a narrow terminal stays one line, as grep expects.
    console = Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="storyboard-") as data_dir,
        ProgressDisplay(console) as display,
    ):
        local = settings.model_copy(
            update={
                "backend": "local",
                "data_dir": Path(data_dir),
                "receive_wait_s": 1.0,
                **oneshot_retries(settings),
            }
        )
        async with open_runtime(local, job_types=(_shown_analysis(display),)) as runtime:
            job = await _submit(runtime, title or title_for(path, text), text)
            job = await _follow(runtime, job.job_id, display)
            if job.status is not JobStatus.COMPLETED:
                error = job.error.message if job.error else "unknown error"
                console.print(f"[red]analysis failed[/red]: {error}")
                return 1
            document = await _fetch_storyboard(runtime, job)
    rendered = json.dumps(document, ensure_ascii=False, indent=2)
    await asyncio.to_thread(write_output, target, (rendered + "\n").encode(), force=force)
    _print_summary(console, job, target, time.perf_counter() - started)
    return 0


def estimate_file(settings: Settings, path: str, *, title: str | None = None) -> Estimate:
    """What the model analyzer would spend on a file, read and refused as ``analyze``
    reads it; nothing is sent to the model."""
    text = _load(path, settings)
    return estimate_cost(text, title or title_for(path, text), settings)


def _load(path: str, settings: Settings) -> str:
    """The file's text, refused as the API would refuse its upload."""
    # One byte over the limit is enough to know; a huge file is never read whole.
    data = read_input(path, max_bytes=settings.max_body_bytes + 1)
    try:
        check_upload_size(len(data), settings)
        text = load_novel_bytes(data)
        check_novel_length(text, settings)
    except UploadRefused as refused:
        raise Refused(refused.code, refused.message) from None
    except TextDecodeError as exc:
        raise CliError(f"{path}: {exc}") from None
    except EmptyTextError:
        raise CliError(f"{path}: the text is empty") from None
    return text


async def _submit(runtime: Runtime, title: str, text: str) -> Job:
    novel = await store_novel(runtime.backend, "local", title, text)
    return await runtime.producer.submit(novel.novel_id, "local", source=novel.source())


def oneshot_retries(settings: Settings) -> dict[str, object]:
    """The retry settings of a one-shot run: :data:`ONESHOT_RETRIES`, except where the
    environment chose its own."""
    return {k: v for k, v in ONESHOT_RETRIES.items() if k not in settings.model_fields_set}


async def _follow(runtime: Runtime, job_id: str, display: ProgressDisplay) -> Job:
    announced = 0
    while True:
        job = await runtime.backend.jobs.get(job_id)
        if job is None:
            raise CliError("the job record disappeared")
        # While the job runs, the analyzer's own reports are ahead of the record's
        # throttled writes; any other state (a retry wait, the end) is shown as it is.
        running = job.status is JobStatus.RUNNING
        display.show(job.progress.percentage, job.progress.stage, ahead_ok=running)
        if job.status is JobStatus.RETRYING and job.attempts > announced:
            announced = job.attempts
            display.notice(retry_notice(job, runtime.settings.effective_max_attempts))
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
            return job
        await asyncio.sleep(POLL_S)


def retry_notice(job: Job, max_attempts: int) -> str:
    """What a job waiting for its next attempt tells the person watching it."""
    wait_s = 0
    if job.next_attempt_at is not None:
        wait_s = max(0, math.ceil((job.next_attempt_at - utcnow()).total_seconds()))
    cause = job.error.message if job.error is not None else "the attempt failed"
    return f"{cause}; retrying in {wait_s} s (attempt {job.attempts + 1} of {max_attempts})"


class ProgressDisplay:
    """The progress of the one job: a live bar on a terminal, else a line per tenth.

    Lines keep a log or a pipe readable, where a redrawn bar would be one final line.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lines = not console.is_terminal
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        self._bar = Progress(*columns, console=console, disable=self._lines)
        self._task = self._bar.add_task("queued", total=100)
        self._shown = (0, "queued")
        self._tenth = -1

    def __enter__(self) -> ProgressDisplay:
        self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def show(self, percentage: int, stage: str, *, ahead_ok: bool = False) -> None:
        """Show ``percentage`` and ``stage``; with ``ahead_ok`` a lower percentage than the
        one shown is ignored (an older report arriving after a newer one)."""
        if (percentage, stage) == self._shown or (ahead_ok and percentage < self._shown[0]):
            return
        self._shown = (percentage, stage)
        self._bar.update(self._task, completed=percentage, description=stage)
        if self._lines and (percentage // 10 != self._tenth or not ahead_ok):
            self._tenth = percentage // 10
            self._console.print(f"{percentage:>3}% {stage}", highlight=False)

    def notice(self, text: str) -> None:
        """A line above the bar (or among the lines)."""
        self._console.print(text, highlight=False)


class _ShownAnalyzer:
    """The configured analyzer, its progress reports also shown as they happen."""

    def __init__(self, inner: Analyzer, display: ProgressDisplay) -> None:
        self.name = inner.name
        self._inner = inner
        self._display = display

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        """Analyze with ``inner``, showing each report before passing it on."""
        low, high = ANALYSIS_SPAN

        async def shown(fraction: float, stage: str) -> None:
            percentage = low + round((high - low) * max(0.0, min(1.0, fraction)))
            self._display.show(percentage, stage, ahead_ok=True)
            await on_progress(fraction, stage)

        return await self._inner.analyze(novel, shown)


def _shown_analysis(display: ProgressDisplay) -> JobType:
    """The analyze job type, with its analyzer's reports shown on ``display``.

    The job record gets progress at most every two seconds, which is all of a short run.
    """

    def build(deps: HandlerDeps) -> JobHandler | None:
        if deps.analyzer is None:
            return ANALYZE_JOB.build(deps)
        return ANALYZE_JOB.build(replace(deps, analyzer=_ShownAnalyzer(deps.analyzer, display)))

    return replace(ANALYZE_JOB, build=build)


async def _fetch_storyboard(runtime: Runtime, job: Job) -> object:
    if job.result_key is None:
        raise CliError("the job completed without a storyboard")
    try:
        return json.loads(await runtime.backend.blobs.get(job.result_key))
    except BlobNotFound:
        raise CliError("the storyboard is missing from the store") from None


def _print_summary(console: Console, job: Job, out: str, elapsed_s: float) -> None:
    if job.summary is not None:
        summary = StoryboardSummary.model_validate(job.summary)
        console.print(
            f"[bold]{summary.title}[/bold]: {summary.chapters} chapters, {summary.scenes} scenes, "
            f"{summary.panels} panels, {summary.characters} characters"
        )
    where = "stdout" if out == STDOUT else out
    console.print(f"storyboard written to {where} in {elapsed_s:.1f} s")
