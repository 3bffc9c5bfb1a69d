"""A smoke run of the benchmarks: one tiny case of each kind, nothing written."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from harness.processes import ROOT
from tests.conftest import CORPUS


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_quick_benchmark_run_completes() -> None:
    results = ROOT / "bench" / "results"
    before = {p.name: p.stat().st_mtime for p in results.glob("*.json")}
    docs = ROOT / "docs" / "benchmarks.md"
    docs_before = docs.stat().st_mtime if docs.exists() else None
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "jobs/s" in out
    if (CORPUS / "alice-in-wonderland.txt").exists():
        assert "offline analyzer, Alice" in out
    assert "local L=" in out
    assert "aws   L=" in out
    assert "idle worker:" in out
    assert "memory:" in out
    assert "http service:" in out
    assert "http hello:" in out
    assert "scale-out local 1 worker(s)" in out
    if _installed("celery") and _installed("pycurl") and _installed("psutil"):
        assert "peer celery (threads pool)" in out
    else:
        assert "celery peer: skipped" in out
    # --quick writes nothing.
    assert {p.name: p.stat().st_mtime for p in results.glob("*.json")} == before
    assert (docs.stat().st_mtime if docs.exists() else None) == docs_before
