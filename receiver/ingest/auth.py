"""The bearer token Alertmanager sends with each webhook (`http_config.authorization`)."""

from __future__ import annotations

import hmac

from receiver.config.secrets import SecretStore

WEBHOOK_TOKEN = "webhook-token"  # noqa: S105 (a key name, not a secret)
# How long a token file read stays trusted before a matching token is looked up again.
TOKEN_RECHECK_SECONDS = 1.0


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
        given = presented.strip().encode()
        # The token file is looked at once per `recheck` at most: a stat per webhook costs
        # more than the rest of authentication. A token that does not match is checked
        # against the file again, so a rotated-in token works at once (the old one keeps
        # working for up to `recheck` seconds).
        token = self._secrets.get(self._key, max_age=self._recheck)
        if token is not None and hmac.compare_digest(given, token.reveal().encode()):
            return True
        token = self._secrets.get(self._key)
        return token is not None and hmac.compare_digest(given, token.reveal().encode())
