"""Real service processes for tests: start ``python -m service …`` and wait until it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import launch_service

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServiceProcess:
    """A running service and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the process and wait for its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def service_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a local-backend service process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYBOARD_", "AWS_ENDPOINT"))}
    env.update(
        STORYBOARD_BACKEND="local",
        STORYBOARD_DATA_DIR=str(data_dir),
        STORYBOARD_LOG_FORMAT="json",
        STORYBOARD_RECEIVE_WAIT_S="1",
    )
    env.update(extra)
    return env


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], within_s: float = 60) -> None:
    """Poll /healthz until it answers 200, failing fast if the process dies."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"service exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError("service did not become healthy")


@contextmanager
def running_service(
    command: str, env: Mapping[str, str], log_path: Path
) -> Iterator[ServiceProcess]:
    """Start ``storyboard COMMAND`` on a free port; kill it if the test leaves it running."""
    process, url = launch_service(command, env, log_path)
    service = ServiceProcess(process, url, log_path)
    try:
        wait_until_healthy(service.url, process)
        yield service
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
