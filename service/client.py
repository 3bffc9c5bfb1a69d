"""The HTTP client and file helpers of the ``storyboard`` commands that talk to a service:
``submit``, ``status`` (``--follow``), ``get``, ``list`` and ``delete``."""

from __future__ import annotations

import asyncio
import codecs
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from rich.cells import cell_len

from service.errors import CliError
from service.text import EmptyTextError, TextDecodeError, guess_title, load_novel_bytes

TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)
TOKEN_ENV = "STORYBOARD_TOKEN"
STDOUT = "-"
NOT_FOUND = "not_found"
PENDING = "storyboard_pending"


def read_input(path: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a file, or of stdin for ``-``; a clear CliError when unreadable.

    With ``max_bytes``, at most that many: a caller that refuses more need not read a
    huge file whole.
    """
    size = -1 if max_bytes is None else max_bytes
    try:
        if path == "-":
            return sys.stdin.buffer.read(size)
        with Path(path).open("rb") as file:
            return file.read(size)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def default_title(path: str) -> str:
    """The title used when none is given: the file's name without its suffix, nor an
    encoding suffix before it (``sanguo-yanyi.gb18030.txt`` → ``sanguo-yanyi``)."""
    if path == "-":
        return "stdin"
    stem = Path(Path(path).stem)
    return stem.stem if _is_codec_name(stem.suffix[1:]) else stem.name


def title_for(path: str, text: str) -> str:
    """The title a novel gets when none is given: the text's own title line (see
    :func:`~service.text.guess_title`), else :func:`default_title` of the file name."""
    return guess_title(text) or default_title(path)


def _title_of_upload(path: str, data: bytes) -> str:
    try:
        text = load_novel_bytes(data)
    except (TextDecodeError, EmptyTextError):
        # The server decides what is wrong with the bytes; the file name is a fine title.
        return default_title(path)
    return title_for(path, text)


def _is_codec_name(name: str) -> bool:
    # Any name Python can decode with counts, so every spelling (gb18030, utf8, big5…) does.
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return bool(name)


def _seg(value: str) -> str:
    """``value`` as one path segment: an id with a ``/`` or ``..`` cannot reach another
    resource."""
    return quote(value, safe="")


def _session(token: str | None) -> aiohttp.ClientSession:
    # The token travels only in this header; it is never part of a message or a log line.
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return aiohttp.ClientSession(timeout=TIMEOUT, headers=headers)


class Refused(CliError):
    """The service refused the request (or would: a limit it applies), with its error
    ``code``; the command exits 1, where a usage or settings error exits 2."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def _fetch(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> bytes:
    """The body of a successful answer; :class:`Refused` for an error answer."""
    try:
        async with session.request(method, url, **kw) as response:
            raw = await response.read()
            if response.status >= 400:
                raise _refusal(response.status, response.reason, raw)
            return raw
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    """The JSON of a successful answer (``None`` for an empty one, such as a 204)."""
    raw = await _fetch(session, method, url, **kw)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise CliError(f"{url} did not answer with JSON") from None


def _refusal(status: int, reason: str | None, raw: bytes) -> Refused:
    """The service's ``{"error": {code, message}}``, or the bare status of another answer
    (a proxy in front of the service may answer in HTML)."""
    try:
        error = json.loads(raw).get("error") or {}
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, AttributeError, KeyError, TypeError):
        code, message = f"http_{status}", reason or "the service refused the request"
    if status == 401:
        message += f" (pass --token or set {TOKEN_ENV})"
    return Refused(code, message)


async def submit_file(
    base_url: str, path: str, title: str | None, *, token: str | None = None
) -> str:
    """Upload the file and queue its analysis; return the job id.

    Without a ``title``, the text's own title line or the file name is sent (see
    :func:`title_for`). ``token`` (an API key or a JWT) is sent as a bearer token when given.
    """
    data = read_input(path)
    base = base_url.rstrip("/")
    async with _session(token) as session:
        novel = await _call(
            session,
            "POST",
            f"{base}/v1/novels",
            params={"title": title or _title_of_upload(path, data)},
            data=data,
            headers={"Content-Type": "text/plain"},
        )
        try:
            job = await _call(session, "POST", f"{base}/v1/novels/{_seg(novel['novelId'])}/analyze")
        except Refused as refused:
            # A limit (429) or an outage refused the analysis, not the upload: say what is
            # stored, so nobody wonders whether the text must be sent again.
            stored = f"the text is stored as novel {novel['novelId']}"
            raise Refused(refused.code, f"{refused.message} ({stored})") from None
    return str(job["jobId"])


async def job_status(base_url: str, job_id: str, *, token: str | None = None) -> str:
    """The job's status document, pretty-printed; ``token`` as for :func:`submit_file`."""
    async with _session(token) as session:
        job = await _call(session, "GET", f"{base_url.rstrip('/')}/v1/jobs/{_seg(job_id)}")
    return json.dumps(job, ensure_ascii=False, indent=2)


STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
"""A stream has no end time; the server's ping every 15 s keeps a read from idling 60 s."""
RECONNECTS = 5
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})

JobCallback = Callable[[dict[str, Any]], None]


async def follow_job(
    base_url: str, job_id: str, on_update: JobCallback, *, token: str | None = None
) -> dict[str, Any]:
    """Follow ``GET /v1/jobs/{id}/events`` until the job ends; its final view.

    ``on_update`` gets every job view the stream carries. A dropped stream is reopened with
    ``Last-Event-ID`` (up to :data:`RECONNECTS` times in a row, a second apart, then 2, 4…),
    so nothing is missed and nothing is shown twice.
    """
    url = f"{base_url.rstrip('/')}/v1/jobs/{_seg(job_id)}/events"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    state = _StreamState()
    async with aiohttp.ClientSession(timeout=STREAM_TIMEOUT, headers=headers) as session:
        for attempt in range(RECONNECTS + 1):
            try:
                final = await _read_stream(session, url, state, on_update)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
                final = None
            except aiohttp.ClientError as exc:
                raise CliError(f"cannot reach {url}: {exc}") from None
            if final is not None:
                return final
            if attempt < RECONNECTS:
                await asyncio.sleep(2.0**attempt)
    raise CliError(f"the event stream of job {job_id} kept dropping; try status again")


class _StreamState:
    """What a reconnect needs: the last event id, and the last view seen."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.latest: dict[str, Any] | None = None


async def _read_stream(
    session: aiohttp.ClientSession, url: str, state: _StreamState, on_update: JobCallback
) -> dict[str, Any] | None:
    """One connection: the final view, or ``None`` if the stream ended before it."""
    headers = {"Last-Event-ID": state.last_id} if state.last_id else {}
    async with session.get(url, headers=headers) as response:
        if response.status == 204:
            return state.latest  # the server says the final event was already had
        if response.status >= 400:
            raise _refusal(response.status, response.reason, await response.read())
        async for event, event_id, data in _events(response.content):
            view: dict[str, Any] = json.loads(data)
            state.last_id, state.latest = event_id or state.last_id, view
            on_update(view)
            if event in FINAL_EVENTS:
                return view
    return None


async def _events(stream: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str | None, str]]:
    """``(event, id, data)`` per Server-Sent Event, as the HTML standard parses them;
    comments (the server's pings) and events without data are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    async for raw in stream:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, event_id, "\n".join(data)
            event, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value


async def fetch_storyboard(base_url: str, some_id: str, *, token: str | None = None) -> bytes:
    """The storyboard a job made, or a novel's latest one: ``some_id`` is tried as a job
    id first, then as a novel id. A storyboard still being made is :class:`Refused` with
    ``storyboard_pending``, naming the job and how far it is."""
    base = base_url.rstrip("/")
    async with _session(token) as session:
        as_job = await _storyboard(session, f"{base}/v1/jobs/{_seg(some_id)}/storyboard")
        if isinstance(as_job, bytes):
            return as_job
        if as_job.code == PENDING:
            raise await _pending(session, base, some_id)
        if as_job.code != NOT_FOUND:
            raise as_job
        as_novel = await _storyboard(session, f"{base}/v1/novels/{_seg(some_id)}/storyboard")
        if isinstance(as_novel, bytes):
            return as_novel
        if as_novel.code == PENDING:
            novel = await _call(session, "GET", f"{base}/v1/novels/{_seg(some_id)}")
            raise await _pending(session, base, (novel.get("latestJob") or {}).get("jobId"))
        if as_novel.code != NOT_FOUND:
            raise as_novel
    message = f"{some_id}: as a job, {as_job.message}; as a novel, {as_novel.message}"
    raise Refused(NOT_FOUND, message)


async def _storyboard(session: aiohttp.ClientSession, url: str) -> bytes | Refused:
    try:
        return await _fetch(session, "GET", url)
    except Refused as refused:
        return refused


async def _pending(session: aiohttp.ClientSession, base: str, job_id: str | None) -> Refused:
    if job_id is None:
        return Refused(PENDING, "not ready yet")
    job = await _call(session, "GET", f"{base}/v1/jobs/{_seg(job_id)}")
    progress = job.get("progress") or {}
    where = f"{progress.get('percentage', 0)}%, {progress.get('stage', '')}".rstrip(", ")
    message = f"not ready yet; job {job_id} is {job.get('status')} ({where})"
    return Refused(PENDING, message)


async def list_items(
    base_url: str,
    kind: str,
    params: dict[str, str],
    *,
    every_page: bool = False,
    token: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Items of ``GET /v1/{kind}`` (``novels`` or ``jobs``), newest first, and the cursor
    of the next page (``None`` at the end). With ``every_page``, the pages are followed to
    the end."""
    url = f"{base_url.rstrip('/')}/v1/{kind}"
    items: list[dict[str, Any]] = []
    query = dict(params)
    seen: set[str] = set()
    async with _session(token) as session:
        while True:
            page = await _call(session, "GET", url, params=query)
            items.extend(page.get("items") or [])
            cursor = page.get("nextCursor")
            if not (every_page and cursor):
                return items, cursor
            if cursor in seen:
                raise CliError(f"{url} answered with a cursor it had given before")
            seen.add(cursor)
            query["cursor"] = cursor


async def delete_novel(base_url: str, novel_id: str, *, token: str | None = None) -> None:
    """Delete the novel with its jobs, storyboards and text (``DELETE`` answers 204)."""
    async with _session(token) as session:
        try:
            await _call(session, "DELETE", f"{base_url.rstrip('/')}/v1/novels/{_seg(novel_id)}")
        except Refused as refused:
            if refused.code == NOT_FOUND:
                raise Refused(NOT_FOUND, f"{refused.message}: {novel_id}") from None
            raise


NOVEL_COLUMNS = ("NOVEL_ID", "TITLE", "CHARS", "CREATED", "LATEST_JOB", "STATUS")
JOB_COLUMNS = ("JOB_ID", "NOVEL_ID", "STATUS", "PROGRESS", "ATTEMPTS", "CREATED", "ERROR")


def novel_row(item: dict[str, Any]) -> list[str]:
    """A novel list item as a table row."""
    keys = ("novelId", "title", "chars", "createdAt", "latestJobId", "latestJobStatus")
    return [_cell(item.get(key)) for key in keys]


def job_row(item: dict[str, Any]) -> list[str]:
    """A job list item (the job view) as a table row."""
    progress = item.get("progress") or {}
    error = item.get("error") or {}
    return [
        _cell(item.get("jobId")),
        _cell(item.get("novelId")),
        _cell(item.get("status")),
        f"{progress.get('percentage', 0)}% {progress.get('stage', '')}".strip(),
        _cell(item.get("attempts")),
        _cell(item.get("createdAt")),
        _cell(error.get("code")),
    ]


def _cell(value: object) -> str:
    # One line per row, whatever a title holds.
    return "-" if value is None or value == "" else " ".join(str(value).split())


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, counting a CJK character as two columns."""
    widths = [max(map(cell_len, column)) for column in zip(columns, *rows, strict=True)]
    lines = [
        "  ".join(
            cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths, strict=True)
        )
        for row in [columns, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def check_target(target: str, *, force: bool) -> None:
    """Refuse an output file that exists unless ``force``; ``-`` is stdout."""
    if target != STDOUT and not force and Path(target).exists():
        raise CliError(f"{target} already exists; pass --force to overwrite it")


def write_output(target: str, data: bytes, *, force: bool) -> None:
    """Write ``data`` to the file ``target``, or to stdout for ``-``.

    An existing file is replaced only with ``force``, even one that appeared since
    :func:`check_target` looked.
    """
    if target == STDOUT:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        with Path(target).open("wb" if force else "xb") as file:
            file.write(data)
    except FileExistsError:
        raise CliError(f"{target} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
