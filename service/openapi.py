"""The OpenAPI 3.1 document for every route, generated from the API's pydantic models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from service import __version__
from service.api_schema import (
    MAX_TITLE,
    ErrorBody,
    JobAccepted,
    JobPage,
    JobView,
    NovelCreated,
    NovelDetail,
    NovelPage,
    NovelUpload,
    NovelView,
)
from service.jobs import JobStatus
from service.storyboard import Storyboard

_MODELS = (
    ErrorBody,
    JobAccepted,
    JobView,
    NovelCreated,
    NovelUpload,
    NovelView,
    Storyboard,
    NovelDetail,
    NovelPage,
    JobPage,
)
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json("ErrorBody", "error") for s in statuses}


def _id_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    }


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _ref("NovelUpload")},
        "text/plain": {"schema": {"type": "string", "minLength": 1}},
    },
}

# The text/plain upload's title; the server strips it, then applies NovelUpload's bounds.
_TITLE_PARAM = {
    "name": "title",
    "in": "query",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE},
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

_HEALTH = {"200": {"description": "ok"}, **_errors(503)}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/novels"): {
        "summary": "Upload a novel (JSON, or text/plain with ?title= in its declared charset, "
        "else detected as UTF-8, GB18030 or UTF-16 with a BOM)",
        "parameters": [_TITLE_PARAM],
        "requestBody": _UPLOAD_BODY,
        "responses": {
            "201": _json("NovelCreated", "created"),
            **_errors(400, 413, 415, 422, 503),
        },
    },
    ("GET", "/v1/novels"): {
        "summary": "The caller's novels, newest first, with their latest job's status",
        "parameters": _PAGE_PARAMS,
        "responses": {"200": _json("NovelPage", "a page of novels"), **_errors(400)},
    },
    ("GET", "/v1/novels/{novelId}"): {
        "summary": "A novel's metadata and its latest job",
        "parameters": [_id_param("novelId")],
        "responses": {"200": _json("NovelDetail", "the novel"), **_errors(404)},
    },
    ("DELETE", "/v1/novels/{novelId}"): {
        "summary": "Erase a novel with its jobs, storyboards and checkpoints",
        "parameters": [_id_param("novelId")],
        "responses": {"204": {"description": "erased"}, **_errors(404, 503)},
    },
    ("POST", "/v1/novels/{novelId}/analyze"): {
        "summary": "Queue a storyboard analysis",
        "parameters": [_id_param("novelId")],
        "responses": {"202": _json("JobAccepted", "queued"), **_errors(404, 409, 503)},
    },
    ("GET", "/v1/novels/{novelId}/storyboard"): {
        "summary": "The novel's latest storyboard (404 storyboard_pending while its first runs)",
        "parameters": [_id_param("novelId")],
        "responses": {"200": _json("Storyboard", "the storyboard"), **_errors(404)},
    },
    ("GET", "/v1/jobs"): {
        "summary": "The caller's jobs, newest first, optionally of one novel or in one status",
        "parameters": [
            {
                "name": "novelId",
                "in": "query",
                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            },
            {
                "name": "status",
                "in": "query",
                "schema": {"type": "string", "enum": [status.value for status in JobStatus]},
            },
            *_PAGE_PARAMS,
        ],
        "responses": {"200": _json("JobPage", "a page of jobs"), **_errors(400)},
    },
    ("GET", "/v1/jobs/{jobId}"): {
        "summary": "A job's status and progress",
        "parameters": [_id_param("jobId")],
        "responses": {"200": _json("JobView", "the job"), **_errors(404)},
    },
    ("GET", "/v1/jobs/{jobId}/storyboard"): {
        "summary": "The storyboard this job made (404 storyboard_pending while it runs)",
        "parameters": [_id_param("jobId")],
        "responses": {"200": _json("Storyboard", "the job's storyboard"), **_errors(404)},
    },
    ("POST", "/v1/jobs/{jobId}/cancel"): {
        "summary": "Cancel a job (a running one stops at its next stage or chunk)",
        "parameters": [_id_param("jobId")],
        "responses": {"200": _json("JobView", "the cancelled job"), **_errors(404, 409)},
    },
    ("GET", "/healthz"): {"summary": "Liveness", "responses": _HEALTH},
    ("GET", "/readyz"): {"summary": "Readiness", "responses": _HEALTH},
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "text exposition format"}},
    },
    ("GET", "/openapi.json"): {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI document"}},
    },
}


def build_document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    _, schemas = models_json_schema(
        [(m, "serialization") for m in _MODELS], by_alias=True, ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "storyboard-service", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }


async def openapi_handler(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(build_document())
