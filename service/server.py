"""Runs the aiohttp app until SIGTERM or SIGINT, then shuts down within the grace period.

The first signal stops receiving and turns readiness to 503 at once; the runner's cleanup
then drains in-flight jobs for up to the grace period and releases the rest. A second
signal cuts the drain short, still releasing unfinished messages.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from service.appkeys import RUNTIME
from service.http_errors import JsonErrorAppRunner
from service.logs import get_logger

log = get_logger(__name__)

# In-flight HTTP requests are short; don't let a slow client hold up the drain.
HTTP_SHUTDOWN_S = 5.0


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until a stop signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signum: int) -> None:
        runtime = app.get(RUNTIME)
        consumer = runtime.consumer if runtime is not None else None
        log.info("stop signal", signal=signal.Signals(signum).name, again=stop.is_set())
        if consumer is not None:
            if stop.is_set():
                consumer.cut_grace()
            else:
                consumer.begin_drain()
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    # Its connections answer requests aiohttp's parser rejects as JSON errors, too.
    runner = JsonErrorAppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("listening", host=host, port=port)
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in signals:
            loop.remove_signal_handler(signum)
        log.info("stopped")
