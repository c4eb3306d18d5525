"""The HTTP service: the Starlette application around `POST /alerts` (ingest), health,
readiness, metrics and Slack's button presses, and the lifespan that runs the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.config.reloader import RulesHolder
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.history.recorder import HistoryRecorder
from receiver.ingest.auth import WebhookAuth
from receiver.ingest.endpoint import ALERTS_METHODS, AlertsEndpoint
from receiver.metrics import Metrics
from receiver.pipeline.pipeline import NotifierFactory, Pipeline
from receiver.pipeline.reports import ReportWork
from receiver.pipeline.routing import ContextSource
from receiver.pipeline.tuning import Tuning
from receiver.slack_actions.endpoint import actions_route
from receiver.store.base import Store, StoreError
from receiver.web.app import WebDeps, web_routes
from receiver.web.auth import UI_PASSWORD

log = logging.getLogger("alert_router.server")

# Threads for blocking sends: several destinations' parallel sends, with room to spare.
_SEND_THREADS = 64
# At shutdown, once uvicorn has let the answers in flight finish (receiver/serving.py:
# ANSWER_GRACE): the pipeline's stop (its sends in flight, then releasing the claims the
# other replicas can take) has `_PIPELINE_STOP`, bounded by the pipeline itself and, should
# that fail, abandoned after `_SEND_GRACE`; then writing the history's last batch has
# `_HISTORY_GRACE`, and closing the store and clients the rest of `_CLOSE_GRACE`. All of it
# fits within the process's SHUTDOWN_DEADLINE.
_PIPELINE_STOP = 4.0
_SEND_GRACE = _PIPELINE_STOP + 0.5
_HISTORY_GRACE = 0.5
_CLOSE_GRACE = 1.0 + _HISTORY_GRACE


async def _within(seconds: float, step: str, work: Awaitable[None]) -> None:
    """Run `work` for at most `seconds`. Past them it is cancelled and left, not awaited:
    on Python 3.11 a cancel can be swallowed (CPython gh-86296, in redis-py's writes), and
    awaiting it then would wait for ever."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("shutdown step abandoned", extra={"step": step, "after_seconds": seconds})
    elif not task.cancelled() and task.exception() is not None:
        log.error("shutdown step failed", extra={"step": step}, exc_info=task.exception())


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


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
    # Scheduled reports (receiver.runtime.report_work); None: none are sent.
    reports: ReportWork | None = None
    # Called first at shutdown, in order (work in flight outside the pipeline).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The `POST /alerts` app, made by `app()` from the parts above as they are then.
    _alerts: AlertsEndpoint | None = field(default=None, init=False, repr=False)
    # What happened to each alert (receiver.history), written in batches off the webhook's
    # path; read by the web page, the API and `alert-router explain`.
    history: HistoryRecorder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tuning = replace(
            self.tuning,
            dedup_window=self.settings.dedup_window,
            lease=self.settings.lease,
            history_retention=self.settings.history_retention,
            history_max_episodes=self.settings.history_max_episodes,
        )
        # Small, frequent batches: each is a short step of the history's writer thread,
        # and the events are made a step's batch at a time between webhooks.
        self.history = HistoryRecorder(
            self.store, flush_interval=0.25, max_batch=500, clock=self.clock
        )

    @property
    def webhooks_in_flight(self) -> int:
        """Webhooks being read, stored or answered right now (the pipeline yields to them)."""
        return 0 if self._alerts is None else self._alerts.in_flight

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
        if self.secrets.get(UI_PASSWORD) is None:
            log.info(
                "web page and API off: no ui-password secret (/ui and /api/v1 answer 404)",
                extra={"secret": UI_PASSWORD},
            )
        else:
            log.info("web page on", extra={"path": "/ui/", "api": "/api/v1/"})
        self.pipeline = Pipeline(
            self.store,
            lambda: self.holder.rules,
            self.notifiers,
            self.metrics,
            context=self.context,
            clock=self.clock,
            tuning=self.tuning,
            webhooks_in_flight=lambda: self.webhooks_in_flight,
            reports=self.reports,
            history=self.history,
        )
        self.holder.on_change = self.pipeline.apply_rules
        recording = asyncio.create_task(self.history.run(), name="history")
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
            await _within(_CLOSE_GRACE, "stop watching the rules", watcher)
            await self._shutdown(self.pipeline, recording)

    async def _shutdown(self, pipeline: Pipeline, recording: asyncio.Task[None]) -> None:
        """Stop within a bound (see `_PIPELINE_STOP`): a step that overruns its time is
        abandoned, so that the process can exit."""

        async def stop_sending() -> None:
            for close in self.closers:
                await close()
            await pipeline.stop(deadline=_PIPELINE_STOP)

        async def close() -> None:
            # What the stop itself recorded (the last deliveries) is written first.
            await self.history.close(_HISTORY_GRACE)
            # `close` ends `run` at its next wake-up; a cancel makes that now.
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
            await self.store.close()
            if self.context is not None:
                await self.context.aclose()
            if self.http is not None:
                await self.http.aclose()

        await _within(_SEND_GRACE, "stop sending", stop_sending())
        await _within(_CLOSE_GRACE, "close the store and clients", close())

    def app(self) -> ASGIApp:
        alerts = self._alerts = AlertsEndpoint(
            store=self.store,
            metrics=self.metrics,
            auth=WebhookAuth.from_secrets(self.secrets, self.holder.grafana_hmac)
            if self.auth
            else None,
            max_body_bytes=self.settings.max_body_bytes,
            dedup_window=self.settings.dedup_window,
            clock=self.clock,
            on_accepted=self._wake_pipeline,
            history=self.history,
        )
        starlette = Starlette(
            routes=[
                Route("/alerts", alerts, methods=list(ALERTS_METHODS)),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics_endpoint, methods=["GET"]),
                actions_route(self),
                *web_routes(
                    WebDeps(
                        store=self.store,
                        rules=lambda: self.holder.rules,
                        holder=self.holder,
                        secrets=self.secrets,
                        settings=self.settings,
                        record=self.history.record,
                        clock=self.clock,
                    )
                ),
            ],
            lifespan=self.lifespan,
        )

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            # Webhooks skip Starlette's middleware and router: for a one-alert webhook they
            # cost as much as ingest itself. Everything else goes through Starlette.
            if (
                scope["type"] == "http"
                and scope["path"] == "/alerts"
                and scope["method"] in ALERTS_METHODS
            ):
                await alerts(scope, receive, send)
            else:
                await starlette(scope, receive, send)

        return app

    def _wake_pipeline(self) -> None:
        if self.pipeline is not None:
            self.pipeline.wake()

    # -- endpoints -------------------------------------------------------------------

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
