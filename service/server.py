"""Runs the aiohttp app until SIGTERM or SIGINT, then shuts down within the grace period.

The listening sockets are bound before anything else opens, so a taken port fails at once
with one line instead of after the database and the consumers have started.

The first signal stops receiving and turns readiness to 503 at once; in-flight jobs then
get up to the grace period and the rest are released. The API answers all the while
(status reads work, new submissions get 503 ``draining``); only after the drain does the
listener close. A second signal cuts the drain short, still releasing unfinished messages.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from service.appkeys import RUNTIME
from service.consumers.consumer import Consumer
from service.errors import CliError
from service.http_errors import JsonErrorAppRunner
from service.logs import get_logger

log = get_logger(__name__)

# In-flight HTTP requests are short; don't let a slow client hold up the drain.
HTTP_SHUTDOWN_S = 5.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
            listener._make_protocol, host, port, start_serving=False
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

    def __init__(self, runner: web.BaseRunner, listener: Listener) -> None:
        super().__init__(runner)
        self._listener = listener

    @property
    def name(self) -> str:
        host, port = self._listener.address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None or self._listener.server is None:
            raise RuntimeError("start the runner and bind the listener before the site")
        self._listener.factory = server
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
    loop = asyncio.get_running_loop()
    stops = _StopSignals(app)
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stops.handle, signum)
    # Its connections answer requests aiohttp's parser rejects as JSON errors, too.
    runner = JsonErrorAppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_S
    )
    try:
        await runner.setup()
        try:
            await _ListenerSite(runner, listener).start()
            host, port = listener.address
            log.info("listening", host=host, port=port)
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
        log.info("stopped")


async def _drain(stops: _StopSignals) -> None:
    # The site stays open meanwhile: /readyz answers 503 so the load balancer moves on,
    # status reads go on, and the app refuses new work with 503 draining.
    consumer = stops.apply()
    if consumer is not None:
        await consumer.stop()
