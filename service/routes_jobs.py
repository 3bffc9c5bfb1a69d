"""Routes for jobs: status, cancellation and the storyboard a job made."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from service import jobs
from service.api_schema import JobPage, JobView
from service.errors import BlobNotFound
from service.http_context import (
    current_user,
    invalid_cursor,
    owned_job,
    page_query,
    query_id,
    runtime_of,
    storyboard_pending,
)
from service.http_errors import ApiError, not_found
from service.jobs import Job, JobStatus
from service.logs import get_logger
from service.ports import InvalidCursor
from service.runtime import Runtime
from service.watch import Watch

log = get_logger(__name__)

routes = web.RouteTableDef()


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """The caller's jobs, newest first, a page at a time; ``?novelId=`` and ``?status=``
    narrow the list (another user's novel has no jobs here)."""
    limit, cursor = page_query(request)
    novel_id, status = query_id(request, "novelId"), _status_query(request)
    runtime = runtime_of(request)
    visible = [name for name, job_type in runtime.job_types.items() if job_type.user_visible]
    try:
        page = await runtime.backend.job_catalog.list_for_user(
            current_user(request),
            limit=limit,
            after=cursor,
            novel_id=novel_id,
            status=status,
            types=visible,
        )
    except InvalidCursor as exc:
        raise invalid_cursor(exc) from None
    items = [job_view(request, job) for job in page.items]
    return web.json_response(JobPage(items=items, next_cursor=page.next_cursor).to_doc())


def _status_query(request: web.Request) -> JobStatus | None:
    raw = request.query.get("status")
    if raw is None:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        known = ", ".join(status.value for status in JobStatus)
        raise ApiError(400, "validation_error", f"status must be one of: {known}") from None


@routes.get("/jobs/{jobId}")
async def get_job(request: web.Request) -> web.Response:
    """A job's status, progress, attempts, error and storyboard URL."""
    return web.json_response(job_view(request, await owned_job(request)).to_doc())


@routes.get("/jobs/{jobId}/storyboard")
async def get_job_storyboard(request: web.Request) -> web.Response:
    """The storyboard this job made, even after a newer job's replaced it on the novel."""
    job = await owned_job(request)
    if job.status in jobs.LIVE:
        raise storyboard_pending(request, job.job_id)
    # A failed or cancelled job never will have one: that is a plain 404, not "pending".
    if job.status is not JobStatus.COMPLETED or job.result_key is None:
        raise not_found("storyboard")
    try:
        data = await runtime_of(request).backend.blobs.get(job.result_key)
    except BlobNotFound:
        raise not_found("storyboard") from None
    return web.Response(body=data, content_type="application/json")


STREAM_CHECK_S = 5.0
"""How often a quiet stream checks that its client is still there."""


@routes.get("/jobs/{jobId}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    """The job's states as Server-Sent Events: ``progress`` while it runs, then one event
    named after its end state, after which the stream closes.

    Each event's ``id`` is the record's version and its data the job view. A reconnect with
    ``Last-Event-ID`` gets the current state at once if it is newer; a reconnect after the
    final event answers 204, which tells an ``EventSource`` to stop reconnecting.
    """
    job = await owned_job(request)
    seen = _last_event_id(request)
    if job.status not in jobs.LIVE and job.version <= seen:
        return web.Response(status=204)
    runtime = runtime_of(request)
    # No proxy may buffer the stream; the library sets no-cache and keep-alive itself.
    headers = {"X-Accel-Buffering": "no"}
    async with sse_response(
        request, headers=headers, ping_interval=runtime.settings.sse_ping_s
    ) as stream:
        with runtime.watch.watch(job) as watch:
            await _follow(request, stream, watch, seen)
    return stream


async def _follow(
    request: web.Request, stream: EventSourceResponse, watch: Watch, seen: int
) -> None:
    job: Job | None = watch.latest
    while job is not None or not watch.ended:
        if job is not None and job.version > seen:
            try:
                await _send(request, stream, job)
            except (ConnectionResetError, TimeoutError):
                return  # the client left, or stalled past the send timeout
            seen = job.version
            if job.status not in jobs.LIVE:
                return
        if not stream.is_connected():
            return
        job = await watch.newer_than(seen, STREAM_CHECK_S)


async def _send(request: web.Request, stream: EventSourceResponse, job: Job) -> None:
    event = "progress" if job.status in jobs.LIVE else job.status.value
    data = json.dumps(job_view(request, job).to_doc(), separators=(",", ":"))
    await stream.send(data, id=str(job.version), event=event)


def _last_event_id(request: web.Request) -> int:
    # Only our own ids (versions) mean anything; anything else starts from the beginning.
    raw = request.headers.get("Last-Event-ID", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0


@routes.post("/jobs/{jobId}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job: it ends at once, and a running one's work stops within seconds (the
    worker's watch sees the cancel, or its next progress write is refused)."""
    job = await owned_job(request)
    runtime = runtime_of(request)
    cancelled = await runtime.backend.jobs.apply(job.job_id, jobs.cancel())
    if cancelled is None:
        current = await runtime.backend.jobs.get(job.job_id) or job
        if current.status is not JobStatus.CANCELLED:
            raise ApiError(409, "job_finished", f"the job has already {current.status.value}")
        cancelled = current
    await _announce(runtime, cancelled)
    return web.json_response(job_view(request, cancelled).to_doc())


async def _announce(runtime: Runtime, job: Job) -> None:
    # Every cancel that finds the job cancelled announces it (a lost race too, in case the
    # winner died before it could); the events are queued once. Should queueing fail, the
    # job's own message announces it when it comes back, so the cancel still stands.
    try:
        await runtime.on_ended(job)
    except Exception as exc:
        log.warning(
            "could not give back the cancelled job's slot or queue its events", error=str(exc)
        )


def job_view(request: web.Request, job: Job) -> JobView:
    """The public view of a job record."""
    return JobView.of(job, runtime_of(request).settings.public_base_url)
