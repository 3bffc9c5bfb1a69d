"""Every piece of state on the aiohttp application, declared in one place."""

from __future__ import annotations

from aiohttp import web

from service.auth import Authenticator
from service.runtime import Runtime
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
RUNTIME = web.AppKey("runtime", Runtime)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
USER_ID = web.RequestKey("user_id", str)
"""The authenticated caller of a request."""
