"""Shared benchmark plumbing: environment facts, results files and timing helpers."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "versions": {
            name: version(name) for name in ("aiohttp", "aiobotocore", "pydantic", "moto")
        },
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write raw results as JSON under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    """The median of repeated runs."""
    return statistics.median(values)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Measure a block's wall time; the elapsed seconds land in the yielded list."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)
