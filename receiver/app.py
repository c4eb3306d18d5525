"""The HTTP service: `POST /alerts` (ingest), health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.metrics import Metrics
from receiver.models import Alert, WebhookAlert, validation_reason
from receiver.pipeline import ContextSource, NotifierFactory, Pipeline, Tuning
from receiver.reloader import RulesHolder
from receiver.secrets import SecretStore
from receiver.settings import Settings
from receiver.store import Store, StoreError

log = logging.getLogger("alert_router.ingest")

WEBHOOK_TOKEN = "webhook-token"  # noqa: S105 (a key name, not a secret)
SUPPORTED_VERSION = "4"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(status: int, message: str, details: list[Any] | None = None) -> Response:
    return _json(status, {"error": message, "details": details or []})


class _TooLarge(Exception):
    pass


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

    def __post_init__(self) -> None:
        self.tuning = replace(
            self.tuning, dedup_window=self.settings.dedup_window, lease=self.settings.lease
        )

    # -- lifecycle -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
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
        )
        self.holder.on_change = self.pipeline.apply_rules
        await self.pipeline.start()
        watcher = asyncio.create_task(self.holder.watch(), name="rules-watch")
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.holder.request_reload)
        try:
            yield
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.pipeline.stop()
            await self.store.close()
            if self.context is not None:
                await self.context.aclose()
            if self.http is not None:
                await self.http.aclose()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/alerts", self.ingest, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    # -- endpoints -------------------------------------------------------------------

    async def ingest(self, request: Request) -> Response:
        response = await self._ingest(request)
        self.metrics.webhooks.labels(str(response.status_code)).inc()
        return response

    async def _ingest(self, request: Request) -> Response:
        if self.auth and not self._authorized(request):
            return _json(
                401,
                {"error": "missing or wrong bearer token", "details": []},
                {"WWW-Authenticate": 'Bearer realm="alert-router"'},
            )
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return _error(415, "Content-Type must be application/json", [media or "(none)"])
        try:
            body = await self._read_body(request)
        except _TooLarge:
            return _error(
                413,
                f"body larger than {self.settings.max_body_bytes} bytes",
                ["raise ALERT_ROUTER_MAX_BODY_BYTES or lower max_alerts in Alertmanager"],
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, "body is not valid JSON", [str(exc)])
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object (Alertmanager webhook)")
        version = payload.get("version", SUPPORTED_VERSION)
        if version != SUPPORTED_VERSION:
            return _error(
                400,
                f"unsupported webhook version {version!r}",
                [f"alert-router reads Alertmanager webhook version {SUPPORTED_VERSION}"],
            )
        raw_alerts = payload.get("alerts")
        if not isinstance(raw_alerts, list):
            return _error(400, "body has no 'alerts' list")
        alerts, rejected = self._validate(raw_alerts, payload)
        if rejected:
            self.metrics.alerts_rejected.labels("invalid_alert").inc(len(rejected))
            log.warning("alerts rejected", extra={"rejected": rejected[:10]})
        if not alerts and rejected:
            return _error(400, "no valid alert in the webhook", rejected)
        try:
            result = await self.store.ingest(alerts, self.clock(), self.settings.dedup_window)
        except StoreError as exc:
            log.error("store cannot write; answering 503", extra={"error": str(exc)})
            return _error(503, "store unavailable; retry", [str(exc)])
        if result.accepted and self.pipeline is not None:
            self.pipeline.wake()
        self.metrics.alerts_received.labels("accepted").inc(result.accepted)
        self.metrics.alerts_received.labels("duplicate").inc(result.duplicates)
        self.metrics.last_webhook.set(time.time())
        return _json(
            200,
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected},
        )

    def _authorized(self, request: Request) -> bool:
        token = self.secrets.get(WEBHOOK_TOKEN)
        if token is None:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), token.reveal().encode())

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _validate(
        self, raw_alerts: list[Any], payload: dict[str, Any]
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        alerts: list[Alert] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_alerts):
            if not isinstance(raw, dict):
                rejected.append({"index": index, "reason": "alert must be a JSON object"})
                continue
            try:
                alerts.append(Alert.from_webhook(WebhookAlert.model_validate(raw), payload))
            except ValidationError as exc:
                rejected.append({"index": index, "reason": validation_reason(exc)})
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
