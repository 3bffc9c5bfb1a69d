"""Runs the aiohttp app until SIGTERM or SIGINT, then shuts down within the grace period.

The listening sockets are bound before anything else opens, so a taken port fails at once
with one line instead of after the database and the consumers have started. Every
connection goes through a :class:`ConnectionGuard`: a cap on open connections, a deadline
for each request head, and aiohttp's keep-alive timeout for idle ones.

The first signal stops receiving and turns readiness to 503 at once; in-flight jobs then
get up to the grace period and the rest are released. The API answers all the while
(status reads work, new submissions get 503 ``draining``); only after the drain does the
listener close. A second signal cuts the drain short, still releasing unfinished messages.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from service.appkeys import RUNTIME, SETTINGS
from service.consumers.consumer import Consumer
from service.errors import CliError
from service.http_errors import JsonErrorAppRunner
from service.logs import get_logger
from service.settings import Settings

log = get_logger(__name__)

# In-flight HTTP requests are short; don't let a slow client hold up the drain.
HTTP_SHUTDOWN_S = 5.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

SIGNALS = (signal.SIGTERM, signal.SIGINT)

ACCEPT_ERROR = "socket.accept() out of system resource"
"""The message asyncio reports a failed ``accept()`` with (out of descriptors or memory)."""

BACKLOG = 128
"""The listen queue; asyncio also accepts up to this many connections in one go."""

FD_RESERVE = 256 + 3 * BACKLOG
"""Descriptors kept from client connections: for backend connection pools, the database,
the model client and logs, and for the few batches of sockets asyncio accepts before the
guard has seen and closed those over the cap."""


class Throttle:
    """Lets one event through per interval and counts the ones held back meanwhile."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._next = float("-inf")
        self._held = 0

    def admit(self) -> int | None:
        """How many were held back since the last one let through, or None to hold this."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return None
        self._next = now + self._interval_s
        held, self._held = self._held, 0
        return held


class AcceptErrorLimiter:
    """A loop exception handler that reports failing accepts at most once an interval.

    Out of descriptors, asyncio reports the failure once for every pending connection and
    retries each a second later: an exhausted process wrote hundreds of megabytes of the
    same line. Every other report goes on to the handler that was there before.
    """

    def __init__(self, previous: ExceptionHandler | None, interval_s: float = 1.0) -> None:
        self.previous = previous
        self._throttle = Throttle(interval_s)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one report of the loop."""
        if context.get("message") != ACCEPT_ERROR:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        held = self._throttle.admit()
        if held is not None:
            error = str(context.get("exception"))
            log.error("cannot accept connections", error=error, suppressed=held)


def install_accept_error_limiter(
    loop: asyncio.AbstractEventLoop, interval_s: float = 1.0
) -> AcceptErrorLimiter:
    """Put an :class:`AcceptErrorLimiter` in front of ``loop``'s exception handler."""
    limiter = AcceptErrorLimiter(loop.get_exception_handler(), interval_s)
    loop.set_exception_handler(limiter)
    return limiter


def connection_cap(configured: int) -> int:
    """``configured``, lowered to leave descriptors for all the process opens besides."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, max(soft // 4, soft - FD_RESERVE)))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one slow or idle client may hold of the listener."""

    header_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The limits the settings ask for, the cap fitted under the open-file limit."""
        return cls(settings.http_header_timeout_s, connection_cap(settings.http_max_connections))


class ConnectionGuard:
    """The listener's protocol factory: aiohttp's handler for each connection, behind a cap
    on open connections and a deadline for each request head.

    aiohttp has neither. Without them, clients that open connections and never finish a
    request hold a descriptor each until the process has none left, and then not even
    ``/healthz`` is accepted.
    """

    def __init__(self, handlers: Callable[[], web.RequestHandler], limits: HttpLimits) -> None:
        self._handlers = handlers
        self.limits = limits
        self.open = 0
        self._refused = Throttle()
        self._late = Throttle()

    def __call__(self) -> asyncio.Protocol:
        """A protocol for one new connection."""
        return _GuardedConnection(self, self._handlers())

    def admit(self) -> bool:
        """Count a new connection in, or say no when the cap is reached."""
        if self.open >= self.limits.max_connections:
            held = self._refused.admit()
            if held is not None:
                limit = self.limits.max_connections
                log.warning(
                    "connection refused: too many open connections", limit=limit, suppressed=held
                )
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """Count a closed connection out."""
        self.open -= 1

    def head_was_late(self) -> None:
        """Note a connection closed for not sending its request head in time."""
        held = self._late.admit()
        if held is not None:
            timeout_s = self.limits.header_timeout_s
            log.info("request head too slow", timeout_s=timeout_s, suppressed=held)


class _GuardedConnection(asyncio.Protocol):
    """One connection: aiohttp's handler, counted by the guard, behind a head deadline."""

    def __init__(self, guard: ConnectionGuard, handler: web.RequestHandler) -> None:
        self._guard = guard
        self._handler = handler
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._heads = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            # Closed on accept: the descriptor is free again at once, the client fails fast.
            transport.close()
            return
        self._admitted = True
        self._handler.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if self._deadline is None and handler._waiter is not None:
            # Idle between requests: these bytes begin the next head, which gets as long.
            self._arm()
        handler.data_received(data)
        # The handler counts each request whose head it has parsed (bad ones included).
        if handler._request_count != self._heads:
            self._heads = handler._request_count
            self._disarm()

    def eof_received(self) -> bool | None:
        self._handler.eof_received()
        return None  # as aiohttp's handler: the transport closes once the client's side has

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self._admitted = False
            self._guard.release()
            self._handler.connection_lost(exc)

    def _arm(self) -> None:
        timeout_s = self._guard.limits.header_timeout_s
        self._deadline = asyncio.get_running_loop().call_later(timeout_s, self._head_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        self._guard.head_was_late()
        self._handler.force_close()


class Listener:
    """Sockets bound to the listen address that accept nothing until :func:`serve` starts
    them (until then a client is refused, as before the process listened at all)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.factory: ProtocolFactory | None = None

    def _make_protocol(self) -> asyncio.BaseProtocol:
        if self.factory is None:
            raise RuntimeError("a connection was accepted before the listener was started")
        return self.factory()

    @property
    def address(self) -> tuple[str, int]:
        """The first bound socket's host and port (the real port when 0 was asked for)."""
        sockets = self.server.sockets if self.server is not None else ()
        if not sockets:
            raise RuntimeError("the listener is not bound")
        host, port = sockets[0].getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Close the sockets; safe to call twice."""
        if self.server is not None:
            self.server.close()


async def listen(host: str, port: int) -> Listener:
    """Bind ``host:port`` without accepting yet; raise CliError when it cannot be bound."""
    listener = Listener()
    loop = asyncio.get_running_loop()
    try:
        listener.server = await loop.create_server(
            listener._make_protocol, host, port, backlog=BACKLOG, start_serving=False
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} is in use (STORYBOARD_PORT / --port)") from None
        raise CliError(f"cannot listen on {host}:{port}: {_bind_reason(exc)}") from None
    return listener


def _bind_reason(exc: OSError) -> str:
    # asyncio rewrites a bind error's text to repeat the address; the errno says it plainly.
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno)


class _ListenerSite(web.BaseSite):
    """An aiohttp site serving on a :class:`Listener` bound earlier."""

    def __init__(self, runner: web.BaseRunner, listener: Listener, limits: HttpLimits) -> None:
        super().__init__(runner)
        self._listener = listener
        self._limits = limits

    @property
    def name(self) -> str:
        host, port = self._listener.address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None or self._listener.server is None:
            raise RuntimeError("start the runner and bind the listener before the site")
        self._listener.factory = ConnectionGuard(server, self._limits)
        self._server = self._listener.server
        await self._listener.server.start_serving()


class _StopSignals:
    """The stop signals so far: the first begins the drain, another cuts its grace short."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.count = 0
        self.received = asyncio.Event()

    def handle(self, signum: int) -> None:
        """Record a signal and pass it on to the consumer, if the runtime is open yet."""
        self.count += 1
        log.info("stop signal", signal=signal.Signals(signum).name, again=self.count > 1)
        self.received.set()
        self.apply()

    def apply(self) -> Consumer | None:
        """Put the consumer in the state the signals so far ask for; it has none before
        the runtime is open, or in an API-only process."""
        runtime = self._app.get(RUNTIME)
        consumer = runtime.consumer if runtime is not None else None
        if consumer is not None and self.count:
            if self.count > 1:
                consumer.cut_grace()
            else:
                consumer.begin_drain()
        return consumer


async def serve(app: web.Application, listener: Listener) -> None:
    """Serve on ``listener`` until a stop signal, drain, then close the listener."""
    settings, limits = app[SETTINGS], HttpLimits.from_settings(app[SETTINGS])
    loop = asyncio.get_running_loop()
    limiter = install_accept_error_limiter(loop)
    stops = _StopSignals(app)
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stops.handle, signum)
    # Its connections answer requests aiohttp's parser rejects as JSON errors, too.
    runner = JsonErrorAppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=HTTP_SHUTDOWN_S,
        keepalive_timeout=settings.http_keepalive_s,
    )
    try:
        await runner.setup()
        try:
            await _ListenerSite(runner, listener, limits).start()
            _log_listening(listener, limits, settings)
            await stops.received.wait()
            await _drain(stops)
        finally:
            # Closes the site first, then the connections, then the runtime (whose consumer
            # has already stopped: stopping it again only waits for the first stop).
            await runner.cleanup()
    finally:
        listener.close()
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
        loop.set_exception_handler(limiter.previous)
        log.info("stopped")


def _log_listening(listener: Listener, limits: HttpLimits, settings: Settings) -> None:
    host, port = listener.address
    log.info(
        "listening",
        host=host,
        port=port,
        max_connections=limits.max_connections,
        header_timeout_s=limits.header_timeout_s,
        keepalive_s=settings.http_keepalive_s,
    )


async def _drain(stops: _StopSignals) -> None:
    # The site stays open meanwhile: /readyz answers 503 so the load balancer moves on,
    # status reads go on, and the app refuses new work with 503 draining.
    consumer = stops.apply()
    if consumer is not None:
        await consumer.stop()
