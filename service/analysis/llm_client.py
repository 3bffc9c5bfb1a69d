"""A thin client for OpenAI-compatible Chat Completions that must answer with a JSON object.

Qwen is reached through DashScope's compatible mode, but any server speaking the same API
works by base URL alone. The SDK's own retries are off: this module retries transient
failures itself (429, 5xx, timeouts, connection errors) with exponential backoff and full
jitter, honouring ``Retry-After`` and ``retry-after-ms``, and maps every failure onto an
:class:`~service.ports.JobError` whose ``transient`` flag tells the job handler
whether redelivery can help.

The API key never reaches a log line or an error message: logs carry status codes, sizes
and a SHA-256 of each reply, and provider messages are scrubbed of the key before use.

A key held in a store that rotates it (an :class:`ApiKeySource`, wired in by the
composition layer) is a :class:`RotatingKey`: when the model refuses the key, the source is
read again and, if it now holds another key, the request is sent once more with that one.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from service.analysis.llm_limits import LlmLimiter
from service.errors import BackendError, JobError
from service.logs import get_logger
from service.settings import Settings, SettingsError

__all__ = [
    "KEY_RECHECK_S",
    "NO_KEY",
    "ApiKeySource",
    "ChatMessage",
    "ClientConfig",
    "Failure",
    "InvalidReply",
    "LlmClient",
    "MalformedResponse",
    "RotatingKey",
    "Usage",
    "classify_error",
    "load_api_key",
    "parse_json_object",
    "retry_after_s",
]

log = get_logger(__name__)

ChatMessage = ChatCompletionMessageParam

# Servers without authentication (vLLM, llama.cpp, Ollama) still get a bearer token: the SDK
# refuses to start without one, and these servers ignore it.
NO_KEY = "no-key"

# Codes are compared lower-cased. DashScope sends ``data_inspection_failed`` in compatible
# mode and ``DataInspectionFailed`` natively; the others are OpenAI's.
_MODERATION_CODES = frozenset(
    {"data_inspection_failed", "datainspectionfailed", "content_filter", "content_policy_violation"}
)
# Billing problems that no amount of waiting fixes. DashScope's ``Arrearage`` is a 400 and
# ``AllocationQuota.FreeTierOnly`` a 403; OpenAI's ``insufficient_quota`` is a 429.
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "arrearage",
        "billing_hard_limit_reached",
        "allocationquota.freetieronly",
    }
)
# DashScope uses one code for a per-minute quota (wait) and an exhausted free tier (do not).
_ALLOCATION_QUOTA = "throttling.allocationquota"
_DETAIL_CHARS = 300
_FENCE = "```"
_AUTH_FAILED = "llm_auth_failed"

KEY_RECHECK_S = 60.0
"""How long a key the model refused, but its source still holds, goes without another
read of the source: a key that stays wrong costs one read a minute, not one per request."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens billed and requests answered, summed over calls with ``+``."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.requests + other.requests,
        )

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def to_meta(self) -> dict[str, int]:
        """The camelCase form stored in a storyboard's ``meta.usage``."""
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "requests": self.requests,
        }


class MalformedResponse(openai.OpenAIError):
    """A 200 that is no chat completion, as gateways send when the model behind them fails."""


class InvalidReply(Exception):
    """The model answered, but not with a usable JSON object; ``raw`` is what it said."""

    def __init__(self, reason: str, raw: str, usage: Usage) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.usage = usage


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the model lives and how patiently to talk to it."""

    base_url: str
    api_key: str | None
    model: str
    temperature: float = 0.3
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    chars_per_token: float = 1.5

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientConfig:
        """The configuration named by the ``llm_*`` settings, the key loaded from its source."""
        return cls(
            base_url=settings.effective_llm_base_url,
            api_key=load_api_key(settings),
            model=settings.llm_model,
            temperature=settings.llm_temperature,
            timeout_s=settings.llm_timeout_s,
            connect_timeout_s=settings.llm_connect_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            chars_per_token=settings.llm_chars_per_token,
        )


def load_api_key(settings: Settings) -> str | None:
    """The API key from ``llm_api_key`` (which wins) or the file ``llm_api_key_file``.

    A key in Secrets Manager (``llm_api_key_secret_id``, never combined with these) is not
    read here but by a :class:`RotatingKey` the composition layer hands the analyzer.

    Surrounding whitespace is stripped, since mounted secrets usually end in a newline.
    Raises :class:`SettingsError` naming the file (never its contents) when it cannot be
    read or is empty; returns ``None`` when no key is configured.
    """
    if settings.llm_api_key is not None:
        key = settings.llm_api_key.get_secret_value().strip()
        if key:
            return key
    if settings.llm_api_key_file is None:
        return None
    path = settings.llm_api_key_file
    try:
        key = path.read_text(encoding="utf-8").strip()
    except UnicodeError:
        raise SettingsError(f"the model API key file {path} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"cannot read the model API key file {path}: {reason}") from None
    if not key:
        raise SettingsError(f"the model API key file {path} is empty")
    return key


class ApiKeySource(Protocol):
    """Where the model API key lives when it may change under a running process."""

    async def read(self) -> str:
        """The key the source holds now. Raises :class:`BackendError` or
        :class:`SettingsError` naming the source, never the value, when it cannot."""
        ...


class RotatingKey:
    """The model API key from an :class:`ApiKeySource`, read again when the model refuses it.

    Requests refused together share one read (the lock, and the check that the key they were
    refused with is still current), and a key the source still holds is not read again for
    ``recheck_s`` seconds.
    """

    def __init__(
        self,
        source: ApiKeySource,
        key: str,
        *,
        recheck_s: float = KEY_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._key = key
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._confirmed_at: float | None = None

    @classmethod
    async def load(
        cls,
        source: ApiKeySource,
        *,
        recheck_s: float = KEY_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> RotatingKey:
        """Read the key once, as the process starts; the source's error if it cannot."""
        return cls(source, await source.read(), recheck_s=recheck_s, clock=clock)

    @property
    def current(self) -> str:
        """The key to send."""
        return self._key

    async def refresh(self, refused: str) -> bool:
        """Whether a key other than ``refused`` is now current, reading the source when no
        other request has just done so."""
        async with self._lock:
            if self._key != refused:
                return True
            now = self._clock()
            if self._confirmed_at is not None and now - self._confirmed_at < self._recheck_s:
                return False
            try:
                key = await self._source.read()
            except (BackendError, SettingsError) as exc:
                # The message names the source and the cause; the source never puts the key in it.
                log.warning("could not read the model API key again", error=str(exc))
                key = refused
            if key == refused:
                self._confirmed_at = now
                log.warning("the model refused the API key, and its source still holds it")
                return False
            self._key, self._confirmed_at = key, None
            log.info("the model refused the API key; sending its replacement from the source")
            return True


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed request, classified: the error code, whether waiting can help, and how long
    the server asked us to wait."""

    code: str
    message: str
    transient: bool
    status: int | None = None
    retry_after_s: float | None = None

    def error(self, attempts: int = 1) -> JobError:
        """The error to raise once we stop trying."""
        message = self.message if attempts == 1 else f"{self.message} (after {attempts} attempts)"
        return JobError(self.code, message, transient=self.transient)


def classify_error(exc: openai.OpenAIError, secret: str | None = None) -> Failure:
    """Map an SDK exception onto a :class:`Failure`; ``secret`` is scrubbed from messages."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure("llm_unavailable", "the model API did not answer in time", True)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("llm_unavailable", "could not connect to the model API", True)
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, secret)
    if isinstance(exc, MalformedResponse):
        return Failure("llm_unavailable", f"the model API sent no chat completion ({exc})", True)
    return Failure("llm_unavailable", f"model API client error ({type(exc).__name__})", True)


def _classify_status(exc: openai.APIStatusError, secret: str | None) -> Failure:
    status = exc.status_code
    code = _provider_code(exc)
    detail = _provider_detail(exc, secret)
    hint = retry_after_s(exc.response.headers)
    label = f"HTTP {status}" + (f", {code}" if code else "")
    if code in _MODERATION_CODES:
        return Failure(
            "content_rejected",
            f"the provider's moderation rejected the text ({label})",
            False,
            status,
        )
    if code in _QUOTA_CODES or (code == _ALLOCATION_QUOTA and "free" in detail.lower()):
        message = f"model API quota exhausted ({label}): {detail}"
        return Failure("llm_quota_exhausted", message, False, status)
    if status == 429:
        return Failure("llm_rate_limited", f"model API rate limit ({label})", True, status, hint)
    if status in (408, 409) or status >= 500:
        return Failure("llm_unavailable", f"model API unavailable ({label})", True, status, hint)
    if status in (401, 403):
        # Some providers echo part of the key in these messages: keep only the status.
        message = f"model API refused the credentials ({label})"
        return Failure("llm_auth_failed", message, False, status)
    if status == 404:
        return Failure("llm_model_not_found", f"model not found ({label}): {detail}", False, status)
    message = f"model API rejected the request ({label}): {detail}"
    return Failure("llm_bad_request", message, False, status)


def _provider_code(exc: openai.APIStatusError) -> str:
    """The provider's error code (or type, which DashScope fills alike), lower-cased."""
    for value in (exc.code, exc.type):
        if isinstance(value, str) and value:
            return value.lower()
    return ""


def _provider_detail(exc: openai.APIStatusError, secret: str | None) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    text = message if isinstance(message, str) and message else exc.message
    return _scrub(" ".join(text.split()), secret)[:_DETAIL_CHARS]


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def retry_after_s(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date. ``None`` without a usable hint."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def parse_json_object(raw: str) -> dict[str, Any]:
    """The JSON object in a reply, tolerating a Markdown code fence around it.

    Raises ``ValueError`` with a reason a model can act on.
    """
    text = raw.strip()
    if text.startswith(_FENCE):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit(_FENCE, 1)[0]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the reply is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the reply is JSON but a {type(data).__name__}, not an object")
    return data


Sleep = Callable[[float], Awaitable[None]]


class RequestObserver(Protocol):
    """Told about every model request, for metrics."""

    def llm_request(
        self, seconds: float, code: str | None, tokens_in: int, tokens_out: int
    ) -> None:
        """One request's latency, its failure code (None on success) and its tokens."""
        ...


class LlmClient:
    """Sends chat requests that must be answered with a JSON object, retrying within bounds."""

    def __init__(
        self,
        config: ClientConfig,
        limiter: LlmLimiter,
        *,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        observer: RequestObserver | None = None,
        rotating_key: RotatingKey | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """``rotating_key``, when given, is sent instead of ``config.api_key`` and re-read
        once per request that the model refuses. ``tracer`` makes a span of each request
        (the API's no-op tracer when not given)."""
        self.config = config
        self._tracer = tracer or trace.NoOpTracer()
        self._observer = observer
        self._rotating_key = rotating_key
        self._limiter = limiter
        self._sleep = sleep
        self._jitter = jitter
        self._openai = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or NO_KEY,
            timeout=openai.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            max_retries=0,  # retried here, where Retry-After and our bounds are honoured
        )
        # Qwen3 models on DashScope refuse non-streaming calls while thinking is enabled,
        # and thinking would only spend tokens; other servers may reject the unknown field.
        host = urlparse(config.base_url).hostname or ""
        self._extra_body = {"enable_thinking": False} if host.endswith("aliyuncs.com") else None

    async def complete_json(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        span_attributes: Mapping[str, AttributeValue] | None = None,
    ) -> tuple[dict[str, Any], Usage]:
        """The reply's JSON object and what it cost. Each request made for it is a span
        carrying ``span_attributes`` beside the GenAI ones (see :func:`request_attributes`).

        Raises :class:`InvalidReply` when the model answered without a JSON object (the
        caller may ask it to repair), and :class:`JobError` for every other failure.
        """
        attempt = 0
        rotated = False
        while True:
            key = self._key()
            try:
                completion = await self._send(messages, max_tokens, key, span_attributes or {})
            except openai.OpenAIError as exc:
                failure = classify_error(exc, key)
                if failure.code == _AUTH_FAILED and not rotated:
                    # One more try, and only with a key that differs from the refused one.
                    rotated = True
                    if self._rotating_key is not None and await self._rotating_key.refresh(key):
                        continue
                if not failure.transient:
                    raise failure.error() from None
                if attempt >= self.config.max_retries:
                    raise failure.error(attempt + 1) from None
                await self._back_off(failure, attempt)
                attempt += 1
                continue
            return _read_completion(completion)

    def backoff_s(self, attempt: int, hint_s: float | None) -> float:
        """How long to wait before retry ``attempt + 1``: the server's hint when it gave one,
        else full jitter over an exponential ceiling; never above ``backoff_max_s``."""
        if hint_s is not None:
            return min(hint_s, self.config.backoff_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0**attempt)
        return self._jitter() * ceiling

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._openai.close()

    def _key(self) -> str:
        if self._rotating_key is not None:
            return self._rotating_key.current
        return self.config.api_key or NO_KEY

    async def _send(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        key: str,
        span_attributes: Mapping[str, AttributeValue],
    ) -> ChatCompletion:
        # Pessimistic for the rate limiter: the prompt plus the longest reply allowed.
        prompt_tokens = _prompt_tokens(messages, self.config.chars_per_token)
        async with self._limiter.slot(prompt_tokens + max_tokens) as lease:
            log.debug(
                "model request",
                messages=len(messages),
                prompt_chars=_chars(messages),
                max_tokens=max_tokens,
            )
            started = time.perf_counter()
            with self._tracer.start_as_current_span(
                f"chat {self.config.model}",
                kind=trace.SpanKind.CLIENT,
                attributes={**request_attributes(self.config, max_tokens), **span_attributes},
                # An exception's text may quote the provider's reply; its class is enough.
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    completion = await self._request(messages, max_tokens, key)
                except BaseException as exc:
                    # The prompt may have been billed; no reply was.
                    lease.record(prompt_tokens)
                    code = _failure_code(exc)
                    self._observe(started, code, 0, 0)
                    _failed(span, code)
                    raise
                try:
                    _check_shape(completion)
                except MalformedResponse as exc:
                    _failed(span, _failure_code(exc))
                    raise
                usage = completion.usage
                if usage is not None:
                    lease.record(usage.total_tokens)
                self._observe(
                    started,
                    None,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                )
                if span.is_recording():
                    span.set_attributes(reply_attributes(completion))
                return completion

    async def _request(
        self, messages: Sequence[ChatMessage], max_tokens: int, key: str
    ) -> ChatCompletion:
        completion = await self._openai.chat.completions.create(
            model=self.config.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=self.config.temperature,
            response_format={"type": "json_object"},
            extra_body=self._extra_body,
            # Per request, so a refusal is known to be of the key this request sent.
            extra_headers=self._auth_header(key),
        )
        return completion

    def _auth_header(self, key: str) -> dict[str, str] | None:
        return None if self._rotating_key is None else {"Authorization": f"Bearer {key}"}

    def _observe(self, started: float, code: str | None, tokens_in: int, tokens_out: int) -> None:
        if self._observer is not None:
            self._observer.llm_request(time.perf_counter() - started, code, tokens_in, tokens_out)

    async def _back_off(self, failure: Failure, attempt: int) -> None:
        delay = self.backoff_s(attempt, failure.retry_after_s)
        log.warning(
            "model request failed, retrying",
            code=failure.code,
            status=failure.status,
            attempt=attempt + 1,
            retry_in_s=round(delay, 3),
            server_hint_s=failure.retry_after_s,
        )
        await self._sleep(delay)


def request_attributes(config: ClientConfig, max_tokens: int) -> dict[str, AttributeValue]:
    """A model request's span attributes, after the OpenTelemetry GenAI conventions. Never
    the prompt: the novel's text stays out of traces."""
    url = urlparse(config.base_url)
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        # The wire protocol is OpenAI's chat completions, whoever serves it.
        "gen_ai.system": "openai",
        "gen_ai.request.model": config.model,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": config.temperature,
        "server.address": url.hostname or "",
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    return attributes


def reply_attributes(completion: ChatCompletion) -> dict[str, AttributeValue]:
    """A reply's span attributes: model, id, token counts, finish reasons; never its text."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.response.id": completion.id,
        "gen_ai.response.model": completion.model,
        "gen_ai.response.finish_reasons": [str(c.finish_reason) for c in completion.choices],
    }
    if completion.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = completion.usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = completion.usage.completion_tokens
    return attributes


def _failed(span: trace.Span, code: str) -> None:
    span.set_attribute("error.type", code)
    span.set_status(trace.StatusCode.ERROR, code)


def _failure_code(exc: BaseException) -> str:
    if isinstance(exc, openai.OpenAIError):
        return classify_error(exc).code
    return type(exc).__name__


def _check_shape(completion: object) -> None:
    # Without response validation the SDK hands back whatever a 200 carried.
    if not isinstance(completion, ChatCompletion):
        raise MalformedResponse(f"a {type(completion).__name__} body")
    if not completion.choices:
        raise MalformedResponse("no choices")


def _read_completion(completion: ChatCompletion) -> tuple[dict[str, Any], Usage]:
    reported = completion.usage
    usage = Usage(
        input_tokens=reported.prompt_tokens if reported else 0,
        output_tokens=reported.completion_tokens if reported else 0,
        requests=1,
    )
    choice = completion.choices[0]
    raw = choice.message.content or ""
    log.debug(
        "model reply",
        chars=len(raw),
        sha256=hashlib.sha256(raw.encode()).hexdigest(),
        finish_reason=choice.finish_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
    if choice.finish_reason == "content_filter":
        raise JobError(
            "content_rejected", "the provider's moderation withheld the reply", transient=False
        )
    if choice.finish_reason == "length":
        raise InvalidReply("the reply was cut off at the token limit", raw, usage)
    try:
        return parse_json_object(raw), usage
    except ValueError as exc:
        raise InvalidReply(str(exc), raw, usage) from None


def _chars(messages: Sequence[ChatMessage]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


def _prompt_tokens(messages: Sequence[ChatMessage], chars_per_token: float) -> int:
    return int(_chars(messages) / chars_per_token) + 1
