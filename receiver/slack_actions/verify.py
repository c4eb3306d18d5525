"""Is a request to `/slack/actions` a fresh one signed by Slack?

slack_sdk's SignatureVerifier checks the HMAC-SHA256 over `v0:{timestamp}:{body}` with the
Slack app's signing secret, in constant time. A timestamp more than five minutes away is
refused, and so is a second request with a signature already seen (a replay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from slack_sdk.signature import Clock, SignatureVerifier

from receiver.config.secrets import SecretStore

log = logging.getLogger("alert_router.slack_actions")

SIGNING_SECRET = "slack-signing-secret"  # noqa: S105 (a key name, not a secret)
# Slack: "requests with a timestamp more than five minutes from local time" are replays.
MAX_CLOCK_SKEW = 5 * 60.0
# Signatures remembered against replays; past this many, new ones are not (a flood of
# validly signed requests is Slack's to prevent, and memory stays bounded).
_SEEN_LIMIT = 10_000


class RequestVerifier:
    """Checks signature and timestamp, and remembers signatures until they expire."""

    def __init__(self, secrets: SecretStore, clock: Callable[[], float]) -> None:
        self._secrets = secrets
        self._clock = clock
        self._seen: dict[str, float] = {}

    def problem(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request is not a fresh one signed by Slack, or None when it is."""
        secret = self._secrets.get(SIGNING_SECRET)
        if secret is None:
            # The key is a constant, named in the message for whoever reads plain text.
            log.error(
                f"slack action refused: secret {SIGNING_SECRET!r} is missing,"
                " so no request can be verified",
                extra={"secret": SIGNING_SECRET},
            )
            return "interactivity is not configured (no signing secret)"
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
        try:
            sent = int(timestamp)
        except ValueError:
            return "X-Slack-Request-Timestamp is not a Unix time"
        now = self._clock()
        if abs(now - sent) > MAX_CLOCK_SKEW:
            return "request timestamp more than five minutes away (replay?)"
        verifier = SignatureVerifier(secret.reveal(), clock=_Clock(self._clock))
        try:
            valid = verifier.is_valid(body, timestamp, signature)
        except (TypeError, ValueError):
            # Non-ASCII signature (compare_digest) or a body that is not UTF-8.
            valid = False
        if not valid:
            return "bad signature"
        self._seen = {s: until for s, until in self._seen.items() if until > now}
        if signature in self._seen:
            return "request already received (replay)"
        if len(self._seen) < _SEEN_LIMIT:
            self._seen[signature] = sent + MAX_CLOCK_SKEW
        return None


class _Clock(Clock):
    """The service's clock for slack_sdk's timestamp check."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()
