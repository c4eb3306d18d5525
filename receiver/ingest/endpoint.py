"""`POST /alerts` as a raw ASGI app: auth, Content-Type, body limit, parse, store, answer.

A 200 tells Alertmanager it may forget the alerts, so it comes only after the store has them
durably. A store that cannot write answers 503: Alertmanager retries a 5xx, not a 4xx. A 4xx
loses the webhook for good, so each one is counted by reason
(`alert_router_webhooks_refused_total`) and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from receiver.asgi import BodyTooLarge, ClientDisconnected, read_body
from receiver.ingest.auth import BearerToken
from receiver.ingest.parse import InvalidWebhook, parse_webhook
from receiver.metrics import WEBHOOK_REFUSALS, Metrics
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.ingest")

# Rejected alerts named in one log line: the answer lists them all, the log a sample.
_LOGGED_REJECTIONS = 10

_Headers = list[tuple[bytes, bytes]]
_Answer = tuple[int, bytes, _Headers]
_JSON_HEADER = (b"content-type", b"application/json")
_WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="alert-router"')


def _body(status: int, body: dict[str, Any]) -> _Answer:
    return status, orjson.dumps(body), []


def _error_body(status: int, message: str, details: list[Any] | None = None) -> _Answer:
    return _body(status, {"error": message, "details": details or []})


class AlertsEndpoint:
    """`POST /alerts`, the webhook Alertmanager calls. `token` None: no authentication."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        token: BearerToken | None,
        max_body_bytes: int,
        dedup_window: float,
        clock: Callable[[], float] = time.time,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._token = token
        self._max_body_bytes = max_body_bytes
        self._dedup_window = dedup_window
        self._clock = clock
        self._on_accepted = on_accepted
        # Metric children looked up once: ingest is the hot path.
        self._accepted = metrics.alerts_received.labels("accepted")
        self._duplicates = metrics.alerts_received.labels("duplicate")
        self._webhooks: dict[int, Counter] = {}
        self._refused = {
            reason: metrics.webhooks_refused.labels(reason) for reason in WEBHOOK_REFUSALS
        }
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Webhooks being read, stored or answered right now (the pipeline yields to them)."""
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_flight += 1
        try:
            status, body, headers = await self._answer(scope, receive)
        except ClientDisconnected:
            return
        finally:
            self._in_flight -= 1
        counter = self._webhooks.get(status)
        if counter is None:
            counter = self._webhooks[status] = self._metrics.webhooks.labels(str(status))
        counter.inc()
        headers.append(_JSON_HEADER)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> _Answer:
        authorization = content_type = declared = b""
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get.
            if name == b"authorization" and not authorization:
                authorization = value
            elif name == b"content-type" and not content_type:
                content_type = value
            elif name == b"content-length" and not declared:
                declared = value
        if self._token is not None and not self._token.accepts(authorization.decode("latin-1")):
            status, body, headers = self._refuse(
                "unauthorized", 401, "missing or wrong bearer token"
            )
            headers.append(_WWW_AUTHENTICATE)
            return status, body, headers
        media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return self._refuse(
                "wrong_content_type",
                415,
                "Content-Type must be application/json",
                [media or "(none)"],
            )
        try:
            raw_body = await read_body(receive, self._max_body_bytes, declared.decode("latin-1"))
        except BodyTooLarge:
            return self._refuse(
                "too_large",
                413,
                f"body larger than {self._max_body_bytes} bytes",
                [
                    "raise ALERT_ROUTER_MAX_BODY_BYTES, or split the group with a finer "
                    "group_by in Alertmanager (max_alerts drops the alerts past it)"
                ],
            )
        try:
            webhook = parse_webhook(raw_body)
        except InvalidWebhook as exc:
            return self._refuse("invalid_body", 400, exc.message, exc.details)
        # The alerts now hold what they need of the body: let a large one go before storing.
        del raw_body
        alerts, rejected = webhook.alerts, webhook.rejected
        if rejected:
            self._metrics.alerts_rejected.labels("invalid_alert").inc(len(rejected))
            log.warning(
                "alerts rejected",
                extra={"count": len(rejected), "rejected": rejected[:_LOGGED_REJECTIONS]},
            )
        if not alerts and rejected:
            return self._refuse(
                "no_valid_alert", 400, "no valid alert in the webhook", list(rejected)
            )
        try:
            result = await self._store.ingest(alerts, self._clock(), self._dedup_window)
        except StoreError as exc:
            log.error("store cannot write; answering 503", extra={"error": str(exc)})
            return _error_body(503, "store unavailable; retry", [str(exc)])
        if result.accepted:
            self._on_accepted()
        self._accepted.inc(result.accepted)
        self._duplicates.inc(result.duplicates)
        # Wall-clock time, whatever the injected clock: dashboards compare it with now.
        self._metrics.last_webhook.set(time.time())
        return _body(
            200,
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected},
        )

    def _refuse(
        self, reason: str, status: int, message: str, details: list[Any] | None = None
    ) -> _Answer:
        """A 4xx answer, counted and logged: Alertmanager drops the webhook, never retries."""
        self._refused[reason].inc()
        log.warning(
            "webhook refused",
            extra={"reason": reason, "status": status, "error": message},
        )
        return _error_body(status, message, details)
