"""The OpenAPI document stays in step with the router."""

from __future__ import annotations

from service.app import create_app
from service.openapi import build_document
from service.settings import Settings


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
