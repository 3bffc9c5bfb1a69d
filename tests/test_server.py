"""The service as a real process: start, serve, and stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import json
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import structlog

from harness.processes import (
    ROOT,
    ServiceProcess,
    free_port,
    http_get,
    running_service,
    service_env,
    stop_process,
    wait_until_healthy,
)
from service import server
from service.server import ACCEPT_ERROR, install_accept_error_limiter


def _post(url: str, body: bytes, content_type: str) -> dict[str, object]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _call(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "text/plain"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read()))


def test_the_api_keeps_answering_during_the_drain_and_refuses_new_work(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="120"
    )
    with running_service("serve", env, tmp_path / "serve.log") as service:
        novel = _post(f"{service.url}/v1/novels?title=t", b"some text", "text/plain")
        job = _post(f"{service.url}/v1/novels/{novel['novelId']}/analyze", b"", "text/plain")
        service.wait_for_log('"job started"')
        service.process.send_signal(signal.SIGTERM)
        service.wait_for_log('"draining"')
        ready = _call("GET", f"{service.url}/readyz")
        status = _call("GET", f"{service.url}/v1/jobs/{job['jobId']}")
        upload = _call("POST", f"{service.url}/v1/novels?title=u", b"more text")
        analyze = _call("POST", f"{service.url}/v1/novels/{novel['novelId']}/analyze", b"")
        cancel = _call("POST", f"{service.url}/v1/jobs/{job['jobId']}/cancel", b"")
        assert service.process.poll() is None, "the drain ended before the checks"
        code = service.stop(signal.SIGINT)
        log = service.log()
    assert code == 0, log
    assert (ready[0], ready[1]["error"]["code"]) == (503, "draining")
    assert (status[0], status[1]["status"]) == (200, "running")
    assert (upload[0], upload[1]["error"]["code"]) == (503, "draining")
    assert (analyze[0], analyze[1]["error"]["code"]) == (503, "draining")
    assert (cancel[0], cancel[1]["status"]) == (200, "cancelled")  # takes work away: allowed
    assert '"released unfinished messages"' in log


def test_sigterm_drains_a_running_job_and_exits_zero(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="2"
    )
    with running_service("serve", env, tmp_path / "serve.log") as service:
        novel = _post(f"{service.url}/v1/novels?title=t", b"some text", "text/plain")
        job = _post(f"{service.url}/v1/novels/{novel['novelId']}/analyze", b"", "text/plain")
        service.wait_for_log('"job started"')
        code = service.stop(signal.SIGTERM)
        log = service.log()
    assert code == 0, log
    assert '"draining"' in log
    assert '"job completed"' in log  # finished within the grace period, not abandoned
    assert job["status"] == "queued"


def test_second_signal_cuts_the_drain_and_releases_the_job(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="120"
    )
    with running_service("serve", env, tmp_path / "serve.log") as service:
        novel = _post(f"{service.url}/v1/novels?title=t", b"some text", "text/plain")
        _post(f"{service.url}/v1/novels/{novel['novelId']}/analyze", b"", "text/plain")
        service.wait_for_log('"job started"')
        service.process.send_signal(signal.SIGTERM)
        service.wait_for_log('"draining"')
        code = service.stop(signal.SIGINT)
        log = service.log()
    assert code == 0, log
    assert '"released unfinished messages"' in log


def test_open_api_warning_names_the_address_it_is_exposed_on(tmp_path: Path) -> None:
    with running_service("api", service_env(tmp_path / "data"), tmp_path / "api.log") as service:
        address = service.url.removeprefix("http://")
        service.wait_for_log("authentication is off")
        log = service.log()
    assert f"every caller reaching {address} is the anonymous user" in log, log


# --------------------------------------------------------------------------- slow clients

HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: slow\r\n"
"""A request head that never ends: the blank line that closes it is never sent."""


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _closed_within(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` before ``within_s`` is up."""
    deadline = time.monotonic() + within_s
    sock.setblocking(True)
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(4096):
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


def _slow_clients(url: str, count: int) -> list[socket.socket]:
    """``count`` connections, each of which starts a request head and never finishes it."""
    clients: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(_address(url))
            clients.append(sock)
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 20
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                selector.unregister(key.fileobj)
                with contextlib.suppress(OSError):
                    cast(socket.socket, key.fileobj).send(HEAD_START)
    return clients


def _healthz_within(url: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            http_get(url + "/healthz", timeout_s=2)
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def _serve_with_open_files(limit: int, env: dict[str, str], log: Path) -> Iterator[ServiceProcess]:
    """``storyboard serve`` under a soft open-file limit of ``limit``."""

    def lower_the_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lower_the_limit,
        )  # fmt: skip
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield ServiceProcess(process, f"http://127.0.0.1:{port}", log)
    finally:
        stop_process(process)


def test_a_request_head_that_never_ends_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    env = service_env(tmp_path / "data", STORYBOARD_HTTP_HEADER_TIMEOUT_S="1")
    with running_service("api", env, tmp_path / "api.log") as service:
        partial = socket.create_connection(_address(service.url), timeout=10)
        silent = socket.create_connection(_address(service.url), timeout=10)
        with partial, silent:
            partial.sendall(HEAD_START)
            assert _closed_within(partial, within_s=20)
            assert _closed_within(silent, within_s=20)
        assert http_get(service.url + "/healthz") == '{"status": "ok"}'


def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data", STORYBOARD_HTTP_KEEPALIVE_S="1")
    with running_service("api", env, tmp_path / "api.log") as service:
        host, port = _address(service.url)
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.status, response.getheader("Connection")) == (200, None)
            response.read()
            assert connection.sock is not None
            assert _closed_within(connection.sock, within_s=20)
        finally:
            connection.close()


def test_health_answers_once_slow_clients_over_the_connection_cap_are_dropped(
    tmp_path: Path,
) -> None:
    # More slow clients than the process has descriptors: without a cap they take them all.
    env = service_env(
        tmp_path / "data",
        STORYBOARD_HTTP_HEADER_TIMEOUT_S="1",
        STORYBOARD_HTTP_MAX_CONNECTIONS="64",
    )
    with _serve_with_open_files(256, env, tmp_path / "serve.log") as service:
        clients = _slow_clients(service.url, 300)
        try:
            answered = _healthz_within(service.url, within_s=30)
            deadline = time.monotonic() + 20
            dropped = sum(
                _closed_within(client, within_s=max(0.1, deadline - time.monotonic()))
                for client in clients
            )
        finally:
            for client in clients:
                client.close()
        log = service.log()
    assert answered, log[-3000:]
    assert dropped == len(clients)
    assert '"connection refused: too many open connections"' in log
    # asyncio's own report of a failed accept is replaced by one line a second at most.
    assert ACCEPT_ERROR not in log
    assert log.count('"cannot accept connections"') <= 10


def test_accept_errors_are_logged_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh logger, so one cached under another test's configuration cannot hide lines.
    monkeypatch.setattr(server, "log", structlog.get_logger(server.__name__))
    passed_on: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _, context: passed_on.append(context["message"]))
        install_accept_error_limiter(loop)
        failure = {"message": ACCEPT_ERROR, "exception": OSError(errno.EMFILE, "Too many")}
        with structlog.testing.capture_logs() as logs:
            for _ in range(1000):
                loop.call_exception_handler(dict(failure))
            loop.call_exception_handler({"message": "something else"})
            time.sleep(1.1)
            loop.call_exception_handler(dict(failure))
    finally:
        loop.close()
    assert passed_on == ["something else"]
    assert [entry["suppressed"] for entry in logs] == [0, 999]
    assert all("Too many" in entry["error"] for entry in logs)
