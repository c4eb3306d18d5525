"""Writes (a dead letter's retry) need two proofs that our own page sent them: the CSRF
token, and a same-origin request.

The token is an HMAC of the user name keyed by the `ui-password`: nothing to store, the
same on every replica, and a rotated password voids the old tokens. The page puts it in a
hidden form field; an API client sends it as the `X-CSRF-Token` header (the dead-letter
list carries it). The origin check compares the `Origin` header, or the `Referer` when a
browser sends no Origin, with the `Host` the request was sent to.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from receiver.web.auth import password_of, user_of

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

_PURPOSE = b"alert-router ui csrf\x00"


def csrf_token(request: Request) -> str:
    """The token of the request's user under the password in force."""
    key = password_of(request).reveal().encode()
    return hmac.new(key, _PURPOSE + user_of(request).encode(), hashlib.sha256).hexdigest()


def write_refusal(request: Request, token: str | None) -> str | None:
    """Why this write must change nothing (a line for the 403 and the log), or None."""
    origin = _origin_problem(request)
    if origin is not None:
        return origin
    if not token:
        return f"the CSRF token is missing (form field {CSRF_FIELD} or header {CSRF_HEADER})"
    if not hmac.compare_digest(token.encode(), csrf_token(request).encode()):
        return "the CSRF token is wrong (reload the page: the password may have changed)"
    return None


def _origin_problem(request: Request) -> str | None:
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        if _netloc(origin) != host or not host:
            return f"the request comes from another origin ({origin[:200]})"
        return None
    referer = request.headers.get("referer")
    if referer is None:
        return "a write needs an Origin or Referer header naming this site"
    if _netloc(referer) != host or not host:
        return "the request comes from another site (Referer)"
    return None


def _netloc(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return parts.netloc.lower() if parts.scheme in ("http", "https") else ""
