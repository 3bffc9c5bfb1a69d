"""The OpenAPI document stays in step with the router."""

from __future__ import annotations

import json
import re
from typing import Any

from openapi_spec_validator import validate
from pydantic import ValidationError

from service.api_schema import VISIBLE_TEXT, VISIBLE_TITLE, NovelUpload
from service.app import create_app
from service.openapi import build_document, markdown
from service.settings import Settings
from service.text import normalise_text


def _routes(app_settings: Settings) -> set[tuple[str, str]]:
    app = create_app(app_settings)
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        found.add((route.method, str(path)))
    return found


def test_every_route_is_documented_and_nothing_else(tmp_path: object) -> None:
    document = build_document()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert _routes(Settings(backend="local")) == documented


def test_document_is_openapi_3_with_resolvable_refs() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.")
    schemas = document["components"]["schemas"]
    assert {"JobView", "ErrorBody", "Storyboard", "NovelCreated"} <= schemas.keys()
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_job_view_schema_uses_camel_case() -> None:
    job = build_document()["components"]["schemas"]["JobView"]
    assert {"jobId", "novelId", "storyboardUrl", "createdAt"} <= job["properties"].keys()


def test_plain_upload_title_parameter_has_the_json_title_bounds() -> None:
    document = build_document()
    operation = document["paths"]["/v1/novels"]["post"]
    (title,) = [p for p in operation["parameters"] if p["name"] == "title"]
    upload_title = document["components"]["schemas"]["NovelUpload"]["properties"]["title"]
    assert title["in"] == "query"
    assert title["schema"]["minLength"] == upload_title["minLength"] == 1
    assert title["schema"]["maxLength"] == upload_title["maxLength"] == 500


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_document_is_valid_openapi_3_1() -> None:
    validate(build_document())  # raises on the first error


def test_every_v1_operation_needs_a_bearer_credential_and_declares_its_401() -> None:
    document = build_document()
    schemes = document["components"]["securitySchemes"]
    assert {name: scheme["scheme"] for name, scheme in schemes.items()} == {
        "apiKey": "bearer",
        "jwt": "bearer",
    }
    assert schemes["jwt"]["bearerFormat"] == "JWT"
    for method, path, operation in _operations(document):
        if path.startswith("/v1/"):
            assert operation["security"] == [{"apiKey": []}, {"jwt": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
        else:
            assert operation["security"] == [], (method, path)
            assert "401" not in operation["responses"], (method, path)


def test_analyze_declares_the_idempotency_key_header() -> None:
    operation = build_document()["paths"]["/v1/novels/{novelId}/analyze"]["post"]
    (header,) = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert (header["schema"]["minLength"], header["schema"]["maxLength"]) == (1, 255)
    assert "Idempotent-Replayed" in operation["responses"]["202"]["headers"]


def test_fields_the_service_always_sends_are_required() -> None:
    schemas = build_document()["components"]["schemas"]
    job = schemas["JobView"]
    # Defaulted fields too: a job view always carries them, if only as null.
    assert set(job["required"]) == set(job["properties"])
    assert set(schemas["NovelUpload"]["required"]) == {"title", "text"}
    assert "storyboardUrl" in schemas["NovelView"]["required"]


def test_titles_and_descriptions_read_as_prose() -> None:
    document = build_document()
    text = json.dumps(document)
    assert "``" not in text
    assert not re.search(r":(class|func|meth|data|attr):", text)
    titles = {
        prop["title"]
        for schema in document["components"]["schemas"].values()
        for prop in schema.get("properties", {}).values()
        if "title" in prop
    }
    assert {"Job id", "Created at", "Storyboard url"} <= titles
    assert not {"Jobid", "Createdat", "Novelid"} & titles


def test_markdown_rewrites_rst_inline_markup() -> None:
    assert markdown("see ``GET /v1`` and :class:`~service.jobs.Job`") == "see `GET /v1` and `Job`"
    assert markdown(":func:`load` and plain `code`") == "`load` and plain `code`"


def _valid_title(title: str) -> bool:
    try:
        NovelUpload(title=title, text="x")
    except ValidationError:
        return False
    return True


def test_visible_patterns_agree_with_the_servers_emptiness_rules() -> None:
    # One character at a time over the whole BMP: the pattern finds it exactly when the
    # route would keep something of a title or text made of it alone.
    for code in range(0xD800):
        char = chr(code)
        assert bool(re.search(VISIBLE_TITLE, char)) == _valid_title(char), hex(code)
        assert bool(re.search(VISIBLE_TEXT, char)) == bool(normalise_text(char).strip()), hex(code)


def test_analyze_documents_its_callback_body_and_refusals() -> None:
    document = build_document()
    operation = document["paths"]["/v1/novels/{novelId}/analyze"]["post"]
    assert operation["requestBody"]["required"] is False
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/AnalyzeRequest"}
    request = document["components"]["schemas"]["AnalyzeRequest"]
    assert set(request["properties"]) == {"callbackUrl"}
    assert "callback_url_forbidden" in operation["responses"]["422"]["description"]
    view = document["components"]["schemas"]["JobView"]
    assert "webhook" in view["properties"]
    state = document["components"]["schemas"]["WebhookState"]
    assert set(state["properties"]) == {"status", "attempts", "lastError", "nextAttemptAt"}


def test_analyze_declares_its_429s_and_the_rate_limit_headers() -> None:
    document = build_document()
    responses = document["paths"]["/v1/novels/{novelId}/analyze"]["post"]["responses"]
    names = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    assert names <= set(responses["202"]["headers"])
    assert names | {"Retry-After"} <= set(responses["429"]["headers"])
    assert "draft-ietf-httpapi-ratelimit-headers-07" in json.dumps(responses["202"]["headers"])
    schema = responses["429"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/LimitErrorBody"}
    errors = document["components"]["schemas"]
    assert set(errors["ActiveJobsError"]["required"]) == {"code", "message", "activeJobs", "limit"}
    assert set(errors["RateLimitedError"]["required"]) == {"code", "message", "limit", "retryAfter"}
