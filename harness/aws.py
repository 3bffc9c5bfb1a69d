"""AWS stand-ins: fake credentials, per-case resource names and an in-process moto server."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
"""botocore signs every request, so it needs credentials; moto accepts any."""


def use_fake_credentials() -> None:
    """Make this process's AWS clients (and the processes it starts) sign with fake
    credentials, keeping any a developer set on purpose."""
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True, slots=True)
class AwsNames:
    """Resource names unique to one test or benchmark case."""

    queue: str
    dlq: str
    table: str
    bucket: str

    @classmethod
    def fresh(cls, label: str) -> AwsNames:
        """New names, so cases sharing one moto server never see each other's data."""
        suffix = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(f"q-{suffix}", f"q-{suffix}-dlq", f"t-{suffix}", f"b-{suffix}")

    def settings_env(self, endpoint: str) -> dict[str, str]:
        """``STORYBOARD_*`` variables that point a service process at these resources."""
        return {
            "STORYBOARD_BACKEND": "aws",
            "STORYBOARD_AWS_ENDPOINT_URL": endpoint,
            "STORYBOARD_QUEUE_NAME": self.queue,
            "STORYBOARD_DLQ_NAME": self.dlq,
            "STORYBOARD_TABLE_NAME": self.table,
            "STORYBOARD_BUCKET": self.bucket,
            **FAKE_CREDENTIALS,
        }

    def settings_values(self, endpoint: str) -> dict[str, Any]:
        """The same, as keyword arguments for :class:`~service.settings.Settings`."""
        return {
            "backend": "aws",
            "aws_endpoint_url": endpoint,
            "queue_name": self.queue,
            "dlq_name": self.dlq,
            "table_name": self.table,
            "bucket": self.bucket,
        }


@dataclass(frozen=True, slots=True)
class MotoThread:
    """A moto server answering on loopback from a thread of this process."""

    server: Any
    port: int
    connections: OpenConnections

    @property
    def endpoint(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int = 0) -> MotoThread:
        """Start one on ``port``; by default on a port the OS picks as it binds, so no other
        process (a parallel test worker) can take it in between."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        connections = OpenConnections()
        handler = keep_alive_handler(connections)
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=handler)
        threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
        return cls(server, int(server.server_address[1]), connections)

    def stop(self) -> None:
        """Shut it down and drop its open connections, as an outage would; its port is free
        again afterwards."""
        self.server.shutdown()
        self.server.server_close()
        self.connections.close_all()


class OpenConnections:
    """The sockets a server's handlers hold open, so that stopping the server can close
    them: a kept-alive connection would otherwise go on being served by its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[Any] = set()

    def add(self, sock: Any) -> None:
        """A handler took this connection."""
        with self._lock:
            self._sockets.add(sock)

    def discard(self, sock: Any) -> None:
        """A handler is done with this connection."""
        with self._lock:
            self._sockets.discard(sock)

    def close_all(self) -> None:
        """Close every connection still open."""
        import socket

        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class SerialDynamoDB:
    """WSGI middleware answering DynamoDB requests one at a time.

    moto evaluates a condition and then writes, with nothing holding other threads off in
    between: two concurrent conditional writes to one key can both succeed (seen: one round
    in sixty of twenty racing ``attribute_not_exists`` updates). DynamoDB itself applies them
    atomically, and the service relies on that, so the stand-in must too. Other services keep
    running concurrently: an SQS long poll must not hold up the table.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target.startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # The body is built inside the lock: moto does its work as the response is made.
            return list(self._app(environ, start_response))


def keep_alive_handler(connections: OpenConnections | None = None) -> type[Any]:
    """moto's request handler, keeping HTTP/1.1 connections open between requests as AWS
    does.

    werkzeug's development server sends ``Connection: close`` on every response and then
    reads the socket dry, because the next request line could follow an unread body. This
    handler reads each body whole before the application runs and hides the socket from
    that drain (a chunked body closes the connection as before), so a client's pooled
    connection can carry the next request: a client pays for a connection once, not once
    per request. ``connections`` learns of every connection, so that stopping the server can
    close them.
    """
    import io
    import socket

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveMotoHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        _reusable = False

        def setup(self) -> None:
            super().setup()
            if connections is not None:
                connections.add(self.connection)
            # Headers and body go out as separate writes; on a connection that stays open,
            # Nagle's algorithm would hold the body back for the client's delayed ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def finish(self) -> None:
            if connections is not None:
                connections.discard(self.connection)
            super().finish()

        def run_wsgi(self) -> None:
            connection = self.rfile
            try:
                super().run_wsgi()
            finally:
                self.rfile = connection

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
            self._reusable = not chunked
            if not chunked:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
                # werkzeug drains the socket after each response, which would swallow the
                # next request; with the body read, there is nothing of this one left.
                self.rfile = io.BytesIO()
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            if self._reusable and keyword.lower() == "connection" and value.lower() == "close":
                return  # the body was read whole: the connection can carry the next request
            super().send_header(keyword, value)

    return KeepAliveMotoHandler
