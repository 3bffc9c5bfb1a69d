"""Errors at the edge of HTTP, through real sockets: requests aiohttp's parser rejects, and
clients that hang up mid-request."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from harness.processes import ServiceProcess, running_service, scrape, service_env
from service.app import create_app
from service.appkeys import RUNTIME
from service.http_errors import JsonErrorAppRunner
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
    runner = JsonErrorAppRunner(app, handler_cancellation=True)
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


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One real API process for the parser cases, started as ``storyboard api`` is."""
    root = tmp_path_factory.mktemp("parser")
    with running_service("api", service_env(root / "data"), root / "api.log") as service:
        yield service


def _exchange(address: tuple[str, int], request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send raw bytes; return the status line, headers and body the server sent back."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return status.encode(), headers, body


def _rejections(service: ServiceProcess) -> list[dict[str, Any]]:
    return [line for line in _log_lines(service) if line["event"] == "bad http request"]


GET = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"
POST = b"POST /v1/novels HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        GET + b"X-Note: a\x01b\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: test\r\n\r\n",
        GET + b"X-Note: " + b"a" * 9000 + b"\r\n\r\n",
        b"G@T /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
        POST + b"Content-Length: -1\r\n\r\n",
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /v1/novels?title=\xff HTTP/1.1\r\nHost: test\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: test\r\n\r\n",
        GET + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS on the HTTP port
    ],
    ids=[
        "control-char-in-header", "url-over-8k", "header-over-8k", "bad-method",
        "negative-content-length", "content-length-and-chunked", "raw-byte-in-url",
        "bad-version", "too-many-headers", "tls-hello",
    ],
)  # fmt: skip
def test_parser_rejections_are_json_and_one_log_line(
    api: ServiceProcess, request_bytes: bytes
) -> None:
    _assert_one_json_rejection(api, request_bytes)


UPLOAD = POST.replace(b"/v1/novels", b"/v1/novels?title=t") + b"Connection: close\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        UPLOAD + b"Content-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
        UPLOAD + b"Content-Encoding: deflate\r\nContent-Length: 9\r\n\r\nnot zlib!",
    ],
    ids=["gzip", "deflate"],
)
def test_body_that_does_not_decode_is_json_and_one_log_line(
    api: ServiceProcess, request_bytes: bytes
) -> None:
    _assert_one_json_rejection(api, request_bytes)


def _assert_one_json_rejection(api: ServiceProcess, request_bytes: bytes) -> None:
    before = len(_rejections(api))
    status, headers, body = _exchange(_address(api), request_bytes)
    assert status.split(b" ")[1] == b"400", status
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == "bad_request"
    assert error["message"]
    deadline = time.monotonic() + 10
    while len(_rejections(api)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = _rejections(api)[before:]
    assert line["level"] == "info"
    assert line["status"] == 400
    assert line["error"] == error["message"]
    assert "Traceback" not in api.log()
    assert all(line.startswith("{") for line in api.log().splitlines()), api.log()
