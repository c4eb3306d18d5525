"""What both Slack notifiers share on the wire: one pooled session, secrets, error mapping.

Each notifier keeps one `aiohttp.ClientSession` (a keep-alive connection pool) for its
destination, made inside the running loop on first use and closed by `aclose()`.
slack_sdk's async clients send through it. The proxy comes from the environment, read by
aiohttp's own rules (HTTP(S)_PROXY, NO_PROXY, netrc credentials for the proxy) once per
client (`env_proxy`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from yarl import URL

from receiver.config.secrets import MissingSecretError, Secret, SecretSource, redact
from receiver.models import Notification
from receiver.notify.base import NotifyError
from receiver.notify.http import retry_after_seconds
from receiver.notify.slack.text import clip_plain

# Slack's error text in our messages: enough to name the problem (Slack: `error` codes are
# short words; an HTML error page from a proxy is cut here).
_ANSWER_TEXT = 200

# Web API `error` codes that mean "try again" (chat.postMessage / chat.update docs).
_RECOVERABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)

# slack_sdk's own retries are off: the pipeline owns retry and backoff, and a retry hidden
# inside a send would hold its rate-limit slot and double the wait Retry-After asked for.
NO_SDK_RETRIES: list[AsyncRetryHandler] = []


class Session:
    """A notifier's pooled connection: one aiohttp session, made in the running loop."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Not trust_env: it looks up the proxy, and reads the netrc file, in a thread
                # on every request. The clients take the proxy from env_proxy instead.
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, or None: aiohttp's trust_env lookup
    (HTTP(S)_PROXY as curl reads them, NO_PROXY, the proxy's credentials from netrc), made
    once when a client is built rather than on every request. slack_sdk's own lookup reads
    HTTPS_PROXY alone and so would ignore NO_PROXY."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
        return None
    if auth is not None:  # slack_sdk passes a URL only: the credentials ride in it
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return str(proxy)


class ApiError(NotifyError):
    """A Web API answer `{"ok": false, "error": code}` or an HTTP error status."""

    def __init__(
        self,
        message: str,
        code: str,
        *,
        recoverable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, recoverable=recoverable, retry_after=retry_after, status=status)
        self.code = code


def check_batch(batch: Sequence[Notification], max_batch: int) -> None:
    if len(batch) > max_batch:
        raise ValueError(f"batch of {len(batch)} exceeds max_batch {max_batch}")


def resolve(source: SecretSource, where: str) -> Secret:
    try:
        return source()
    except MissingSecretError as exc:
        # A rotation in progress can briefly remove the file: try again later.
        raise NotifyError(f"{where}: {exc}", recoverable=True) from None


def url_secrets(secret: Secret) -> tuple[Secret, ...]:
    """The URL and its path: a webhook's path alone is enough to post to it."""
    path = urllib.parse.urlsplit(secret.reveal()).path
    return (secret, Secret(path)) if len(path) > 1 else (secret,)


def silent_logger(name: str) -> logging.Logger:
    """A logger for slack_sdk that records nothing: it logs request URLs (and with them a
    webhook's secret path) at debug level."""
    quiet = logging.Logger(name, level=logging.CRITICAL + 1)
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    return quiet


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Slack's Retry-After header, in seconds (header names are case-insensitive)."""
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            return retry_after_seconds(str(raw))
    return None


def answer_text(text: str, secrets: Sequence[Secret]) -> str:
    """Slack's (or a proxy's) answer as our error messages quote it: redacted and short."""
    return clip_plain(redact(text.strip(), *secrets), _ANSWER_TEXT)


def api_error(where: str, exc: SlackApiError, secrets: Sequence[Secret]) -> ApiError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    code = redact(code, *secrets) if isinstance(code, str) and code else f"http_{status}"
    message = f"{where}: HTTP {status} {clip_plain(code, _ANSWER_TEXT)}"
    headers = getattr(response, "headers", None)
    answered = status or None
    if status == 429 or code == "ratelimited":
        # Slack Web API: HTTP 429 `ratelimited` with Retry-After in seconds.
        after = retry_after(headers if isinstance(headers, Mapping) else None)
        return ApiError(message, code, recoverable=True, retry_after=after, status=answered)
    if status >= 500 or code in _RECOVERABLE_API_ERRORS:
        return ApiError(message, code, recoverable=True, status=answered)
    # channel_not_found, not_in_channel, invalid_auth, is_archived, msg_too_long, ...
    return ApiError(message, code, recoverable=False, status=answered)


def transport_error(where: str, exc: Exception, secrets: Sequence[Secret]) -> NotifyError:
    """A NotifyError for a request that got no HTTP answer, in words of our own: aiohttp's
    and yarl's own messages quote the URL, which is the secret of a webhook."""
    if isinstance(exc, SlackRequestError | aiohttp.InvalidURL | ValueError):
        return NotifyError(f"{where}: the URL is not a valid http(s) URL", recoverable=False)
    if isinstance(exc, asyncio.TimeoutError):
        return NotifyError(f"{where}: timed out", recoverable=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        detail = f"connection closed without a response ({type(exc).__name__})"
        return NotifyError(f"{where}: {detail}", recoverable=True)
    if isinstance(exc, OSError):
        # ClientConnectorError and friends: errno says "Connection refused" in our words.
        errno = exc.errno
        detail = os.strerror(errno) if errno is not None and errno > 0 else type(exc).__name__
        return NotifyError(f"{where}: {redact(detail, *secrets)}", recoverable=True)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return NotifyError(f"{where}: {type(exc).__name__}", recoverable=True)
    return NotifyError(f"{where}: {type(exc).__name__}", recoverable=False)
