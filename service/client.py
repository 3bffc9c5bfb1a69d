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
TOKEN_ENV = "STORYBOARD_TOKEN"


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


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    try:
        async with session.request(method, url, **kw) as response:
            if response.status == 204:
                return None
            raw = await response.read()
            if response.status >= 400:
                raise _refusal(response.status, response.reason, raw)
            return json.loads(raw)
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
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
        job = await _call(session, "POST", f"{base}/v1/novels/{novel['novelId']}/analyze")
    return str(job["jobId"])


async def job_status(base_url: str, job_id: str, *, token: str | None = None) -> str:
    """The job's status document, pretty-printed; ``token`` as for :func:`submit_file`."""
    async with _session(token) as session:
        job = await _call(session, "GET", f"{base_url.rstrip('/')}/v1/jobs/{job_id}")
    return json.dumps(job, ensure_ascii=False, indent=2)
