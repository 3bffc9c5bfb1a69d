"""``storyboard analyze``: one file through the embedded queue, worker and store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.processes import service_env
from tests.conftest import corpus_file


def _analyze(
    *args: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", "analyze", *args],
        cwd=cwd,
        env=service_env(cwd / "unused-data"),
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
