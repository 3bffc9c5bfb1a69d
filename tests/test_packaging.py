"""What the container does, without a container engine: build the wheel, install it with
its declared dependencies only into a fresh virtualenv, run the image's command, and
complete a job. Missing package data or an undeclared dependency fails here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any

from harness.processes import ROOT, free_port, service_env, wait_until_healthy


def _run(*command: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _call(url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_wheel_installs_and_serves_in_a_clean_environment(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("storyboard_service-*.whl")
    env_dir = tmp_path / "image"
    venv.create(env_dir, with_pip=True)
    _run(env_dir / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)

    port = free_port()
    env = service_env(tmp_path / "data", STORYBOARD_PORT=str(port), STORYBOARD_HOST="127.0.0.1")
    env.pop("PYTHONPATH", None)
    # The image's ENTRYPOINT and CMD, from a directory where the source tree is not importable.
    process = subprocess.Popen(
        [env_dir / "bin" / "storyboard", "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        novel = _call(f"{url}/v1/novels?title=smoke", "第一回　开篇\n刘备曰：「善。」".encode())
        job = _call(f"{url}/v1/novels/{novel['novelId']}/analyze", b"")
        deadline = time.monotonic() + 60
        while _call(f"{url}/v1/jobs/{job['jobId']}")["status"] != "completed":
            assert time.monotonic() < deadline, "the job did not complete"
            time.sleep(0.2)
        storyboard = _call(f"{url}/v1/novels/{novel['novelId']}/storyboard")
        # The web page is package data: missing from the wheel, it would 500 or 404 here.
        page = urllib.request.urlopen(f"{url}/", timeout=10).read().decode()
        script = urllib.request.urlopen(f"{url}/static/app.js", timeout=10).read().decode()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode == 0
    assert storyboard["meta"]["analyzer"] == "offline"
    assert '<script type="module" src="/static/app.js">' in page
    assert "renderReader" in script
