"""A smoke run of the benchmarks: one tiny case of each, nothing written."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import CORPUS
from tests.processes import ROOT


def test_quick_benchmark_run_completes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "jobs/s" in result.stdout
    if (CORPUS / "alice-in-wonderland.txt").exists():
        assert "offline analyzer, Alice" in result.stdout
