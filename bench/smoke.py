"""``make bench-smoke``: run ``python -m bench --quick`` and check that every part reported.

The quick run starts moto, a dozen service processes and a Celery worker and loads the
machine while it measures, so it stays out of the test suite; CI runs this right after
``make test`` so that the benchmarks cannot stop working unnoticed. Exits 1, naming what is
missing, when the run fails, a part's line is absent, or the run wrote any results.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from bench.common import RESULTS
from bench.offline_speed import CORPUS
from harness.processes import ROOT

TIMEOUT_S = 240
DOCS = ROOT / "docs" / "benchmarks.md"


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def expected_lines() -> list[str]:
    """The fragments the quick run must print, one or more a part."""
    lines = ["jobs/s"]
    if (CORPUS / "alice-in-wonderland.txt").exists():
        lines.append("offline analyzer, Alice")
    lines += ["local L=", "aws   L=", "idle worker:", "memory:", "http service:", "http hello:"]
    lines.append("scale-out local 1 worker(s)")
    lines.append("sse fan-out")  # its line, or its "skipped" line without psutil
    lines += ["fairness fifo:", "fairness fair:"]
    lines += ["tracing off:", "tracing on :", "tracing on exported"]
    lines.append("hostile text tag-open-quote:")
    if (CORPUS / "alice-in-wonderland.txt").exists():
        lines.append("model pipeline, Alice:")
    if all(_installed(name) for name in ("celery", "pycurl", "psutil")):
        lines += [
            "peer celery (threads pool, doing the seed's work)",
            "peer celery (threads pool, sleep only",
        ]
    else:
        lines.append("celery peer: skipped")
    return lines


def written() -> dict[str, float | None]:
    """When each results file and the page were last written (``None``: absent)."""
    paths: list[Path] = [*sorted(RESULTS.glob("*.json")), DOCS]
    return {str(p.relative_to(ROOT)): p.stat().st_mtime if p.exists() else None for p in paths}


def problems(
    result: subprocess.CompletedProcess[str], before: dict[str, float | None]
) -> list[str]:
    """Everything wrong with a finished quick run; empty when it passed."""
    found: list[str] = []
    if result.returncode != 0:
        found.append(f"python -m bench --quick exited with {result.returncode}")
    found += [
        f"missing from the output: {line!r}"
        for line in expected_lines()
        if line not in result.stdout
    ]
    after = written()
    if after != before:
        changed = sorted(
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        )
        found.append(f"--quick must write nothing, but changed {', '.join(changed)}")
    return found


def main() -> int:
    """Run the quick benchmarks, print their output and what is wrong; 0 when all is well."""
    before = written()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    found = problems(result, before)
    for problem in found:
        print(f"bench-smoke: {problem}", file=sys.stderr)
    if not found:
        print(f"bench-smoke: all {len(expected_lines())} parts reported, nothing written")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
