"""Redis failures as StoreError, with no password in the message.

The URL shown in errors is `receiver.config.secrets.redact_url`'s, but an error's own text
(from redis-py or the OS) can still hold the raw password, so each message is scrubbed of
every form of it the URL carries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.exceptions import RedisError

from receiver.store.base import StoreError


def url_secrets(url: str) -> list[str]:
    """The password texts `url` carries (userinfo and `?password=`, raw and decoded),
    longest first, so that a longer form is scrubbed before a shorter one inside it."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        password = userinfo.partition(":")[2]
        # urlsplit keeps the %-escapes; redis-py connects with the unquoted password.
        found += [password, unquote(password)]
        found += [v for k, v in parse_qsl(parts.query) if k == "password"]
        found += [
            raw.partition("=")[2]
            for raw in parts.query.split("&")
            if raw.partition("=")[0] == "password"
        ]
    return sorted({s for s in found if s}, key=lambda s: (-len(s), s))


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "****")
    return text


@contextlib.contextmanager
def store_errors(shown_url: str, secrets: Sequence[str]) -> Iterator[None]:
    """Redis errors (unreachable, timeouts, MISCONF, READONLY...) as StoreError naming
    `shown_url`; the cause is dropped because its text may hold the password."""
    try:
        yield
    except (RedisError, OSError) as exc:
        detail = scrub(str(exc), secrets) or type(exc).__name__
        raise StoreError(
            f"Redis store {shown_url} failed: {type(exc).__name__}: {detail}"
        ) from None
