"""Every error leaves the API as ``{"error": {"code", "message"}}`` with the right status.

Handlers raise :class:`ApiError`; the middleware also turns aiohttp's own HTTP exceptions
(unknown route, wrong method, body too large) and unexpected failures into that shape, so a
client never sees a traceback or an HTML page. A client that hangs up mid-request is no
failure of ours: it gets an info line and counts as :data:`CLIENT_CLOSED`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.errors import BackendError
from service.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_CLOSED = 499
"""The status a request counts as when its client hung up first (nginx's convention)."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ApiError:
    """The 404 for an unknown (or not visible) resource."""
    return ApiError(404, "not_found", f"{what} not found")


def error_response(status: int, code: str, message: str) -> web.Response:
    """The JSON error body."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as a JSON error."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _http_message(exc)
        response = error_response(exc.status, _CODES.get(exc.status, f"http_{exc.status}"), message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except BackendError as exc:
        log.warning("backend unavailable", path=request.path, error=str(exc))
        return error_response(503, "backend_unavailable", "a storage backend is unavailable")
    except asyncio.CancelledError:
        _log_abandoned(request)
        raise
    except Exception as exc:
        # A reset from the client's own connection, not from a backend's: nobody is left to
        # answer, and the status only tells the metrics what happened.
        if isinstance(exc, ConnectionResetError) and client_gone(request):
            _log_abandoned(request)
            return error_response(CLIENT_CLOSED, "client_closed_request", "client disconnected")
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(500, "internal_error", "internal error")


def client_gone(request: web.BaseRequest) -> bool:
    """Whether the request's connection has closed (aiohttp drops the transport then)."""
    return request.transport is None


def _log_abandoned(request: web.Request) -> None:
    # A cancellation with the client still connected comes from the server's own shutdown.
    event = "client disconnected" if client_gone(request) else "request cancelled"
    log.info(event, path=request.path, method=request.method)


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        return "request body is too large"
    if exc.status == 405:
        return "method not allowed for this resource"
    if exc.status == 404:
        return "no such resource"
    return exc.reason
