"""Shared fixtures: a moto server for the AWS APIs and settings factories for both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.aws import AwsNames, MotoThread, use_fake_credentials
from harness.browser import INSTALL_HINT, find_chromium
from service.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"

use_fake_credentials()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The one line saying that the browser tests did not run, and how to make them run."""
    if find_chromium() is None:
        terminalreporter.write_line(f"browser tests skipped: {INSTALL_HINT}", yellow=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Chromium, leave out the tests that need it (those using the ``browser``
    fixture), so one closing line reports them instead of a skip line for each."""
    if find_chromium() is not None:
        return
    browser = [item for item in items if "browser" in getattr(item, "fixturenames", ())]
    if browser:
        config.hook.pytest_deselected(items=browser)
        items[:] = [item for item in items if item not in browser]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a loopback port of its own, for the whole session (one per worker
    when the suite runs in parallel)."""
    server = MotoThread.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def corpus_file(name: str) -> Path:
    """A file of the shared corpus, or skip the test when the corpus is not laid out."""
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"shared corpus file {name} is not present beside the project")
    return path


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def aws_settings(moto_endpoint: str) -> SettingsFactory:
    """Settings for the AWS backend on moto, with resource names unique to the test."""
    names = AwsNames.fresh("t")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {**names.settings_values(moto_endpoint), "aws_region": "us-east-1"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def local_settings(tmp_path: Path) -> SettingsFactory:
    """Settings for the local backend in a fresh data directory."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"backend": "local", "data_dir": tmp_path / "data"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(params=["local", "aws"])
def make_settings(
    request: pytest.FixtureRequest,
    local_settings: SettingsFactory,
    aws_settings: SettingsFactory,
) -> SettingsFactory:
    """Settings for each backend in turn: tests using it run once per backend."""
    return aws_settings if request.param == "aws" else local_settings


async def prepare(settings: Settings) -> Settings:
    """Create the AWS resources a test's settings name (the local backend needs nothing)."""
    if settings.resolved_backend == "aws":
        from service.bootstrap import bootstrap

        await bootstrap(settings)
    return settings


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Undo any logging set-up a test did, so later tests never write to a closed stream."""
    yield
    import structlog

    structlog.reset_defaults()
