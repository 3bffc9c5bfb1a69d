"""Logging: in JSON mode every line a process writes is one JSON object, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import http_get, running_service, service_env
from service.logs import stdlib_formatter


def _entries(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"a line that is not JSON: {line!r}\nwhole log:\n{text}")
    return entries


def _send_raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_every_line_of_a_serving_process_is_json(tmp_path: Path) -> None:
    # asyncio's debug mode and the debug level make the standard library's loggers speak:
    # asyncio reports its selector and slow callbacks, aiohttp its protocol errors.
    env = service_env(tmp_path / "data", STORYBOARD_LOG_LEVEL="debug", PYTHONASYNCIODEBUG="1")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        http_get(service.url + "/healthz")
        assert b" 400 " in _send_raw(service.url, b"NOT HTTP AT ALL\r\n\r\n")
        code = service.stop(signal.SIGTERM)
        entries = _entries(service.log())
    assert code == 0
    loggers = {entry.get("logger") for entry in entries}
    assert "asyncio" in loggers, loggers
    assert any(entry["event"] == "stopped" for entry in entries)


@pytest.fixture
def stdlib_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, rendered by the service's formatter into a buffer."""
    logger = logging.getLogger(f"{__name__}.formatter")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(stdlib_formatter("json"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


def test_standard_library_records_are_json_lines_with_secrets_masked(
    stdlib_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = stdlib_logger
    logger.warning("peer %s", "10.0.0.1", extra={"api_key": "sk-live", "remote": "10.0.0.1"})
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("request failed", extra={"Authorization": "Bearer sk-live"})
    first, second = _entries(buffer.getvalue())
    assert first["event"] == "peer 10.0.0.1"
    assert (first["level"], first["logger"]) == ("warning", logger.name)
    assert (first["api_key"], first["remote"]) == ("***", "10.0.0.1")
    assert "timestamp" in first
    assert second["Authorization"] == "***"
    assert "ValueError: broken" in second["exception"]
    assert "sk-live" not in buffer.getvalue()
