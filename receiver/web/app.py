"""The page and the API as routes of the server's application:

    routes = [..., *web_routes(WebDeps(store, lambda: holder.rules, holder, secrets,
                                       settings, recorder.record))]

Both mounts sit behind the same guards: the security headers outermost (a refusal
carries them too), then the `ui-password` check.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from receiver.web.api import Api
from receiver.web.auth import BasicAuth
from receiver.web.deps import WebDeps
from receiver.web.headers import SecurityHeaders
from receiver.web.pages import UI, Pages

API = "/api/v1"

__all__ = ["API", "UI", "WebDeps", "web_routes"]


def web_routes(deps: WebDeps) -> list[BaseRoute]:
    """`/ui` (and `/ui/...`) and `/api/v1/...`."""
    guards = [
        Middleware(SecurityHeaders),
        Middleware(BasicAuth, secrets=deps.secrets),
        # Inside the guards, so that a 404 or 405 of a path under the mounts is answered
        # here, with the headers, not by the application's handler outside them.
        Middleware(ExceptionMiddleware),
    ]

    async def to_slash(request: Request) -> Response:
        return RedirectResponse(f"{UI}/", status_code=308)

    return [
        # `/ui` itself, guarded like the rest: without the password it must be a 404 too.
        Route(UI, to_slash, middleware=guards),
        Mount(UI, routes=Pages(deps).routes(), middleware=guards),
        Mount(API, routes=Api(deps).routes(), middleware=guards),
    ]
