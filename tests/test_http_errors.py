"""Errors at the edge of HTTP, through real sockets: clients that hang up mid-request."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from harness.processes import ServiceProcess, running_service, scrape, service_env
from service.app import create_app
from service.appkeys import RUNTIME
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory
from tests.waiting import eventually

UPLOADS = {"route": "/v1/novels", "method": "POST"}

# Headers that promise far more body than is ever sent. Expect: 100-continue makes the
# server say when the handler is about to read, so the test hangs up mid-read, not before.
PARTIAL_UPLOAD = (
    b"POST /v1/novels?title=t HTTP/1.1\r\n"
    b"Host: test\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 1000000\r\n"
    b"Expect: 100-continue\r\n"
    b"\r\n"
)


def _address(service: ServiceProcess) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]


def _requests(service: ServiceProcess, status: int) -> float:
    wanted = {**UPLOADS, "status": str(status)}
    for series, value in scrape(f"{service.url}/metrics").items():
        name, _, labels = series.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "storyboard_http_requests_total" and found == wanted:
            return value
    return 0.0


def _hang_up_mid_upload(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(PARTIAL_UPLOAD)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"a" * 4096)


def test_client_hanging_up_mid_upload_is_an_info_line_and_a_499(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    with running_service("api", env, tmp_path / "api.log") as service:
        _hang_up_mid_upload(_address(service))
        service.wait_for_log('"client disconnected"')
        assert _requests(service, 499) == 1
        assert _requests(service, 500) == 0
        lines = _log_lines(service)
    (line,) = [entry for entry in lines if entry["event"] == "client disconnected"]
    assert line["level"] == "info"
    assert line["path"] == "/v1/novels"
    assert [entry for entry in lines if entry["level"] in ("error", "critical")] == []
    assert "Traceback" not in service.log()


@pytest.fixture
async def cancelling_app(local_settings: SettingsFactory) -> AsyncIterator[web.AppRunner]:
    """The app on a real port, with aiohttp cancelling a handler whose client is gone."""
    app = create_app(local_settings(), analyzer=CountingAnalyzer(), worker=False)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner
    finally:
        await runner.cleanup()


async def test_cancelled_handler_counts_499_and_logs_info(
    cancelling_app: web.AppRunner,
) -> None:
    host, port = cancelling_app.addresses[0][:2]
    metrics = cancelling_app.app[RUNTIME].metrics
    with structlog.testing.capture_logs() as logs:
        await asyncio.to_thread(_hang_up_mid_upload, (host, port))

        async def counted() -> float | None:
            labels = {**UPLOADS, "status": "499"}
            value = metrics.registry.get_sample_value("storyboard_http_requests_total", labels)
            return value or None

        assert await eventually(counted, within_s=10) == 1
    (line,) = [entry for entry in logs if entry["event"] == "client disconnected"]
    assert line["log_level"] == "info"
    assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []
    labels = {**UPLOADS, "status": "500"}
    assert metrics.registry.get_sample_value("storyboard_http_requests_total", labels) is None
