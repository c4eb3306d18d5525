"""`POST /alerts` (and `PUT`, which Grafana may send) as a raw ASGI app: auth,
Content-Type, body limit, parse, Grafana's signature, store, answer.

A 200 tells Alertmanager (or Grafana) it may forget the alerts, so it comes only after the
store has them durably. A store that cannot write answers 503: both retry a 5xx, not a 4xx.
A 4xx loses the webhook for good, so each one is counted by reason and source
(`alert_router_webhooks_refused_total`) and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from receiver.asgi import BodyTooLarge, ClientDisconnected, read_body
from receiver.history.capture import received
from receiver.history.recorder import HistoryRecorder
from receiver.ingest.auth import BearerToken, WebhookAuth
from receiver.ingest.parse import InvalidWebhook, parse_webhook
from receiver.metrics import (
    REJECT_REASONS,
    UNKNOWN_SOURCE,
    WEBHOOK_REFUSALS,
    WEBHOOK_SOURCES,
    Metrics,
)
from receiver.models import SOURCES
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.ingest")

# The methods the endpoint answers: Alertmanager POSTs; Grafana's contact point has
# `httpMethod` POST (its default) or PUT.
ALERTS_METHODS = ("POST", "PUT")
# Rejected alerts named in one log line: the answer lists them all, the log a sample.
_LOGGED_REJECTIONS = 10

_Headers = list[tuple[bytes, bytes]]
# Status, body, headers, and the source the answer is counted under.
_Answer = tuple[int, bytes, _Headers, str]
_JSON_HEADER = (b"content-type", b"application/json")
_WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="alert-router"')


def _body(status: int, body: dict[str, Any], source: str) -> _Answer:
    return status, orjson.dumps(body), [], source


def _error_body(
    status: int, message: str, source: str, details: list[Any] | None = None
) -> _Answer:
    return _body(status, {"error": message, "details": details or []}, source)


class AlertsEndpoint:
    """`POST` and `PUT /alerts`, the webhook Alertmanager and Grafana call.

    `auth` None: no authentication. `token` is the bearer token alone (no Basic, no HMAC),
    for a caller that has no `WebhookAuth` to give.
    """

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        max_body_bytes: int,
        dedup_window: float,
        auth: WebhookAuth | None = None,
        token: BearerToken | None = None,
        clock: Callable[[], float] = time.time,
        on_accepted: Callable[[], None] = lambda: None,
        history: HistoryRecorder | None = None,
    ) -> None:
        """`history`: where each stored webhook's "received" events go (made at the
        recorder's next flush, not while the webhook waits for its answer)."""
        self._store = store
        self._history = history
        self._metrics = metrics
        self._auth = auth if auth is not None or token is None else WebhookAuth(token)
        self._max_body_bytes = max_body_bytes
        self._dedup_window = dedup_window
        self._clock = clock
        self._on_accepted = on_accepted
        # Metric children looked up once: ingest is the hot path.
        self._accepted = {s: metrics.alerts_received.labels("accepted", s) for s in SOURCES}
        self._duplicates = {s: metrics.alerts_received.labels("duplicate", s) for s in SOURCES}
        self._rejected = {s: metrics.alerts_rejected.labels(REJECT_REASONS[0], s) for s in SOURCES}
        self._webhooks: dict[tuple[int, str], Counter] = {}
        self._refused = {
            (reason, source): metrics.webhooks_refused.labels(reason, source)
            for reason in WEBHOOK_REFUSALS
            for source in WEBHOOK_SOURCES
        }
        self._in_flight = 0
        # Read at scrape time: a gauge set per webhook takes a lock each time.
        self._last_webhook_at = 0.0
        metrics.last_webhook.set_function(lambda: self._last_webhook_at)

    @property
    def in_flight(self) -> int:
        """Webhooks being read, stored or answered right now (the pipeline yields to them)."""
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_flight += 1
        try:
            status, body, headers, source = await self._answer(scope, receive)
        except ClientDisconnected:
            return
        finally:
            self._in_flight -= 1
        counter = self._webhooks.get((status, source))
        if counter is None:
            counter = self._metrics.webhooks.labels(str(status), source)
            self._webhooks[(status, source)] = counter
        counter.inc()
        headers.append(_JSON_HEADER)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> _Answer:
        auth = self._auth
        signing = auth.signature if auth is not None else None
        wanted: tuple[str, ...] = ()
        stamp_name: str | None = None
        if signing is not None:
            wanted, stamp_name = signing.header_names()
        authorization = content_type = declared = agent = b""
        signature: str | None = None
        timestamp: str | None = None
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get.
            if name == b"authorization" and not authorization:
                authorization = value
            elif name == b"content-type" and not content_type:
                content_type = value
            elif name == b"content-length" and not declared:
                declared = value
            elif name == b"user-agent" and not agent:
                agent = value
            elif wanted:
                text = name.decode("latin-1")
                if text in wanted and signature is None:
                    signature = value.decode("latin-1")
                elif text == stamp_name and timestamp is None:
                    timestamp = value.decode("latin-1")
        authorized = auth is None or auth.authorizes(authorization.decode("latin-1"))
        # A valid signature authenticates too: Grafana may sign without an Authorization
        # header. Without either, nothing is read past the headers.
        if not authorized and signature is None:
            return self._unauthorized("missing or wrong bearer token", UNKNOWN_SOURCE)
        media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return self._refuse(
                "wrong_content_type",
                415,
                "Content-Type must be application/json",
                UNKNOWN_SOURCE,
                [media or "(none)"],
            )
        try:
            raw_body = await read_body(receive, self._max_body_bytes, declared.decode("latin-1"))
        except BodyTooLarge:
            return self._refuse(
                "too_large",
                413,
                f"body larger than {self._max_body_bytes} bytes",
                UNKNOWN_SOURCE,
                [
                    "raise ALERT_ROUTER_MAX_BODY_BYTES, or split the group with a finer "
                    "group_by in Alertmanager (max_alerts drops the alerts past it)"
                ],
            )
        signed = False
        # Looked up only for a signed webhook here, and for Grafana's after parsing:
        # Alertmanager's unsigned webhooks never pay for it.
        secret = signing.secret() if signing is not None and signature is not None else None
        if signing is not None and secret is not None and signature is not None:
            # Checked before parsing: a forged body costs a digest, not a parse.
            problem = signing.problem(secret, raw_body, signature, timestamp)
            if problem is not None:
                return self._unauthorized(problem, UNKNOWN_SOURCE)
            signed = True
        elif not authorized:
            # A signature with no secret to check it against proves nothing.
            return self._unauthorized("missing or wrong bearer token", UNKNOWN_SOURCE)
        try:
            webhook = parse_webhook(raw_body, agent.decode("latin-1"))
        except InvalidWebhook as exc:
            return self._refuse("invalid_body", 400, exc.message, UNKNOWN_SOURCE, exc.details)
        # The alerts now hold what they need of the body: let a large one go before storing.
        del raw_body
        source = webhook.source
        if (
            source == "grafana"
            and not signed
            and signing is not None
            and signing.secret() is not None
        ):
            # Once grafana-hmac-secret exists, Grafana's webhooks must be signed.
            return self._unauthorized("missing signature header", source)
        alerts, rejected = webhook.alerts, webhook.rejected
        if rejected:
            self._rejected[source].inc(len(rejected))
            log.warning(
                "alerts rejected",
                extra={
                    "source": source,
                    "count": len(rejected),
                    "rejected": rejected[:_LOGGED_REJECTIONS],
                },
            )
        if not alerts and rejected:
            return self._refuse(
                "no_valid_alert", 400, "no valid alert in the webhook", source, list(rejected)
            )
        try:
            result = await self._store.ingest(alerts, self._clock(), self._dedup_window)
        except StoreError as exc:
            log.error(
                "store cannot write; answering 503", extra={"source": source, "error": str(exc)}
            )
            return _error_body(503, "store unavailable; retry", source, [str(exc)])
        if result.accepted:
            self._on_accepted()
        if result.duplicates and self._history is not None:
            # A stored alert's "received" is recorded by routing, which holds it anyway;
            # a copy seen within the window is not stored, so it is recorded here.
            self._history.record_later(partial(received, alerts, result, at=self._clock()))
        if result.accepted:
            self._accepted[source].inc(result.accepted)
        if result.duplicates:
            self._duplicates[source].inc(result.duplicates)
        # Wall-clock time, whatever the injected clock: dashboards compare it with now.
        self._last_webhook_at = time.time()
        return _body(
            200,
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected},
            source,
        )

    def _unauthorized(self, message: str, source: str) -> _Answer:
        """401: the reason is logged and answered; it never holds a secret or a digest."""
        status, body, headers, source = self._refuse("unauthorized", 401, message, source)
        headers.append(_WWW_AUTHENTICATE)
        return status, body, headers, source

    def _refuse(
        self,
        reason: str,
        status: int,
        message: str,
        source: str,
        details: list[Any] | None = None,
    ) -> _Answer:
        """A 4xx answer, counted and logged: the sender drops the webhook, never retries."""
        self._refused[(reason, source)].inc()
        log.warning(
            "webhook refused",
            extra={"reason": reason, "status": status, "source": source, "error": message},
        )
        return _error_body(status, message, source, details)
