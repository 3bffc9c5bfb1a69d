"""Property-based fuzzing of the live API from its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests. None may produce a 5xx, and
every error must have the ``{"error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from harness.processes import running_service, service_env
from service.openapi import build_document

schema = schemathesis.openapi.from_dict(build_document())
EXAMPLES = int(os.environ.get("STORYBOARD_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real service process on the embedded backend."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    env = service_env(root / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="0")
    with running_service("serve", env, root / "serve.log") as service:
        yield service.url


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_every_error_is_shaped(case: Any, live_url: str) -> None:
    response = case.call(base_url=live_url, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"].get("code"), str), body
        assert isinstance(body["error"].get("message"), str), body
