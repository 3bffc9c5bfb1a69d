"""``storyboard analyze``: one file through the embedded queue, worker and store."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from harness.processes import service_env
from service.client import default_title
from service.oneshot import ONESHOT_RETRIES, oneshot_retries
from service.settings import MIB, load_settings
from service.text import load_novel_bytes
from service.uploads import BODY_TOO_LARGE
from tests.conftest import corpus_file
from tests.fake_llm import Reply, Seen, error, start_fake_llm


def _analyze(
    *args: str, cwd: Path, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", "analyze", *args],
        cwd=cwd,
        env=service_env(cwd / "unused-data", **env),
        input=stdin,
        capture_output=True,
        timeout=300,
        check=False,
    )


def test_analyze_alice_writes_a_storyboard_and_a_summary(tmp_path: Path) -> None:
    source = corpus_file("alice-in-wonderland.txt")
    out = tmp_path / "alice.json"
    result = _analyze(str(source), "--out", str(out), "--title", "Alice", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    storyboard = json.loads(out.read_text(encoding="utf-8"))
    assert storyboard["title"] == "Alice"
    assert storyboard["meta"]["chapterCount"] == 12
    assert "12 chapters" in stderr
    assert "storyboard written to" in stderr
    assert "100%" in stderr  # the progress bar reached the end
    assert not (tmp_path / "unused-data").exists()  # one-shot runs leave no data behind


def test_analyze_reads_gb18030_from_stdin(tmp_path: Path) -> None:
    text = "第一回　桃园结义\n刘备曰：「吾欲伸大义于天下。」\n\n第二回　张飞怒鞭督邮\n张飞大怒。"
    out = tmp_path / "out.json"
    result = _analyze("-", "--out", str(out), cwd=tmp_path, stdin=text.encode("gb18030"))
    assert result.returncode == 0, result.stderr.decode()
    storyboard = json.loads(out.read_text(encoding="utf-8"))
    assert storyboard["meta"]["chapterCount"] == 2
    assert storyboard["title"] == "stdin"


def test_empty_or_unreadable_input_fails_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"  \n\n")
    for args in ([str(empty)], [str(tmp_path / "missing.txt")], [str(tmp_path)]):
        result = _analyze(*args, cwd=tmp_path)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode != 0
        assert len(lines) == 1, lines
        assert lines[0].startswith("storyboard: ")


SHORT = "第一回　桃园结义\n刘备曰：「吾欲伸大义于天下。」\n\n第二回　张飞怒鞭督邮\n张飞大怒。"


def test_default_title_drops_the_suffix_and_an_encoding_suffix() -> None:
    assert default_title("corpus/sanguo-yanyi.gb18030.txt") == "sanguo-yanyi"
    assert default_title("notes.utf8.md") == "notes"
    assert default_title("alice.txt") == "alice"
    assert default_title("volume.2.txt") == "volume.2"  # not a codec: part of the name
    assert default_title("-") == "stdin"


def test_default_out_is_the_stem_in_the_current_directory(tmp_path: Path) -> None:
    source = tmp_path / "in" / "sanguo-yanyi.gb18030.txt"
    source.parent.mkdir()
    source.write_bytes(SHORT.encode("gb18030"))
    result = _analyze(str(source), cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = tmp_path / "sanguo-yanyi.storyboard.json"
    storyboard = json.loads(out.read_text(encoding="utf-8"))
    assert storyboard["title"] == "sanguo-yanyi"
    assert f"storyboard written to {out.name}" in result.stderr.decode()


def test_an_existing_out_is_kept_unless_forced(tmp_path: Path) -> None:
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    out = tmp_path / "novel.storyboard.json"
    out.write_text("keep me", encoding="utf-8")
    refused = _analyze(str(source), cwd=tmp_path)
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 2
    assert lines == [f"storyboard: {out.name} already exists; pass --force to overwrite it"]
    assert out.read_text(encoding="utf-8") == "keep me"
    forced = _analyze(str(source), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr.decode()
    assert json.loads(out.read_text(encoding="utf-8"))["title"] == "novel"


def test_out_dash_writes_only_the_storyboard_to_stdout(tmp_path: Path) -> None:
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    result = _analyze(str(source), "--out", "-", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert json.loads(result.stdout.decode("utf-8"))["meta"]["chapterCount"] == 2
    assert not (tmp_path / "-").exists()
    assert "storyboard written to stdout" in stderr
    assert "100%" in stderr
    assert not [line for line in stderr.splitlines() if line.lstrip().startswith("{")]


def test_verbose_shows_log_lines_on_stderr_only(tmp_path: Path) -> None:
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    result = _analyze(str(source), "--out", "-", "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    json.loads(result.stdout.decode("utf-8"))
    logged = [json.loads(line) for line in result.stderr.decode().splitlines() if line[:1] == "{"]
    assert logged, result.stderr.decode()


def _percentages(stderr: str) -> list[int]:
    """The percentages of the progress lines written when stderr is not a terminal."""
    return [int(m[1]) for m in re.finditer(r"^\s*(\d+)% ", stderr, re.MULTILINE)]


def test_progress_moves_through_the_chapters(tmp_path: Path) -> None:
    source = tmp_path / "days.txt"
    source.write_text(
        "\n\n".join(
            f"CHAPTER {n}. Day {n}\n\n'Good morning,' said Alice on day {n}.\n\n"
            f"The Hatter poured the tea for the {n}th time."
            for n in range(1, 31)
        ),
        encoding="utf-8",
    )
    result = _analyze(str(source), "--out", "-", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    shown = _percentages(stderr)
    assert shown == sorted(shown), stderr
    assert shown[-1] == 100
    # The analyzer's reports per chapter fill the span between "analyzer ready" and the end.
    between = {p for p in shown if 50 < p < 90}
    assert len(between) >= 3, stderr
    assert re.search(r"% scenes \d+/30$", stderr, re.MULTILINE), stderr


def test_the_title_comes_from_the_text_s_title_line_unless_given(tmp_path: Path) -> None:
    source = tmp_path / "three.gb18030.txt"
    source.write_bytes(f"《三国演义》\n\n{SHORT}".encode("gb18030"))
    own = _analyze(str(source), "--out", "-", cwd=tmp_path)
    given = _analyze(str(source), "--out", "-", "--title", "Mine", cwd=tmp_path)
    assert own.returncode == 0, own.stderr.decode()
    assert given.returncode == 0, given.stderr.decode()
    assert json.loads(own.stdout.decode("utf-8"))["title"] == "三国演义"
    assert json.loads(given.stdout.decode("utf-8"))["title"] == "Mine"


def test_a_file_over_the_api_s_body_limit_is_refused_at_once(tmp_path: Path) -> None:
    source = tmp_path / "huge.txt"
    paragraph = "话说天下大势，分久必合，合久必分。\n\n".encode("gb18030")
    source.write_bytes(paragraph * (30 * MIB // len(paragraph)))
    result = _analyze(str(source), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"storyboard: payload_too_large: {BODY_TOO_LARGE}: the limit is {20 * MIB} bytes "
        "(STORYBOARD_MAX_BODY_BYTES)"
    ]
    assert not (tmp_path / "huge.storyboard.json").exists()


def test_a_text_over_the_api_s_character_limit_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "long.txt"
    source.write_text(SHORT * 4, encoding="utf-8")
    chars = len(load_novel_bytes(source.read_bytes()))
    result = _analyze(str(source), cwd=tmp_path, STORYBOARD_MAX_NOVEL_CHARS="100")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"storyboard: novel_too_large: the novel has {chars} characters; the limit is 100"
    ]


RETRY_NOTICE = re.compile(r"; retrying in \d+ s \(attempt (\d) of 3\)$", re.MULTILINE)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _assert_gave_up(stderr: str, cause: str) -> None:
    assert [m[1] for m in RETRY_NOTICE.finditer(stderr)] == ["2", "3"], stderr
    assert f"{cause}; retrying in" in stderr
    assert stderr.rstrip().endswith(f"analysis failed: gave up after 3 attempts: {cause}"), stderr


def test_a_hostile_text_is_stopped_at_the_deadline_and_the_run_ends(tmp_path: Path) -> None:
    """The analysis runs in a process the deadline can kill, so the command ends then,
    rather than after the whole analysis (minutes on this text before issue #19)."""
    source = tmp_path / "hostile.txt"
    source.write_text(("曰：“" * 500 + "\n") * 1930, encoding="utf-8")
    result = _analyze(
        str(source),
        "--out",
        str(tmp_path / "out.json"),
        cwd=tmp_path,
        STORYBOARD_JOB_TIMEOUT_S="2",
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "the job ran longer than its deadline of 2 s" in stderr
    assert not (tmp_path / "out.json").exists()


def test_an_unreachable_model_is_retried_aloud_then_given_up(tmp_path: Path) -> None:
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = _analyze(str(source), cwd=tmp_path, STORYBOARD_LLM_BASE_URL=base_url)
    assert result.returncode == 1
    _assert_gave_up(result.stderr.decode(), "could not connect to the model API")
    assert not (tmp_path / "novel.storyboard.json").exists()


async def _analyze_async(*args: str, cwd: Path, **env: str) -> tuple[int, str]:
    # The fake model is served by this test's event loop, which must keep running.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "analyze",
        *args,
        cwd=cwd,
        env=service_env(cwd / "unused-data", **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=300)
    return await process.wait(), stderr.decode()


async def test_a_model_answering_500_is_retried_aloud_then_given_up(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = await start_fake_llm(aiohttp_server)
    fake.rules.append(lambda seen: error(500, "InternalError"))
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    code, stderr = await _analyze_async(
        str(source), cwd=tmp_path, STORYBOARD_LLM_BASE_URL=fake.base_url
    )
    assert code == 1
    _assert_gave_up(stderr, "model API unavailable (HTTP 500, internalerror)")
    # One request per attempt: every retry is one the user was told about.
    assert fake.calls() == 3


async def test_a_model_failing_once_is_retried_and_the_analysis_completes(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    fake = await start_fake_llm(aiohttp_server)
    failed: list[bool] = []

    def fail_once(seen: Seen) -> Reply | None:
        if failed:
            return None
        failed.append(True)
        return error(503, "ServiceUnavailable")

    fake.rules.append(fail_once)
    source = tmp_path / "novel.txt"
    source.write_text(SHORT, encoding="utf-8")
    out = tmp_path / "novel.json"
    code, stderr = await _analyze_async(
        str(source), "--out", str(out), cwd=tmp_path, STORYBOARD_LLM_BASE_URL=fake.base_url
    )
    assert code == 0, stderr
    assert [m[1] for m in RETRY_NOTICE.finditer(stderr)] == ["2"], stderr
    storyboard = json.loads(out.read_text(encoding="utf-8"))
    assert storyboard["meta"]["analyzer"] == "llm"


def test_retry_settings_chosen_in_the_environment_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ONESHOT_RETRIES:
        monkeypatch.delenv(f"STORYBOARD_{name.upper()}", raising=False)
    assert oneshot_retries(load_settings()) == ONESHOT_RETRIES
    monkeypatch.setenv("STORYBOARD_LLM_MAX_RETRIES", "2")
    assert oneshot_retries(load_settings()) == {
        k: v for k, v in ONESHOT_RETRIES.items() if k != "llm_max_retries"
    }
