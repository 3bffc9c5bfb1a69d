"""What every route handler needs from its request: the caller, the runtime, owned records."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from aiohttp import web

from service.appkeys import RUNTIME, USER_ID
from service.http_errors import ApiError, not_found
from service.jobs import Job
from service.novels import Novel
from service.ports import MAX_PAGE, InvalidCursor
from service.runtime import Runtime

_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_PAGE = 20


def current_user(request: web.Request) -> str:
    """The authenticated caller's user id (set by the auth middleware)."""
    return request[USER_ID]


def runtime_of(request: web.Request) -> Runtime:
    """The process's runtime, from the root application whichever app serves the route."""
    return request.config_dict[RUNTIME]


def public_url(request: web.Request, path: str) -> str:
    """An absolute URL for ``path`` under the configured public base URL."""
    return runtime_of(request).settings.public_base_url.rstrip("/") + path


def path_id(request: web.Request, name: str, what: str) -> str:
    """The id in path parameter ``name``; a 404 unless it has the form our ids have."""
    # Ids are ours (UUID hex); anything else cannot exist, and must never reach a key.
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise not_found(what)
    return value


class _Owned(Protocol):
    user_id: str


OwnedT = TypeVar("OwnedT", bound=_Owned)


async def owned(
    request: web.Request, param: str, what: str, load: Callable[[str], Awaitable[OwnedT | None]]
) -> OwnedT:
    """The record named by path parameter ``param`` if the caller owns it, else a 404."""
    # Someone else's record answers exactly like a missing one, so ids cannot be probed.
    record = await load(path_id(request, param, what))
    if record is None or record.user_id != current_user(request):
        raise not_found(what)
    return record


async def owned_novel(request: web.Request) -> Novel:
    """The caller's novel named by ``{novelId}``; one being erased is gone already."""
    novel = await owned(request, "novelId", "novel", runtime_of(request).backend.novels.get)
    if novel.deleting_at is not None:
        raise not_found("novel")
    return novel


async def owned_job(request: web.Request) -> Job:
    """The caller's job named by ``{jobId}``; internal job types answer like missing jobs."""
    runtime = runtime_of(request)
    job = await owned(request, "jobId", "job", runtime.backend.jobs.get)
    job_type = runtime.job_types.get(job.type)
    if job_type is None or not job_type.user_visible:
        raise not_found("job")
    return job


def storyboard_pending(request: web.Request, job_id: str) -> ApiError:
    """The 404 for a storyboard a live job is still making; it names the job to follow."""
    url = public_url(request, f"/v1/jobs/{job_id}")
    return ApiError(404, "storyboard_pending", f"the storyboard is not ready yet; see {url}")


def page_query(request: web.Request) -> tuple[int, str | None]:
    """``?limit=`` (1-100, default 20) and ``?cursor=`` of a list request; a 400 if bad."""
    raw = request.query.get("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        # isdigit alone would admit other scripts' digits and strings too long for int().
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_PAGE):
            raise ApiError(
                400, "validation_error", f"limit must be a whole number from 1 to {MAX_PAGE}"
            )
        limit = int(raw)
    return limit, request.query.get("cursor")


def query_id(request: web.Request, name: str) -> str | None:
    """An id given as query parameter ``name``, if any; a 400 unless it has our ids' form."""
    value = request.query.get(name)
    if value is not None and not _ID.fullmatch(value):
        raise ApiError(400, "validation_error", f"{name} must be a 32-character hex id")
    return value


def invalid_cursor(exc: InvalidCursor) -> ApiError:
    """The 400 for a cursor the list did not issue."""
    return ApiError(400, "invalid_cursor", f"{exc}; start again without a cursor")
