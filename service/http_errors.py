"""Every error leaves the API as ``{"error": {"code", "message"}}`` with the right status.

Handlers raise :class:`ApiError`; the middleware also turns aiohttp's own HTTP exceptions
(unknown route, wrong method, body too large) and unexpected failures into that shape, so a
client never sees a traceback or an HTML page. A client that hangs up mid-request is no
failure of ours: it gets an info line and counts as :data:`CLIENT_CLOSED`.

Requests aiohttp's HTTP parser rejects never reach the middleware. Serving through
:class:`JsonErrorAppRunner` gives them the same JSON shape and one structured log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http import HttpProcessingError

from service.errors import BackendError
from service.logs import get_logger
from service.uploads import BODY_TOO_LARGE

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
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a human message; ``details`` are
    further fields of the error object, ``headers`` go on the response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def not_found(what: str) -> ApiError:
    """The 404 for an unknown (or not visible) resource."""
    return ApiError(404, "not_found", f"{what} not found")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The JSON error body."""
    error = {**(details or {}), "code": code, "message": message}
    return web.json_response({"error": error}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as a JSON error."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
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
    except web.RequestPayloadError as exc:
        # aiohttp's parser gave up on the body mid-stream: broken chunked framing, or bytes
        # that are not in the Content-Encoding they claim. The client's fault, not ours.
        message = f"request body could not be read: {_payload_summary(exc)}"
        log.info("bad http request", status=400, error=message, path=request.path)
        return error_response(400, "bad_request", message)
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
        return BODY_TOO_LARGE
    if exc.status == 405:
        return "method not allowed for this resource"
    if exc.status == 404:
        return "no such resource"
    return exc.reason


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, with its error answers in the API's shape.

    aiohttp calls :meth:`handle_error` for a request its parser rejects (request line,
    headers, framing) and for an exception that escapes the application, both out of the
    error middleware's reach; the base class answers those in plain text and logs a raw
    traceback.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Log one line and answer a JSON error; aiohttp closes the connection after it."""
        if request.writer.output_size > 0:
            # Part of a response is out: too late for another, as the base class also says.
            raise ConnectionError("a response was already started; cannot send an error")
        if isinstance(exc, HttpProcessingError):
            summary = _parser_summary(message or exc.message)
            log.info("bad http request", status=status, error=summary, remote=request.remote)
        else:
            summary = "internal error"
            log.error("unhandled error", status=status, exc_info=exc)
        response = error_response(status, _CODES.get(status, f"http_{status}"), summary)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own reports of failures, as structured lines instead of tracebacks."""
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            # The unread rest of a broken body, drained after the answer went out; the
            # error middleware already reported it if the handler read the body.
            log.debug("unread request body was malformed", error=_payload_summary(exc))
            return
        detail = args[0] % args[1:] if len(args) > 1 else "".join(map(str, args))
        log.error("http protocol error", detail=detail, exc_info=exc)


def _payload_summary(exc: web.RequestPayloadError) -> str:
    # aiohttp chains the parser's own exception, whose message is the readable one.
    cause = exc.__cause__
    return _parser_summary(cause.message) if isinstance(cause, HttpProcessingError) else "malformed"


def _parser_summary(message: str) -> str:
    # The parser's messages go on to quote the offending bytes under a caret; the first
    # clause says what was wrong without echoing the client's bytes back.
    first = message.strip().split("\n", 1)[0]
    return first.split(": ", 1)[0].rstrip(":. ") or "malformed HTTP request"


class _JsonErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """A :class:`~aiohttp.web.AppRunner` whose connections use
    :class:`JsonErrorRequestHandler`."""

    async def _make_server(self) -> web.Server:
        # aiohttp has no setting for the protocol class. Let it build its server (which
        # also starts the app), then serve the same handler and settings through ours.
        server = await super()._make_server()
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
