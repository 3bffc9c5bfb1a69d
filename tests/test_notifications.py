"""A job's end, delivered: signed webhooks to a real loopback receiver, and SNS on moto.

The receiver is an aiohttp server in the test that checks every delivery with the official
``standardwebhooks`` package. Deliveries run as jobs on the real queue of either backend,
with a short retry schedule; a real ``storyboard serve`` process killed between attempts
still delivers once restarted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook

from harness.processes import running_service, service_env
from service.app import create_app
from service.appkeys import RUNTIME
from service.backends.aws_clients import open_clients
from service.consumers.analyze import ANALYZE_JOB
from service.consumers.notifications import SNS_JOB, webhook_job_type
from service.events import WEBHOOK, delivery_id
from service.jobs import Job, JobStatus
from service.logs import configure_logging
from service.runtime import Runtime, open_runtime
from service.settings import Settings
from service.uploads import store_novel
from tests.analyzers import CountingAnalyzer, RejectingAnalyzer
from tests.conftest import SettingsFactory, prepare
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]

SECRET = "whsec_" + base64.b64encode(b"current-secret-of-32-bytes-long!").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"previous-secret-of-32-bytes-long").decode()
FRESH_S = 5
"""How far a webhook-timestamp may be from the moment the receiver got the request."""


def _webhook_settings(make: SettingsFactory, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "receive_wait_s": 0.5,
        "webhook_secret": SECRET,
        "webhook_allow_private": True,  # the receiver is on loopback, over http
        "webhook_retry_schedule_s": "1,1,1",
    }
    return make(**(values | overrides))


# ------------------------------------------------------------------------------ receiver


@dataclass
class Delivery:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """Answers deliveries from ``script`` in order, then ``then`` for ever after."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    then: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries.append(Delivery(dict(request.headers), body, time.time()))
        index = len(self.deliveries) - 1
        status, headers = self.script[index] if index < len(self.script) else (self.then, {})
        return web.Response(status=status, headers=headers)


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """The receiver listening on a loopback port for the block's duration."""
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/hook"))
        yield receiver


def verify(delivery: Delivery, secret: str = SECRET) -> dict[str, Any]:
    """The event, once the official library accepts its signature and timestamp."""
    event: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
    return event


# ------------------------------------------------------------------------------- helpers


async def _upload(client: Client) -> str:
    response = await client.post("/v1/novels", json={"title": "T", "text": "Once upon a time."})
    assert response.status == 201
    return str((await response.json())["novelId"])


async def _analyze(client: Client, novel_id: str, body: Any, **headers: str) -> dict[str, Any]:
    response = await client.post(f"/v1/novels/{novel_id}/analyze", json=body, headers=headers)
    assert response.status == 202, await response.text()
    return dict(await response.json())


async def _webhook_settled(client: Client, job_id: str) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        view: dict[str, Any] = await (await client.get(f"/v1/jobs/{job_id}")).json()
        webhook = view.get("webhook") or {}
        return view if webhook.get("status") in {"delivered", "gone", "failed"} else None

    return await eventually(settled)


async def _ended(runtime: Runtime, job_id: str) -> Job:
    async def probe() -> Job | None:
        job = await runtime.backend.jobs.get(job_id)
        return (
            job
            if job is not None
            and job.status not in {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING}
            else None
        )

    return await eventually(probe)


async def _queues_drained(runtime: Runtime) -> None:
    async def drained() -> bool:
        depth = await runtime.backend.queue.depth()
        return (depth.visible, depth.in_flight) == (0, 0)

    await eventually(drained)


# ---------------------------------------------------------------------- the delivery path


async def test_retries_after_500_and_429_then_delivers_signed_events(
    make_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = await prepare(_webhook_settings(make_settings, webhook_secret_previous=PREVIOUS))
    receiver = Receiver(script=[(500, {}), (429, {"Retry-After": "1"})])
    async with receiving(receiver):
        client = await aiohttp_client(create_app(settings, analyzer=CountingAnalyzer()))
        accepted = await _analyze(client, await _upload(client), {"callbackUrl": receiver.url})
        view = await _webhook_settled(client, accepted["jobId"])

    assert view["status"] == "completed"
    assert view["webhook"]["status"] == "delivered"
    assert view["webhook"]["attempts"] == 3
    assert view["webhook"]["nextAttemptAt"] is None
    assert len(receiver.deliveries) == 3
    ids = {delivery.headers["webhook-id"] for delivery in receiver.deliveries}
    assert ids == {delivery_id(WEBHOOK, accepted["jobId"], "job.completed")}
    for delivery in receiver.deliveries:
        assert abs(int(delivery.headers["webhook-timestamp"]) - delivery.received_at) <= FRESH_S
        signatures = delivery.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2
        assert all(signature.startswith("v1,") for signature in signatures)
        event = verify(delivery)
        assert verify(delivery, PREVIOUS) == event  # receivers still on the old secret
        assert event["type"] == "job.completed"
        assert event["data"]["jobId"] == accepted["jobId"]
        assert event["data"]["status"] == "completed"
        assert event["data"]["storyboardUrl"].endswith("/storyboard")
    # One event, one body: only the attempt's own timestamp and signature change.
    assert len({delivery.body for delivery in receiver.deliveries}) <= 3
    assert {delivery.event["timestamp"] for delivery in receiver.deliveries} == {
        receiver.deliveries[0].event["timestamp"]
    }


async def test_a_410_stops_delivery_after_one_attempt(
    local_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = _webhook_settings(local_settings)
    receiver = Receiver(script=[(410, {})])
    async with receiving(receiver):
        app = create_app(settings, analyzer=CountingAnalyzer())
        client = await aiohttp_client(app)
        accepted = await _analyze(client, await _upload(client), {"callbackUrl": receiver.url})
        view = await _webhook_settled(client, accepted["jobId"])
        runtime: Runtime = app[RUNTIME]
        delivery = await _ended(runtime, delivery_id(WEBHOOK, accepted["jobId"], "job.completed"))
        await _queues_drained(runtime)
    assert view["webhook"] == {
        "status": "gone",
        "attempts": 1,
        "lastError": "HTTP 410",
        "nextAttemptAt": None,
    }
    assert delivery.status is JobStatus.COMPLETED
    assert delivery.summary == {"outcome": "gone", "httpStatus": 410}
    assert len(receiver.deliveries) == 1


async def test_a_receiver_that_always_fails_ends_failed_and_dead_lettered(
    make_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = await prepare(_webhook_settings(make_settings, webhook_retry_schedule_s="1,1"))
    receiver = Receiver(then=503)
    async with receiving(receiver):
        app = create_app(settings, analyzer=CountingAnalyzer())
        client = await aiohttp_client(app)
        accepted = await _analyze(client, await _upload(client), {"callbackUrl": receiver.url})
        view = await _webhook_settled(client, accepted["jobId"])
        runtime: Runtime = app[RUNTIME]
        delivery = await _ended(runtime, delivery_id(WEBHOOK, accepted["jobId"], "job.completed"))

        async def parked() -> bool:
            depth = await runtime.backend.dlq.depth()
            return depth.visible + depth.in_flight == 1

        await eventually(parked)
    assert view["status"] == "completed"  # the job itself is untouched by its webhook
    assert view["webhook"]["status"] == "failed"
    assert view["webhook"]["attempts"] == 3
    assert view["webhook"]["lastError"] == "HTTP 503"
    assert len(receiver.deliveries) == 3
    assert delivery.status is JobStatus.FAILED
    assert delivery.error is not None
    assert delivery.error.code == "retries_exhausted"


async def test_a_failed_job_announces_job_failed(
    local_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = _webhook_settings(local_settings)
    receiver = Receiver()
    async with receiving(receiver):
        client = await aiohttp_client(create_app(settings, analyzer=RejectingAnalyzer()))
        accepted = await _analyze(client, await _upload(client), {"callbackUrl": receiver.url})
        view = await _webhook_settled(client, accepted["jobId"])
    assert view["status"] == "failed"
    (delivery,) = receiver.deliveries
    event = verify(delivery)
    assert event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == "content_rejected"


# ----------------------------------------------------------------------------- DNS at delivery


class StaticResolver(AbstractResolver):
    """DNS as the test says: each host resolves to the one address given for it."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.answers[host]
        return [
            {"hostname": host, "host": address, "port": port, "family": 2, "proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        return None


async def _submit_with_callback(runtime: Runtime, url: str) -> Job:
    """A job whose callback passed registration (the check is the route's; DNS said yes)."""
    novel = await store_novel(runtime.backend, "local", "T", "Once upon a time.")
    return await runtime.producer.submit(novel.novel_id, "local", callback_url=url)


async def test_a_host_that_now_resolves_to_loopback_is_refused_at_delivery(
    local_settings: SettingsFactory,
) -> None:
    settings = _webhook_settings(local_settings, webhook_allow_private=False)
    resolver = StaticResolver({"hooks.example.test": "127.0.0.1"})
    types = (ANALYZE_JOB, webhook_job_type(resolver=resolver), SNS_JOB)
    receiver = Receiver()
    async with (
        receiving(receiver),
        open_runtime(settings, analyzer=CountingAnalyzer(), job_types=types) as runtime,
    ):
        # The receiver listens on that loopback address: only the rule keeps us out.
        port = receiver.url.split(":")[2].split("/")[0]
        job = await _submit_with_callback(runtime, f"https://hooks.example.test:{port}/hook")
        delivery = await _ended(runtime, delivery_id(WEBHOOK, job.job_id, "job.completed"))
        final = await runtime.backend.jobs.get(job.job_id)
    assert resolver.asked == ["hooks.example.test"]
    assert receiver.deliveries == []
    assert delivery.status is JobStatus.FAILED
    assert delivery.error is not None
    assert delivery.error.code == "callback_url_forbidden"
    assert final is not None
    assert final.webhook is not None
    assert (final.webhook.status, final.webhook.attempts) == ("failed", 1)
    assert "forbidden address" in (final.webhook.last_error or "")


async def test_the_connection_goes_to_the_address_the_resolver_checked(
    local_settings: SettingsFactory,
) -> None:
    settings = _webhook_settings(local_settings)
    resolver = StaticResolver({"hooks.example.test": "127.0.0.1"})
    types = (ANALYZE_JOB, webhook_job_type(resolver=resolver), SNS_JOB)
    receiver = Receiver()
    async with (
        receiving(receiver),
        open_runtime(settings, analyzer=CountingAnalyzer(), job_types=types) as runtime,
    ):
        port = receiver.url.split(":")[2].split("/")[0]
        job = await _submit_with_callback(runtime, f"http://hooks.example.test:{port}/hook")
        await _ended(runtime, delivery_id(WEBHOOK, job.job_id, "job.completed"))
    assert resolver.asked == ["hooks.example.test"]
    (delivery,) = receiver.deliveries
    assert delivery.headers["Host"] == f"hooks.example.test:{port}"
    assert verify(delivery)["type"] == "job.completed"


# ------------------------------------------------------------------------ cancel and replay


async def test_concurrent_cancels_of_a_waiting_job_deliver_one_cancelled_event(
    local_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = _webhook_settings(local_settings)
    rounds = 3
    receiver = Receiver()
    async with receiving(receiver):
        client = await aiohttp_client(create_app(settings, worker=False))
        novel_id = await _upload(client)
        job_ids = []
        for _ in range(rounds):
            accepted = await _analyze(client, novel_id, {"callbackUrl": receiver.url})
            cancels = [client.post(f"/v1/jobs/{accepted['jobId']}/cancel") for _ in range(20)]
            responses = await asyncio.gather(*cancels)
            assert {response.status for response in responses} == {200}
            job_ids.append(accepted["jobId"])
        # A worker now takes the cancelled jobs' own messages (each announces again) and
        # the deliveries.
        async with open_runtime(settings, analyzer=CountingAnalyzer()) as runtime:
            for job_id in job_ids:
                await _ended(runtime, delivery_id(WEBHOOK, job_id, "job.cancelled"))
            await _queues_drained(runtime)
    events = [verify(delivery) for delivery in receiver.deliveries]
    assert sorted(event["data"]["jobId"] for event in events) == sorted(job_ids)
    assert {event["type"] for event in events} == {"job.cancelled"}
    assert {event["data"]["status"] for event in events} == {"cancelled"}


async def test_a_replay_keeps_the_first_requests_callback(
    local_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = _webhook_settings(local_settings)
    app = create_app(settings, worker=False)
    client = await aiohttp_client(app)
    novel_id = await _upload(client)
    first = await _analyze(
        client, novel_id, {"callbackUrl": "http://127.0.0.1:9/first"}, **{"Idempotency-Key": "k"}
    )
    again = await _analyze(
        client, novel_id, {"callbackUrl": "http://127.0.0.1:9/second"}, **{"Idempotency-Key": "k"}
    )
    stored = await app[RUNTIME].backend.jobs.get(first["jobId"])
    assert again["jobId"] == first["jobId"]
    assert stored is not None
    assert stored.callback_url == "http://127.0.0.1:9/first"


async def test_a_job_without_a_callback_has_no_webhook_state(
    local_settings: SettingsFactory, aiohttp_client: AiohttpClient
) -> None:
    settings = _webhook_settings(local_settings)
    app = create_app(settings, analyzer=CountingAnalyzer())
    client = await aiohttp_client(app)
    response = await client.post(f"/v1/novels/{await _upload(client)}/analyze")
    job_id = (await response.json())["jobId"]
    runtime: Runtime = app[RUNTIME]
    job = await _ended(runtime, job_id)
    await _queues_drained(runtime)
    view = await (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job.status is JobStatus.COMPLETED
    assert view["webhook"] is None
    assert await runtime.backend.jobs.get(delivery_id(WEBHOOK, job_id, "job.completed")) is None


# ------------------------------------------------------------------- a worker killed midway


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Fails the first delivery with 500, accepts the rest; records every one."""

    deliveries: list[Delivery] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.deliveries.append(Delivery(dict(self.headers), body, time.time()))
        self.send_response(500 if len(self.deliveries) == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def threaded_receiver() -> Iterator[str]:
    """A loopback receiver on a thread, for a test that drives processes synchronously."""
    _ScriptedHandler.deliveries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _call(url: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_webhook(url: str, job_id: str, status: str, within_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        view: dict[str, Any] = _call(f"{url}/v1/jobs/{job_id}")
        if (view.get("webhook") or {}).get("status") == status:
            return view
        time.sleep(0.1)
    raise AssertionError(f"the webhook of {job_id} never became {status}")


def test_a_worker_killed_between_attempts_still_delivers(tmp_path: Path) -> None:
    env = service_env(
        tmp_path / "data",
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="0",
        STORYBOARD_WEBHOOK_SECRET=SECRET,
        STORYBOARD_WEBHOOK_ALLOW_PRIVATE="1",
        # Long enough that the kill lands while the retry waits.
        STORYBOARD_WEBHOOK_RETRY_SCHEDULE_S="4",
    )
    with threaded_receiver() as hook:
        with running_service("serve", env, tmp_path / "first.log") as first:
            novel = _call(f"{first.url}/v1/novels?title=t", b"A short tale.", "text/plain")
            body = json.dumps({"callbackUrl": hook}).encode()
            job_id = _call(f"{first.url}/v1/novels/{novel['novelId']}/analyze", body)["jobId"]
            waiting = _wait_webhook(first.url, job_id, "retrying")
            first.stop(signal.SIGKILL)
        with running_service("serve", env, tmp_path / "second.log") as second:
            view = _wait_webhook(second.url, job_id, "delivered")
            second.stop()
    assert waiting["webhook"]["attempts"] == 1
    assert waiting["webhook"]["lastError"] == "HTTP 500"
    assert view["webhook"]["attempts"] == 2
    deliveries = _ScriptedHandler.deliveries
    assert len(deliveries) == 2
    assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == 1
    for delivery in deliveries:
        assert verify(delivery)["data"]["jobId"] == job_id


# ----------------------------------------------------------------------------------- SNS


async def test_each_end_is_published_to_the_events_topic(aws_settings: SettingsFactory) -> None:
    probe = aws_settings()
    topic_arn = f"arn:aws:sns:us-east-1:123456789012:{probe.queue_name}-events"
    settings = await prepare(aws_settings(receive_wait_s=0.5, events_topic_arn=topic_arn))
    async with (
        open_clients(settings) as clients,
        open_runtime(settings, analyzer=CountingAnalyzer()) as runtime,
    ):
        sns, sqs = clients.sns, clients.sqs
        assert sns is not None
        # bootstrap made the topic; a queue subscribes to it, as a consumer would.
        await sns.get_topic_attributes(TopicArn=topic_arn)
        inbox = (await sqs.create_queue(QueueName=f"{settings.queue_name}-inbox"))["QueueUrl"]
        attributes = await sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=attributes["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        novel = await store_novel(runtime.backend, "reader-7", "T", "Once upon a time.")
        job = await runtime.producer.submit(novel.novel_id, "reader-7")

        async def received() -> list[Any] | None:
            response = await sqs.receive_message(
                QueueUrl=inbox, MessageAttributeNames=["All"], WaitTimeSeconds=1
            )
            return list(response.get("Messages", [])) or None

        (message,) = await eventually(received)
        published = await _ended(runtime, delivery_id("sns", job.job_id, "job.completed"))
    event = json.loads(message["Body"])
    sent = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert sent == {"type": "job.completed", "userId": "reader-7"}
    assert event["type"] == "job.completed"
    assert event["data"]["jobId"] == job.job_id
    assert event["data"]["status"] == "completed"
    assert published.status is JobStatus.COMPLETED


# ------------------------------------------------------------------------ start-up messages


async def test_start_up_warns_about_allow_private_and_an_ignored_topic(
    local_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    settings = local_settings(
        webhook_allow_private=True,
        webhook_secret=SECRET,
        events_topic_arn="arn:aws:sns:us-east-1:123456789012:storyboard-events",
    )
    async with open_runtime(settings, worker=False) as runtime:
        assert runtime.notifier.channels == {WEBHOOK}
    output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    warnings = [line["event"] for line in lines if line.get("level") == "warning"]
    assert any("STORYBOARD_WEBHOOK_ALLOW_PRIVATE" in line for line in warnings), warnings
    assert any("STORYBOARD_EVENTS_TOPIC_ARN is ignored" in line for line in warnings), warnings
    assert SECRET not in output
    structlog.reset_defaults()
