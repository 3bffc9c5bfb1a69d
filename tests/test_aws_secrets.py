"""The model API key in Secrets Manager (on moto): read at start, re-read after a refusal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from aiobotocore.session import get_session
from pytest_aiohttp import AiohttpServer

from harness.processes import ROOT, free_port, service_env
from service.analysis.llm_client import ChatMessage, ClientConfig, LlmClient, RotatingKey
from service.analysis.llm_limits import LlmLimiter
from service.backends.aws_secrets import SecretsManagerKey, open_secret_key, secret_region
from service.errors import BackendError, JobError
from service.jobs import Job, JobStatus
from service.runtime import Runtime, open_runtime
from service.settings import Settings, SettingsError
from service.uploads import store_novel
from tests.conftest import SettingsFactory, prepare
from tests.fake_llm import FakeLlm, ok, start_fake_llm
from tests.waiting import eventually, job_finished

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient

OLD_KEY = "sk-old-0123456789abcdef"
NEW_KEY = "sk-new-fedcba9876543210"
MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Say hello in JSON."}]
NOVEL = "\n\n".join(
    f"CHAPTER {n}. Day {n}\n\nAlice walked by the river and met the White Rabbit near the "
    "mill. 'Oh dear, I shall be late,' said the White Rabbit."
    for n in ("I", "II")
)


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key set for the developer's own use would conflict with the secret.
    for name in ("STORYBOARD_LLM_API_KEY", "DASHSCOPE_API_KEY", "STORYBOARD_LLM_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def secrets(moto_endpoint: str) -> AsyncIterator[SecretsManagerClient]:
    """A Secrets Manager client on moto, for the test to create and rotate secrets with."""
    async with get_session().create_client(
        "secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint
    ) as client:
        yield client


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeLlm]:
    fake = await start_fake_llm(aiohttp_server)
    yield fake
    fake.release()


def secret_name() -> str:
    return f"storyboard/llm-{uuid.uuid4().hex[:8]}"


async def create_secret(secrets: SecretsManagerClient, value: str) -> str:
    """A new secret holding ``value``; its ARN."""
    made = await secrets.create_secret(Name=secret_name(), SecretString=value)
    return made["ARN"]


class CountingSource:
    """The Secrets Manager reader, counting how often it is read."""

    def __init__(self, inner: SecretsManagerKey) -> None:
        self.inner = inner
        self.reads = 0

    async def read(self) -> str:
        self.reads += 1
        return await self.inner.read()


OpenReader = Callable[[str], Awaitable[CountingSource]]


@pytest.fixture
async def open_reader(
    local_settings: SettingsFactory, moto_endpoint: str
) -> AsyncIterator[OpenReader]:
    """Opens a reader of a secret on moto; all are closed when the test ends."""
    settings = local_settings(aws_endpoint_url=moto_endpoint)
    async with AsyncExitStack() as stack:

        async def open_(secret_id: str) -> CountingSource:
            reader = await stack.enter_async_context(open_secret_key(settings, secret_id))
            return CountingSource(reader)

        yield open_


# --------------------------------------------------------------------------- the reader


async def test_a_plain_secret_is_the_key(
    secrets: SecretsManagerClient, open_reader: OpenReader
) -> None:
    arn = await create_secret(secrets, f"{OLD_KEY}\n")
    assert await (await open_reader(arn)).read() == OLD_KEY


async def test_a_secret_is_found_by_name_too(
    secrets: SecretsManagerClient, open_reader: OpenReader
) -> None:
    name = secret_name()
    await secrets.create_secret(Name=name, SecretString=OLD_KEY)
    assert await (await open_reader(name)).read() == OLD_KEY


@pytest.mark.parametrize(
    "value",
    [
        {"apiKey": OLD_KEY},
        {"api_key": OLD_KEY},
        {"key": f" {OLD_KEY}\n"},
        {"model": "qwen-plus", "apiKey": OLD_KEY},
    ],
)
async def test_a_json_secret_gives_its_key_field(
    secrets: SecretsManagerClient, open_reader: OpenReader, value: dict[str, str]
) -> None:
    arn = await create_secret(secrets, json.dumps(value))
    assert await (await open_reader(arn)).read() == OLD_KEY


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (json.dumps({"token": OLD_KEY}), "without a string field apiKey, api_key, key"),
        ("{" + OLD_KEY, "is not JSON"),
        ("   ", "empty"),
        (json.dumps({"apiKey": ""}), "empty"),
    ],
)
async def test_a_secret_without_a_usable_key_is_a_settings_error(
    secrets: SecretsManagerClient, open_reader: OpenReader, value: str, reason: str
) -> None:
    arn = await create_secret(secrets, value)
    with pytest.raises(SettingsError, match=reason) as caught:
        await (await open_reader(arn)).read()
    assert arn in str(caught.value)
    assert OLD_KEY not in str(caught.value)


async def test_a_binary_secret_is_a_settings_error(
    secrets: SecretsManagerClient, open_reader: OpenReader
) -> None:
    made = await secrets.create_secret(Name=secret_name(), SecretBinary=OLD_KEY.encode())
    with pytest.raises(SettingsError, match="no string value"):
        await (await open_reader(made["ARN"])).read()


async def test_a_missing_secret_is_a_backend_error_naming_it(open_reader: OpenReader) -> None:
    name = secret_name()
    with pytest.raises(BackendError, match="ResourceNotFoundException") as caught:
        await (await open_reader(name)).read()
    assert f"secret {name}" in str(caught.value)


async def test_an_unreachable_endpoint_is_a_backend_error(local_settings: SettingsFactory) -> None:
    settings = local_settings(
        aws_endpoint_url=f"http://127.0.0.1:{free_port()}", aws_max_attempts=1
    )
    async with open_secret_key(settings, "storyboard/llm") as reader:
        with pytest.raises(BackendError, match="secret storyboard/llm"):
            await reader.read()


def test_an_arn_names_the_region_the_secret_is_read_in() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:storyboard/llm-AbCdEf"
    assert secret_region(arn, "us-east-1") == "eu-west-1"
    assert secret_region("storyboard/llm", "us-east-1") == "us-east-1"


# ------------------------------------------------------------------ the client, re-reading


def make_client(fake: FakeLlm, key: RotatingKey) -> LlmClient:
    """A client sending ``key``, on a fake that answers every accepted request alike."""
    fake.rules.append(lambda _: ok({"hello": "world"}))
    config = ClientConfig(
        base_url=fake.base_url, api_key=key.current, model="qwen-test", max_retries=0
    )
    return LlmClient(config, LlmLimiter(concurrency=16), rotating_key=key)


async def ask(client: LlmClient) -> dict[str, Any]:
    data, _ = await client.complete_json(MESSAGES, max_tokens=50)
    return data


async def test_a_rotated_secret_is_read_again_once_and_the_request_succeeds(
    secrets: SecretsManagerClient, open_reader: OpenReader, fake: FakeLlm
) -> None:
    arn = await create_secret(secrets, OLD_KEY)
    reader = await open_reader(arn)
    client = make_client(fake, await RotatingKey.load(reader))
    try:
        fake.required_key = OLD_KEY
        await ask(client)
        await secrets.put_secret_value(SecretId=arn, SecretString=NEW_KEY)
        fake.required_key = NEW_KEY
        await ask(client)
        await ask(client)
    finally:
        await client.aclose()
    assert fake.keys == [OLD_KEY, OLD_KEY, NEW_KEY, NEW_KEY]
    assert (fake.refused, reader.reads) == (1, 2)


async def test_refusals_at_once_share_one_read(
    secrets: SecretsManagerClient, open_reader: OpenReader, fake: FakeLlm
) -> None:
    arn = await create_secret(secrets, OLD_KEY)
    reader = await open_reader(arn)
    client = make_client(fake, await RotatingKey.load(reader))
    await secrets.put_secret_value(SecretId=arn, SecretString=NEW_KEY)
    fake.required_key = NEW_KEY
    fake.latency_s = 60.0  # every request waits until all eight are in flight
    try:
        requests = [asyncio.ensure_future(ask(client)) for _ in range(8)]

        async def all_in_flight() -> bool:
            return fake.in_flight == 8

        await eventually(all_in_flight)
        fake.release()
        replies = await asyncio.gather(*requests)
    finally:
        await client.aclose()
    assert len(replies) == 8
    assert fake.refused == 8
    assert reader.reads == 2
    assert fake.keys[8:] == [NEW_KEY] * 8


async def test_an_unchanged_secret_fails_the_request_and_is_not_read_per_request(
    secrets: SecretsManagerClient, open_reader: OpenReader, fake: FakeLlm
) -> None:
    arn = await create_secret(secrets, OLD_KEY)
    reader = await open_reader(arn)
    client = make_client(fake, await RotatingKey.load(reader))
    fake.required_key = NEW_KEY
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(JobError) as caught:
                    await ask(client)
                assert (caught.value.code, caught.value.transient) == ("llm_auth_failed", False)
                assert OLD_KEY not in str(caught.value)
    finally:
        await client.aclose()
    # One request each (no retry with the same key), and one read after the first refusal.
    assert fake.keys == [OLD_KEY] * 3
    assert reader.reads == 2
    assert OLD_KEY not in json.dumps(logs, default=str)


# ------------------------------------------------------------------------- the whole path


def job_settings(make: SettingsFactory, fake: FakeLlm, secret_id: str, endpoint: str) -> Settings:
    return make(
        aws_endpoint_url=endpoint,
        llm_base_url=fake.base_url,
        llm_api_key_secret_id=secret_id,
        llm_max_output_tokens=256,
        llm_max_retries=0,
        receive_wait_s=0.5,
        visibility_timeout_s=5,
    )


async def run_job(runtime: Runtime) -> Job:
    novel = await store_novel(runtime.backend, "local", "A Tale", NOVEL)
    submitted = await runtime.producer.submit(novel.novel_id, "local")
    return await job_finished(runtime.backend.jobs, submitted.job_id)


async def test_a_rotation_takes_effect_without_a_restart(
    make_settings: SettingsFactory,
    moto_endpoint: str,
    secrets: SecretsManagerClient,
    fake: FakeLlm,
) -> None:
    arn = await create_secret(secrets, json.dumps({"apiKey": OLD_KEY}))
    fake.required_key = OLD_KEY
    settings = await prepare(job_settings(make_settings, fake, arn, moto_endpoint))
    assert settings.resolved_analyzer == "llm"
    with structlog.testing.capture_logs() as logs:
        async with open_runtime(settings) as runtime:
            first = await run_job(runtime)
            sent_first = len(fake.requests)
            await secrets.put_secret_value(
                SecretId=arn, SecretString=json.dumps({"apiKey": NEW_KEY})
            )
            fake.required_key = NEW_KEY
            second = await run_job(runtime)
    assert (first.status, second.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED)
    assert second.attempts == 1
    assert set(fake.keys[:sent_first]) == {OLD_KEY}
    # The requests after the rotation that still sent the old key were refused, and each
    # was sent again with the new one.
    later = fake.keys[sent_first:]
    assert later.count(OLD_KEY) == fake.refused >= 1
    assert later.count(NEW_KEY) == len(later) - fake.refused
    assert later[-1] == NEW_KEY
    text = json.dumps(logs, default=str)
    assert OLD_KEY not in text
    assert NEW_KEY not in text


async def test_a_key_the_secret_still_holds_fails_the_job_as_refused(
    local_settings: SettingsFactory,
    moto_endpoint: str,
    secrets: SecretsManagerClient,
    fake: FakeLlm,
) -> None:
    arn = await create_secret(secrets, OLD_KEY)
    fake.required_key = NEW_KEY
    settings = await prepare(job_settings(local_settings, fake, arn, moto_endpoint))
    async with open_runtime(settings) as runtime:
        job = await run_job(runtime)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == "llm_auth_failed"
    assert OLD_KEY not in job.error.message
    assert fake.keys == [OLD_KEY]


async def test_a_missing_secret_stops_the_start(
    local_settings: SettingsFactory, moto_endpoint: str, fake: FakeLlm
) -> None:
    name = secret_name()
    settings = await prepare(job_settings(local_settings, fake, name, moto_endpoint))
    with pytest.raises(BackendError, match=f"secret {name} failed: ResourceNotFoundException"):
        async with open_runtime(settings):
            pytest.fail("the runtime opened without its key")
    assert fake.requests == []


def test_a_missing_secret_stops_the_worker_with_one_line(
    tmp_path: Path, moto_endpoint: str
) -> None:
    name = secret_name()
    env = service_env(
        tmp_path / "data",
        STORYBOARD_AWS_ENDPOINT_URL=moto_endpoint,
        STORYBOARD_LLM_API_KEY_SECRET_ID=name,
        STORYBOARD_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("storyboard:")]
    assert line.startswith(f"storyboard: reading the model API key from secret {name} failed:")
    assert "Traceback" not in result.stderr + result.stdout
