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
from service.runtime import Runtime

_ID = re.compile(r"^[0-9a-f]{32}$")


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
    if not _ID.match(value):
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
    """The caller's novel named by ``{novelId}``."""
    return await owned(request, "novelId", "novel", runtime_of(request).backend.novels.get)


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
