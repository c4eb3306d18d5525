"""Who may post webhooks: the ways Alertmanager and Grafana authenticate, each checked in
constant time against a key of `alert-secrets`.

- `Authorization: Bearer <webhook-token>`: Alertmanager's `http_config.authorization`, and
  Grafana's "Authorization header" (scheme Bearer, the default).
- `Authorization: Basic <user:webhook-password>`: Grafana's HTTP Basic authentication
  (and Alertmanager's `basic_auth`). Any user name: the password is the secret.
- Grafana's HMAC signature (Grafana 12 and later), with the secret `grafana-hmac-secret`:
  the lowercase hex HMAC-SHA256 of the raw body, or of `timestamp + ":" + body` when a
  timestamp header is configured. Once that secret exists, a Grafana webhook without a
  valid signature is refused, whatever its Authorization header.

The header names are the rules file's `grafana.hmac` (`receiver.config.schema`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

from receiver.config.schema import GRAFANA_CODE_SIGNATURE_HEADER, GrafanaHmacSpec
from receiver.config.secrets import Secret, SecretStore

WEBHOOK_TOKEN = "webhook-token"  # noqa: S105 (a key name, not a secret)
WEBHOOK_PASSWORD = "webhook-password"  # noqa: S105 (a key name, not a secret)
GRAFANA_HMAC_SECRET = "grafana-hmac-secret"  # noqa: S105 (a key name, not a secret)
# How long a token file read stays trusted before a matching token is looked up again.
TOKEN_RECHECK_SECONDS = 1.0
# A signed timestamp older (or further ahead) than this is a replay: 5 minutes, the window
# Slack's request signing uses too.
SIGNATURE_MAX_AGE_SECONDS = 300.0


def _matches(secrets: SecretStore, key: str, given: bytes, recheck: float) -> bool:
    """Whether `given` is the secret `key`, in constant time.

    The file is looked at once per `recheck` at most: a stat per webhook costs more than the
    rest of authentication. A value that does not match is checked against the file again,
    so a rotated-in secret works at once (the old one keeps working for up to `recheck`).
    """
    secret = secrets.get(key, max_age=recheck)
    if secret is not None and hmac.compare_digest(given, secret.reveal().encode()):
        return True
    secret = secrets.get(key)
    return secret is not None and hmac.compare_digest(given, secret.reveal().encode())


class BearerToken:
    """Checks `Authorization: Bearer <token>` against the secret `key`, in constant time."""

    def __init__(
        self,
        secrets: SecretStore,
        key: str = WEBHOOK_TOKEN,
        recheck: float = TOKEN_RECHECK_SECONDS,
    ) -> None:
        self._secrets = secrets
        self._key = key
        self._recheck = recheck

    def accepts(self, header: str) -> bool:
        """Whether the Authorization header carries the token (the scheme in any case)."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return _matches(self._secrets, self._key, presented.strip().encode(), self._recheck)


class BasicPassword:
    """Checks `Authorization: Basic base64(user:password)` against the secret `key`.

    Any user name is accepted: Grafana and Alertmanager both make one up freely, and the
    password alone is the secret.
    """

    def __init__(
        self,
        secrets: SecretStore,
        key: str = WEBHOOK_PASSWORD,
        recheck: float = TOKEN_RECHECK_SECONDS,
    ) -> None:
        self._secrets = secrets
        self._key = key
        self._recheck = recheck

    def accepts(self, header: str) -> bool:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, colon, password = decoded.partition(b":")
        if not colon or not password:
            return False
        return _matches(self._secrets, self._key, password, self._recheck)


class GrafanaSignature:
    """Grafana's HMAC-SHA256 webhook signature, checked against `grafana-hmac-secret`.

    `settings` is read at each check, so a rules reload that renames a header applies to
    the next webhook.
    """

    def __init__(
        self,
        secrets: SecretStore,
        settings: Callable[[], GrafanaHmacSpec] = GrafanaHmacSpec,
        *,
        key: str = GRAFANA_HMAC_SECRET,
        clock: Callable[[], float] = time.time,
        max_age: float = SIGNATURE_MAX_AGE_SECONDS,
        recheck: float = TOKEN_RECHECK_SECONDS,
    ) -> None:
        self._secrets = secrets
        self._settings = settings
        self._key = key
        self._clock = clock
        self._max_age = max_age
        self._recheck = recheck
        self._names_of: GrafanaHmacSpec | None = None
        self._names: tuple[tuple[str, ...], str | None] = ((), None)

    def secret(self) -> Secret | None:
        """The signing secret, or None: signatures are not required. Absent on the last
        look, the file is looked at again, so a secret just created applies at once."""
        secret = self._secrets.get(self._key, max_age=self._recheck)
        return secret if secret is not None else self._secrets.get(self._key)

    def header_names(self) -> tuple[tuple[str, ...], str | None]:
        """The headers to read, lowercase: where the signature may be, and the timestamp's."""
        spec = self._settings()
        # Asked for every webhook; the answer changes only with the rules.
        if spec is self._names_of:
            return self._names
        self._names_of, self._names = spec, self._header_names(spec)
        return self._names

    @staticmethod
    def _header_names(spec: GrafanaHmacSpec) -> tuple[tuple[str, ...], str | None]:
        names = [spec.signature_header.lower()]
        if "signature_header" not in spec.model_fields_set:
            # grafana/alerting signs into X-Grafana-Alert-Signature when the contact point
            # leaves the header empty (http/hmac.go), although Grafana's docs name
            # X-Grafana-Alerting-Signature as the default: take either.
            names.append(GRAFANA_CODE_SIGNATURE_HEADER.lower())
        stamp = spec.timestamp_header.lower() if spec.timestamp_header else None
        return tuple(names), stamp

    def problem(
        self, secret: Secret, body: bytes, signature: str | None, timestamp: str | None
    ) -> str | None:
        """What is wrong with the signature of `body` (None: it is valid). The answer names
        the problem, never the secret or the expected digest."""
        if signature is None:
            return "missing signature header"
        _, stamp_header = self.header_names()
        message = body
        if stamp_header is not None:
            if timestamp is None:
                return "missing signature timestamp header"
            try:
                signed_at = int(timestamp.strip())
            except ValueError:
                return "signature timestamp is not a Unix time"
            if abs(self._clock() - signed_at) > self._max_age:
                return "signature timestamp outside the 5-minute window"
            message = timestamp.strip().encode() + b":" + body
        expected = hmac.new(secret.reveal().encode(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
            return "signature does not match the body"
        return None


class WebhookAuth:
    """Every way a webhook may authenticate: the Authorization header (a bearer token or
    Basic), and Grafana's HMAC signature when `grafana-hmac-secret` exists."""

    def __init__(
        self,
        bearer: BearerToken,
        basic: BasicPassword | None = None,
        signature: GrafanaSignature | None = None,
    ) -> None:
        self.bearer = bearer
        self.basic = basic
        self.signature = signature

    @classmethod
    def from_secrets(
        cls,
        secrets: SecretStore,
        hmac_settings: Callable[[], GrafanaHmacSpec] = GrafanaHmacSpec,
        clock: Callable[[], float] = time.time,
    ) -> WebhookAuth:
        """All three, on the keys of `alert-secrets` documented in the README."""
        return cls(
            BearerToken(secrets),
            BasicPassword(secrets),
            GrafanaSignature(secrets, hmac_settings, clock=clock),
        )

    def authorizes(self, header: str) -> bool:
        """Whether the Authorization header carries the token or the Basic password."""
        if self.bearer.accepts(header):
            return True
        return self.basic is not None and self.basic.accepts(header)
