"""A bare aiohttp server whose one POST route answers 202 with a small JSON body.

It is the ceiling for :mod:`bench.http_load`: the same framework, loop and machine as the
service, without routing tables, middlewares, authentication, records or a queue.
Run as ``python -m bench.hello_server --port N``.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    """Answer like a submission would: 202 and a few JSON fields."""
    return web.json_response(
        {"jobId": "0" * 32, "status": "queued", "statusUrl": "/v1/jobs/" + "0" * 32}, status=202
    )


async def healthz(request: web.Request) -> web.Response:
    """Alive."""
    return web.json_response({"status": "ok"})


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application()
    app.router.add_post("/v1/novels/{novelId}/analyze", hello)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
