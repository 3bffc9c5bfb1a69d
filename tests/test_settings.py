"""Settings: defaults, backend choice and one-line errors."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from service.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "STORYBOARD_QUEUE_URL", "STORYBOARD_BACKEND"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_design() -> None:
    settings = load_settings()
    assert settings.worker_concurrency == 32
    assert settings.receive_wait_s == 20
    assert settings.max_body_bytes == 20 * 1024 * 1024
    assert settings.port == 8080


def test_each_analyzer_has_its_own_default_deadline() -> None:
    assert load_settings(analyzer="offline").effective_job_timeout_s == 600
    assert load_settings(analyzer="sleep").effective_job_timeout_s == 600
    assert load_settings(analyzer="llm").effective_job_timeout_s == 7200
    chosen = load_settings(analyzer="llm", job_timeout_s=90)
    assert chosen.effective_job_timeout_s == 90


def test_the_cpu_workers_default_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().effective_cpu_workers >= 1
    monkeypatch.setenv("STORYBOARD_CPU_WORKERS", "3")
    monkeypatch.setenv("STORYBOARD_JOB_TIMEOUT_S", "45")
    monkeypatch.setenv("STORYBOARD_CANCEL_CHECK_S", "0.5")
    settings = load_settings()
    assert (settings.effective_cpu_workers, settings.effective_job_timeout_s) == (3, 45)
    assert settings.cancel_check_s == 0.5


def test_default_host_is_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYBOARD_HOST", raising=False)
    assert load_settings().host == "127.0.0.1"


def test_the_image_and_the_manifests_choose_every_interface() -> None:
    # The default keeps an unauthenticated API off the network; where a container has to be
    # reachable from outside, the image and the ConfigMap say so themselves.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^(ENV)?\s+STORYBOARD_HOST=0\.0\.0\.0\s", dockerfile, re.MULTILINE)
    configmap = yaml.safe_load((ROOT / "deploy/k8s/base/configmap.yaml").read_text())
    assert configmap["data"]["STORYBOARD_HOST"] == "0.0.0.0"


def test_backend_is_local_unless_aws_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().resolved_backend == "local"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert load_settings().resolved_backend == "aws"
    monkeypatch.setenv("STORYBOARD_BACKEND", "local")
    assert load_settings().resolved_backend == "local"


def test_queue_url_selects_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYBOARD_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    assert load_settings().resolved_backend == "aws"


def test_http_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.http_header_timeout_s, defaults.http_keepalive_s) == (10, 75)
    assert defaults.http_max_connections == 1000
    monkeypatch.setenv("STORYBOARD_HTTP_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("STORYBOARD_HTTP_KEEPALIVE_S", "30")
    monkeypatch.setenv("STORYBOARD_HTTP_MAX_CONNECTIONS", "200")
    settings = load_settings()
    assert (settings.http_header_timeout_s, settings.http_keepalive_s) == (2.5, 30)
    assert settings.http_max_connections == 200


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYBOARD_WORKER_CONCURRENCY", "7")
    assert load_settings().worker_concurrency == 7


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("STORYBOARD_WORKER_CONCURRENCY", "0", "worker_concurrency"),
        ("STORYBOARD_PORT", "http", "port"),
        ("STORYBOARD_BACKEND", "redis", "backend"),
        ("STORYBOARD_RECEIVE_WAIT_S", "25", "receive_wait_s"),
        ("STORYBOARD_HTTP_HEADER_TIMEOUT_S", "0", "http_header_timeout_s"),
        ("STORYBOARD_HTTP_KEEPALIVE_S", "-1", "http_keepalive_s"),
        ("STORYBOARD_HTTP_MAX_CONNECTIONS", "0", "http_max_connections"),
    ],
)
def test_bad_settings_fail_with_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert fragment in message


@pytest.mark.parametrize(
    "secret",
    [
        "c2VjcmV0LXdpdGhvdXQtdGhlLXByZWZpeC0xMjM0",  # no whsec_
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),  # under 24 bytes
    ],
)
def test_a_bad_webhook_secret_fails_without_repeating_it(secret: str) -> None:
    with pytest.raises(SettingsError) as failure:
        load_settings(webhook_secret=secret)
    message = str(failure.value)
    assert "webhook_secret" in message
    assert secret not in message
    assert secret.removeprefix("whsec_") not in message


def test_webhook_settings_parse() -> None:
    secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    settings = load_settings(webhook_secret=secret, webhook_retry_schedule_s="5, 300,1800")
    assert settings.webhook_retry_schedule == (5, 300, 1800)
    assert secret not in repr(settings)
    assert load_settings().webhook_retry_schedule[-1] == 86_400  # the spec's last wait: 24 h
    for bad in ("", "5,x", "0,5"):
        with pytest.raises(SettingsError, match="webhook_retry_schedule_s"):
            load_settings(webhook_retry_schedule_s=bad)
    with pytest.raises(SettingsError, match="events_topic_arn"):
        load_settings(events_topic_arn="storyboard-events")


def test_long_poll_must_fit_in_the_visibility_timeout() -> None:
    with pytest.raises(SettingsError, match="receive_wait_s"):
        load_settings(receive_wait_s=20, visibility_timeout_s=10)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def _without_model_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORYBOARD_LLM_API_KEY", "DASHSCOPE_API_KEY", "STORYBOARD_LLM_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STORYBOARD_ANALYZER", raising=False)
    monkeypatch.delenv("STORYBOARD_LLM_BASE_URL", raising=False)


def test_a_key_secret_chooses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_model_keys(monkeypatch)
    assert load_settings().llm_api_key_secret_id is None
    arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:storyboard/llm-AbCdEf"
    monkeypatch.setenv("STORYBOARD_LLM_API_KEY_SECRET_ID", arn)
    settings = load_settings()
    assert settings.llm_api_key_secret_id == arn
    assert settings.resolved_analyzer == "llm"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STORYBOARD_LLM_API_KEY", "sk-env"),
        ("DASHSCOPE_API_KEY", "sk-env"),
        ("STORYBOARD_LLM_API_KEY_FILE", "/run/secrets/api-key"),
    ],
)
def test_a_key_secret_is_the_only_key_source(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _without_model_keys(monkeypatch)
    monkeypatch.setenv("STORYBOARD_LLM_API_KEY_SECRET_ID", "storyboard/llm")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="choose one key source") as caught:
        load_settings()
    assert "\n" not in str(caught.value)
    assert "sk-env" not in str(caught.value)


def test_an_empty_key_secret_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_model_keys(monkeypatch)
    monkeypatch.setenv("STORYBOARD_LLM_API_KEY_SECRET_ID", "")
    with pytest.raises(SettingsError, match="llm_api_key_secret_id"):
        load_settings()


def test_the_delete_window_stays_far_inside_the_visibility_timeout() -> None:
    assert Settings().delete_window_s == 1.0
    assert Settings(visibility_timeout_s=5, receive_wait_s=1).delete_window_s == 0.5
    assert Settings(delete_flush_s=0.1).delete_window_s == 0.1
