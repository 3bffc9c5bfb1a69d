"""Shared benchmark plumbing: environment facts, results files, processes and measurements."""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def optional_module(name: str) -> Any | None:
    """Import an optional benchmark dependency (psutil, celery), or ``None`` if absent.

    The smoke run in the test suite has only what the project installs, so every extra
    package is imported here, lazily, and its absence skips the measurement that needs it.
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


def rss_tree_bytes(pid: int) -> int:
    """Resident set size of a process plus all its descendants (psutil), 0 if it is gone."""
    psutil = optional_module("psutil")
    if psutil is None:
        raise RuntimeError("psutil is not installed")
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
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


def http_get(url: str, timeout_s: float = 10) -> str:
    """The body of a GET (for health checks and metrics scrapes)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode()


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as ``{"name{labels}": value}``."""
    values: dict[str, float] = {}
    for line in http_get(url).splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


@dataclass
class ServiceProcess:
    """A ``storyboard`` process started by a benchmark."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def acked(self) -> int:
        """Jobs its main consumer has finished, from its /metrics page."""
        metrics = scrape(self.url + "/metrics")
        return int(metrics.get('storyboard_consumer_acked_total{queue="main"}', 0))

    def in_flight(self) -> int:
        """Jobs its main consumer is running now."""
        metrics = scrape(self.url + "/metrics")
        return int(metrics.get('storyboard_jobs_in_flight{queue="main"}', 0))


def bench_env(**extra: str) -> dict[str, str]:
    """This environment without any ``STORYBOARD_``/AWS endpoint variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYBOARD_", "AWS_ENDPOINT"))}
    env.update(STORYBOARD_LOG_FORMAT="json", STORYBOARD_LOG_LEVEL="warning")
    env.update(extra)
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], within_s: float = 60) -> None:
    """Poll ``/healthz`` until it answers 200, failing fast if the process dies."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}")
        try:
            http_get(url + "/healthz", timeout_s=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


def launch_service(
    command: str, env: Mapping[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m service COMMAND`` on a free loopback port, its output in
    ``log_path``; return the process and its base URL. Tests start services the same way."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def service_process(
    command: str, env: Mapping[str, str], log_path: Path, *, wait: bool = True
) -> Iterator[ServiceProcess]:
    """Start ``python -m service COMMAND`` on a free loopback port; kill it afterwards."""
    process, url = launch_service(command, env, log_path)
    service = ServiceProcess(process, url, log_path)
    try:
        if wait:
            wait_healthy(service.url, process)
        yield service
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Kill a process we started (and reap it)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=timeout_s)
