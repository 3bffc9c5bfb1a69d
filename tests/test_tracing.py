"""Traces of whole jobs: one trace from the HTTP request to the last model call.

Each test hands the runtime a tracer provider of its own (OpenTelemetry's global one is
never set), so nothing leaks into other tests. The OTLP test goes the production way:
``OTEL_*`` variables, the runtime's own SDK provider, and the protobuf on the wire.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.app import create_app, tracing_middleware
from service.jobs import JobStatus
from service.logs import configure_logging
from service.producers.redrive import redrive
from service.runtime import open_runtime
from service.settings import Settings, SettingsError
from service.telemetry import TracedQueue
from service.tracing import OFF, tracing_configured
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer, FlakyAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.fake_llm import FakeLlm, start_fake_llm
from tests.waiting import eventually, job_finished

KEY = "sk-test"
SECRET_WORD = "Quibblethorpe"
NOVEL = "\n\n".join(
    [
        f"CHAPTER {n}. Day {n}\n\n" + f"{SECRET_WORD} walked by the river on day {n}. " * 12
        for n in ("I", "II")
    ]
)
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeLlm]:
    fake = await start_fake_llm(aiohttp_server)
    yield fake
    fake.release()


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def _llm(settings: SettingsFactory, fake: FakeLlm, **overrides: Any) -> Settings:
    return settings(
        llm_base_url=fake.base_url,
        llm_model="qwen-test",
        STORYBOARD_LLM_API_KEY=KEY,
        llm_max_output_tokens=256,
        receive_wait_s=0.5,
        **overrides,
    )


async def _run_job(client: Client) -> str:
    response = await client.post("/v1/novels", json={"title": "Traced", "text": NOVEL})
    assert response.status == 201, await response.text()
    novel_id = (await response.json())["novelId"]
    response = await client.post(f"/v1/novels/{novel_id}/analyze")
    assert response.status == 202, await response.text()
    job_id = str((await response.json())["jobId"])

    async def ended() -> bool:
        job = await (await client.get(f"/v1/jobs/{job_id}")).json()
        return bool(job["status"] == "completed")

    await eventually(ended)
    return job_id


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, sorted({s.name for s in spans})
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


async def test_one_trace_from_the_request_to_the_model_calls_and_the_store(
    make_settings: SettingsFactory,
    fake: FakeLlm,
    exporter: tuple[TracerProvider, InMemorySpanExporter],
    aiohttp_client: AiohttpClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider, memory = exporter
    settings = await prepare(_llm(make_settings, fake))
    configure_logging("info", "json")
    client = await aiohttp_client(create_app(settings, tracer_provider=provider))
    job_id = await _run_job(client)
    await client.close()
    spans = list(memory.get_finished_spans())

    request = _one(spans, "POST /v1/novels/{novelId}/analyze")
    assert request.kind is SpanKind.SERVER
    trace_id = _trace_id(request)
    queue = settings.queue_name  # unique to the test on moto
    send = _one(spans, f"send {queue}")
    assert send.kind is SpanKind.PRODUCER
    assert (_trace_id(send), _parent_id(send)) == (trace_id, _span_id(request))
    process = _one(spans, f"process {queue}")
    assert process.kind is SpanKind.CONSUMER
    # A child of the send and linked to it, so the job is one trace either way one looks.
    assert (_trace_id(process), _parent_id(process)) == (trace_id, _span_id(send))
    assert [link.context.span_id for link in process.links] == [_span_id(send)]
    system = "aws_sqs" if settings.resolved_backend == "aws" else "storyboard_local"
    for span, operation in ((send, "send"), (process, "process")):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == system
        assert span.attributes["messaging.destination.name"] == queue
        assert span.attributes["messaging.operation.type"] == operation
    assert send.attributes is not None
    assert process.attributes is not None
    assert send.attributes["messaging.message.id"] == process.attributes["messaging.message.id"]

    calls = [s for s in spans if s.name == "chat qwen-test"]
    assert len(calls) == fake.calls() == 4  # two chunks, two passes each
    assert {_parent_id(s) for s in calls} == {_span_id(process)}
    labels = set()
    for call in calls:
        attributes = dict(call.attributes or {})
        assert call.kind is SpanKind.CLIENT
        assert attributes["gen_ai.system"] == "openai"
        assert attributes["gen_ai.request.model"] == "qwen-test"
        assert int(str(attributes["gen_ai.usage.input_tokens"])) > 0
        assert int(str(attributes["gen_ai.usage.output_tokens"])) > 0
        assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
        labels.add((attributes["storyboard.chunk.index"], attributes["storyboard.pass"]))
    assert labels == {(0, "a"), (1, "a"), (0, "b"), (1, "b")}
    # No novel text in any span: prompts and replies stay out.
    assert all(SECRET_WORD not in json.dumps(dict(s.attributes or {})) for s in spans)

    aws_calls = [s for s in spans if (s.attributes or {}).get("rpc.system") == "aws-api"]
    job_calls = [s for s in aws_calls if _trace_id(s) == trace_id]
    if settings.resolved_backend == "aws":
        sent = [s for s in job_calls if s.name == "SQS.SendMessage"]
        assert [_parent_id(s) for s in sent] == [_span_id(send)]
        stored = {s.name for s in job_calls if _parent_id(s) == _span_id(process)}
        assert {"S3.GetObject", "S3.PutObject", "DynamoDB.UpdateItem"} <= stored
    else:
        # The embedded backend (SQLite, files) is not instrumented: no store spans at all.
        assert aws_calls == []

    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    job_lines = [line for line in lines if line.get("jobId") == job_id]
    assert {"job queued", "job started"} <= {line["event"] for line in job_lines}
    assert job_lines
    assert all(line["traceId"] == format(trace_id, "032x") for line in job_lines)
    started = next(line for line in job_lines if line["event"] == "job started")
    assert started["spanId"] == format(_span_id(process), "016x")


async def test_retries_and_the_dead_letter_queue_stay_in_the_trace_of_the_send(
    local_settings: SettingsFactory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = exporter
    settings = local_settings(
        receive_wait_s=0.5, max_receive_count=2, retry_base_s=0.2, dlq_poll_s=0.2, dlq_hold_s=600
    )
    analyzer = FlakyAnalyzer(failures=100)
    async with open_runtime(settings, analyzer=analyzer, tracer_provider=provider) as runtime:
        novel = await store_novel(runtime.backend, "u", "T", "text")
        submitted = await runtime.producer.submit(novel.novel_id, "u")

        async def parked() -> bool:
            return any(s.name == "process storyboard-jobs-dlq" for s in memory.get_finished_spans())

        job = await job_finished(runtime.backend.jobs, submitted.job_id)
        await eventually(parked)
    assert job.status is JobStatus.FAILED
    spans = list(memory.get_finished_spans())
    send = _one(spans, "send storyboard-jobs")
    attempts = [s for s in spans if s.name == "process storyboard-jobs"]
    dead = _one(spans, "process storyboard-jobs-dlq")
    assert len(attempts) == 2
    for span in (*attempts, dead):
        assert (_trace_id(span), _parent_id(span)) == (_trace_id(send), _span_id(send))
        assert [link.context.span_id for link in span.links] == [_span_id(send)]
    assert [dict(s.attributes or {})["messaging.message.delivery_count"] for s in attempts] == [
        1,
        2,
    ]


async def test_a_redriven_job_runs_again_in_the_trace_it_started_in(
    local_settings: SettingsFactory, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = exporter
    settings = local_settings(
        receive_wait_s=0.5, max_receive_count=1, dlq_hold_s=1, dlq_poll_s=0.2, retry_base_s=0.2
    )
    async with open_runtime(
        settings, analyzer=FlakyAnalyzer(failures=100), tracer_provider=provider
    ) as runtime:
        novel = await store_novel(runtime.backend, "u", "T", "text")
        job_id = (await runtime.producer.submit(novel.novel_id, "u")).job_id
        await job_finished(runtime.backend.jobs, job_id)

    async with open_runtime(settings, worker=False) as runtime:

        async def moved() -> bool:
            return (await redrive(runtime.backend, {job_id})).moved == [job_id]

        await eventually(moved)
    async with open_runtime(
        settings, analyzer=CountingAnalyzer(), tracer_provider=provider
    ) as runtime:
        done = await job_finished(runtime.backend.jobs, job_id)
    assert done.status is JobStatus.COMPLETED
    spans = list(memory.get_finished_spans())
    send = _one(spans, "send storyboard-jobs")
    runs = [s for s in spans if s.name == "process storyboard-jobs"]
    assert len(runs) == 2  # the failed attempt, and the one after the redrive
    assert {(_trace_id(s), _parent_id(s)) for s in runs} == {(_trace_id(send), _span_id(send))}


async def test_the_notification_job_is_sent_from_the_ended_jobs_trace(
    local_settings: SettingsFactory,
    exporter: tuple[TracerProvider, InMemorySpanExporter],
    aiohttp_server: AiohttpServer,
) -> None:
    provider, memory = exporter
    hooks = web.Application()

    async def delivered(_: web.Request) -> web.Response:
        return web.Response(status=204)

    hooks.router.add_post("/hook", delivered)
    hook = await aiohttp_server(hooks)
    secret = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
    settings = local_settings(receive_wait_s=0.5, webhook_secret=secret, webhook_allow_private=True)
    async with open_runtime(
        settings, analyzer=CountingAnalyzer(), tracer_provider=provider
    ) as runtime:
        novel = await store_novel(runtime.backend, "u", "T", "text")
        submitted = await runtime.producer.submit(
            novel.novel_id, "u", callback_url=str(hook.make_url("/hook"))
        )
        await job_finished(runtime.backend.jobs, submitted.job_id)

        async def sends() -> list[ReadableSpan] | None:
            found = [s for s in memory.get_finished_spans() if s.name == "send storyboard-jobs"]
            return found if len(found) == 2 else None

        found: list[ReadableSpan] = await eventually(sends)
        first, second = sorted(found, key=lambda s: s.start_time or 0)
    spans = list(memory.get_finished_spans())
    process = next(
        s for s in spans if _parent_id(s) == _span_id(first) and s.kind is SpanKind.CONSUMER
    )
    # The webhook delivery is queued while the ended job's message is processed.
    assert (_trace_id(second), _parent_id(second)) == (_trace_id(first), _span_id(process))


async def test_tracing_off_builds_nothing_and_sends_no_attributes(
    local_settings: SettingsFactory,
) -> None:
    settings = local_settings(receive_wait_s=0.5)
    assert settings.tracing is False
    app = create_app(settings, analyzer=CountingAnalyzer())
    assert tracing_middleware not in app.middlewares
    async with open_runtime(settings, analyzer=CountingAnalyzer(), worker=False) as runtime:
        assert runtime.tracing is OFF
        assert not isinstance(runtime.producer._queue, TracedQueue)
        novel = await store_novel(runtime.backend, "u", "T", "text")
        await runtime.producer.submit(novel.novel_id, "u")
        (message,) = await runtime.backend.queue.receive(max_messages=1, wait_s=1, visibility_s=5)
    assert dict(message.attributes) == {}


async def test_tracing_asked_for_without_the_sdk_refuses_to_start(
    local_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the otel extra were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(SettingsError, match=r"storyboard-service\[otel\]"):
        async with open_runtime(local_settings(tracing=True), worker=False):
            pass


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"PATH": "/bin", "STORYBOARD_BACKEND": "local"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_SERVICE_NAME": "storyboard"}, True),
        ({"OTEL_SERVICE_NAME": ""}, False),
        ({"OTEL_SERVICE_NAME": "s", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "s", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_when_an_otel_variable_asks_for_it(environ: dict[str, str], on: bool) -> None:
    assert tracing_configured(environ) is on


# --------------------------------------------------------------------------- OTLP on the wire


async def test_a_job_exported_over_otlp_http_decodes_as_one_trace(
    local_settings: SettingsFactory,
    fake: FakeLlm,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", collect)
    collector = await aiohttp_server(receiver)
    # The production path: the SDK reads these itself, the runtime owns the provider.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(collector.make_url("/")).rstrip("/"))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "storyboard-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    settings = _llm(local_settings, fake, tracing=True)
    client = await aiohttp_client(create_app(settings))
    await _run_job(client)
    await client.close()  # the runtime stops, flushing its spans to the collector

    spans: dict[str, list[Any]] = {}
    for export in received:
        for resource_spans in export.resource_spans:
            names = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert names["service.name"] == "storyboard-under-test"
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.setdefault(span.name, []).append(span)
    (request,) = spans["POST /v1/novels/{novelId}/analyze"]
    (send,) = spans["send storyboard-jobs"]
    (process,) = spans["process storyboard-jobs"]
    calls = spans["chat qwen-test"]
    assert len(calls) == 4
    assert send.parent_span_id == request.span_id
    assert process.parent_span_id == send.span_id
    assert [link.span_id for link in process.links] == [send.span_id]
    assert {c.parent_span_id for c in calls} == {process.span_id}
    assert {s.trace_id for s in (request, send, process, *calls)} == {request.trace_id}
    assert send.kind == 4
    assert process.kind == 5
    tokens = {a.key: a.value.int_value for a in calls[0].attributes}
    assert tokens["gen_ai.usage.input_tokens"] > 0
