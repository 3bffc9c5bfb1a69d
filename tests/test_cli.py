"""The ``storyboard`` command: settings errors, bootstrap, submit and status."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.processes import ROOT, running_service, service_env
from tests.conftest import SettingsFactory


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_settings_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    env = service_env(tmp_path, STORYBOARD_WORKER_CONCURRENCY="lots")
    result = _run("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "worker_concurrency" in lines[0]


def test_unknown_command_is_a_usage_error() -> None:
    result = _run("explode")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_bootstrap_is_idempotent_on_moto(aws_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = aws_settings()
    assert settings.aws_endpoint_url is not None
    env = service_env(tmp_path)
    del env["STORYBOARD_BACKEND"]  # the endpoint alone selects the AWS backend
    env.update(
        AWS_ENDPOINT_URL=settings.aws_endpoint_url,
        STORYBOARD_QUEUE_NAME=settings.queue_name,
        STORYBOARD_DLQ_NAME=settings.dlq_name,
        STORYBOARD_TABLE_NAME=settings.table_name,
        STORYBOARD_BUCKET=settings.bucket,
    )
    first, second = _run("bootstrap", env=env), _run("bootstrap", env=env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert settings.queue_name in first.stdout
    assert f"table {settings.table_name}" in first.stdout


def test_bootstrap_prepares_the_local_data_directory(tmp_path: Path) -> None:
    result = _run("bootstrap", env=service_env(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "storyboard.db").exists()


def test_submit_and_status_against_a_live_service(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="0"
    )
    novel = tmp_path / "novel.txt"
    novel.write_text("第一回　开篇\n话说天下大势。", encoding="gb18030")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        submitted = _run("submit", str(novel), "--url", service.url, env=env)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        assert len(job_id) == 32
        status = _run("status", job_id, "--url", service.url, env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["jobId"] == job_id
        missing = _run("status", "0" * 32, "--url", service.url, env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("storyboard: not_found: ")


def test_submit_and_status_send_the_token_to_a_service_with_auth_on(tmp_path: Path) -> None:
    token = "platform-team-key"
    keys = json.dumps({hashlib.sha256(token.encode()).hexdigest(): "platform"})
    env = service_env(
        tmp_path / "data",
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="0",
        STORYBOARD_AUTH_API_KEYS=keys,
    )
    novel = tmp_path / "novel.txt"
    novel.write_text("Chapter 1\nIt begins.", encoding="utf-8")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        refused = _run("submit", str(novel), "--url", service.url, env=env)
        by_flag = _run("submit", str(novel), "--url", service.url, "--token", token, env=env)
        by_env = {**env, "STORYBOARD_TOKEN": token}
        job_id = by_flag.stdout.strip()
        status = _run("status", job_id, "--url", service.url, env=by_env)
        status_refused = _run("status", job_id, "--url", service.url, env=env)
        log = service.log()
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("storyboard: unauthorized: ")
    assert "--token" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert by_flag.returncode == 0, by_flag.stderr
    assert len(job_id) == 32
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["jobId"] == job_id
    assert status_refused.returncode == 1
    assert "unauthorized" in status_refused.stderr
    for output in (refused.stdout, refused.stderr, by_flag.stderr, status.stderr, log):
        assert token not in output


def test_submit_of_an_unreadable_file_fails_clearly(tmp_path: Path) -> None:
    result = _run("submit", str(tmp_path / "absent.txt"), env=service_env(tmp_path))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_dlq_commands_on_an_empty_queue(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    listed = _run("dlq", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "0 dead-lettered" in listed.stderr
    redriven = _run("dlq", "redrive", "--all", env=env)
    assert redriven.returncode == 0, redriven.stderr
    assert "0 redriven" in redriven.stderr
    bad = _run("dlq", "redrive", env=env)
    assert bad.returncode == 2
    assert "either --all or one or more JOB_IDs" in bad.stderr


def test_redrive_of_a_job_not_in_the_dlq_says_so_and_exits_1(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    absent = "f" * 32
    result = _run("dlq", "redrive", absent, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"storyboard: job {absent} is not in the dead-letter queue"
    assert "0 redriven" in lines[0]
    assert result.stdout == ""


def test_a_corrupt_database_stops_serve_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "storyboard.db").write_bytes(b"\x07not a database\x00" * 256)
    result = _run("serve", "--port", "0", env=service_env(data))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"storyboard: cannot open local database {data / 'storyboard.db'}: file is not a database"
    ]


def test_a_taken_port_stops_serve_with_one_line_before_opening_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        result = _run("serve", "--host", "127.0.0.1", "--port", str(port), env=service_env(data))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"storyboard: port {port} is in use (STORYBOARD_PORT / --port)"
    ]
    assert not data.exists(), "the database was opened before the port was bound"


def _submitted_and_done(service_url: str, env: dict[str, str], novel: Path) -> dict[str, Any]:
    """Submit ``novel`` with the CLI and wait until its job has completed."""
    submitted = _run("submit", str(novel), "--url", service_url, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = _run("status", job_id, "--url", service_url, env=env)
        job: dict[str, Any] = json.loads(status.stdout)
        if job["status"] == "completed":
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not complete")


def test_get_downloads_a_storyboard_by_job_or_novel_id(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="0"
    )
    novel = tmp_path / "novel.txt"
    novel.write_text("The Tale\n\nChapter 1\n\nIt begins.", encoding="utf-8")
    out = tmp_path / "board.json"
    with running_service("serve", env, tmp_path / "serve.log") as service:
        job = _submitted_and_done(service.url, env, novel)
        by_job = _run("get", job["jobId"], "--url", service.url, env=env)
        by_novel = _run("get", job["novelId"], "--out", str(out), "--url", service.url, env=env)
        again = _run("get", job["novelId"], "--out", str(out), "--url", service.url, env=env)
        forced = _run(
            "get", job["jobId"], "--out", str(out), "--force", "--url", service.url, env=env
        )
        unknown = _run("get", "0" * 32, "--url", service.url, env=env)
    assert by_job.returncode == 0, by_job.stderr
    board = json.loads(by_job.stdout)
    assert (board["title"], board["meta"]["jobId"]) == ("The Tale", job["jobId"])
    assert by_novel.returncode == 0, by_novel.stderr
    assert by_novel.stdout == ""
    assert json.loads(out.read_text(encoding="utf-8")) == board
    assert again.returncode == 2
    assert again.stderr == f"storyboard: {out} already exists; pass --force to overwrite it\n"
    assert forced.returncode == 0, forced.stderr
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(f"storyboard: not_found: {'0' * 32}: as a job, ")
    assert unknown.stdout == ""


def test_list_and_delete_against_a_live_service(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="0"
    )
    novel = tmp_path / "novel.txt"
    novel.write_text("三国演义\n\n第一回　宴桃园\n\n话说天下大势。", encoding="utf-8")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        url = ("--url", service.url)
        job = _submitted_and_done(service.url, env, novel)
        novels = _run("list", *url, env=env)
        jobs = _run("list", "jobs", "--novel", job["novelId"], "--json", *url, env=env)
        misused = _run("list", "novels", "--status", "failed", *url, env=env)
        deleted = _run("delete", job["novelId"], *url, env=env)
        twice = _run("delete", job["novelId"], *url, env=env)
        gone = _run("get", job["jobId"], *url, env=env)
        empty = _run("list", "--all", *url, env=env)
    assert novels.returncode == 0, novels.stderr
    header, row = novels.stdout.splitlines()
    assert header.split()[:3] == ["NOVEL_ID", "TITLE", "CHARS"]
    assert row.split()[:2] == [job["novelId"], "三国演义"]
    assert row.split()[-1] == "completed"
    assert novels.stderr == "1 novel\n"
    assert jobs.returncode == 0, jobs.stderr
    listed = json.loads(jobs.stdout)
    assert [item["jobId"] for item in listed["items"]] == [job["jobId"]]
    assert listed["nextCursor"] is None
    assert misused.returncode == 2
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == ""
    assert twice.returncode == 1
    assert twice.stderr.startswith("storyboard: not_found: ")
    assert gone.returncode == 1
    assert empty.returncode == 0, empty.stderr
    assert (empty.stdout, empty.stderr) == ("", "0 novels\n")


def test_submit_wait_follows_the_job_live_and_exits_0_when_it_completes(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data",
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="8",
        STORYBOARD_SLEEP_ANALYZER_STEPS="4",
    )
    novel = tmp_path / "novel.txt"
    novel.write_text("Once upon a time there was a tale.", encoding="utf-8")
    with running_service("serve", env, tmp_path / "serve.log") as service:
        waited = _run("submit", str(novel), "--wait", "--url", service.url, env=env)
        assert waited.returncode == 0, waited.stderr
        job_id = waited.stdout.strip()
        assert len(job_id) == 32  # only the id on stdout; the progress went to stderr
        followed = _run("status", job_id, "--follow", "--url", service.url, env=env)
    # Not a terminal: a line per tenth of progress, from the live stream's reports.
    percentages = [int(line.split("%")[0]) for line in waited.stderr.splitlines() if "%" in line]
    assert len(percentages) >= 3, waited.stderr
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100
    assert any(0 < value < 100 for value in percentages), waited.stderr
    # A job that has ended already: its final event at once, and its final view on stdout.
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)["status"] == "completed"


def test_status_follow_exits_1_when_the_job_ends_otherwise(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    novel = tmp_path / "novel.txt"
    novel.write_text("A tale nobody will analyze.", encoding="utf-8")
    # The API alone: nothing takes the job, so it waits until the cancel below.
    with running_service("api", env, tmp_path / "api.log") as service:
        job_id = _run("submit", str(novel), "--url", service.url, env=env).stdout.strip()
        command = [sys.executable, "-m", "service", "status", job_id, "--follow"]
        follower = subprocess.Popen(
            [*command, "--url", service.url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)  # the follower is connected and waiting on a quiet stream
        assert follower.poll() is None
        request = urllib.request.Request(f"{service.url}/v1/jobs/{job_id}/cancel", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 1, err
    assert json.loads(out)["status"] == "cancelled"
    assert f"storyboard: job {job_id} cancelled" in err


def test_analyze_estimate_prints_the_plan_and_price_and_calls_no_model(tmp_path: Path) -> None:
    novel = tmp_path / "novel.txt"
    text = "第一回　宴桃园豪杰三结义\n话说天下大势，分久必合，合久必分。\n"
    novel.write_text(text, encoding="gb18030")
    # A model that is not there: the estimate must not need one.
    env = service_env(
        tmp_path / "data",
        STORYBOARD_LLM_BASE_URL="http://127.0.0.1:9/v1",
        STORYBOARD_LLM_INPUT_PRICE_PER_MILLION="4",
        STORYBOARD_LLM_OUTPUT_PRICE_PER_MILLION="12",
        STORYBOARD_LLM_PRICE_CURRENCY="USD",
    )
    result = _run("analyze", str(novel), "--estimate", env=env)
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert rows["model"] == "qwen-plus"
    assert rows["chunks"] == "1"
    assert rows["requests"].startswith("2 ")
    assert rows["price"].startswith("USD 0.0")
    assert "(4 in, 12 out per million" in rows["price"]
    assert not (tmp_path / "novel.storyboard.json").exists()
