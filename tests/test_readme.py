"""The README's quick start, run as it is written against a real service.

The shell blocks marked ``<!-- quickstart … -->`` run under ``bash -euo pipefail`` in a fresh
directory, with three rewrites that keep the README readable as it is: its
``http://127.0.0.1:8080`` becomes the test service's URL (and the CLI lines get ``--url``),
``../shared/…`` becomes the shared corpus beside the project, found as every other test finds
it, and ``.venv/bin/`` becomes this interpreter's own bin directory. What the block prints is
then held against the README's ``# →`` lines, in order, with ``…`` standing for any text. A
renamed field, a stale figure or a command that no longer works fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ROOT, ServiceProcess, running_service, service_env
from service.analysis.offline import OfflineAnalyzer
from service.ports import NovelText
from service.text import load_novel_bytes
from tests.conftest import corpus_file

README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8080"
MARKED_BLOCK = re.compile(r"^<!-- quickstart\b[^\n]*-->\n```sh\n(.*?)^```", re.M | re.S)
SHOWN = "# → "
EXAMPLE = "# e.g. "
SHARED_PATH = re.compile(r"\.\./shared/corpus/([\w.-]+)")
CLI_CALL = re.compile(r"\bstoryboard (submit|status) ")
POLL_LINE = re.compile(r"^([a-z]+) (\{\"percentage\": .*\})$")
STAGE_ROW = re.compile(r"^\| (\d+)(?:–(\d+))? \| (.*) \|$")
TICKED = re.compile(r"`([^`]+)`")
BLOCK_TIMEOUT_S = 180


def quickstart_blocks() -> list[str]:
    """The marked shell blocks, in README order."""
    blocks = MARKED_BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) == 2, "the README marks two quick-start blocks: HTTP and CLI"
    return blocks


def shown_lines(block: str) -> list[str]:
    """The output the block's ``# →`` lines promise, in order."""
    return [line[len(SHOWN) :] for line in block.splitlines() if line.startswith(SHOWN)]


def _pattern(shown: str) -> re.Pattern[str]:
    return re.compile(".+?".join(re.escape(part) for part in shown.split("…")))


def assert_shows(output: str, shown: list[str]) -> None:
    """Each shown line matches a whole output line, in the order the README gives them."""
    lines = iter(output.splitlines())
    for expected in shown:
        pattern = _pattern(expected)
        if not any(pattern.fullmatch(line) for line in lines):
            raise AssertionError(f"the README shows {expected!r}; the block printed:\n{output}")


def runnable(block: str, url: str) -> str:
    """The block as this test runs it: its service, corpus and venv made concrete."""
    script = block.replace(README_URL, url)
    script = CLI_CALL.sub(lambda m: f"{m.group(0)}--url {url} ", script)
    script = SHARED_PATH.sub(lambda m: str(corpus_file(m.group(1))), script)
    return script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")


def run_block(script: str, cwd: Path, env: dict[str, str]) -> str:
    """Run a block under ``bash -euo pipefail``; what it printed, stdout and stderr merged."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"the block failed with {done.returncode}:\n{done.stdout}")
    return done.stdout


# --------------------------------------------------------------------------- the stage table


@dataclass(frozen=True)
class Stages:
    """The README's table of job stages: fixed (percentage, stage) rows and the analyzer's
    span, whose own stage names are the analyzer's."""

    fixed: frozenset[tuple[int, str]]
    span: tuple[int, int]
    analyzer_first: str
    analyzer_last: str

    def allows(self, percentage: int, stage: str) -> bool:
        """Whether a job could show this progress."""
        low, high = self.span
        return (percentage, stage) in self.fixed or low <= percentage <= high


def readme_stages() -> Stages:
    """Parse the table that follows the ``| percentage | stage |`` header."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| percentage | stage |") :].split("\n\n", 1)[0]
    fixed: set[tuple[int, str]] = set()
    span: tuple[int, int] | None = None
    names: list[str] = []
    for row in table.splitlines():
        match = STAGE_ROW.match(row)
        if match is None:
            continue
        low, high, cell = int(match.group(1)), match.group(2), match.group(3)
        if high is None:
            (stage,) = TICKED.findall(cell)
            fixed.add((low, stage))
        else:
            span, names = (low, int(high)), TICKED.findall(cell)
    assert span is not None, table
    assert len(names) >= 2, table
    return Stages(frozenset(fixed), span, names[0], names[-1])


def assert_poll_lines_are_documented(output: str, stages: Stages) -> None:
    """Every status line the poll loop printed is a stage the README's table names."""
    polled = [m for m in map(POLL_LINE.match, output.splitlines()) if m]
    assert polled, output
    for match in polled:
        progress = json.loads(match.group(2))
        assert stages.allows(progress["percentage"], progress["stage"]), match.group(0)


# --------------------------------------------------------------------------- the HTTP block


@dataclass
class QuickStartRun:
    """The HTTP block's run: what it printed and the service's log."""

    output: str
    log: str
    cwd: Path


@pytest.fixture(scope="module")
def http_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStartRun]:
    """The first quick-start block, run once against a real ``storyboard serve``."""
    tmp = tmp_path_factory.mktemp("readme")
    env = service_env(tmp / "data", STORYBOARD_ANALYZER="offline")
    with running_service("serve", env, tmp / "serve.log") as service:
        output = run_block(runnable(quickstart_blocks()[0], service.url), tmp, env)
        yield QuickStartRun(output, _log_after(service), tmp)


def _log_after(service: ServiceProcess) -> str:
    # The job's last lines are written as it completes, before the poll sees `completed`.
    service.wait_for_log('"event": "job completed"')
    return service.log()


def test_the_http_block_prints_what_the_readme_shows(http_run: QuickStartRun) -> None:
    block = quickstart_blocks()[0]
    assert_shows(http_run.output, shown_lines(block))
    assert_poll_lines_are_documented(http_run.output, readme_stages())


def test_the_readme_polls_and_reads_replies_as_the_api_answers(http_run: QuickStartRun) -> None:
    """The ids the block read from the replies are the ones the service made."""
    replies = [json.loads(line) for line in http_run.output.splitlines() if line.startswith("{")]
    novel, accepted = replies[0], replies[1]
    assert re.fullmatch(r"[0-9a-f]{32}", novel["novelId"])
    assert accepted["statusUrl"] == f"/v1/jobs/{accepted['jobId']}"
    storyboard = json.loads((http_run.cwd / "storyboard.json").read_text())
    assert (storyboard["novelId"], storyboard["meta"]["jobId"]) == (
        novel["novelId"],
        accepted["jobId"],
    )


def test_the_readme_examples_and_stage_table_match_the_code() -> None:
    stages = readme_stages()
    for example in _examples(quickstart_blocks()[0]):
        match = POLL_LINE.fullmatch(example)
        assert match is not None, example
        progress = json.loads(match.group(2))
        assert stages.allows(progress["percentage"], progress["stage"]), example
    sources = "\n".join(p.read_text() for p in (ROOT / "service").rglob("*.py"))
    for percentage, stage in stages.fixed:
        written = re.compile(rf"\b{percentage}, (?:stage=)?\"{re.escape(stage)}\"")
        if written.search(sources) is None:
            pytest.fail(f"the code reports no progress ({percentage}, {stage!r})")


async def test_the_offline_analyzer_steps_are_those_the_readme_names() -> None:
    stages = readme_stages()
    text = load_novel_bytes(corpus_file("alice-in-wonderland.txt").read_bytes())
    reported: list[str] = []

    async def on_progress(fraction: float, stage: str) -> None:
        reported.append(stage)

    await OfflineAnalyzer().analyze(NovelText("n1", "Alice", text), on_progress)
    assert (reported[0], reported[-1]) == (stages.analyzer_first, stages.analyzer_last)


def _examples(block: str) -> list[str]:
    return [line[len(EXAMPLE) :] for line in block.splitlines() if line.startswith(EXAMPLE)]


def _job_started(log: str, job_id: str) -> dict[str, Any]:
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "job started" and record.get("jobId") == job_id:
                return dict(record)
    raise AssertionError(f"no 'job started' line for {job_id}:\n{log}")


@pytest.mark.parametrize("doc", [README, ROOT / "docs" / "operations.md"], ids=lambda p: p.name)
def test_job_log_lines_carry_the_fields_the_docs_name(http_run: QuickStartRun, doc: Path) -> None:
    """The README and the runbook name the fields a job's log lines carry; the quick start's
    job has every one on its ``job started`` line."""
    claim = re.search(r"each job's lines carry ([^.]*)\.", doc.read_text(encoding="utf-8"))
    assert claim is not None, f"{doc.name} says which fields a job's log lines carry"
    fields = TICKED.findall(claim.group(1))
    assert {"jobId", "messageId", "userId", "attempt"} <= set(fields)
    job_id = json.loads(http_run.output.splitlines()[1])["jobId"]
    started = _job_started(http_run.log, job_id)
    assert {name: started.get(name) is not None for name in fields} == dict.fromkeys(fields, True)
    assert (started["jobId"], started["userId"], started["attempt"]) == (job_id, "local", 1)


# --------------------------------------------------------------------------- the CLI block


def test_the_cli_block_prints_what_the_readme_shows(tmp_path: Path) -> None:
    block = quickstart_blocks()[1]
    env = service_env(tmp_path / "data", STORYBOARD_ANALYZER="offline")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        output = run_block(runnable(block, service.url), tmp_path, env)
    assert_shows(output, shown_lines(block))
    written = json.loads((tmp_path / "alice-in-wonderland.storyboard.json").read_text())
    assert written["characters"][0]["name"] == "Alice"
    assert set(_status_document(output)) == readme_job_fields()


def _status_document(output: str) -> dict[str, Any]:
    """The indented JSON ``storyboard status`` printed, from its ``{`` line to its ``}``."""
    lines = output.splitlines()
    start = lines.index("{")
    document: dict[str, Any] = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    return document


def readme_job_fields() -> set[str]:
    """The fields the README's HTTP API table gives for ``GET /v1/jobs/{jobId}``."""
    text = README.read_text(encoding="utf-8")
    row = re.search(r"^\| `GET /v1/jobs/\{jobId\}` \| `\{(.*?)\}`", text, re.M)
    assert row is not None, "the HTTP API table has a GET /v1/jobs/{jobId} row"
    flat = re.sub(r"\{[^}]*\}", "", row.group(1))  # progress{percentage,stage} → progress
    return {name.strip() for name in flat.split(",")}
