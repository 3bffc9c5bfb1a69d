"""HTTP routes: submissions, job status, storyboards, health and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from service import jobs
from service.api_schema import JobAccepted, JobView, NovelCreated, NovelUpload, NovelView
from service.appkeys import RUNTIME, USER_ID
from service.http_errors import ApiError, not_found
from service.jobs import Job, JobStatus
from service.novels import Novel
from service.ports import BlobNotFound
from service.producers.enqueue import EnqueueError, Submission
from service.runtime import Runtime
from service.text import EmptyTextError, TextDecodeError, load_novel_bytes, normalise_text
from service.uploads import store_novel

_ID = re.compile(r"^[0-9a-f]{32}$")
PROBE_TIMEOUT_S = 3.0

routes = web.RouteTableDef()


def current_user(request: web.Request) -> str:
    """The authenticated caller's user id (set by the auth middleware)."""
    return request[USER_ID]


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _url(request: web.Request, path: str) -> str:
    return _runtime(request).settings.public_base_url.rstrip("/") + path


def _path_id(request: web.Request, name: str, what: str) -> str:
    # Ids are ours (UUID hex); anything else cannot exist, and must never reach a key.
    value = request.match_info[name]
    if not _ID.match(value):
        raise not_found(what)
    return value


class _Owned(Protocol):
    user_id: str


OwnedT = TypeVar("OwnedT", bound=_Owned)


async def _owned(
    request: web.Request, param: str, what: str, load: Callable[[str], Awaitable[OwnedT | None]]
) -> OwnedT:
    # Someone else's record answers exactly like a missing one, so ids cannot be probed.
    record = await load(_path_id(request, param, what))
    if record is None or record.user_id != current_user(request):
        raise not_found(what)
    return record


async def _owned_novel(request: web.Request) -> Novel:
    return await _owned(request, "novelId", "novel", _runtime(request).backend.novels.get)


@routes.post("/v1/novels")
async def create_novel(request: web.Request) -> web.Response:
    """Upload a novel as JSON ``{title, text}`` or as ``text/plain`` with ``?title=``."""
    title, text = await _read_upload(request)
    novel = await store_novel(_runtime(request).backend, current_user(request), title, text)
    body = NovelCreated(novel_id=novel.novel_id, title=title, chars=novel.chars).to_doc()
    headers = {"Location": _url(request, f"/v1/novels/{novel.novel_id}")}
    return web.json_response(body, status=201, headers=headers)


async def _read_upload(request: web.Request) -> tuple[str, str]:
    if request.content_type == "application/json":
        upload = _parse_json_upload(await request.read())
        title, text = upload.title, normalise_text(upload.text)
    elif request.content_type == "text/plain":
        title = request.query.get("title", "").strip()
        if not title or len(title) > 500:
            raise ApiError(
                422, "validation_error", "query parameter 'title' (1-500 chars) is required"
            )
        text = _decode_plain(await request.read())
    else:
        raise ApiError(
            415, "unsupported_media_type", "send application/json {title, text} or text/plain"
        )
    if not text.strip():
        raise ApiError(422, "empty_text", "the novel's text is empty")
    limit = _runtime(request).settings.max_novel_chars
    if len(text) > limit:
        raise ApiError(
            422, "novel_too_large", f"the novel has {len(text)} characters; the limit is {limit}"
        )
    return title.strip(), text


def _parse_json_upload(raw: bytes) -> NovelUpload:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    try:
        return NovelUpload.model_validate(document)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _describe(exc)) from None


def _decode_plain(raw: bytes) -> str:
    try:
        return load_novel_bytes(raw)
    except TextDecodeError as exc:
        raise ApiError(415, "undecodable_text", str(exc)) from None
    except EmptyTextError:
        raise ApiError(422, "empty_text", "the novel's text is empty") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


@routes.get("/v1/novels/{novelId}")
async def get_novel(request: web.Request) -> web.Response:
    """A novel's metadata and the summary of its latest storyboard."""
    novel = await _owned_novel(request)
    latest = novel.latest_storyboard
    view = NovelView(
        novel_id=novel.novel_id,
        title=novel.title,
        chars=novel.chars,
        created_at=novel.created_at,
        storyboard=latest.summary if latest else None,
        storyboard_url=_url(request, f"/v1/novels/{novel.novel_id}/storyboard") if latest else None,
    )
    return web.json_response(view.to_doc())


@routes.post("/v1/novels/{novelId}/analyze")
async def analyze_novel(request: web.Request) -> web.Response:
    """Queue an analysis of the novel; answer 202 with the job's status URL."""
    novel = await _owned_novel(request)
    key = _idempotency_key(request)
    producer, user = _runtime(request).producer, current_user(request)
    try:
        if key is None:
            submission = Submission(await producer.submit(novel.novel_id, user))
        else:
            submission = await producer.submit_once(novel.novel_id, user, key)
    except EnqueueError as exc:
        raise ApiError(503, "queue_unavailable", str(exc)) from None
    job = submission.job
    status_url = _url(request, f"/v1/jobs/{job.job_id}")
    body = JobAccepted(job_id=job.job_id, status=job.status, status_url=status_url).to_doc()
    headers = {"Location": status_url}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(body, status=202, headers=headers)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable chars"
        )
    return key


@routes.get("/v1/jobs/{jobId}")
async def get_job(request: web.Request) -> web.Response:
    """A job's status, progress, attempts, error and storyboard URL."""
    return web.json_response(job_view(request, await _owned_job(request)).to_doc())


@routes.post("/v1/jobs/{jobId}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job: a waiting one ends at once, a running one at its next stage or chunk."""
    job = await _owned_job(request)
    store = _runtime(request).backend.jobs
    cancelled = await store.apply(job.job_id, jobs.cancel())
    if cancelled is None:
        current = await store.get(job.job_id) or job
        if current.status is not JobStatus.CANCELLED:
            raise ApiError(409, "job_finished", f"the job has already {current.status.value}")
        cancelled = current
    return web.json_response(job_view(request, cancelled).to_doc())


async def _owned_job(request: web.Request) -> Job:
    return await _owned(request, "jobId", "job", _runtime(request).backend.jobs.get)


def job_view(request: web.Request, job: Job) -> JobView:
    """The public view of a job record."""
    done = job.status is JobStatus.COMPLETED
    return JobView(
        job_id=job.job_id,
        novel_id=job.novel_id,
        type=job.type,
        status=job.status,
        progress=job.progress,
        attempts=job.attempts,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        storyboard_url=_url(request, f"/v1/novels/{job.novel_id}/storyboard") if done else None,
        summary=job.summary,
        next_attempt_at=job.next_attempt_at,
        usage=job.usage,
    )


@routes.get("/v1/novels/{novelId}/storyboard")
async def get_storyboard(request: web.Request) -> web.Response:
    """The novel's latest storyboard, as stored."""
    novel = await _owned_novel(request)
    if novel.latest_storyboard is None:
        raise not_found("storyboard")
    try:
        data = await _runtime(request).backend.blobs.get(novel.latest_storyboard.key)
    except BlobNotFound:
        raise not_found("storyboard") from None
    return web.Response(body=data, content_type="application/json")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers and, in a worker, the receive loop's heartbeat is fresh."""
    runtime = _runtime(request)
    consumer = runtime.consumer
    if consumer is not None:
        age = time.monotonic() - consumer.last_beat
        if age > runtime.settings.heartbeat_stale_s:
            raise ApiError(503, "consumer_stalled", f"consumer loop silent for {age:.0f} s")
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process."""
    body = _runtime(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: not draining, and every backend answers."""
    runtime = _runtime(request)
    if runtime.draining:
        raise ApiError(503, "draining", "the service is shutting down")
    failures = await _probe_failures(runtime)
    if failures:
        raise ApiError(503, "backend_unavailable", "; ".join(failures))
    return web.json_response({"status": "ready", "backend": runtime.backend.name})


async def _probe_failures(runtime: Runtime) -> list[str]:
    probes = runtime.backend.probes
    results: list[Any] = await asyncio.gather(
        *(asyncio.wait_for(p.ping(), PROBE_TIMEOUT_S) for p in probes), return_exceptions=True
    )
    return [
        f"{type(p).__name__}: {type(r).__name__}"
        for p, r in zip(probes, results, strict=True)
        if isinstance(r, BaseException)
    ]
