"""Real ``python -m service …`` processes: their environment, start-up, health, metrics, stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEALTH_POLL_S = 0.05
START_ATTEMPTS = 3
"""How often a start is retried when the chosen port was taken before the service bound it."""

_PORT_TAKEN = ("address already in use", "is in use")
"""What a service that lost its port says: the OS's words, and the CLI's own line."""
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


class ServiceExited(RuntimeError):
    """The process ended before it answered its health check."""


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(**extra: str) -> dict[str, str]:
    """This environment with JSON logs plus ``extra``, without any ``STORYBOARD_*`` or AWS
    endpoint variables, so a developer's own settings never reach a process under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYBOARD_", "AWS_ENDPOINT"))}
    env["STORYBOARD_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


def service_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a local-backend service process keeping its data in ``data_dir``."""
    local = {
        "STORYBOARD_BACKEND": "local",
        "STORYBOARD_DATA_DIR": str(data_dir),
        # A short long poll, so a stopping worker is not held up by an empty receive.
        "STORYBOARD_RECEIVE_WAIT_S": "1",
    }
    return process_env(**{**local, **extra})


def http_get(url: str, timeout_s: float = 10) -> str:
    """The body of a GET (for health checks and metrics scrapes)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode()


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
    """A running ``storyboard`` process, where it listens and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, fragment: str, within_s: float = 30) -> None:
        """Return once ``fragment`` appears in the log; fail if it does not in time."""
        deadline = time.monotonic() + within_s
        while fragment not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{fragment} never appeared in the log:\n{self.log()}")
            time.sleep(HEALTH_POLL_S)

    def metric(self, name: str) -> float:
        """One value from its ``/metrics`` page (0 when the series does not exist yet)."""
        return scrape(self.url + "/metrics").get(name, 0.0)

    def acked(self) -> int:
        """Jobs its main consumer has finished."""
        return int(self.metric('storyboard_consumer_acked_total{queue="main"}'))

    def in_flight(self) -> int:
        """Jobs its main consumer is running now."""
        return int(self.metric('storyboard_jobs_in_flight{queue="main"}'))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the process and wait for its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], within_s: float = 60) -> None:
    """Poll ``/healthz`` until it answers 200, failing fast if the process dies."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceExited(f"process exited early with {process.returncode}")
        try:
            http_get(url + "/healthz", timeout_s=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(HEALTH_POLL_S)
    raise RuntimeError(f"{url} did not become healthy within {within_s:.0f} s")


def launch_service(command: str, env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Start ``python -m service COMMAND`` on a free loopback port, its output in
    ``log_path``; it may not answer yet."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)


def start_service(command: str, env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Launch ``command`` and wait until it is healthy; kill it if it never is.

    Another process can take the port :func:`free_port` chose before the service binds it
    (parallel test workers make that likelier), so a start that lost its port is retried.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        service = launch_service(command, env, log_path)
        try:
            wait_until_healthy(service.url, service.process)
            return service
        except ServiceExited:
            if attempt < START_ATTEMPTS and any(m in service.log().lower() for m in _PORT_TAKEN):
                continue
            code = service.process.returncode
            raise ServiceExited(f"{command} exited with {code}:\n{service.log()[-3000:]}") from None
        except BaseException:
            stop_process(service.process)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Kill a process we started (and reap it)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=timeout_s)


@contextmanager
def running_service(
    command: str, env: Mapping[str, str], log_path: Path, *, wait: bool = True
) -> Iterator[ServiceProcess]:
    """A ``storyboard COMMAND`` process on a free port, healthy unless ``wait`` is false;
    killed on the way out if it is still running."""
    service = (
        start_service(command, env, log_path) if wait else launch_service(command, env, log_path)
    )
    try:
        yield service
    finally:
        stop_process(service.process)
