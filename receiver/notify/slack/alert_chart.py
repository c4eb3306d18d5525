"""Alert charts: a firing alert's $/h series over the last 6 hours, with the start of its
episode marked, uploaded into the thread of the alert's message (bot destinations with
`charts: true`; the files:write scope).

The message is what matters. The chart follows it in a task of its own, started after
chat.postMessage answered, so it never delays, fails or repeats the notification: the
pipeline records the delivery at once, whatever becomes of the chart. A temporary upload
failure is tried again a couple of times here (after Slack's Retry-After when it gives
one), then the chart is given up and logged.

The series is the one the alert's $/h value in its cost context comes from: the first
`usd_per_hour` value of the rules' `context:` that the alert carries, its query sent as
a range query (`receiver.context.incident.range_query`) and its result joined to the
alert as enrichment joins it (`receiver.context.join`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from receiver.config.rules import Rules
from receiver.context.incident import range_query
from receiver.context.join import SeriesSet
from receiver.context.prometheus import Failure, PrometheusClient, Series
from receiver.models import Notification, Unit
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.report import CHART_TITLE
from receiver.notify.slack.text import clip_plain

log = logging.getLogger("alert_router.notify.slack")

WINDOW = 6 * 3600.0  # seconds of history the chart shows
WINDOW_TEXT = "6 h"
CHART_FILENAME = "alert-cost.png"
# Tries of one chart's upload: the first, and two more after a temporary failure.
UPLOAD_TRIES = 3
# Seconds before the second try when Slack gave no Retry-After; doubled for the third.
BACKOFF = 1.0
# A longer Retry-After gives the chart up: Slack is asking for room, and the messages
# that follow need it more than a picture does.
MAX_RETRY_AFTER = 30.0
# Charts being made at once for one destination; past it a chart is skipped (a storm, or
# a slow Slack, must not pile up range queries, drawings and uploads).
MAX_PENDING = 4
# How long closing the notifier waits for charts in flight before cancelling them.
CLOSE_WAIT = 5.0
# The chart's heading, our own cut: longer ones run past the figure's width.
_HEADING = 90
# Slack: files.getUploadURLExternal answers alt_txt_too_large past 1000 characters.
MAX_ALT_TEXT = 1000


class Upload(Protocol):
    """Uploads `png` into the thread of message `ref`; raises NotifyError."""

    def __call__(
        self, ref: Ref, png: bytes, title: str, *, filename: str, alt_text: str
    ) -> Awaitable[None]: ...


def _wall_clock() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class ChartSource:
    """Where alert charts find their series: the rules' context values, on `prometheus`
    at `prometheus_url` (env PROMETHEUS_URL), else at the rules' `prometheus.url`.
    `clock`: unix seconds, the end of the chart's window."""

    prometheus: PrometheusClient
    rules: Rules
    prometheus_url: str | None = None
    clock: Callable[[], float] = field(default=_wall_clock)

    @property
    def url(self) -> str:
        return (self.prometheus_url or self.rules.spec.prometheus.url).rstrip("/")


@dataclass(frozen=True, slots=True)
class CostSeries:
    """An alert's $/h series over the chart's window: which context value, its points."""

    name: str
    title: str
    series: Series
    start: float
    end: float
    step: float


async def cost_series(source: ChartSource, notification: Notification) -> CostSeries | str:
    """The alert's $/h series over the WINDOW before now, or why it has none."""
    rules, alert = source.rules, notification.alert
    carried = {v.name: v for v in notification.context.values if v.unit is Unit.USD_PER_HOUR}
    name = next((n for n in rules.context if n in carried), None)
    if name is None:
        return "no $/h value in the alert's cost context"
    spec = rules.context[name]
    end = source.clock()
    query = range_query(source.url, spec.query, end - WINDOW, end)
    answer = await source.prometheus.query(query, rules.spec.prometheus.timeout)
    if isinstance(answer, Failure):
        return f"{name}: {answer.reason}"
    found = SeriesSet(answer).match(alert.labels, {res: a for a, res in spec.join.items()})
    if not isinstance(found, Series):
        return f"{name}: no series for the alert's labels"
    step = query.step or WINDOW
    return CostSeries(name, carried[name].title, found, end - WINDOW, end, step)


def _draw(cost: CostSeries, notification: Notification) -> bytes:
    """The chart's PNG; run in a worker thread."""
    # matplotlib loads only when a chart is drawn (it takes a while), and off the loop.
    from receiver.reports.chart import render_alert_chart

    alert = notification.alert
    points = [(t, v) for t, v in cost.series.points if cost.start <= t <= cost.end]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(cost.series.labels.items()))
    return render_alert_chart(
        points,
        heading=clip_plain(f"{alert.name}: {cost.title}, last {WINDOW_TEXT}", _HEADING),
        label=f"{cost.title} ($/h){': ' + labels if labels else ''}",
        started=alert.starts_at,
        start=datetime.fromtimestamp(cost.start, UTC),
        end=datetime.fromtimestamp(cost.end, UTC),
        step=cost.step,
    )


class AlertCharts:
    """The alert charts of one bot destination: started by `posted`, each in its own task;
    `aclose` waits a little for those in flight, then cancels them."""

    def __init__(self, destination: str, source: ChartSource, upload: Upload) -> None:
        self._destination = destination
        self._source = source
        self._upload = upload
        self._tasks: set[asyncio.Task[None]] = set()

    def posted(self, batch: Sequence[Notification], ref: Ref) -> None:
        """The message `ref` carrying `batch` was posted: chart its alert when it carries
        exactly one, firing (a digest or a resolve gets no chart). Never raises."""
        if len(batch) != 1 or not batch[0].alert.firing:
            return
        notification = batch[0]
        if len(self._tasks) >= MAX_PENDING:
            log.warning("alert chart skipped: too many in flight", extra=self._extra(notification))
            return
        task = asyncio.get_running_loop().create_task(
            self._chart(notification, ref), name=f"alert-chart:{self._destination}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.info(
                "alert charts abandoned at close",
                extra={"destination": self._destination, "count": len(late)},
            )

    async def _chart(self, notification: Notification, ref: Ref) -> None:
        try:
            cost = await cost_series(self._source, notification)
            if isinstance(cost, str):
                log.info("no alert chart", extra={**self._extra(notification), "reason": cost})
                return
            png = await asyncio.to_thread(_draw, cost, notification)
            await self._send(notification, ref, png, cost.title)
        except Exception:
            # A bug here must cost only the chart: the message is delivered already.
            log.exception("alert chart failed", extra=self._extra(notification))

    async def _send(self, notification: Notification, ref: Ref, png: bytes, title: str) -> None:
        alert = notification.alert
        name = clip_plain(f"{alert.name}: {title} over the last {WINDOW_TEXT}", CHART_TITLE)
        alt = clip_plain(
            f"Chart: {title} in $/h over the last {WINDOW_TEXT}, the episode's start marked",
            MAX_ALT_TEXT,
        )
        extra = self._extra(notification)
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                await self._upload(ref, png, name, filename=CHART_FILENAME, alt_text=alt)
            except NotifyError as exc:
                wait = (
                    exc.retry_after if exc.retry_after is not None else BACKOFF * 2 ** (attempt - 1)
                )
                if not exc.recoverable or attempt == UPLOAD_TRIES or wait > MAX_RETRY_AFTER:
                    log.warning(
                        "alert chart not uploaded; given up",
                        extra={**extra, "error": str(exc), "tries": attempt},
                    )
                    return
                log.info(
                    "alert chart upload failed; trying again",
                    extra={**extra, "error": str(exc), "retry_in_s": wait},
                )
                await asyncio.sleep(wait)
            else:
                log.info("alert chart uploaded", extra={**extra, "bytes": len(png)})
                return

    def _extra(self, notification: Notification) -> dict[str, str]:
        alert = notification.alert
        return {
            "destination": self._destination,
            "alertname": alert.name,
            "episode": alert.episode,
        }
