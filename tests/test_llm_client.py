"""The model client against the loopback fake: retries, error mapping, keys and JSON."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from pytest_aiohttp import AiohttpServer

from harness.processes import free_port
from service.analysis import llm_client
from service.analysis.llm_client import (
    ChatMessage,
    ClientConfig,
    InvalidReply,
    LlmClient,
    RotatingKey,
    load_api_key,
    parse_json_object,
    retry_after_s,
)
from service.analysis.llm_limits import LlmLimiter
from service.errors import BackendError, JobError
from service.settings import Settings, SettingsError
from tests.fake_llm import FakeLlm, Reply, error, hang, html, ok, start_fake_llm

KEY = "sk-test-0123456789abcdef"
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "Answer in JSON."},
    {"role": "user", "content": "Say hello."},
]


class Client:
    """A client on the fake whose backoff sleeps are recorded rather than slept."""

    def __init__(
        self,
        base_url: str,
        jitter: float = 1.0,
        limiter: LlmLimiter | None = None,
        **overrides: Any,
    ) -> None:
        values: dict[str, Any] = {
            "base_url": base_url,
            "api_key": KEY,
            "model": "qwen-test",
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 10.0,
            "timeout_s": 5.0,
            "connect_timeout_s": 5.0,
        }
        values.update(overrides)
        self.sleeps: list[float] = []
        self.limiter = limiter or LlmLimiter(concurrency=4)
        self.llm = LlmClient(
            ClientConfig(**values), self.limiter, sleep=self._sleep, jitter=lambda: jitter
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def ask(self) -> tuple[dict[str, Any], llm_client.Usage]:
        return await self.llm.complete_json(MESSAGES, max_tokens=100)


MakeClient = Callable[..., Client]


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeLlm]:
    fake = await start_fake_llm(aiohttp_server)
    yield fake
    fake.release()


@pytest.fixture
async def make_client(fake: FakeLlm) -> AsyncIterator[MakeClient]:
    made: list[Client] = []

    def make(**overrides: Any) -> Client:
        overrides.setdefault("base_url", fake.base_url)
        client = Client(**overrides)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.llm.aclose()


async def _fails(client: Client) -> JobError:
    with pytest.raises(JobError) as caught:
        await client.ask()
    return caught.value


# --------------------------------------------------------------------------- success


async def test_returns_the_json_object_and_its_usage(
    fake: FakeLlm, make_client: MakeClient
) -> None:
    fake.enqueue(ok({"hello": "world"}))
    client = make_client()
    data, usage = await client.ask()
    assert data == {"hello": "world"}
    assert usage.requests == 1
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    (seen,) = fake.requests
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.body["model"] == "qwen-test"
    assert seen.body["max_tokens"] == 100
    assert seen.body["temperature"] == 0.3
    assert "enable_thinking" not in seen.body  # only DashScope understands it
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert (client.limiter.admitted, client.limiter.in_flight) == (1, 0)


class RecordingLimiter(LlmLimiter):
    """Records each correction of an estimate."""

    def __init__(self) -> None:
        super().__init__(concurrency=4, tokens_per_minute=1_000_000)
        self.records: list[tuple[int, int]] = []

    def record(self, estimated_tokens: int, actual_tokens: int) -> None:
        self.records.append((estimated_tokens, actual_tokens))
        super().record(estimated_tokens, actual_tokens)


async def test_the_limiter_is_charged_the_estimate_then_the_real_cost(
    fake: FakeLlm, make_client: MakeClient
) -> None:
    fake.enqueue(ok({"a": 1}), error(400, "InvalidParameter"))
    limiter = RecordingLimiter()
    client = make_client(limiter=limiter)
    _, usage = await client.ask()
    await _fails(client)
    # Success: the estimate is replaced by what the reply cost. Failure: the prompt only.
    estimate = limiter.records[0][0]
    assert estimate > 100  # the prompt plus the 100-token reply allowance
    assert limiter.records == [(estimate, usage.total_tokens), (estimate, estimate - 100)]
    assert limiter.in_flight == 0


async def test_a_fenced_reply_is_accepted(fake: FakeLlm, make_client: MakeClient) -> None:
    fake.enqueue(ok('```json\n{"a": 1}\n```'))
    data, _ = await make_client().ask()
    assert data == {"a": 1}


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (ok("{not json"), "not valid JSON"),
        (ok("[1, 2]"), "not an object"),
        (ok('{"a": '), "not valid JSON"),
        (ok('{"a": 1', finish_reason="length"), "cut off"),
    ],
)
async def test_a_reply_without_a_json_object_is_an_invalid_reply(
    fake: FakeLlm, make_client: MakeClient, reply: Reply, reason: str
) -> None:
    fake.enqueue(reply)
    with pytest.raises(InvalidReply) as caught:
        await make_client().ask()
    assert reason in caught.value.reason
    assert caught.value.raw == reply.content
    assert caught.value.usage.requests == 1
    assert fake.calls() == 1


async def test_a_content_filtered_reply_is_rejected(fake: FakeLlm, make_client: MakeClient) -> None:
    fake.enqueue(ok("", finish_reason="content_filter"))
    failure = await _fails(make_client())
    assert (failure.code, failure.transient) == ("content_rejected", False)


# --------------------------------------------------------------------------- transient


@pytest.mark.parametrize(
    "reply",
    [
        error(500, "InternalError"),
        error(502),
        error(503, "ServiceUnavailable"),
        error(429, "Throttling.RateQuota", "Requests rate limit exceeded"),
        error(429, "Throttling.AllocationQuota", "Allocated quota exceeded, please wait"),
    ],
)
async def test_transient_failures_are_retried(
    fake: FakeLlm, make_client: MakeClient, reply: Reply
) -> None:
    fake.enqueue(reply, ok({"a": 1}))
    client = make_client()
    data, _ = await client.ask()
    assert data == {"a": 1}
    assert fake.calls() == 2
    assert client.sleeps == [0.01]


@pytest.mark.parametrize("reply", [html(), html(502), Reply(body={"choices": []})])
async def test_a_gateway_page_instead_of_a_completion_is_transient(
    fake: FakeLlm, make_client: MakeClient, reply: Reply
) -> None:
    fake.enqueue(reply, reply)
    client = make_client(max_retries=1)
    failure = await _fails(client)
    assert (failure.code, failure.transient) == ("llm_unavailable", True)
    assert fake.calls() == 2


async def test_retry_after_seconds_is_honoured(fake: FakeLlm, make_client: MakeClient) -> None:
    fake.enqueue(error(429, "rate_limit_exceeded", headers={"Retry-After": "2"}), ok({}))
    client = make_client()
    await client.ask()
    assert fake.calls() == 2
    assert client.sleeps == [2.0]


async def test_retry_after_ms_is_honoured(fake: FakeLlm, make_client: MakeClient) -> None:
    headers = {"retry-after-ms": "1500", "Retry-After": "9"}
    fake.enqueue(error(503, headers=headers), ok({}))
    client = make_client()
    await client.ask()
    assert client.sleeps == [1.5]


async def test_retry_after_as_an_http_date_is_honoured(
    fake: FakeLlm, make_client: MakeClient
) -> None:
    import time

    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake.enqueue(error(429, headers={"Retry-After": when}), ok({}))
    client = make_client()
    await client.ask()
    (slept,) = client.sleeps
    assert 3.0 <= slept <= 5.0  # the date has whole seconds


async def test_a_hint_beyond_the_backoff_bound_is_capped(
    fake: FakeLlm, make_client: MakeClient
) -> None:
    fake.enqueue(error(429, headers={"Retry-After": "3600"}), ok({}))
    client = make_client(backoff_max_s=0.5)
    await client.ask()
    assert client.sleeps == [0.5]


@pytest.mark.parametrize(
    ("jitter", "expected"), [(1.0, [0.01, 0.02, 0.04]), (0.5, [0.005, 0.01, 0.02])]
)
async def test_backoff_is_exponential_with_full_jitter(
    fake: FakeLlm, make_client: MakeClient, jitter: float, expected: list[float]
) -> None:
    fake.enqueue(error(500), error(500), error(500), ok({}))
    client = make_client(jitter=jitter)
    await client.ask()
    assert client.sleeps == pytest.approx(expected)


async def test_backoff_never_exceeds_its_bound(make_client: MakeClient) -> None:
    llm = make_client(backoff_base_s=1.0, backoff_max_s=5.0).llm
    assert [llm.backoff_s(n, None) for n in range(6)] == [1, 2, 4, 5, 5, 5]


@pytest.mark.parametrize(
    ("reply", "code"),
    [(error(503), "llm_unavailable"), (error(429, "Throttling"), "llm_rate_limited")],
)
async def test_transient_failures_beyond_the_bound_raise_a_transient_error(
    fake: FakeLlm, make_client: MakeClient, reply: Reply, code: str
) -> None:
    fake.enqueue(*[reply] * 4)
    client = make_client(max_retries=3)
    failure = await _fails(client)
    assert (failure.code, failure.transient) == (code, True)
    assert "after 4 attempts" in failure.message
    assert fake.calls() == 4
    assert len(client.sleeps) == 3


async def test_a_hang_past_the_timeout_is_transient(fake: FakeLlm, make_client: MakeClient) -> None:
    fake.enqueue(hang(), hang())
    client = make_client(timeout_s=0.2, max_retries=1)
    failure = await _fails(client)
    assert (failure.code, failure.transient) == ("llm_unavailable", True)
    assert "in time" in failure.message
    assert fake.calls() == 2


async def test_a_hang_then_an_answer_succeeds(fake: FakeLlm, make_client: MakeClient) -> None:
    fake.enqueue(hang(), ok({"late": False}))
    data, _ = await make_client(timeout_s=0.2).ask()
    assert data == {"late": False}


async def test_a_refused_connection_is_transient(make_client: MakeClient) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    failure = await _fails(client)
    assert (failure.code, failure.transient) == ("llm_unavailable", True)
    assert len(client.sleeps) == 1


# --------------------------------------------------------------------------- permanent


PERMANENT = [
    (400, "data_inspection_failed", "Input data may contain inappropriate content.",
     "content_rejected"),
    (400, "DataInspectionFailed", "Output data may contain inappropriate content.",
     "content_rejected"),
    (400, "InvalidParameter", "Range of input length should be [1, 129024]", "llm_bad_request"),
    (400, "", "something odd", "llm_bad_request"),
    (422, "", "unprocessable", "llm_bad_request"),
    (401, "invalid_api_key", "Incorrect API key provided.", "llm_auth_failed"),
    (403, "AccessDenied", "Access denied.", "llm_auth_failed"),
    (404, "model_not_found", "The model `qwen-x` does not exist", "llm_model_not_found"),
    (429, "insufficient_quota", "You exceeded your current quota", "llm_quota_exhausted"),
    (400, "Arrearage", "Access denied, please make sure your account is in good standing.",
     "llm_quota_exhausted"),
    (429, "Throttling.AllocationQuota", "Free allocated quota exceeded.", "llm_quota_exhausted"),
    (403, "AllocationQuota.FreeTierOnly", "The free tier is exhausted.", "llm_quota_exhausted"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "provider_code", "message", "code"), PERMANENT)
async def test_permanent_failures_are_not_retried(
    fake: FakeLlm, make_client: MakeClient, status: int, provider_code: str, message: str, code: str
) -> None:
    fake.enqueue(error(status, provider_code, message), ok({}))
    client = make_client()
    failure = await _fails(client)
    assert (failure.code, failure.transient) == (code, False)
    assert fake.calls() == 1
    assert client.sleeps == []


async def test_the_key_never_reaches_errors_or_logs(fake: FakeLlm, make_client: MakeClient) -> None:
    echo = f"Incorrect API key provided: {KEY}. You can find your API key at ..."
    fake.enqueue(
        error(429, headers={"Retry-After": "0"}),
        ok({"fine": True}),
        error(400, "InvalidParameter", f"bad request from {KEY}"),
        error(401, "invalid_api_key", echo),
    )
    client = make_client()
    with structlog.testing.capture_logs() as logs:
        await client.ask()
        bad_request = await _fails(client)
        auth = await _fails(client)
    assert bad_request.code == "llm_bad_request"
    assert auth.code == "llm_auth_failed"
    for text in (bad_request.message, auth.message, str(bad_request), str(auth)):
        assert KEY not in text
    assert "***" in bad_request.message
    assert logs
    assert KEY not in json.dumps(logs, default=str)


# --------------------------------------------------------------------------- rotating keys


class MemorySource:
    """A key store in memory: what the source holds, how often it was read, a failure."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.reads = 0
        self.failure: Exception | None = None

    async def read(self) -> str:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        return self.key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rotating(fake: FakeLlm) -> AsyncIterator[tuple[MemorySource, Clock, LlmClient]]:
    """A client whose key comes from a source in memory, on a fake that wants ``KEY``."""
    source, clock = MemorySource("sk-stale"), Clock()
    key = await RotatingKey.load(source, recheck_s=60.0, clock=clock)
    config = ClientConfig(base_url=fake.base_url, api_key=key.current, model="m", max_retries=0)
    client = LlmClient(config, LlmLimiter(concurrency=4), rotating_key=key)
    fake.required_key = KEY
    fake.rules.append(lambda _: ok({"fine": True}))
    yield source, clock, client
    await client.aclose()


async def test_a_key_still_refused_is_read_again_only_after_the_recheck_interval(
    fake: FakeLlm, rotating: tuple[MemorySource, Clock, LlmClient]
) -> None:
    source, clock, client = rotating
    for _ in range(2):
        with pytest.raises(JobError, match="refused the credentials"):
            await client.complete_json(MESSAGES, max_tokens=10)
    assert source.reads == 2  # at start, then once for the first refusal
    clock.now += 59.0
    source.key = KEY
    with pytest.raises(JobError, match="refused the credentials"):
        await client.complete_json(MESSAGES, max_tokens=10)
    assert source.reads == 2
    clock.now += 1.0
    data, _ = await client.complete_json(MESSAGES, max_tokens=10)
    assert data == {"fine": True}
    assert source.reads == 3
    assert fake.keys == ["sk-stale"] * 4 + [KEY]


async def test_a_replacement_that_is_refused_too_fails_after_one_more_request(
    fake: FakeLlm, rotating: tuple[MemorySource, Clock, LlmClient]
) -> None:
    source, _, client = rotating
    source.key = "sk-also-wrong"
    with pytest.raises(JobError) as caught:
        await client.complete_json(MESSAGES, max_tokens=10)
    assert caught.value.code == "llm_auth_failed"
    assert fake.keys == ["sk-stale", "sk-also-wrong"]
    assert source.reads == 2


async def test_a_source_that_cannot_be_read_again_fails_the_request_as_refused(
    fake: FakeLlm, rotating: tuple[MemorySource, Clock, LlmClient]
) -> None:
    source, _, client = rotating
    source.failure = BackendError("reading the model API key from secret s failed: Throttled")
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(JobError) as caught:
            await client.complete_json(MESSAGES, max_tokens=10)
        with pytest.raises(JobError):
            await client.complete_json(MESSAGES, max_tokens=10)
    assert (caught.value.code, caught.value.transient) == ("llm_auth_failed", False)
    assert source.reads == 2  # the failed read counts: no read per request after it
    (warning,) = [e for e in logs if e["event"] == "could not read the model API key again"]
    assert "secret s" in warning["error"]
    assert "sk-stale" not in json.dumps(logs, default=str)


# --------------------------------------------------------------------------- helpers


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s({"retry-after": "7"}, now=lambda: now) == 7.0
    assert retry_after_s({"retry-after": "0.5"}, now=lambda: now) == 0.5
    assert retry_after_s({"retry-after": date}, now=lambda: now) == pytest.approx(30.0)
    assert retry_after_s({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, now=lambda: now) == 0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_parse_json_object() -> None:
    assert parse_json_object(' {"a": [1]} ') == {"a": [1]}
    assert parse_json_object('```\n{"a": 1}\n```') == {"a": 1}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_object("")


# --------------------------------------------------------------------------- key loading


def _settings(**values: Any) -> Settings:
    return Settings(backend="local", **values)


def test_key_from_the_setting_is_stripped() -> None:
    assert load_api_key(_settings(STORYBOARD_LLM_API_KEY="  sk-abc\n")) == "sk-abc"


def test_key_from_the_dashscope_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYBOARD_LLM_API_KEY", raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-from-env")
    assert load_api_key(Settings(backend="local")) == "sk-from-env"


def test_key_from_a_mounted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYBOARD_LLM_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    secret = tmp_path / "api-key"
    secret.write_text("sk-from-file\n")
    assert load_api_key(_settings(llm_api_key_file=secret)) == "sk-from-file"
    both = _settings(llm_api_key_file=secret, STORYBOARD_LLM_API_KEY="sk-explicit")
    assert load_api_key(both) == "sk-explicit"


def test_no_key_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYBOARD_LLM_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    assert load_api_key(_settings()) is None


@pytest.mark.parametrize("content", [None, "  \n", b"\xff\xfe\xfa"])
def test_an_unusable_key_file_is_a_clear_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes | None
) -> None:
    monkeypatch.delenv("STORYBOARD_LLM_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    path = tmp_path / "api-key"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match="key file") as caught:
        load_api_key(_settings(llm_api_key_file=path))
    assert str(path) in str(caught.value)


# --------------------------------------------------------------------------- spans


async def test_each_request_is_a_span_with_its_tokens_or_its_error_code(fake: FakeLlm) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    config = ClientConfig(
        base_url=fake.base_url, api_key=KEY, model="qwen-test", max_retries=1, backoff_base_s=0
    )
    client = LlmClient(config, LlmLimiter(concurrency=1), tracer=provider.get_tracer("t"))
    fake.enqueue(error(503, "ServiceUnavailable"), ok({"secret": "Say hello back."}))
    try:
        await client.complete_json(
            MESSAGES, max_tokens=64, span_attributes={"storyboard.chunk.index": 3}
        )
    finally:
        await client.aclose()
        provider.shutdown()

    failed, answered = memory.get_finished_spans()
    assert failed.name == answered.name == "chat qwen-test"
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "llm_unavailable"
    attributes = dict(answered.attributes or {})
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["storyboard.chunk.index"] == 3
    assert int(str(attributes["gen_ai.usage.output_tokens"])) > 0
    assert "error.type" not in attributes
    spans_text = json.dumps([dict(s.attributes or {}) for s in (failed, answered)])
    assert "Say hello" not in spans_text
