"""The web page at ``/``: upload a novel, follow its job, read the storyboard as comic pages.

Plain HTML, CSS and ES modules packaged beside this module and served from memory; no build
step. The page only ever talks to ``/v1`` with ``fetch``. Every page response carries a
content-security policy without ``'unsafe-inline'`` and with Trusted Types required, so a
novel's text (untrusted input) can only ever reach the page as text: the browser refuses
inline scripts and styles, and any HTML-parsing sink, outright.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from service.http_errors import not_found

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (the ETag makes that cheap), so an upgrade shows at once.
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
STATIC_NAME = r"[A-Za-z0-9_-]+\.(?:js|css|svg)"
"""The names ``/static/{name}`` serves: flat, so no path can leave the directory."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the page, read once at start-up."""

    body: bytes
    content_type: str
    etag: str


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, CONTENT_TYPES[suffix], etag)


def load_assets() -> tuple[Asset, dict[str, Asset]]:
    """The page (``index.html``) and the static files by name, from the installed package."""
    package = resources.files(__name__)
    index = _asset("index.html", package.joinpath("index.html").read_bytes())
    static = {
        entry.name: _asset(entry.name, entry.read_bytes())
        for entry in package.joinpath("static").iterdir()
        if re.fullmatch(STATIC_NAME, entry.name)
    }
    return index, static


def _serve(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if asset.content_type.startswith("text/") else None
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset=charset, headers=headers
    )


def add_routes(app: web.Application) -> None:
    """Serve the page at ``/`` and its files at ``/static/{name}`` on ``app``."""
    index, static = load_assets()

    async def page(request: web.Request) -> web.Response:
        """The single page; the part after ``#`` picks what it shows."""
        return _serve(request, index)

    async def static_file(request: web.Request) -> web.Response:
        """A script, style sheet or icon of the page."""
        asset = static.get(request.match_info["name"])
        if asset is None:
            raise not_found("file")
        return _serve(request, asset)

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static_file)
