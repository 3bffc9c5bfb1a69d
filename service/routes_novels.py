"""Routes for novels: upload, metadata, analysis requests and the latest storyboard."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import ValidationError

from service import jobs
from service.api_schema import (
    ActiveJobsError,
    AnalyzeRequest,
    CostEstimate,
    JobAccepted,
    LatestJob,
    NovelCreated,
    NovelDetail,
    NovelListItem,
    NovelPage,
    NovelUpload,
    Price,
    RateLimitedError,
)
from service.callbacks import CallbackRefused, check_callback_url
from service.erasure import erase_novel
from service.errors import BlobNotFound
from service.http_context import (
    current_user,
    invalid_cursor,
    owned,
    owned_novel,
    page_query,
    public_url,
    runtime_of,
    storyboard_pending,
)
from service.http_errors import ApiError, not_found
from service.jobs import Job, JobStatus
from service.novels import Novel
from service.ports import InvalidCursor
from service.producers.enqueue import EnqueueError, IdempotencyConflict, NovelGone, Submission
from service.producers.quota import RETRY_AFTER_S, TooManyActiveJobs
from service.rate_limits import LimitState, RateDecision, headers_for, slots_state
from service.runtime import Runtime
from service.text import (
    EmptyTextError,
    TextDecodeError,
    UnknownCharsetError,
    guess_title,
    load_novel_bytes,
    normalise_text,
)
from service.uploads import UploadRefused, check_novel_length, store_novel

routes = web.RouteTableDef()

UNTITLED = "Untitled"
"""The title of a text/plain upload with no ``?title=`` and no title line of its own."""


@routes.post("/novels")
async def create_novel(request: web.Request) -> web.Response:
    """Upload a novel as JSON ``{title, text}`` or as ``text/plain`` with ``?title=``."""
    title, text = await _read_upload(request)
    novel = await store_novel(runtime_of(request).backend, current_user(request), title, text)
    body = NovelCreated(novel_id=novel.novel_id, title=title, chars=novel.chars).to_doc()
    headers = {"Location": public_url(request, f"/v1/novels/{novel.novel_id}")}
    return web.json_response(body, status=201, headers=headers)


async def _read_upload(request: web.Request) -> tuple[str, str]:
    if request.content_type == "application/json":
        upload = _parse_json_upload(await request.read())
        title, text = upload.title, normalise_text(upload.text)
        query_title = _query_title(request)
        if query_title is not None:
            # The body's title is the one used; a ?title= beside it is still held to the
            # rules the document gives the parameter, so no malformed value passes unseen.
            _validated({"title": query_title, "text": "-"})
    elif request.content_type == "text/plain":
        upload = await _read_plain_upload(request)
        title, text = upload.title, upload.text
    else:
        raise ApiError(
            415, "unsupported_media_type", "send application/json {title, text} or text/plain"
        )
    if not text.strip():
        raise ApiError(422, "empty_text", "the novel's text is empty")
    try:
        # The one-shot CLI applies the same check, so both refuse with the same words.
        check_novel_length(text, runtime_of(request).settings)
    except UploadRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message) from None
    return title, text


def _parse_json_upload(raw: bytes) -> NovelUpload:
    return _validated(_parse_json_object(raw))


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except RecursionError:
        # The decoder recurses once per level of nesting, so a document nested past the
        # interpreter's limit cannot be read at all; no body legitimately nests that deep.
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included: the bytes are not UTF-8/16/32
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    return document


def _validated(document: dict[str, Any]) -> NovelUpload:
    try:
        return NovelUpload.model_validate(document)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _describe(exc)) from None


async def _read_plain_upload(request: web.Request) -> NovelUpload:
    title = _query_title(request)
    text = _decode_plain(await request.read(), request.charset)
    return _validated(
        {"title": title if title is not None else guess_title(text) or UNTITLED, "text": text}
    )


def _query_title(request: web.Request) -> str | None:
    """The ``?title=`` parameter, or ``None`` when there is none."""
    # request.query decodes with errors="replace", which would store bytes that are not
    # UTF-8 as U+FFFD. So percent-decode the raw query byte for byte (latin-1 maps each
    # byte to one character), then decode the title alone as strict UTF-8.
    pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, encoding="latin-1")
    raw = next((value for name, value in pairs if name == "title"), None)
    if raw is None:
        return None
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(
            422, "validation_error", "query parameter 'title' is not percent-encoded UTF-8"
        ) from None


def _decode_plain(raw: bytes, charset: str | None) -> str:
    try:
        return load_novel_bytes(raw, charset)
    except UnknownCharsetError as exc:
        raise ApiError(415, "unsupported_charset", f"{exc}; omit charset to detect it") from None
    except TextDecodeError as exc:
        raise ApiError(415, "undecodable_text", str(exc)) from None
    except EmptyTextError:
        raise ApiError(422, "empty_text", "the novel's text is empty") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


@routes.get("/novels")
async def list_novels(request: web.Request) -> web.Response:
    """The caller's novels, newest first, a page at a time, with their latest job's status."""
    limit, cursor = page_query(request)
    store = runtime_of(request).backend.novels
    try:
        page = await store.list_for_user(current_user(request), limit=limit, after=cursor)
    except InvalidCursor as exc:
        raise invalid_cursor(exc) from None
    statuses = await _statuses(request, [n.latest_job_id for n in page.items if n.latest_job_id])
    items = [
        NovelListItem(
            novel_id=novel.novel_id,
            title=novel.title,
            chars=novel.chars,
            created_at=novel.created_at,
            latest_job_id=novel.latest_job_id,
            latest_job_status=statuses.get(novel.latest_job_id or ""),
        )
        for novel in page.items
    ]
    return web.json_response(NovelPage(items=items, next_cursor=page.next_cursor).to_doc())


async def _statuses(request: web.Request, job_ids: list[str]) -> dict[str, JobStatus]:
    """The status of each job that still exists, read concurrently."""
    store = runtime_of(request).backend.jobs
    found = await asyncio.gather(*(store.get(job_id) for job_id in job_ids))
    return {job.job_id: job.status for job in found if job is not None}


@routes.get("/novels/{novelId}")
async def get_novel(request: web.Request) -> web.Response:
    """A novel's metadata, the summary of its latest storyboard and its latest job."""
    novel = await owned_novel(request)
    latest = novel.latest_storyboard
    url = public_url(request, f"/v1/novels/{novel.novel_id}/storyboard")
    job = await _latest_job(request, novel)
    view = NovelDetail(
        novel_id=novel.novel_id,
        title=novel.title,
        chars=novel.chars,
        created_at=novel.created_at,
        storyboard=latest.summary if latest else None,
        storyboard_url=url if latest else None,
        latest_job=LatestJob(job_id=job.job_id, status=job.status) if job else None,
    )
    return web.json_response(view.to_doc())


async def _latest_job(request: web.Request, novel: Novel) -> Job | None:
    if novel.latest_job_id is None:
        return None
    return await runtime_of(request).backend.jobs.get(novel.latest_job_id)


@routes.delete("/novels/{novelId}")
async def delete_novel(request: web.Request) -> web.Response:
    """Erase the novel, its jobs, storyboards and checkpoints (the right to erasure): 204.

    A 404 for a novel that is gone, or that another request is erasing right now.
    """
    backend = runtime_of(request).backend
    # Not owned_novel: a novel whose erasure was abandoned half-way may be taken over.
    novel = await owned(request, "novelId", "novel", backend.novels.get)
    if not await erase_novel(backend, novel):
        raise not_found("novel")
    return web.Response(status=204)


@routes.post("/novels/{novelId}/analyze")
async def analyze_novel(request: web.Request) -> web.Response:
    """Queue an analysis of the novel; answer 202 with the job's status URL.

    Over the user's submission rate or active-job quota, a 429; every answer that got as
    far as the limits carries the ``RateLimit-*`` headers (``service.rate_limits``).
    """
    novel = await owned_novel(request)
    key = _idempotency_key(request)
    callback = await _callback_url(request)
    runtime, user = runtime_of(request), current_user(request)
    rate = _take_token(runtime, user)
    submission = await _submit(runtime, novel, user, key, callback, rate)
    job = submission.job
    status_url = public_url(request, f"/v1/jobs/{job.job_id}")
    body = JobAccepted(
        job_id=job.job_id,
        status=job.status,
        status_url=status_url,
        message=_ACCEPTED_MESSAGES[job.status],
    ).to_doc()
    headers = {"Location": status_url, **headers_for(rate, _slots(runtime, submission))}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(body, status=202, headers=headers)


@routes.post("/novels/{novelId}/estimate")
async def estimate_novel(request: web.Request) -> web.Response:
    """What analyzing the novel with the model would spend: requests, tokens and price,
    from the analyzer's own chunk plan. Nothing is queued and nothing reaches the model."""
    novel = await owned_novel(request)
    runtime = runtime_of(request)
    try:
        data = await runtime.backend.blobs.get(novel.text_key)
    except BlobNotFound:
        raise not_found("novel") from None
    # Imported here: the estimate shares the model analyzer's chunk plan, and with it the
    # model SDK (~14 MiB resident), which a process that never estimates need not hold.
    from service.analysis.llm_estimate import estimate_cost

    # Splitting a long novel takes a noticeable fraction of a second: keep the loop free.
    estimate = await asyncio.to_thread(
        estimate_cost, data.decode("utf-8"), novel.title, runtime.settings
    )
    price = Price(
        currency=estimate.currency,
        amount=round(estimate.price, 6),
        input_per_million=estimate.input_price_per_million,
        output_per_million=estimate.output_price_per_million,
    )
    body = CostEstimate(
        novel_id=novel.novel_id,
        model=estimate.model,
        chapters=estimate.chapters,
        chunks=estimate.chunks,
        requests=estimate.requests,
        input_tokens=estimate.input_tokens,
        output_tokens=estimate.output_tokens,
        price=price,
    )
    return web.json_response(body.to_doc())


def _take_token(runtime: Runtime, user: str) -> LimitState | None:
    """The rate limit's state once this submission took its token; 429 if none was left."""
    if runtime.rate_limiter is None:
        return None
    decision = runtime.rate_limiter.take(user)
    if not decision.allowed:
        raise _rate_limited(decision)
    return decision.state


def _rate_limited(decision: RateDecision) -> ApiError:
    # The headers describe the rate alone: it is what the client must wait out, and the
    # quota's state would cost a read for a request that is refused anyway.
    limit, wait = decision.state.limit, decision.retry_after_s
    error = RateLimitedError(
        code="rate_limited",
        message=f"more than {limit} analysis requests a minute; try again in {wait} s",
        limit=limit,
        retry_after=wait,
    )
    headers = {"Retry-After": str(wait), **headers_for(decision.state)}
    return ApiError(429, error.code, error.message, details=error.to_doc(), headers=headers)


async def _submit(
    runtime: Runtime,
    novel: Novel,
    user: str,
    key: str | None,
    callback: str | None,
    rate: LimitState | None,
) -> Submission:
    """The producer's submission, its refusals as API errors."""
    try:
        return await runtime.producer.submit_once(
            novel.novel_id, user, key, callback_url=callback, source=novel.source()
        )
    except TooManyActiveJobs as exc:
        raise _too_many(exc, rate) from None
    except EnqueueError as exc:
        raise ApiError(503, "queue_unavailable", str(exc)) from None
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc)) from None
    except NovelGone:
        raise not_found("novel") from None


def _too_many(exc: TooManyActiveJobs, rate: LimitState | None) -> ApiError:
    error = ActiveJobsError(
        code="too_many_active_jobs", message=str(exc), active_jobs=exc.active, limit=exc.limit
    )
    slots = slots_state(exc.limit, exc.active, exc.retry_after_s)
    headers = {"Retry-After": str(exc.retry_after_s), **headers_for(rate, slots)}
    return ApiError(429, error.code, error.message, details=error.to_doc(), headers=headers)


def _slots(runtime: Runtime, submission: Submission) -> LimitState | None:
    if runtime.quota is None or submission.active_jobs is None:
        return None
    return slots_state(runtime.quota.limit, submission.active_jobs, RETRY_AFTER_S)


_ACCEPTED_MESSAGES = {
    JobStatus.QUEUED: "Analysis queued. Use the statusUrl to check progress.",
    JobStatus.RUNNING: "Analysis running. Use the statusUrl to check progress.",
    JobStatus.RETRYING: "Analysis waiting to retry. Use the statusUrl to check progress.",
    JobStatus.COMPLETED: "Analysis completed. The statusUrl links the storyboard.",
    JobStatus.FAILED: "Analysis failed. The statusUrl gives the error.",
    JobStatus.CANCELLED: "Analysis cancelled.",
}
"""What the answer to an analyze request says, by the job's status: a replayed request
answers with the job as it is now, which may have moved on from queued."""


async def _callback_url(request: web.Request) -> str | None:
    """The body's checked ``callbackUrl``; an empty body asks for no callback."""
    raw = await request.read()
    if not raw.strip():
        return None
    document = _parse_json_object(raw)
    try:
        body = AnalyzeRequest.model_validate(document)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _describe(exc)) from None
    if body.callback_url is None:
        return None
    settings = runtime_of(request).settings
    if settings.webhook_secret is None:
        raise ApiError(
            422, "webhooks_disabled", "this service sends no webhooks (no signing secret is set)"
        )
    try:
        await check_callback_url(body.callback_url, allow_private=settings.webhook_allow_private)
    except CallbackRefused as exc:
        raise ApiError(422, exc.code, exc.message) from None
    return body.callback_url


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable chars"
        )
    return key


@routes.get("/novels/{novelId}/storyboard")
async def get_storyboard(request: web.Request) -> web.Response:
    """The novel's latest storyboard, as stored; while its first is still being made, a 404
    ``storyboard_pending`` naming the job."""
    novel = await owned_novel(request)
    key = novel.latest_storyboard.key if novel.latest_storyboard else None
    if key is None:
        job = await _latest_job(request, novel)
        if job is not None and job.status in jobs.LIVE:
            raise storyboard_pending(request, job.job_id)
        # A job that has just completed points its novel at its storyboard a moment later.
        if job is None or job.status is not JobStatus.COMPLETED or job.result_key is None:
            raise not_found("storyboard")
        key = job.result_key
    try:
        data = await runtime_of(request).backend.blobs.get(key)
    except BlobNotFound:
        raise not_found("storyboard") from None
    return web.Response(body=data, content_type="application/json")
