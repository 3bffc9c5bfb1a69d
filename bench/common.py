"""Shared benchmark plumbing: environment facts, results files and measurements.

Processes, ports and AWS stand-ins come from :mod:`harness`, as they do for the tests.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.processes import ROOT, process_env

RESULTS = ROOT / "bench" / "results"

VERSIONED = ("aiohttp", "aiobotocore", "botocore", "pydantic", "moto", "celery", "kombu", "pycurl")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    versions = {name: _version(name) for name in VERSIONED}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "versions": {name: v for name, v in versions.items() if v is not None},
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


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Measure a block's wall time; the elapsed seconds land in the yielded list."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def optional_module(name: str) -> Any | None:
    """Import an optional benchmark dependency (psutil, celery), or ``None`` if absent.

    Without the bench extra installed these may be absent, so every extra package is
    imported here, lazily, and its absence skips the measurement that needs it.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _process_tree(pid: int) -> tuple[Any, list[Any]]:
    """psutil and the process with all its live descendants; no processes if it is gone."""
    psutil = optional_module("psutil")
    if psutil is None:
        raise RuntimeError("psutil is not installed")
    try:
        root = psutil.Process(pid)
        return psutil, [root, *root.children(recursive=True)]
    except psutil.Error:
        return psutil, []


def cpu_tree_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and its live descendants (psutil), so a
    prefork pool's children count; 0 if it is gone."""
    psutil, processes = _process_tree(pid)
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += float(times.user) + float(times.system)
    return total


def rss_tree_bytes(pid: int) -> int:
    """Resident set size of a process plus all its descendants (psutil), 0 if it is gone."""
    psutil, processes = _process_tree(pid)
    total = 0
    for process in processes:
        try:
            total += int(process.memory_info().rss)
        except psutil.Error:
            continue
    return total


@dataclass
class RssSampler:
    """Polls the RSS of a process tree in a background thread and keeps the peak."""

    pid: int
    interval_s: float = 0.05
    peak_bytes: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_tree_bytes(self.pid))
            self.samples += 1
            self._stop.wait(self.interval_s)


def bench_env(**extra: str) -> dict[str, str]:
    """A service process's environment for a measurement: warnings only, so the figures do
    not include writing a log line per job."""
    return process_env(**{"STORYBOARD_LOG_LEVEL": "warning", **extra})
