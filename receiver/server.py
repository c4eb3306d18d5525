"""The HTTP service: `POST /alerts` (ingest), health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.config.reloader import RulesHolder
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.metrics import Metrics
from receiver.models import Alert, WebhookAlert, validation_reason
from receiver.pipeline.loops import ContextSource, NotifierFactory, Pipeline, Tuning
from receiver.slack_actions.endpoint import actions_route
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.ingest")

WEBHOOK_TOKEN = "webhook-token"  # noqa: S105 (a key name, not a secret)
SUPPORTED_VERSION = "4"
TOKEN_RECHECK_SECONDS = 1.0
# Threads for blocking sends: several destinations' parallel sends, with room to spare.
_SEND_THREADS = 64


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


_Headers = list[tuple[bytes, bytes]]
_JSON_HEADER = (b"content-type", b"application/json")
_WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="alert-router"')


def _body(status: int, body: dict[str, Any]) -> tuple[int, bytes, _Headers]:
    return status, orjson.dumps(body), []


def _error_body(
    status: int, message: str, details: list[Any] | None = None
) -> tuple[int, bytes, _Headers]:
    return _body(status, {"error": message, "details": details or []})


class _AlertsEndpoint:
    """`POST /alerts` as a plain ASGI app (Starlette routes to it as to any ASGI app)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._service.ingest(scope, receive, send)


@dataclass
class Service:
    """Everything the HTTP app and the pipeline share, wired explicitly."""

    settings: Settings
    store: Store
    holder: RulesHolder
    secrets: SecretStore
    metrics: Metrics
    notifiers: NotifierFactory
    context: ContextSource | None = None
    auth: bool = True
    clock: Callable[[], float] = time.time
    tuning: Tuning = field(default_factory=Tuning)
    http: httpx.AsyncClient | None = None
    pipeline: Pipeline | None = None
    # Called first at shutdown, in order (work in flight outside the pipeline).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Metric children looked up once: ingest is the hot path.
    _webhooks: dict[int, Counter] = field(default_factory=dict, init=False, repr=False)
    # Webhooks being read, stored or answered right now (the pipeline yields to them).
    _in_flight: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tuning = replace(
            self.tuning, dedup_window=self.settings.dedup_window, lease=self.settings.lease
        )
        self._accepted = self.metrics.alerts_received.labels("accepted")
        self._duplicates = self.metrics.alerts_received.labels("duplicate")

    # -- lifecycle -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # Notifiers send from threads (asyncio.to_thread), up to `parallel_sends` at once to
        # a destination without a rate limit. In the default pool (CPU count + 4 threads) a
        # rate-limited Slack message would wait behind PagerDuty's and miss its slot.
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=_SEND_THREADS, thread_name_prefix="send")
        )
        await self.store.open()
        if not self.holder.loaded:
            self.holder.load()
        self.pipeline = Pipeline(
            self.store,
            lambda: self.holder.rules,
            self.notifiers,
            self.metrics,
            context=self.context,
            clock=self.clock,
            tuning=self.tuning,
            webhooks_in_flight=lambda: self._in_flight,
        )
        self.holder.on_change = self.pipeline.apply_rules
        await self.pipeline.start()
        watcher = asyncio.create_task(self.holder.watch(), name="rules-watch")
        # RuntimeError: not the main thread (an in-process test server), so no SIGHUP.
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.holder.request_reload)
        try:
            yield
        finally:
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            for close in self.closers:
                await close()
            await self.pipeline.stop()
            await self.store.close()
            if self.context is not None:
                await self.context.aclose()
            if self.http is not None:
                await self.http.aclose()

    def app(self) -> ASGIApp:
        alerts = _AlertsEndpoint(self)
        starlette = Starlette(
            routes=[
                Route("/alerts", alerts, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics_endpoint, methods=["GET"]),
                actions_route(self),
            ],
            lifespan=self.lifespan,
        )

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            # Webhooks skip Starlette's middleware and router: for a one-alert webhook they
            # cost as much as ingest itself. Everything else goes through Starlette.
            if scope["type"] == "http" and scope["path"] == "/alerts" and scope["method"] == "POST":
                await alerts(scope, receive, send)
            else:
                await starlette(scope, receive, send)

        return app

    # -- endpoints -------------------------------------------------------------------

    async def ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /alerts`, as an ASGI app."""
        self._in_flight += 1
        try:
            status, body, headers = await self._ingest(scope, receive)
        except _Disconnected:
            return
        finally:
            self._in_flight -= 1
        counter = self._webhooks.get(status)
        if counter is None:
            counter = self._webhooks[status] = self.metrics.webhooks.labels(str(status))
        counter.inc()
        headers.append(_JSON_HEADER)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _ingest(self, scope: Scope, receive: Receive) -> tuple[int, bytes, _Headers]:
        authorization = content_type = declared = b""
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get.
            if name == b"authorization" and not authorization:
                authorization = value
            elif name == b"content-type" and not content_type:
                content_type = value
            elif name == b"content-length" and not declared:
                declared = value
        if self.auth and not self._authorized(authorization.decode("latin-1")):
            status, body, headers = _error_body(401, "missing or wrong bearer token")
            headers.append(_WWW_AUTHENTICATE)
            return status, body, headers
        media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return _error_body(415, "Content-Type must be application/json", [media or "(none)"])
        try:
            raw_body = await self._read_body(receive, declared.decode("latin-1"))
        except _TooLarge:
            return _error_body(
                413,
                f"body larger than {self.settings.max_body_bytes} bytes",
                ["raise ALERT_ROUTER_MAX_BODY_BYTES or lower max_alerts in Alertmanager"],
            )
        try:
            payload = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            return _error_body(400, "body is not valid JSON", [str(exc)])
        if not isinstance(payload, dict):
            return _error_body(400, "body must be a JSON object (Alertmanager webhook)")
        version = payload.get("version", SUPPORTED_VERSION)
        if version != SUPPORTED_VERSION:
            return _error_body(
                400,
                f"unsupported webhook version {version!r}",
                [f"alert-router reads Alertmanager webhook version {SUPPORTED_VERSION}"],
            )
        raw_alerts = payload.get("alerts")
        if not isinstance(raw_alerts, list):
            return _error_body(400, "body has no 'alerts' list")
        alerts, rejected = self._validate(raw_alerts, payload)
        if rejected:
            self.metrics.alerts_rejected.labels("invalid_alert").inc(len(rejected))
            log.warning("alerts rejected", extra={"rejected": rejected[:10]})
        if not alerts and rejected:
            return _error_body(400, "no valid alert in the webhook", rejected)
        try:
            result = await self.store.ingest(alerts, self.clock(), self.settings.dedup_window)
        except StoreError as exc:
            log.error("store cannot write; answering 503", extra={"error": str(exc)})
            return _error_body(503, "store unavailable; retry", [str(exc)])
        if result.accepted and self.pipeline is not None:
            self.pipeline.wake()
        self._accepted.inc(result.accepted)
        self._duplicates.inc(result.duplicates)
        self.metrics.last_webhook.set(time.time())
        return _body(
            200,
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected},
        )

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = presented.strip().encode()
        # The token file is looked at once a second at most; a token that does not match is
        # checked against the file again, so a rotated-in token works at once (the old one
        # keeps working for up to a second).
        token = self.secrets.get(WEBHOOK_TOKEN, max_age=TOKEN_RECHECK_SECONDS)
        if token is not None and hmac.compare_digest(given, token.reveal().encode()):
            return True
        token = self.secrets.get(WEBHOOK_TOKEN)
        return token is not None and hmac.compare_digest(given, token.reveal().encode())

    async def _read_body(self, receive: Receive, declared: str) -> bytes:
        """The body, refused (413) past the limit without reading it all."""
        limit = self.settings.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _validate(
        self, raw_alerts: list[Any], payload: dict[str, Any]
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        alerts: list[Alert] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_alerts):
            if not isinstance(raw, dict):
                rejected.append({"index": index, "reason": "alert must be a JSON object"})
                continue
            # Most alerts take the fast path; pydantic checks the others and names problems.
            alert = Alert.from_raw(raw, payload)
            if alert is None:
                try:
                    alert = Alert.from_webhook(WebhookAlert.model_validate(raw), payload)
                except ValidationError as exc:
                    rejected.append({"index": index, "reason": validation_reason(exc)})
                    continue
            alerts.append(alert)
        return alerts, rejected

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        problems = []
        if not self.holder.loaded:
            problems.append("rules not loaded")
        try:
            await asyncio.wait_for(self.store.check_writable(), 5.0)
        except (StoreError, TimeoutError) as exc:
            problems.append(f"store not writable: {exc}")
        if problems:
            return _json(503, {"status": "not ready", "problems": problems})
        return _json(200, {"status": "ready"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
