"""Secrets from the mounted `alert-secrets` Secret, with environment fallback.

Files are re-read when they change, so a rotated Secret is used from the next send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SECRETS_DIR = Path("/etc/alert-secrets")


class Secret:
    """A secret value that prints as `****` wherever it ends up by mistake."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class MissingSecretError(LookupError):
    """A secret that the configuration needs is neither a file nor an environment variable."""

    def __init__(self, key: str, directory: Path) -> None:
        self.key = key
        super().__init__(
            f"secret {key!r} is missing: expected file {directory / key} "
            f"or environment variable {env_name(key)}"
        )


def env_name(key: str) -> str:
    """`slack-webhook-url` -> `SLACK_WEBHOOK_URL`."""
    return key.upper().replace("-", "_")


@dataclass
class _Cached:
    mtime_ns: int  # -1: the value came from the environment (no file)
    size: int
    secret: Secret | None
    checked: float  # time.monotonic() of the last look at the file


class SecretStore:
    """Reads secrets from a directory of files (a mounted Secret) or the environment."""

    def __init__(self, directory: Path, environ: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self._environ = os.environ if environ is None else environ
        self._cache: dict[str, _Cached] = {}

    def get(self, key: str, *, max_age: float = 0.0) -> Secret | None:
        """The secret `key`, or None. The file is looked at again on every call, unless it
        was looked at less than `max_age` seconds ago (ingest: a stat per webhook costs
        more than the rest of authentication)."""
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached.checked < max_age:
            return cached.secret
        path = self.directory / key
        try:
            stat = path.stat()
        except OSError:
            value = self._environ.get(env_name(key))
            secret = Secret(value) if value else None
            self._cache[key] = _Cached(-1, -1, secret, now)
            return secret
        if cached and cached.mtime_ns == stat.st_mtime_ns and cached.size == stat.st_size:
            cached.checked = now
            return cached.secret
        self._cache.pop(key, None)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not text:
            return None
        secret = Secret(text)
        self._cache[key] = _Cached(stat.st_mtime_ns, stat.st_size, secret, now)
        return secret

    def require(self, key: str) -> Secret:
        secret = self.get(key)
        if secret is None:
            raise MissingSecretError(key, self.directory)
        return secret

    def source(self, key: str) -> SecretSource:
        return SecretSource(self, key)


class SecretSource:
    """A named secret looked up at each use, so rotation needs no restart."""

    def __init__(self, store: SecretStore, key: str) -> None:
        self._store = store
        self.key = key

    def __call__(self) -> Secret:
        return self._store.require(self.key)

    def __repr__(self) -> str:
        return f"SecretSource({self.key!r})"


def redact(text: str, *secrets: Secret | None) -> str:
    """Replace every occurrence of the given secrets in `text` with `****`."""
    for secret in secrets:
        if secret is not None and secret.reveal():
            text = text.replace(secret.reveal(), "****")
    return text


def redact_url(url: str) -> str:
    """`url` as logs and errors may show it: the password replaced by `****`, the query and
    the fragment dropped (either can carry a token), an IPv6 host kept in brackets.

    A URL whose path is itself the secret (a Slack incoming webhook) must still be hidden
    with `redact`: this only knows the parts of a URL that are secret by their place.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:****@{netloc}" if parts.password is not None else f"{user}@{netloc}"
    if parts.scheme and url[len(parts.scheme) :].startswith("://"):
        # Built by hand: urlunsplit drops the `//` of an empty host (`unix:///run/x.sock`).
        return f"{parts.scheme}://{netloc}{parts.path}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
