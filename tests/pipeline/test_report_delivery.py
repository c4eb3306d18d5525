"""Scheduled reports sent for real: the runtime's report work (Slack notifiers over HTTP)
against the fake Slack servers, on both stores, the schedule's clock moved by the test.

A failing Slack is retried, then the report is a dead letter, which a replay sends once;
a chart that failed alone is uploaded again, into the thread of the one report posted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from receiver.config.rules import Rules, parse_rules
from receiver.config.secrets import SecretStore
from receiver.metrics import Metrics
from receiver.pipeline.reports import ATTEMPTS, ReportScheduler
from receiver.pipeline.tuning import Tuning
from receiver.runtime import report_work
from receiver.store.base import Store
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from tests.fakes.redis import RedisServer
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
    api_error,
    webhook_error,
)
from tests.service import make_settings

RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}}}
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs"}}
reports:
  daily-costs:
    to: [TO]
    schedule: "0 9 * * *"
    timezone: Europe/Berlin
    window: 24h
    sections: [incidents]
    chart: true
"""
NINE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


class Clock:
    def __init__(self) -> None:
        self.now = NINE + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "state.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        s = RedisStore(server.url, prefix=f"report-delivery-{id(tmp_path)}")
    await s.open()
    # Yesterday's slot was sent: today's 09:00 is due.
    await s.claim_report_slot("daily-costs", NINE - timedelta(days=1), "earlier")
    yield s
    await s.close()


async def _scheduler(
    store: Store, tmp_path: Path, to: str, slack_url: str, clock: Clock
) -> tuple[ReportScheduler, httpx.AsyncClient]:
    config = tmp_path / "routes.yaml"
    config.write_text(RULES.replace("TO", to))
    rules: Rules = parse_rules(config.read_text(), config)
    settings = make_settings(tmp_path, config)
    if to == "bot":
        settings = settings.model_copy(update={"slack_api_url": slack_url})
        (settings.secrets_dir / "slack-bot-token").write_text(BOT_TOKEN)
    else:
        (settings.secrets_dir / "slack-webhook-url").write_text(slack_url)
    secrets = SecretStore(settings.secrets_dir, environ={})
    http = httpx.AsyncClient()
    work = report_work(settings, secrets, http, Metrics(), lambda: rules, dry_run=False)
    scheduler = ReportScheduler(
        store, lambda: rules, work, owner="a", stopping=asyncio.Event(), clock=clock,
        tuning=lambda: Tuning(backoff_base=0.5, backoff_max=2.0), rng=random.Random(7),
    )  # fmt: skip
    return scheduler, http


async def test_a_failing_slack_is_retried_then_a_dead_letter_that_replays_once(
    store: Store, tmp_path: Path, slack_webhook: SlackWebhookServer
) -> None:
    clock = Clock()
    scheduler, http = await _scheduler(store, tmp_path, "hook", slack_webhook.url, clock)
    try:
        slack_webhook.script(*[webhook_error(500, "internal_error")] * ATTEMPTS)
        for _ in range(ATTEMPTS + 2):
            assert await scheduler.tick() == []
            clock.now += timedelta(seconds=3)  # past any backoff of this tuning
        # Every try reached Slack, none was accepted, and no more were made.
        assert len(slack_webhook.requests) == ATTEMPTS
        assert slack_webhook.messages == []
        [letter] = await store.dead_letters()
        assert (letter.destination, letter.alertname, letter.status) == (
            "hook", "daily-costs", "report",
        )  # fmt: skip
        assert letter.attempts == ATTEMPTS
        assert "500" in letter.error
        # Slack is back; the dead letter, queued again, is sent once.
        assert await store.replay_dead_letters([letter.id], clock().timestamp()) == 1
        [sent] = await scheduler.tick()
        assert (sent.report, sent.destination) == ("daily-costs", "hook")
        [message] = slack_webhook.messages
        assert "Cost report daily-costs" in str(message)
        assert await scheduler.tick() == []
        assert len(slack_webhook.messages) == 1
        assert await store.dead_letters() == []
    finally:
        await http.aclose()


async def test_a_permanent_slack_error_is_a_dead_letter_at_once(
    store: Store, tmp_path: Path, slack_webhook: SlackWebhookServer
) -> None:
    clock = Clock()
    scheduler, http = await _scheduler(store, tmp_path, "hook", slack_webhook.url, clock)
    try:
        slack_webhook.script(webhook_error(404, "no_service"))
        await scheduler.tick()
        clock.now += timedelta(minutes=10)
        await scheduler.tick()
        assert len(slack_webhook.requests) == 1
        [letter] = await store.dead_letters()
        assert letter.attempts == 1 and "no_service" in letter.error
    finally:
        await http.aclose()


async def test_a_chart_that_failed_alone_goes_into_the_one_reports_thread(
    store: Store, tmp_path: Path, slack_api: SlackApiServer
) -> None:
    clock = Clock()
    scheduler, http = await _scheduler(store, tmp_path, "bot", slack_api.api_url, clock)
    try:
        slack_api.script(
            api_error("ratelimited", status=429, retry_after=1),
            method="files.getUploadURLExternal",
        )
        assert await scheduler.tick() == []
        [report] = slack_api.messages(DEFAULT_CHANNEL)
        assert report.replies == []
        # Before Slack's Retry-After nothing is tried; after it, only the chart.
        await scheduler.tick()
        assert len(slack_api.calls("files.getUploadURLExternal")) == 1
        clock.now += timedelta(seconds=1)
        [sent] = await scheduler.tick()
        assert sent.destination == "bot"
        assert len(slack_api.calls("chat.postMessage")) == 1
        [report] = slack_api.messages(DEFAULT_CHANNEL)
        [reply] = report.replies
        assert reply.thread_ts == report.ts and len(reply.files) == 1
        [upload] = [u for u in slack_api.uploads() if u.completed]
        assert upload.data is not None and upload.data.startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        await http.aclose()
