"""A moto server that counts the AWS requests it answers, by service, operation and resource.

The benchmarks need requests per job for our service and for Celery alike. Celery's SQS
transport sends its requests through pycurl, out of reach of botocore's event hooks, so the
count is taken where every client meets: a WSGI wrapper around moto's own application. It
classifies each request before moto sees it:

* SQS and DynamoDB (JSON protocol): the operation is the ``X-Amz-Target`` header; for SQS
  the resource is the queue (the last part of the ``QueueUrl`` in the JSON body), for
  DynamoDB the record kind (the ``pk`` prefix). The query protocol's ``Action`` parameter
  is read as well, for older clients.
* S3 (REST): the method and whether the path names an object or only a bucket; the
  resource is the key's first folder.

``GET /_bench/counts`` answers the counts as JSON rows and ``POST /_bench/reset`` zeroes
them. Run it as ``python -m bench.moto_counting --port N``; :mod:`bench.moto_process`
starts it in a child process so that moto's own CPU time never shares a GIL with the
process under test.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

COUNTS_PATH = "/_bench/counts"
RESET_PATH = "/_bench/reset"

Key = tuple[str, str, str]
"""(service, operation, resource): see :func:`classify`."""


def _service_of(environ: Environ) -> str:
    """The signing scope's service name, e.g. ``sqs`` from ``Credential=…/sqs/aws4_request``."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target.startswith("AmazonSQS"):
        return "sqs"
    if target.startswith("DynamoDB"):
        return "dynamodb"
    return "s3"


def _s3_operation(method: str, path: str) -> str:
    """A REST request's S3 operation name, near enough for counting."""
    parts = [p for p in path.split("/") if p]
    on_object = len(parts) >= 2
    names = {
        ("GET", True): "GetObject",
        ("PUT", True): "PutObject",
        ("HEAD", True): "HeadObject",
        ("DELETE", True): "DeleteObject",
        ("GET", False): "ListObjects",
        ("PUT", False): "CreateBucket",
        ("HEAD", False): "HeadBucket",
        ("DELETE", False): "DeleteBucket",
    }
    return names.get((method, on_object), f"{method} {'object' if on_object else 'bucket'}")


def _read_body(environ: Environ) -> bytes:
    """Read the request body and put an unread copy back for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _record_kind(payload: dict[str, Any]) -> str:
    """The DynamoDB record kind a request touches: the ``pk`` prefix (``JOB``, ``NOVEL``…);
    for a transaction, its items' kinds joined with ``+`` (``JOB+NOVEL``)."""
    items = payload.get("TransactItems")
    if isinstance(items, list):
        kinds = [
            _record_kind(op) for entry in items if isinstance(entry, dict) for op in entry.values()
        ]
        return "+".join(sorted({kind for kind in kinds if kind}))
    for field in ("Key", "Item"):
        item = payload.get(field)
        if isinstance(item, dict):
            pk = item.get("pk")
            if isinstance(pk, dict) and isinstance(pk.get("S"), str):
                return str(pk["S"]).split("#", 1)[0]
    return ""


def _s3_resource(path: str) -> str:
    """The first folder of an object key (``novels``, ``storyboards``), or ``""``."""
    parts = [p for p in path.split("/") if p]
    return parts[1] if len(parts) >= 3 else ""


def classify(environ: Environ) -> Key:
    """The (service, operation, resource) of one request.

    The resource is the queue name for SQS, the record kind for DynamoDB and the first
    folder of the object key for S3, so that per-job figures can tell apart, say, a job's
    own writes from the novel's storyboard pointer.
    """
    service = _service_of(environ)
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    method = str(environ.get("REQUEST_METHOD", "GET"))
    if service == "s3":
        path = str(environ.get("PATH_INFO", ""))
        return service, _s3_operation(method, path), _s3_resource(path)
    body = _read_body(environ)
    if target:
        operation = target.rsplit(".", 1)[-1]
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        resource = ""
        if isinstance(payload, dict):
            if service == "sqs":
                resource = str(payload.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
            elif service == "dynamodb":
                resource = _record_kind(payload)
        return service, operation, resource
    params = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if "x-www-form-urlencoded" in content_type:
        params.update(urllib.parse.parse_qs(body.decode("utf-8", "replace")))
    operation = params.get("Action", ["unknown"])[0]
    resource = ""
    if service == "sqs":
        queue_url = params.get("QueueUrl", [str(environ.get("PATH_INFO", ""))])[0]
        resource = queue_url.rstrip("/").rsplit("/", 1)[-1]
    return service, operation, resource


class CountingApp:
    """WSGI middleware: count each request, then hand it to moto."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._counts: Counter[Key] = Counter()

    def rows(self) -> list[dict[str, Any]]:
        """The counts so far, one row per (service, operation, resource)."""
        with self._lock:
            items = sorted(self._counts.items())
        return [{"service": s, "operation": o, "resource": r, "count": n} for (s, o, r), n in items]

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == COUNTS_PATH:
            return _json(start_response, self.rows())
        if path == RESET_PATH:
            self.reset()
            return _json(start_response, {"reset": True})
        key = classify(environ)
        with self._lock:
            self._counts[key] += 1
        return self._app(environ, start_response)


def _json(start_response: StartResponse, payload: object) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def patch_moto_retention_check() -> None:
    """Make moto's per-message retention check O(1) instead of O(backlog).

    moto's ``ReceiveMessage`` asks, for every message it looks at, whether the message is
    within the queue's retention period, and answers by building every queue attribute,
    which counts the visible, delayed and in-flight messages: three scans of the queue per
    message, so one receive costs O(backlog²). This reads the retention period directly;
    the answer is the same. Without it a backlog of a few hundred messages, not the service
    under test, decides every figure measured on moto.
    """
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        queue = self.get_queue(queue_name)
        retention_s = int(queue.message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > unix_time())

    setattr(  # noqa: B010 - replacing a method on moto's class is the point
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        is_message_valid_based_on_retention_period,
    )


def patch_moto_batch_get_serializer() -> None:
    """Answer DynamoDB ``BatchGetItem`` with ``json.dumps`` instead of moto's generic
    model-driven serializer.

    moto 5 serializes every response by walking the operation's output shape, which for a
    BatchGetItem of 100 items costs ~2 ms of CPU per item (~220 ms a call), about twenty
    times a ``GetItem``. The watch hub's reads are nothing but such calls, so without this
    the emulator's serializer, not the service, would decide every event-stream figure. The
    result moto computes is already the wire format (attribute values as ``{"S": …}``), so
    the body is the same JSON; only who writes it changes.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.batch_get_item

    def batch_get_item(self: Any) -> str:
        return json.dumps(original(self).result)

    setattr(DynamoHandler, "batch_get_item", batch_get_item)  # noqa: B010 - as above


class _NoCopy:
    """Stands in for the ``copy`` module inside moto's DynamoDB models for one call."""

    @staticmethod
    def deepcopy(value: Any) -> Any:
        return value


def patch_moto_transaction_backup() -> None:
    """Check a DynamoDB ``TransactWriteItems``'s conditions before moto applies it, instead
    of moto deep-copying every table the transaction touches first, in case one fails.

    moto backs up the whole table for each transaction (O(items) per call: ~0.1 ms an item,
    so a table of a few hundred jobs makes each transaction cost more than every other
    request of the job together). Here every condition is evaluated first against the
    stored items, as DynamoDB does; a transaction with a failed condition is cancelled
    with nothing written, the reasons in moto's own form, and one whose conditions all hold
    is handed to moto with the backup skipped. DynamoDB requests are answered one at a time
    (:class:`harness.aws.SerialDynamoDB`), so nothing changes between the check and the
    writes. A transaction that fails for another reason (a malformed update) may then be
    left half applied; the service sends none.
    """
    import moto.dynamodb.models as models
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import TransactionCanceledException

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        reasons: list[tuple[str | None, str | None, None]] = []
        for entry in transact_items:
            kind, op = next(iter(entry.items()))
            condition = op.get("ConditionExpression")
            if kind == "Put" or condition is None:
                reasons.append((None, None, None))
                continue
            current = self.get_item(op["TableName"], op["Key"])
            check = get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            failed = not check.expr(current)
            reasons.append(
                ("ConditionalCheckFailed", "The conditional request failed", None)
                if failed
                else (None, None, None)
            )
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        saved = vars(models)["copy"]
        setattr(models, "copy", _NoCopy)  # noqa: B010 - the module's own name for ``copy``
        try:
            original(self, transact_items)
        finally:
            setattr(models, "copy", saved)  # noqa: B010

    setattr(  # noqa: B010 - as above
        models.DynamoDBBackend, "transact_write_items", transact_write_items
    )


def serve(host: str, port: int) -> None:
    """Run a counting moto server until killed (a ThreadedMotoServer with our wrapper)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from harness.aws import SerialDynamoDB, keep_alive_handler

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    patch_moto_retention_check()
    patch_moto_batch_get_serializer()
    patch_moto_transaction_backup()

    class CountingMotoServer(ThreadedMotoServer):
        """ThreadedMotoServer whose application is wrapped in :class:`CountingApp`."""

        def _server_entry(self) -> None:
            app = CountingApp(SerialDynamoDB(DomainDispatcherApplication(create_backend_app)))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=keep_alive_handler()
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = CountingMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
