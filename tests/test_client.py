"""The CLI's HTTP client against the real app on aiohttp's test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.client import (
    JOB_COLUMNS,
    NOVEL_COLUMNS,
    Refused,
    default_title,
    delete_novel,
    fetch_storyboard,
    job_row,
    list_items,
    novel_row,
    render_table,
    submit_file,
    title_for,
)
from service.ports import NovelText, ProgressCallback
from service.storyboard import Storyboard
from tests.analyzers import CountingAnalyzer
from tests.conftest import SettingsFactory
from tests.waiting import eventually

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


class HeldAnalyzer(CountingAnalyzer):
    """Holds every analysis until ``release`` is set, so a job stays running."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def analyze(self, novel: NovelText, on_progress: ProgressCallback) -> Storyboard:
        self.started.set()
        await self.release.wait()
        return await super().analyze(novel, on_progress)


@pytest.fixture
def held() -> HeldAnalyzer:
    analyzer = HeldAnalyzer()
    analyzer.release.set()  # a test that wants a job held clears it first
    return analyzer


@pytest.fixture
async def api(
    aiohttp_client: AiohttpClient, local_settings: SettingsFactory, held: HeldAnalyzer
) -> AsyncIterator[Client]:
    settings = local_settings(receive_wait_s=0.5)
    yield await aiohttp_client(create_app(settings, analyzer=held))
    held.release.set()  # let a held job end before the worker stops


def _base(api: Client) -> str:
    return str(api.make_url("")).rstrip("/")


async def _title_of_job(api: Client, job_id: str) -> Any:
    job = await (await api.get(f"/v1/jobs/{job_id}")).json()
    novel = await (await api.get(f"/v1/novels/{job['novelId']}")).json()
    return novel["title"]


def test_the_title_is_the_text_s_own_else_the_file_name() -> None:
    assert title_for("a/sanguo.gb18030.txt", "三国演义\n\n第一回　宴桃园") == "三国演义"
    assert title_for("a/sanguo.gb18030.txt", "第一回　宴桃园\n话说天下大势。") == "sanguo"
    assert title_for("-", "Chapter 1\n\nIt begins.") == default_title("-") == "stdin"


@pytest.mark.parametrize(
    ("name", "text", "given", "expected"),
    [
        ("three.gb18030.txt", "三国演义\n\n第一回　宴桃园\n\n话说天下大势。", None, "三国演义"),
        ("three.gb18030.txt", "第一回　宴桃园\n\n话说天下大势。", None, "three"),
        ("three.gb18030.txt", "三国演义\n\n第一回　宴桃园\n\n话说天下大势。", "Mine", "Mine"),
    ],
)
async def test_submit_sends_the_text_title_unless_one_is_given(
    api: Client, tmp_path: Path, name: str, text: str, given: str | None, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("gb18030"))
    job_id = await submit_file(_base(api), str(path), given)
    assert await _title_of_job(api, job_id) == expected


async def _job(api: Client, job_id: str) -> dict[str, Any]:
    document: dict[str, Any] = await (await api.get(f"/v1/jobs/{job_id}")).json()
    return document


async def _analyzed(api: Client, tmp_path: Path, title: str = "Tale") -> dict[str, Any]:
    """A submitted novel's job, once it has completed."""
    path = tmp_path / "tale.txt"
    path.write_text(f"{title}\n\nOnce upon a time.", encoding="utf-8")
    job_id = await submit_file(_base(api), str(path), None)

    async def completed() -> dict[str, Any] | None:
        job = await _job(api, job_id)
        return job if job["status"] == "completed" else None

    return await eventually(completed)


async def test_get_downloads_by_job_id_or_by_novel_id(api: Client, tmp_path: Path) -> None:
    job = await _analyzed(api, tmp_path)
    served = await (await api.get(f"/v1/jobs/{job['jobId']}/storyboard")).read()
    assert await fetch_storyboard(_base(api), job["jobId"]) == served
    assert await fetch_storyboard(_base(api), job["novelId"]) == served


async def test_get_of_an_unknown_id_is_not_found_as_either(api: Client) -> None:
    with pytest.raises(Refused) as caught:
        await fetch_storyboard(_base(api), "0" * 32)
    assert caught.value.code == "not_found"
    assert str(caught.value) == (
        f"not_found: {'0' * 32}: as a job, job not found; as a novel, novel not found"
    )


async def test_get_while_the_job_runs_names_the_job(
    api: Client, held: HeldAnalyzer, tmp_path: Path
) -> None:
    held.release.clear()
    path = tmp_path / "tale.txt"
    path.write_text("Once upon a time.", encoding="utf-8")
    job_id = await submit_file(_base(api), str(path), None)
    await held.started.wait()
    novel_id = (await _job(api, job_id))["novelId"]
    for some_id in (job_id, novel_id):
        with pytest.raises(Refused) as caught:
            await fetch_storyboard(_base(api), some_id)
        assert caught.value.code == "storyboard_pending"
        assert caught.value.message.startswith(f"not ready yet; job {job_id} is running (")


async def test_a_submission_over_the_quota_is_refused_with_the_api_s_words(
    aiohttp_client: AiohttpClient,
    local_settings: SettingsFactory,
    held: HeldAnalyzer,
    tmp_path: Path,
) -> None:
    held.release.clear()
    settings = local_settings(receive_wait_s=0.5, user_max_active_jobs=1)
    api = await aiohttp_client(create_app(settings, analyzer=held))
    path = tmp_path / "tale.txt"
    path.write_text("Once upon a time.", encoding="utf-8")
    await submit_file(_base(api), str(path), None)

    with pytest.raises(Refused) as caught:
        await submit_file(_base(api), str(path), None)
    held.release.set()

    assert caught.value.code == "too_many_active_jobs"
    assert "you have 1 analysis queued or running" in caught.value.message
    assert "the text is stored as novel " in str(caught.value)


async def test_lists_follow_the_cursor_to_the_end(api: Client, tmp_path: Path) -> None:
    jobs = [await _analyzed(api, tmp_path, f"Tale {n}") for n in range(3)]
    base = _base(api)
    page, cursor = await list_items(base, "novels", {"limit": "2"})
    assert len(page) == 2
    assert cursor is not None
    every, end = await list_items(base, "novels", {"limit": "2"}, every_page=True)
    assert end is None
    assert [item["novelId"] for item in every] == [job["novelId"] for job in reversed(jobs)]
    assert [item["title"] for item in every] == ["Tale 2", "Tale 1", "Tale 0"]
    assert {item["latestJobStatus"] for item in every} == {"completed"}
    one, _ = await list_items(base, "jobs", {"novelId": jobs[0]["novelId"]}, every_page=True)
    assert [item["jobId"] for item in one] == [jobs[0]["jobId"]]
    done, _ = await list_items(base, "jobs", {"status": "completed"}, every_page=True)
    assert len(done) == 3
    table = render_table(NOVEL_COLUMNS, [novel_row(item) for item in every]).splitlines()
    assert table[0].split() == list(NOVEL_COLUMNS)
    assert table[1].split()[:3] == [jobs[2]["novelId"], "Tale", "2"]
    job_table = render_table(JOB_COLUMNS, [job_row(item) for item in done]).splitlines()
    assert job_table[1].split()[2:4] == ["completed", "100%"]


async def test_a_list_with_a_bad_cursor_is_refused(api: Client) -> None:
    with pytest.raises(Refused) as caught:
        await list_items(_base(api), "jobs", {"cursor": "not-a-cursor"})
    assert caught.value.code == "invalid_cursor"


def test_tables_align_wide_characters() -> None:
    table = render_table(("ID", "TITLE", "N"), [["a", "三国演义", "1"], ["bb", "Alice", "22"]])
    first, second, third = table.splitlines()
    # A CJK character takes two columns, so the third column starts at the same place.
    assert first == "ID  TITLE     N"
    assert second == "a   三国演义  1"
    assert third == "bb  Alice     22"


def test_rows_show_the_list_items_fields() -> None:
    novel = {
        "novelId": "n1",
        "title": "三国\n演义",
        "chars": 12,
        "createdAt": "2026-01-02T03:04:05.000Z",
        "latestJobId": None,
        "latestJobStatus": None,
    }
    job = {
        "jobId": "j1",
        "novelId": "n1",
        "type": "analyze",
        "status": "retrying",
        "progress": {"percentage": 0, "stage": "waiting for retry"},
        "attempts": 1,
        "error": {"code": "llm_unavailable", "message": "could not connect"},
        "createdAt": "2026-01-02T03:04:05.000Z",
        "updatedAt": "2026-01-02T03:04:06.000Z",
    }
    assert len(NOVEL_COLUMNS) == len(novel_row(novel))
    assert novel_row(novel) == ["n1", "三国 演义", "12", "2026-01-02T03:04:05.000Z", "-", "-"]
    assert dict(zip(JOB_COLUMNS, job_row(job), strict=True)) == {
        "JOB_ID": "j1",
        "NOVEL_ID": "n1",
        "STATUS": "retrying",
        "PROGRESS": "0% waiting for retry",
        "ATTEMPTS": "1",
        "CREATED": "2026-01-02T03:04:05.000Z",
        "ERROR": "llm_unavailable",
    }


async def test_an_id_is_one_path_segment(api: Client, tmp_path: Path) -> None:
    job = await _analyzed(api, tmp_path)
    with pytest.raises(Refused) as caught:
        await fetch_storyboard(_base(api), f"../novels/{job['novelId']}")
    assert caught.value.code == "not_found"


async def test_delete_erases_the_novel_and_a_second_delete_is_not_found(
    api: Client, tmp_path: Path
) -> None:
    job = await _analyzed(api, tmp_path)
    await delete_novel(_base(api), job["novelId"])
    with pytest.raises(Refused) as again:
        await delete_novel(_base(api), job["novelId"])
    assert (again.value.code, again.value.message) == (
        "not_found",
        f"novel not found: {job['novelId']}",
    )
    with pytest.raises(Refused) as gone:
        await fetch_storyboard(_base(api), job["jobId"])
    assert gone.value.code == "not_found"
    assert (await list_items(_base(api), "novels", {}))[0] == []
