"""A small HTTP client for the ``submit`` and ``status`` commands."""

from __future__ import annotations

import codecs
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from service.errors import CliError
from service.text import EmptyTextError, TextDecodeError, guess_title, load_novel_bytes

TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)


def read_input(path: str) -> bytes:
    """The bytes of a file, or of stdin for ``-``; a clear CliError when unreadable."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        return Path(path).read_bytes()
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


def _session(token: str | None) -> aiohttp.ClientSession:
    # The token travels only in this header; it is never part of a message or a log line.
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return aiohttp.ClientSession(timeout=TIMEOUT, headers=headers)


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    try:
        async with session.request(method, url, **kw) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise CliError(_error_line(response.status, body))
            return body
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    except json.JSONDecodeError:
        raise CliError(f"{url} did not answer with JSON") from None


def _error_line(status: int, body: Any) -> str:
    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    line = f"{status} {error.get('code')}: {error.get('message')}"
    if status == 401:
        line += " (pass --token or set STORYBOARD_TOKEN)"
    return line


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
        job = await _call(session, "POST", f"{base}/v1/novels/{novel['novelId']}/analyze")
    return str(job["jobId"])


async def job_status(base_url: str, job_id: str, *, token: str | None = None) -> str:
    """The job's status document, pretty-printed; ``token`` as for :func:`submit_file`."""
    async with _session(token) as session:
        job = await _call(session, "GET", f"{base_url.rstrip('/')}/v1/jobs/{job_id}")
    return json.dumps(job, ensure_ascii=False, indent=2)
