"""The Slack fakes themselves: they validate, limit and fail as Slack does."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest

from receiver.notify.base import NotifyError
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    DROP,
    SlackApiServer,
    SlackWebhookServer,
    max_per_window,
    min_interval,
    webhook_error,
)
from tests.notify.slack.support import (
    deliver,
    failure,
    make_alert,
    notification,
    post,
    section,
)


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (b'{"text": "hello"}', 200, "ok"),
        (b"not json", 400, "invalid_payload"),
        (b"[1, 2]", 400, "invalid_payload"),
        (b'{"username": "x"}', 400, "no_text"),
        (json.dumps({"blocks": [section("x")] * 51}).encode(), 400, "invalid_blocks"),
        (json.dumps({"blocks": [section("x" * 3001)]}).encode(), 400, "invalid_blocks"),
        (
            json.dumps({"attachments": [{"blocks": [section("x")] * 51}]}).encode(),
            400,
            "invalid_blocks",
        ),
        (
            json.dumps(
                {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
            ).encode(),
            400,
            "invalid_blocks",
        ),
    ],
)
def test_fake_webhook_validates_like_slack(
    slack_webhook: SlackWebhookServer, body: bytes, status: int, answer: str
) -> None:
    assert post(slack_webhook.url, body, {"Content-Type": "application/json"}) == (status, answer)


def test_fake_web_api_checks_auth_channels_and_limits(slack_api: SlackApiServer) -> None:
    url = slack_api.api_url + "chat.postMessage"
    good = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json"}

    def call(body: Mapping[str, Any], headers: Mapping[str, str] = good) -> Any:
        return json.loads(post(url, json.dumps(body).encode(), headers)[1])

    assert call({"channel": "#gpu-costs", "text": "x"}, {})["error"] == "not_authed"
    bad = {**good, "Authorization": "Bearer xoxb-wrong"}
    assert call({"channel": "#gpu-costs", "text": "x"}, bad)["error"] == "invalid_auth"
    assert call({"channel": "#nope", "text": "x"})["error"] == "channel_not_found"
    assert call({"channel": "#gpu-costs", "blocks": [section("x")] * 51})["error"] == (
        "invalid_blocks"
    )
    first = call({"channel": "#gpu-costs", "text": "x"})
    second = call({"channel": DEFAULT_CHANNEL_ID, "text": "y"})
    assert (first["ok"], first["channel"]) == (True, DEFAULT_CHANNEL_ID)
    assert float(second["ts"]) > float(first["ts"])
    form = urllib.parse.urlencode({"channel": "#gpu-costs", "text": "z", "token": BOT_TOKEN})
    answer = post(url, form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(answer[1])["ok"] is True
    update = slack_api.api_url + "chat.update"
    body = {"channel": DEFAULT_CHANNEL_ID, "ts": "1.000001", "text": "u"}
    assert json.loads(post(update, json.dumps(body).encode(), good)[1])["error"] == (
        "message_not_found"
    )
    assert [m.text for m in slack_api.messages(DEFAULT_CHANNEL)] == ["x", "y", "z"]


def test_fake_random_failures_still_let_everything_through_with_retries(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    slack_webhook.fail_randomly(0.3, seed=7, answers=[webhook_error(500, "internal_error"), DROP])
    failures = 0
    for i in range(30):
        while True:
            try:
                deliver(webhook, [notification(make_alert(f"A{i}"))])
                break
            except NotifyError as error:
                assert error.recoverable
                failures += 1

    assert len(slack_webhook.delivered) == 30
    assert 3 <= failures <= 30


def test_fake_rate_limit_answers_429_per_hook_and_per_channel(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    slack_webhook.limit_rate(1.0)
    slack_api.limit_rate(1.0)
    other = slack_api.add_channel("#other")
    n = notification(make_alert())

    deliver(webhook, [n])
    deliver(bot, [n])
    webhook_error_ = failure(webhook, [n])
    bot_error = failure(bot, [n])
    api_url = slack_api.api_url + "chat.postMessage"
    body = json.dumps({"channel": other, "text": "another channel has its own limit"})
    headers = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json"}

    assert (webhook_error_.recoverable, webhook_error_.retry_after) == (True, 1.0)
    assert (bot_error.recoverable, bot_error.retry_after) == (True, 1.0)
    assert json.loads(post(api_url, body.encode(), headers)[1])["ok"] is True
    assert len(slack_webhook.delivered) == 1
    assert max_per_window(slack_webhook.delivery_times()) == 1
    assert len(slack_api.post_times(DEFAULT_CHANNEL)) == 1


def test_rate_helpers() -> None:
    times = [0.0, 0.4, 0.9, 1.5, 3.0]

    assert max_per_window(times, 1.0) == 3
    assert max_per_window(times, 0.5) == 2
    assert min_interval(times) == pytest.approx(0.4)
    assert min_interval([1.0]) == math.inf
