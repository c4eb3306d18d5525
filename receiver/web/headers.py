"""The security headers on every answer of the page and the API, refusals included."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    # Only our own stylesheet: no inline script or style, nothing fetched from outside, so
    # an escaped-but-missed label could still run nothing.
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    # The Referer goes to our own pages only (it is the same-origin check's fallback) and
    # never carries an alert's URL to a Prometheus or Slack link.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Alert labels and dead letters behind a password: no shared cache keeps them.
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS set on every response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
