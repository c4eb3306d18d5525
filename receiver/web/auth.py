"""Access to the page and the API: HTTP Basic with the `alert-secrets` key `ui-password`.

The key is read on every request, so a rotated password applies at once and removing it
turns the page off. Without the key every path answers 404, as a route that does not exist
(the page is off, and says nothing of itself); wrong or missing credentials answer 401 with
a Basic challenge. Any user name is accepted: it is who the logs name for a write.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.config.secrets import Secret, SecretStore

UI_PASSWORD = "ui-password"  # noqa: S105 (a key name, not a secret)
REALM = "alert-router"

# Where the checked credential travels to the endpoints (the ASGI scope of the request).
_USER = "alert_router.user"
_PASSWORD = "alert_router.password"  # noqa: S105 (a scope key, not a secret)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    return user, password


class BasicAuth:
    """ASGI middleware in front of the page and the API (see the module's docstring)."""

    def __init__(self, app: ASGIApp, secrets: SecretStore) -> None:
        self.app = app
        self._secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secret = self._secrets.get(UI_PASSWORD)
        if secret is None:
            await PlainTextResponse("Not Found", 404)(scope, receive, send)
            return
        header = Request(scope).headers.get("authorization", "")
        given = basic_credentials(header)
        if given is None or not hmac.compare_digest(given[1].encode(), secret.reveal().encode()):
            challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
            await PlainTextResponse("Unauthorized", 401, challenge)(scope, receive, send)
            return
        scope[_USER] = given[0]
        scope[_PASSWORD] = secret
        await self.app(scope, receive, send)


def user_of(request: Request) -> str:
    """Who sent the request: the Basic user name (any name; "-" when empty)."""
    user: str = request.scope.get(_USER, "")
    return user or "-"


def password_of(request: Request) -> Secret:
    """The password the request was checked against (the CSRF token is derived from it)."""
    secret: Secret = request.scope[_PASSWORD]
    return secret
