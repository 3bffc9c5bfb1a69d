"""The OpenAPI 3.1 document for every route, generated from the API's pydantic models.

Schemas come from the models; the operations, their parameters, responses and security are
declared here, beside the routes' paths. Docstrings are written in reStructuredText for the
code's readers; their inline markup is turned into Markdown (what OpenAPI descriptions are)
so the document never shows raw ``double backticks`` or ``:class:`` roles.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service import __version__
from service.api_schema import (
    MAX_TITLE,
    VISIBLE_TEXT,
    VISIBLE_TITLE,
    AnalyzeRequest,
    CostEstimate,
    ErrorBody,
    JobAccepted,
    JobPage,
    JobView,
    LimitErrorBody,
    NovelCreated,
    NovelDetail,
    NovelPage,
    NovelUpload,
    NovelView,
)
from service.jobs import JobStatus
from service.storyboard import Storyboard

_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (ErrorBody, "serialization"),
    (JobAccepted, "serialization"),
    (JobView, "serialization"),
    (NovelCreated, "serialization"),
    (NovelUpload, "validation"),
    (NovelView, "serialization"),
    (NovelDetail, "serialization"),
    (NovelPage, "serialization"),
    (JobPage, "serialization"),
    (Storyboard, "serialization"),
    (AnalyzeRequest, "validation"),
    (LimitErrorBody, "serialization"),
    (CostEstimate, "serialization"),
)
_REF = "#/components/schemas/{model}"

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key the operator issued (`Authorization: Bearer <key>`); "
        "the service stores only its SHA-256.",
    },
    "jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT (HS256 with the shared secret, or RS256 against the JWKS, e.g. "
        "a Cognito user pool); its user claim names the caller.",
    },
}
_ANY_CREDENTIAL: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
_PUBLIC: list[dict[str, list[str]]] = []
"""No credentials: probes, metrics and this document."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_ERROR_MEANINGS = {
    400: "malformed request (invalid JSON, parameter or header)",
    401: "missing, malformed or refused credentials",
    404: "no such record for this caller",
    409: "conflicts with the record's state",
    413: "request body too large",
    415: "unsupported media type or charset",
    422: "well-formed but invalid content",
    503: "a backend is unavailable or the service is draining; retry later",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json("ErrorBody", _ERROR_MEANINGS[s]) for s in statuses}


def _id_param(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id, as the service returned it.",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    }


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _ref("NovelUpload")},
        "text/plain": {"schema": {"type": "string", "minLength": 1, "pattern": VISIBLE_TEXT}},
    },
}

# The text/plain upload's title; the server strips it, then applies NovelUpload's bounds.
_TITLE_PARAM = {
    "name": "title",
    "in": "query",
    "description": "The title, for a `text/plain` upload (required there).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE, "pattern": VISIBLE_TITLE},
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes the request safe to retry: a repeat with the same key within "
    "24 hours returns the job the first request created, with `Idempotent-Replayed: true`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "The `id` of the last event received: a reconnect then starts with the "
    "current state if it is newer.",
    "schema": {"type": "string"},
}

_LOCATION = {"description": "The new resource's URL.", "schema": {"type": "string"}}
_REPLAYED = {
    "description": "`true` when an `Idempotency-Key` repeat returned an earlier job.",
    "schema": {"type": "string", "enum": ["true"]},
}

_SECONDS = {"type": "string", "pattern": "^[0-9]+$"}
_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {
        "description": "The limit described: submissions a minute "
        "(`STORYBOARD_USER_SUBMIT_RATE`) or analyses queued and running at once "
        "(`STORYBOARD_USER_MAX_ACTIVE_JOBS`), whichever has fewer remaining now. The three "
        "`RateLimit-*` fields are those of draft-ietf-httpapi-ratelimit-headers-07 (later "
        "drafts merged them into `RateLimit` and `RateLimit-Policy`); absent when both "
        "limits are off.",
        "schema": _SECONDS,
    },
    "RateLimit-Remaining": {
        "description": "Submissions that limit still admits, after this one.",
        "schema": _SECONDS,
    },
    "RateLimit-Reset": {
        "description": "Seconds until that limit admits another submission: 0 while some "
        "remain, else the `Retry-After` a refusal gives (for the active-job limit a hint: "
        "a slot frees when one of the caller's jobs ends).",
        "schema": _SECONDS,
    },
}
_RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": _SECONDS}
_TOO_MANY = {
    **_json(
        "LimitErrorBody",
        "`too_many_active_jobs`: the caller has as many analyses queued or running as allowed "
        "(the count and the limit are in the error; one finishing, or a cancel, frees a slot); "
        "`rate_limited`: more analysis requests a minute than allowed. An `Idempotency-Key` "
        "repeat of an accepted request takes no second slot.",
    ),
    "headers": {"Retry-After": _RETRY_AFTER, **_RATE_LIMIT_HEADERS},
}

_PAGE_PARAMS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
"""A list's page size and the ``nextCursor`` of the page before (400 invalid_cursor if it
did not come from the same list)."""

_ANALYZE_BODY = {
    "required": False,
    "description": "Optional: an empty body queues the analysis with no callback.",
    "content": {"application/json": {"schema": _ref("AnalyzeRequest")}},
}

_CALLBACK_REFUSALS = (
    "`callback_url_forbidden`: the callbackUrl is not https, or its host resolves to a "
    "loopback, private, link-local, metadata, multicast or reserved address; "
    "`invalid_callback_url`: it is no URL, has credentials or does not resolve; "
    "`webhooks_disabled`: no signing secret is configured; `validation_error`: the body "
    "is not `{callbackUrl}`"
)

_PAGE_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (
        ("Content-Security-Policy", "Same-origin scripts, styles and calls only; no inline code."),
        ("X-Content-Type-Options", "`nosniff`"),
        ("ETag", "The file's version, for `If-None-Match`."),
    )
}

_HEALTH = {"200": {"description": "ok"}, **_errors(503)}


def _v1(operation: dict[str, Any]) -> dict[str, Any]:
    """An authenticated operation: any credential scheme, and a 401 without one."""
    responses = {**operation["responses"], **_errors(401)}
    return {**operation, "security": _ANY_CREDENTIAL, "responses": responses}


def _public(operation: dict[str, Any]) -> dict[str, Any]:
    return {**operation, "security": _PUBLIC}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/novels"): _v1(
        {
            "operationId": "uploadNovel",
            "summary": "Upload a novel",
            "description": "JSON `{title, text}`, or `text/plain` with `?title=` in its "
            "declared charset, else detected as UTF-8, GB18030 or UTF-16 with a BOM.",
            "parameters": [_TITLE_PARAM],
            "requestBody": _UPLOAD_BODY,
            "responses": {
                "201": {**_json("NovelCreated", "created"), "headers": {"Location": _LOCATION}},
                **_errors(400, 413, 415, 422, 503),
            },
        }
    ),
    ("GET", "/v1/novels"): _v1(
        {
            "operationId": "listNovels",
            "summary": "The caller's novels, newest first, with their latest job's status",
            "parameters": _PAGE_PARAMS,
            "responses": {"200": _json("NovelPage", "a page of novels"), **_errors(400)},
        }
    ),
    ("GET", "/v1/novels/{novelId}"): _v1(
        {
            "operationId": "getNovel",
            "summary": "A novel's metadata, its latest job and its latest storyboard's counts",
            "parameters": [_id_param("novelId", "novel")],
            "responses": {"200": _json("NovelDetail", "the novel"), **_errors(404)},
        }
    ),
    ("DELETE", "/v1/novels/{novelId}"): _v1(
        {
            "operationId": "deleteNovel",
            "summary": "Erase a novel with its jobs, storyboards and checkpoints",
            "description": "Cancels its waiting and running jobs first; afterwards the novel, "
            "its jobs and its storyboards answer 404.",
            "parameters": [_id_param("novelId", "novel")],
            "responses": {"204": {"description": "erased"}, **_errors(404, 503)},
        }
    ),
    ("POST", "/v1/novels/{novelId}/analyze"): _v1(
        {
            "operationId": "analyzeNovel",
            "summary": "Queue a storyboard analysis",
            "description": "Answers at once with the job to follow; the work runs on a worker. "
            "With a `callbackUrl`, the job's end is POSTed there as a signed webhook. Each "
            "caller may have a limited number of analyses queued or running, and may be "
            "limited in requests a minute: over either, a 429.",
            "parameters": [_id_param("novelId", "novel"), _IDEMPOTENCY_KEY],
            "requestBody": _ANALYZE_BODY,
            "responses": {
                "202": {
                    **_json("JobAccepted", "queued, or the earlier job of a replayed key"),
                    "headers": {
                        "Location": _LOCATION,
                        "Idempotent-Replayed": _REPLAYED,
                        **_RATE_LIMIT_HEADERS,
                    },
                },
                "422": _json("ErrorBody", _CALLBACK_REFUSALS),
                "429": _TOO_MANY,
                **_errors(400, 404, 409, 503),
            },
        }
    ),
    ("POST", "/v1/novels/{novelId}/estimate"): _v1(
        {
            "operationId": "estimateNovel",
            "summary": "What analyzing the novel with the model would cost",
            "description": "Requests, input and output tokens and their price at the "
            "configured prices per million tokens, from the model analyzer's own chunk "
            "plan. Nothing is queued and nothing is sent to the model; repair rounds and "
            "retries, when they happen, are not included.",
            "parameters": [_id_param("novelId", "novel")],
            "responses": {"200": _json("CostEstimate", "the estimate"), **_errors(404, 503)},
        }
    ),
    ("GET", "/v1/novels/{novelId}/storyboard"): _v1(
        {
            "operationId": "getNovelStoryboard",
            "summary": "The novel's latest storyboard",
            "description": "404 `storyboard_pending`, naming the job, while the first "
            "analysis runs.",
            "parameters": [_id_param("novelId", "novel")],
            "responses": {"200": _json("Storyboard", "the storyboard"), **_errors(404)},
        }
    ),
    ("GET", "/v1/jobs"): _v1(
        {
            "operationId": "listJobs",
            "summary": "The caller's jobs, newest first, optionally of one novel or in one status",
            "parameters": [
                {
                    "name": "novelId",
                    "in": "query",
                    "description": "Only this novel's jobs.",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                },
                {
                    "name": "status",
                    "in": "query",
                    "description": "Only jobs in this status.",
                    "schema": {"type": "string", "enum": [status.value for status in JobStatus]},
                },
                *_PAGE_PARAMS,
            ],
            "responses": {"200": _json("JobPage", "a page of jobs"), **_errors(400)},
        }
    ),
    ("GET", "/v1/jobs/{jobId}"): _v1(
        {
            "operationId": "getJob",
            "summary": "A job's status and progress",
            "parameters": [_id_param("jobId", "job")],
            "responses": {"200": _json("JobView", "the job"), **_errors(404)},
        }
    ),
    ("GET", "/v1/jobs/{jobId}/storyboard"): _v1(
        {
            "operationId": "getJobStoryboard",
            "summary": "The storyboard this job made",
            "description": "Still served after a newer job replaced it on the novel; "
            "404 `storyboard_pending` while the job runs.",
            "parameters": [_id_param("jobId", "job")],
            "responses": {"200": _json("Storyboard", "the job's storyboard"), **_errors(404)},
        }
    ),
    ("GET", "/v1/jobs/{jobId}/events"): _v1(
        {
            "operationId": "followJob",
            "summary": "Follow a job live (Server-Sent Events)",
            "description": "`progress` events while the job runs, then one event named after "
            "its end state (`completed`, `failed`, `cancelled`), after which the server closes "
            "the stream. Each event's data is the job view and its `id` the record's version; "
            "a ping comment every 15 s keeps proxies from closing a quiet stream. Send the "
            "credential in the `Authorization` header (a `fetch` stream reader can; a plain "
            "`EventSource` cannot, and keys never go in URLs).",
            "parameters": [_id_param("jobId", "job"), _LAST_EVENT_ID],
            "responses": {
                "200": {
                    "description": "the event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "204": {"description": "the job had ended and the client has its final event"},
                **_errors(404),
            },
        }
    ),
    ("POST", "/v1/jobs/{jobId}/cancel"): _v1(
        {
            "operationId": "cancelJob",
            "summary": "Cancel a job",
            "description": "The job ends at once; a running job's work stops within seconds. "
            "409 `job_finished` once it has ended otherwise.",
            "parameters": [_id_param("jobId", "job")],
            "responses": {"200": _json("JobView", "the cancelled job"), **_errors(404, 409)},
        }
    ),
    ("GET", "/healthz"): _public(
        {"operationId": "liveness", "summary": "Liveness", "responses": _HEALTH}
    ),
    ("GET", "/readyz"): _public(
        {"operationId": "readiness", "summary": "Readiness", "responses": _HEALTH}
    ),
    ("GET", "/metrics"): _public(
        {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "The queues' depths are read when this is requested (on AWS, one "
            "`GetQueueAttributes` call per queue); a queue that cannot be read is left out.",
            "responses": {"200": {"description": "text exposition format"}},
        }
    ),
    ("GET", "/"): _public(
        {
            "operationId": "webPage",
            "summary": "The web page: upload a novel, follow the job, read the storyboard",
            "description": "Served with a content-security policy that allows no inline "
            "scripts or styles; the page calls this API with `fetch`.",
            "responses": {
                "200": {
                    "description": "the page",
                    "headers": _PAGE_HEADERS,
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                "304": {"description": "unchanged since the `ETag` the client sent"},
            },
        }
    ),
    ("GET", "/static/{name}"): _public(
        {
            "operationId": "webAsset",
            "summary": "A script, style sheet or icon of the web page",
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "The file's name, as the page links it.",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {
                    "description": "the file",
                    "headers": _PAGE_HEADERS,
                    "content": {
                        media: {"schema": {"type": "string"}}
                        for media in ("text/javascript", "text/css", "image/svg+xml")
                    },
                },
                "304": {"description": "unchanged since the `ETag` the client sent"},
                **_errors(404),
            },
        }
    ),
    ("GET", "/openapi.json"): _public(
        {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI document"}},
        }
    ),
}

# ``x`` → `x`; :role:`~a.b.Name` and :role:`Name` → `Name`.
_LITERAL = re.compile(r"``(.+?)``")
_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`")


def markdown(text: str) -> str:
    """reStructuredText inline markup rewritten as Markdown code spans."""
    return _LITERAL.sub(r"`\1`", _ROLE.sub(r"`\1`", text))


def _clean_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: markdown(value)
            if key == "description" and isinstance(value, str)
            # "properties" maps field names, which may themselves be called "description".
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(value) for value in node]
    return node


def build_document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    _, schemas = models_json_schema(list(_MODELS), by_alias=True, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "storyboard-service",
            "version": __version__,
            "description": "Turns uploaded novels into comic storyboards. Errors are always "
            '`{"error": {"code", "message"}}`.',
        },
        "security": _ANY_CREDENTIAL,
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
    return _clean_descriptions(document)  # type: ignore[no-any-return]


async def openapi_handler(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(build_document())
