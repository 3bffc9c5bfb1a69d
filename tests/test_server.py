"""The service as a real process: start, serve, and stop cleanly on a signal."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness.processes import running_service, service_env


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
        assert service.process.poll() is None, "the drain ended before the checks"
        code = service.stop(signal.SIGINT)
        log = service.log()
    assert code == 0, log
    assert (ready[0], ready[1]["error"]["code"]) == (503, "draining")
    assert (status[0], status[1]["status"]) == (200, "running")
    assert (upload[0], upload[1]["error"]["code"]) == (503, "draining")
    assert (analyze[0], analyze[1]["error"]["code"]) == (503, "draining")
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
