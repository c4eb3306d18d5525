"""Alert charts: a bot destination with `charts: true` uploads, into a firing alert's
thread, the chart of the alert's $/h series over the last 6 hours. Against a real
Prometheus holding known history (backfilled with promtool) and the fake Slack."""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image, ImageStat

from receiver.config.rules import Rules, load_rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.context.prometheus import PrometheusClient
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext, Notification, Unit
from receiver.notify.factory import build_notifiers
from receiver.notify.slack.alert_chart import (
    CHART_FILENAME,
    UPLOAD_TRIES,
    WINDOW,
    ChartSource,
    CostSeries,
    cost_series,
)
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.reports.chart import HEIGHT, WIDTH
from tests.fakes.prometheus import Exporter, PrometheusServer, Sample, start_backfilled
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    Answer,
    SlackApiServer,
    api_error,
    ratelimited,
)
from tests.notify.slack.support import (
    SECRET_TOKEN,
    context_value,
    make_alert,
    notification,
    write_secret,
)
from tests.support import free_port

# Set to a file name to keep the chart the first test uploads, to look at it.
SAMPLE = os.environ.get("ALERT_ROUTER_ALERT_CHART_SAMPLE")


def _now() -> float:
    """08:00 UTC on the 10th of last month: whole hours, so the range query's steps land
    on the sample times below."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (first - timedelta(days=1)).replace(day=1)
    return last_month.replace(day=10, hour=8).timestamp()


NOW = _now()
STARTED = NOW - 4 * 3600  # the episode started 4 h before the notification
BEFORE, DURING = 30.0, 90.0  # the trainer's $/h before and since the episode's start
NODE_COST = 12.24


def _history() -> list[Sample]:
    samples: list[Sample] = []
    for t in range(int(NOW - 7 * 3600), int(NOW) + 1, 60):
        cost = BEFORE if t < STARTED else DURING
        samples.append(("service_cost_per_hour", {"service": "trainer", "pod": "a"}, t, cost))
        samples.append(("service_cost_per_hour", {"service": "other", "pod": "b"}, t, 5.0))
        samples.append(("gpu_cost_per_hour", {"node": "gpu-node-2"}, t, NODE_COST))
    return samples


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    # Module scope: promtool writes the blocks once for every test here.
    server = start_backfilled(tmp_path_factory.mktemp("alert-history"), _history())
    yield server
    server.close()


def _rules(directory: Path, prometheus_url: str, *, charts: bool = True) -> Rules:
    data: dict[str, Any] = {
        "prometheus": {"url": prometheus_url, "timeout": "5s"},
        "destinations": {
            "finops-bot": {
                "slack": {
                    "token": {"secret": "slack-bot-token"},
                    "channel": DEFAULT_CHANNEL,
                    "charts": charts,
                }
            }
        },
        "context": {
            "cost_per_hour": {
                "query": "sum by (service) (service_cost_per_hour)",
                "unit": "usd_per_hour",
                "title": "Service cost",
            },
            "node_cost_per_hour": {
                "query": "sum by (node) (gpu_cost_per_hour)",
                "unit": "usd_per_hour",
                "title": "Node cost",
                "join": {"Hostname": "node"},
            },
        },
    }
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_rules(path)


@pytest.fixture
def rules(history: PrometheusServer, tmp_path: Path) -> Rules:
    return _rules(tmp_path, history.url)


@pytest.fixture
async def prometheus_client() -> AsyncIterator[PrometheusClient]:
    async with httpx.AsyncClient() as client:
        yield PrometheusClient(client, Metrics())


def _source(client: PrometheusClient, rules: Rules) -> ChartSource:
    return ChartSource(client, rules, clock=lambda: NOW)


def _charting_bot(
    slack_api: SlackApiServer, store: SecretStore, source: ChartSource, token: str = BOT_TOKEN
) -> SlackBotNotifier:
    write_secret(store, "slack-bot-token", token)
    return SlackBotNotifier(
        "finops-bot",
        store.source("slack-bot-token"),
        DEFAULT_CHANNEL,
        api_url=slack_api.api_url,
        timeout=2,
        charts=source,
    )


def _alert(labels: dict[str, str] | None = None, *, started: float = STARTED) -> Alert:
    return replace(make_alert(labels=labels), starts_at=datetime.fromtimestamp(started, UTC))


def _firing(context: CostContext | None = None, alert: Alert | None = None) -> Notification:
    if context is None:
        context = CostContext(
            values=(context_value("cost_per_hour", "Service cost", DURING, Unit.USD_PER_HOUR),)
        )
    return notification(alert or _alert(), context=context)


async def _send(bot: SlackBotNotifier, batch: Sequence[Notification]) -> list[Any]:
    """notify, then close, which waits for the charts in flight (as the pipeline closes
    a notifier it no longer uses)."""
    try:
        return list(await bot.notify(batch))
    finally:
        await bot.aclose()


def _stddev(png: bytes) -> float:
    image = Image.open(io.BytesIO(png)).convert("L")
    return float(ImageStat.Stat(image).stddev[0])


def _records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


# -- the series -----------------------------------------------------------------------


async def test_the_series_is_the_alerts_cost_value_as_a_range_query(
    prometheus_client: PrometheusClient, rules: Rules
) -> None:
    cost = await cost_series(_source(prometheus_client, rules), _firing())
    assert isinstance(cost, CostSeries)
    assert (cost.name, cost.title) == ("cost_per_hour", "Service cost")
    # The context query's own grouping, joined on the alert's service (not "other").
    assert cost.series.labels == {"service": "trainer"}
    assert (cost.start, cost.end) == (NOW - WINDOW, NOW)
    # 6 h in at most 250 steps: 120 s, so alerts of a similar time share the query.
    assert cost.step == 120
    points = dict(cost.series.points)
    assert points[NOW - 5 * 3600] == BEFORE
    assert points[STARTED] == DURING and points[NOW] == DURING
    assert min(points) <= NOW - WINDOW and max(points) >= NOW


async def test_a_value_joined_on_another_label_name_is_found(
    prometheus_client: PrometheusClient, rules: Rules
) -> None:
    # A GPU alert carries the node's cost: alert label Hostname is the result's node.
    context = CostContext(
        values=(context_value("node_cost_per_hour", "Node cost", NODE_COST, Unit.USD_PER_HOUR),)
    )
    alert = _alert({"Hostname": "gpu-node-2", "gpu": "0"})
    cost = await cost_series(_source(prometheus_client, rules), _firing(context, alert))
    assert isinstance(cost, CostSeries)
    assert cost.name == "node_cost_per_hour" and cost.series.labels == {"node": "gpu-node-2"}
    assert {v for _, v in cost.series.points} == {NODE_COST}


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        # No $/h value in the alert's context (no cost labels): nothing to chart.
        (CostContext(), "no $/h value in the alert's cost context"),
        (
            CostContext(values=(context_value("cost_per_hour", "x", 1.0, Unit.USD),)),
            "no $/h value in the alert's cost context",
        ),
    ],
)
async def test_without_a_cost_value_there_is_no_series(
    prometheus_client: PrometheusClient, rules: Rules, context: CostContext, reason: str
) -> None:
    assert await cost_series(_source(prometheus_client, rules), _firing(context)) == reason


async def test_a_service_prometheus_has_no_history_for_has_no_series(
    prometheus_client: PrometheusClient, rules: Rules
) -> None:
    alert = _alert({"service": "unknown-service"})
    cost = await cost_series(_source(prometheus_client, rules), _firing(alert=alert))
    assert cost == "cost_per_hour: no series for the alert's labels"


# -- the upload -----------------------------------------------------------------------


async def test_a_firing_alert_gets_its_chart_in_its_thread(
    slack_api: SlackApiServer,
    store: SecretStore,
    prometheus_client: PrometheusClient,
    rules: Rules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.notify.slack")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    [ref] = await _send(bot, [_firing()])
    [message] = slack_api.messages(DEFAULT_CHANNEL)
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": message.ts}
    [upload] = slack_api.uploads()
    assert upload.completed and upload.filename == CHART_FILENAME
    assert (upload.channel, upload.thread_ts) == (DEFAULT_CHANNEL_ID, ref["ts"])
    assert upload.title == "HighGPUCost: Service cost over the last 6 h"
    [complete] = slack_api.calls("files.completeUploadExternal")
    assert complete.body["thread_ts"] == ref["ts"]
    [reply] = slack_api.replies(DEFAULT_CHANNEL, ref["ts"])
    assert reply.files == [upload.file_id]
    png = upload.data
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    Image.open(io.BytesIO(png)).verify()
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    assert _stddev(png) > 10
    assert len(_records(caplog, "alert chart uploaded")) == 1
    if SAMPLE:
        Path(SAMPLE).write_bytes(png)


async def test_a_destination_without_charts_uploads_nothing(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    await _send(bot, [_firing()])
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert slack_api.uploads() == []
    assert [r for r in slack_api.requests if r.method.startswith("files.")] == []


async def test_digests_and_resolves_get_no_chart(
    slack_api: SlackApiServer, store: SecretStore, prometheus_client: PrometheusClient, rules: Rules
) -> None:
    other = replace(_alert({"service": "other"}), fingerprint="fp-other")
    digest = [_firing(), _firing(alert=other)]
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    refs = await bot.notify(digest)
    ended = datetime.fromtimestamp(NOW, UTC)
    resolved = replace(_alert(), status="resolved", ends_at=ended)
    # A resolve without a message to edit is posted as a new message: still no chart.
    await _send(bot, [notification(resolved, context=_firing().context)])
    assert refs[0] is not None and len(slack_api.messages(DEFAULT_CHANNEL)) == 2
    assert slack_api.uploads() == []


async def test_no_cost_labels_no_chart_and_the_message_stands(
    slack_api: SlackApiServer,
    store: SecretStore,
    prometheus_client: PrometheusClient,
    rules: Rules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.notify.slack")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    [ref] = await _send(bot, [_firing(CostContext())])
    assert ref is not None and len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert slack_api.uploads() == []
    [record] = _records(caplog, "no alert chart")
    assert record.levelno == logging.INFO
    assert record.__dict__["reason"] == "no $/h value in the alert's cost context"


async def test_prometheus_down_costs_only_the_chart(
    slack_api: SlackApiServer,
    store: SecretStore,
    prometheus_client: PrometheusClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.notify.slack")
    down = _rules(tmp_path, f"http://127.0.0.1:{free_port()}")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, down))
    [ref] = await _send(bot, [_firing()])
    assert ref is not None and len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert slack_api.uploads() == []
    [record] = _records(caplog, "no alert chart")
    assert record.__dict__["reason"] == "cost_per_hour: Prometheus unreachable"


async def test_a_refused_upload_leaves_the_message_delivered_once(
    slack_api: SlackApiServer,
    store: SecretStore,
    prometheus_client: PrometheusClient,
    rules: Rules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.notify.slack")
    slack_api.script(api_error("file_uploads_disabled"), method="files.getUploadURLExternal")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    # notify returns the message's ref (the pipeline records it as delivered, no retry)...
    [ref] = await _send(bot, [_firing()])
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": ref["ts"]}
    # ...the message was posted once, and a permanent refusal is not tried again.
    assert len(slack_api.calls("chat.postMessage")) == 1
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert len(slack_api.calls("files.getUploadURLExternal")) == 1
    assert slack_api.replies(DEFAULT_CHANNEL, ref["ts"]) == []
    [record] = _records(caplog, "alert chart not uploaded; given up")
    assert record.levelno == logging.WARNING and record.__dict__["tries"] == 1
    assert "file_uploads_disabled" in record.__dict__["error"]
    assert record.__dict__["destination"] == "finops-bot"


async def test_a_temporary_upload_failure_is_tried_again(
    slack_api: SlackApiServer, store: SecretStore, prometheus_client: PrometheusClient, rules: Rules
) -> None:
    # The upload URL (step 2 of files_upload_v2) answers 500 once.
    slack_api.script(Answer(500, "upstream error"), method="upload")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    [ref] = await _send(bot, [_firing()])
    assert len(slack_api.calls("chat.postMessage")) == 1
    first, second = slack_api.uploads()
    assert not first.completed and second.completed
    assert second.thread_ts == ref["ts"]
    [reply] = slack_api.replies(DEFAULT_CHANNEL, ref["ts"])
    assert reply.files == [second.file_id]


async def test_slacks_retry_after_is_waited_for(
    slack_api: SlackApiServer, store: SecretStore, prometheus_client: PrometheusClient, rules: Rules
) -> None:
    slack_api.script(ratelimited(1), method="files.getUploadURLExternal")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    [ref] = await _send(bot, [_firing()])
    limited, accepted = slack_api.calls("files.getUploadURLExternal")
    assert limited.status == 429 and accepted.status == 200
    assert accepted.at - limited.at >= 0.95
    [upload] = slack_api.uploads()
    assert upload.completed and upload.thread_ts == ref["ts"]


async def test_temporary_failures_are_given_up_after_the_last_try(
    slack_api: SlackApiServer,
    store: SecretStore,
    prometheus_client: PrometheusClient,
    rules: Rules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.notify.slack")
    failing = [api_error("internal_error", status=500)] * UPLOAD_TRIES
    slack_api.script(*failing, method="files.completeUploadExternal")
    bot = _charting_bot(slack_api, store, _source(prometheus_client, rules))
    started = time.monotonic()
    [ref] = await _send(bot, [_firing()])
    assert time.monotonic() - started < 10
    assert len(slack_api.calls("files.completeUploadExternal")) == UPLOAD_TRIES
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert slack_api.replies(DEFAULT_CHANNEL, ref["ts"]) == []
    assert len(_records(caplog, "alert chart upload failed; trying again")) == UPLOAD_TRIES - 1
    [record] = _records(caplog, "alert chart not uploaded; given up")
    assert record.__dict__["tries"] == UPLOAD_TRIES


async def test_a_failing_chart_leaks_no_token(
    store: SecretStore,
    prometheus_client: PrometheusClient,
    rules: Rules,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with SlackApiServer(tokens=[SECRET_TOKEN]) as server:
        # A server that puts the token it received into its error.
        echo = api_error(f"invalid token {SECRET_TOKEN}", status=401)
        server.script(echo, method="files.completeUploadExternal")
        bot = _charting_bot(server, store, _source(prometheus_client, rules), token=SECRET_TOKEN)
        [ref] = await _send(bot, [_firing()])
    assert ref is not None
    assert _records(caplog, "alert chart not uploaded; given up")
    for record in caplog.records:
        for text in (record.getMessage(), repr(record.__dict__)):
            assert SECRET_TOKEN not in text and "s3cr3tB0tT0k3n" not in text


# -- built from the rules -------------------------------------------------------------


async def test_the_factory_gives_charts_to_bot_destinations_that_ask(
    slack_api: SlackApiServer,
    store: SecretStore,
    exporter: Exporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    # The scraping Prometheus, at the wall clock's now: a few seconds of history.
    labels = {"service": "alert-chart-factory"}
    exporter.set("service_cost_per_hour", labels, 42.0)
    try:
        prometheus.sync()
        write_secret(store, "slack-bot-token", BOT_TOKEN)
        settings = Settings().model_copy(update={"slack_api_url": slack_api.api_url})
        alert = _alert(labels, started=time.time() - 60)
        firing = _firing(
            CostContext(values=(context_value("cost_per_hour", "c", 42.0, Unit.USD_PER_HOUR),)),
            alert,
        )
        shared: list[int] = []
        async with httpx.AsyncClient() as http:
            client = PrometheusClient(http, Metrics())
            for charts in (True, False):
                rules = _rules(tmp_path, prometheus.url, charts=charts)
                bot = build_notifiers(rules, store, settings, prometheus=client)["finops-bot"]
                try:
                    await bot.notify([firing])
                finally:
                    await bot.aclose()
                shared.append(len([u for u in slack_api.uploads() if u.completed]))
        # charts: true uploads one chart; charts: false none more.
        assert shared == [1, 1]
        assert len(slack_api.messages(DEFAULT_CHANNEL)) == 2
        [upload] = slack_api.uploads()
        assert upload.thread_ts == slack_api.messages(DEFAULT_CHANNEL)[0].ts
    finally:
        exporter.remove("service_cost_per_hour", labels)
